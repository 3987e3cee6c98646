"""Distillation in the trainer: a finished run as the teacher, inside the jitted, sharded step."""
import json

import jax
import numpy as np
import pytest

from ls_jax.trainer import distillation, input_pipeline, train
from ls_jax.trainer import parallel
from ls_jax.trainer import state as state_lib
from ls_jax.trainer import tasks
from ls_jax import losses, models
from ls_jax.trainer.errors import UserError
from test_train import small_config


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("teacher")
  train.train_and_evaluate(small_config(num_steps=40, **{"loss.label_smoothing": 0.1}),
                           str(workdir), devices=jax.devices()[:1])
  return workdir


def student_config(teacher_dir, **overrides):
  return small_config(num_steps=20, **{"model.name": "mlp",
                                       "distill.teacher_workdir": str(teacher_dir),
                                       "distill.temperature": 4.0, "distill.weight": 0.7,
                                       **overrides})


def test_the_step_minimizes_the_distillation_loss_of_the_teacher_on_the_batch(teacher_dir):
  """The first step's reported loss is `distillation_loss` of the init student and the restored
  teacher on the first batch, computed here outside the trainer."""
  config = student_config(teacher_dir, **{"loss.label_smoothing": 0.2})
  parallelism = parallel.Parallelism("jit", parallel.data_mesh(jax.devices()[:1]))
  teacher = distillation.load_teacher(config, parallelism.replicate_array)
  assert teacher.model.__class__.__name__ == models.get_model("cnn1d", num_classes=10).__class__.__name__
  model = models.get_model("mlp", num_classes=10)
  state = state_lib.create_train_state(jax.random.key(0), model, (40,),
                                   state_lib.make_optimizer(config.optimizer, 20))
  split = input_pipeline.load_dataset(config.data, num_classes=10, seed=0).train
  batch = split.local_batch(input_pipeline.global_batch_indices(
      0, num_examples=len(split), batch_size=config.batch_size, seed=config.seed))
  expected = losses.distillation_loss(
      model.apply({"params": state.params}, batch["image"], train=False),
      teacher.model.apply(teacher.variables, batch["image"], train=False), batch["label"],
      temperature=4.0, weight=0.7, label_smoothing=0.2).mean()
  step = train.compile_train_step(parallelism, model, config, resident_data=True, teacher_model=teacher.model)
  feed = parallel.ResidentFeed(split, config, parallelism)
  state, sums = step(parallelism.to_device(state), parallelism.new_metric_sums(tasks.task_for(config).step_metric_names), *feed(0),
                     jax.random.key(0), teacher.variables)
  np.testing.assert_allclose(parallelism.read_metric_sums(sums)["loss"], expected, rtol=1e-5)


def test_distillation_on_8_devices_equals_1_device_and_differs_from_no_teacher(teacher_dir, tmp_path):
  one = train.train_and_evaluate(student_config(teacher_dir), str(tmp_path / "one"),
                                 devices=jax.devices()[:1])
  eight = train.train_and_evaluate(student_config(teacher_dir), str(tmp_path / "eight"))
  alone = train.train_and_evaluate(small_config(num_steps=20, **{"model.name": "mlp"}),
                                   str(tmp_path / "alone"), devices=jax.devices()[:1])
  import launch
  params = {name: launch.final_params(tmp_path / name)["params"] for name in ("one", "eight", "alone")}
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6),
               params["one"], params["eight"])
  assert not all(np.allclose(a, b) for a, b in zip(jax.tree.leaves(params["one"]),
                                                   jax.tree.leaves(params["alone"])))
  assert one["config"]["distill"]["teacher_workdir"] == str(teacher_dir)
  assert abs(one["accuracy"] - eight["accuracy"]) < 0.01 and alone["accuracy"] > 0


def test_a_missing_unfinished_or_mismatched_teacher_is_one_line(teacher_dir, tmp_path):
  with pytest.raises(UserError, match="holds no run") as error:
    train.train_and_evaluate(student_config(tmp_path / "nothing"), str(tmp_path / "s1"))
  assert "\n" not in str(error.value)
  unfinished = tmp_path / "unfinished"
  train.train_and_evaluate(small_config(num_steps=10), str(unfinished), devices=jax.devices()[:1])
  (unfinished / "results.json").unlink()
  with pytest.raises(UserError, match=r"is unfinished"):
    train.train_and_evaluate(student_config(unfinished), str(tmp_path / "s2"))
  saved = json.loads((unfinished / "config.json").read_text())
  train.train_and_evaluate(small_config(num_steps=10), str(unfinished), devices=jax.devices()[:1])
  (unfinished / "config.json").write_text(json.dumps({**saved, "num_classes": 7}))
  with pytest.raises(UserError, match=r"has num_classes=7, the student 10"):
    train.train_and_evaluate(student_config(unfinished), str(tmp_path / "s3"))
  with pytest.raises(UserError, match=r"distill.temperature=0.0: must be > 0"):
    train.train_and_evaluate(student_config(teacher_dir, **{"distill.temperature": 0.0}),
                             str(tmp_path / "s4"))
