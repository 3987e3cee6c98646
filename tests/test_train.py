"""The training system end to end, on the embedded data and 8 host devices."""
import collections
import json

import jax
import numpy as np
import pytest

from configs import default, mnist1d
from ls_jax.trainer import input_pipeline, train
from ls_jax.trainer import parallel
from ls_jax.trainer import state as state_lib
from ls_jax.trainer import errors
from ls_jax.trainer import tasks
from ls_jax import models
from ls_jax.trainer.errors import UserError


def small_config(**overrides):
  config = mnist1d.get_config()
  config.batch_size = 96  # Divisible by the 8 test devices (the recipe's 100 is not).
  config.num_steps = 40
  config.log_every_steps = 10
  config.checkpoint_every_steps = 20
  config.eval_every_steps = 20
  for key, value in overrides.items():
    target = config
    *path, leaf = key.split(".")
    for name in path:
      target = target[name]
    target[leaf] = value
  return config


def test_run_writes_results_metrics_tensorboard_and_checkpoints(tmp_path):
  results = train.train_and_evaluate(small_config(), str(tmp_path))
  on_disk = json.loads((tmp_path / "results.json").read_text())
  for key in ("accuracy", "nll", "ece", "mean_confidence", "steps", "examples_seen",
              "train_seconds", "config", "environment", "temperature", "temperature_scaled"):
    assert key in on_disk, key
  assert on_disk["steps"] == 40 and on_disk["examples_seen"] == 40 * 96
  assert on_disk["config"]["model"]["name"] == "cnn1d"
  assert on_disk["temperature_at_bound"] is False
  assert on_disk["environment"]["device_count"] == jax.device_count() == 8
  assert on_disk["environment"]["cpu_model"]  # Every figure names the machine it came from.
  import os  # pylint: disable=g-import-not-at-top
  assert on_disk["environment"]["cpu_cores_available"] == len(os.sched_getaffinity(0))
  assert results["accuracy"] > 0.2  # Above chance (0.1) after 40 steps.
  # predictions.npz holds the logits that the reported metrics were computed from.
  predictions = np.load(tmp_path / "predictions.npz")
  assert predictions["test_logits"].shape == (1000, 10)
  assert predictions["test_logits"].dtype == np.float32
  assert predictions["val_logits"].shape == (400, 10) and predictions["val_labels"].shape == (400,)
  assert np.mean(predictions["test_logits"].argmax(1) == predictions["test_labels"]) == (
      results["accuracy"])
  from ls_jax import calibration
  assert calibration.calibration_metrics(predictions["val_logits"], predictions["val_labels"])[
      "ece"] == results["validation"]["ece"]
  lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [l["step"] for l in lines if "loss" in l] == [10, 20, 30, 40]
  assert lines[0]["loss"] > lines[3]["loss"]
  # Validation curves during training (eval_every_steps=20) and at the end.
  assert [l["step"] for l in lines if "val/ece" in l] == [20, 40]
  assert all(0 <= l["val/accuracy"] <= 1 for l in lines if "val/accuracy" in l)
  # TensorBoard reads back the same scalars (its own event reader, not ours).
  from tensorboard.backend.event_processing import event_accumulator
  events = event_accumulator.EventAccumulator(str(tmp_path / "tensorboard"))
  events.Reload()
  logged = [l for l in lines if "loss" in l]
  assert [e.step for e in events.Scalars("loss")] == [l["step"] for l in logged]
  np.testing.assert_allclose([e.value for e in events.Scalars("loss")],
                             [l["loss"] for l in logged], rtol=1e-6)  # float32 in the events.
  assert [e.step for e in events.Scalars("val/ece")] == [20, 40]
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == [
      "20", "40"]


def test_label_smoothing_lowers_confidence(tmp_path):
  """Müller et al. 2019: LS shrinks confidence; training confidence is capped near 1-a+a/K."""
  one_device = jax.devices()[:1]
  ce = train.train_and_evaluate(small_config(num_steps=600), str(tmp_path / "ce"),
                                devices=one_device)
  ls = train.train_and_evaluate(small_config(num_steps=600, **{"loss.label_smoothing": 0.3}),
                                str(tmp_path / "ls"), devices=one_device)
  assert ls["mean_confidence"] < ce["mean_confidence"] - 0.05
  assert ls["mean_confidence"] < 1 - 0.3 + 0.3 / 10 + 0.02


def _run_steps(config, strategy: str, devices, num_steps: int = 3, resident=None):
  """Runs the real train step on the real data for a few steps under one strategy.

  The feed is the loop's own choice (`make_feed`) unless `resident` forces one.
  """
  model = models.get_model(config.model.name, num_classes=config.num_classes)
  parallelism = parallel.Parallelism(strategy, parallel.data_mesh(devices))
  tx = state_lib.make_optimizer(config.optimizer, config.num_steps)
  state = state_lib.create_train_state(jax.random.key(0), model, (40,), tx)
  state = parallelism.to_device(state)
  split = input_pipeline.load_dataset(config.data, num_classes=10, seed=0).train
  if resident is None:
    feed = parallel.make_feed(split, config, parallelism, start_step=0)
  else:
    feed = (parallel.ResidentFeed(split, config, parallelism) if resident
            else parallel.HostFeed(split, config, parallelism, start_step=0))
  step = train.compile_train_step(  # The loop's own jit / pmap wrapping.
      parallelism, model, config, resident_data=isinstance(feed, parallel.ResidentFeed))
  metric_sums = parallelism.new_metric_sums(tasks.task_for(config).step_metric_names)
  for i in range(num_steps):
    state, metric_sums = step(state, metric_sums, *feed(i), jax.random.key(1), None)
  metrics = {k: v / num_steps for k, v in parallelism.read_metric_sums(metric_sums).items()}
  return jax.device_get(parallelism.from_device(state).params), metrics


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_jit_on_8_devices_and_pmap_match_one_device(label_smoothing):
  config = small_config(**{"loss.label_smoothing": label_smoothing})
  one, one_metrics = _run_steps(config, "jit", jax.devices()[:1])
  eight, eight_metrics = _run_steps(config, "jit", jax.devices())
  pmapped, pmapped_metrics = _run_steps(config, "pmap", jax.devices())
  for other in (eight, pmapped):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6), one, other)
  for other in (eight_metrics, pmapped_metrics):  # Metrics summed on device agree too.
    for name in tasks.Classification.step_metric_names:
      np.testing.assert_allclose(one_metrics[name], other[name], rtol=1e-4)
  # And the steps did something: every parameter moved from its initial value.
  initial = state_lib.create_train_state(
      jax.random.key(0), models.get_model("cnn1d", num_classes=10), (40,),
      state_lib.make_optimizer(config.optimizer, 10)).params
  for before, after in zip(jax.tree.leaves(initial), jax.tree.leaves(one)):
    assert not np.allclose(before, after)


@pytest.mark.parametrize("devices", [1, 8])
def test_device_resident_data_gives_the_host_batches_results(devices):
  """The batch gathered inside the step is the host pipeline's batch (see the test below), so
  the params agree to float32 rounding: XLA fuses the gather into the step's arithmetic."""
  config = small_config(num_steps=45, **{"mixup.alpha": 0.4})
  resident, resident_metrics = _run_steps(config, "jit", jax.devices()[:devices], num_steps=45,
                                          resident=True)  # 45 steps: crosses an epoch (37).
  host, host_metrics = _run_steps(config, "jit", jax.devices()[:devices], num_steps=45,
                                  resident=False)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6), resident, host)
  for name in tasks.Classification.step_metric_names:
    np.testing.assert_allclose(resident_metrics[name], host_metrics[name], rtol=1e-4)


def test_take_batch_selects_the_global_batch_indices_across_epochs():
  import jax.numpy as jnp
  num_examples, batch_size, seed = 50, 8, 3  # 6 steps per epoch; 2 examples dropped per epoch.
  data = {"image": jnp.arange(num_examples) * 10, "label": jnp.arange(num_examples)}
  for step in range(20):
    order = input_pipeline.epoch_order(step, num_examples=num_examples, batch_size=batch_size,
                                       seed=seed)
    batch = input_pipeline.take_batch(data, jnp.asarray(order), jnp.asarray(step), batch_size)
    expected = input_pipeline.global_batch_indices(step, num_examples=num_examples,
                                                   batch_size=batch_size, seed=seed)
    np.testing.assert_array_equal(batch["label"], expected)
    np.testing.assert_array_equal(batch["image"], expected * 10)


def test_train_step_compiles_once(tmp_path):
  config = small_config(num_steps=30, **{"mixup.alpha": 0.4, "loss.label_smoothing": 0.1})
  model = models.get_model("cnn1d", num_classes=10)
  parallelism = parallel.Parallelism("jit", parallel.data_mesh())
  step = train.compile_train_step(parallelism, model, config, resident_data=True)
  state = parallelism.to_device(state_lib.create_train_state(
      jax.random.key(0), model, (40,), state_lib.make_optimizer(config.optimizer, 30)))
  split = input_pipeline.load_dataset(config.data, num_classes=10, seed=0).train
  feed = parallel.ResidentFeed(split, config, parallelism)
  metric_sums = parallelism.new_metric_sums(tasks.task_for(config).step_metric_names)
  for i in range(60):  # Crosses an epoch boundary: a new order array, the same executable.
    state, metric_sums = step(state, metric_sums, *feed(i), jax.random.key(0), None)
  assert int(state.step) == 60
  assert step._cache_size() == 1  # pylint: disable=protected-access


def _numbers(results):
  """results.json's values, timings and the environment left out."""
  return {k: v for k, v in results.items() if k not in ("train_seconds", "environment")}


def test_a_next_seed_in_the_same_process_reuses_the_jitted_step_and_trains_as_alone(
    tmp_path, monkeypatch):
  """A sweep worker trains the seeds of a point one after another: the second reuses the first
  one's jitted functions (the step is not traced again), and trains exactly as that seed trained
  with every function built afresh. Any traced field that differs builds new ones."""
  monkeypatch.setattr(train, "_REUSED", collections.OrderedDict())
  mixup = {"mixup.alpha": 0.2}  # The step draws from its key: a seed traced into it would show.
  traces = []
  traced_step = train.train_step
  monkeypatch.setattr(train, "train_step", lambda *a, **k: traces.append(1) or traced_step(*a, **k))
  train.train_and_evaluate(small_config(seed=0, **mixup), str(tmp_path / "seed0"))
  reused = train.train_and_evaluate(small_config(seed=1, **mixup), str(tmp_path / "seed1"))
  assert len(traces) == 1
  train._REUSED.clear()  # pylint: disable=protected-access
  alone = train.train_and_evaluate(small_config(seed=1, **mixup), str(tmp_path / "seed1_alone"))
  assert len(traces) == 2
  assert _numbers(reused) == _numbers(alone)
  alone_predictions = np.load(tmp_path / "seed1_alone" / "predictions.npz")
  for name, array in np.load(tmp_path / "seed1" / "predictions.npz").items():
    np.testing.assert_array_equal(array, alone_predictions[name])
  assert reused["nll"] != json.loads((tmp_path / "seed0" / "results.json").read_text())[
      "nll"]  # The seed did change the run.
  train.train_and_evaluate(small_config(seed=1, **mixup, **{"loss.label_smoothing": 0.1}),
                           str(tmp_path / "ls"))
  assert len(traces) == 3


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(tmp_path):
  config = small_config(num_steps=60, checkpoint_every_steps=10, **{
      "optimizer.name": "sgd", "optimizer.learning_rate": 1e30})
  with pytest.raises(errors.NonFiniteLoss, match=r"non-finite at step \d+") as error:
    train.train_and_evaluate(config, str(tmp_path))
  assert "\n" not in str(error.value)
  assert not (tmp_path / "results.json").exists()


def test_non_finite_updates_can_be_skipped(tmp_path):
  config = small_config(num_steps=20, **{"optimizer.name": "sgd", "optimizer.learning_rate": 1e30,
                                         "nonfinite_loss": "skip"})
  # The first update (loss still finite) throws the params far away; every later one is skipped,
  # so training reaches step 20, and the evaluation of the diverged model says so in one line.
  with pytest.raises(errors.NonFiniteLoss, match=r"outputs on split .* are not finite") as error:
    train.train_and_evaluate(config, str(tmp_path))
  assert "\n" not in str(error.value)
  assert (tmp_path / "checkpoints" / "20").is_dir()
  lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [l["step"] for l in lines if "loss" in l][-1] == 20


@pytest.mark.parametrize("field,value,message", [
    ("loss.label_smoothing", 1.0, r"loss.label_smoothing=1.0: must be in \[-1, 1\)"),
    ("loss.label_smoothing", -1.5, r"must be in \[-1, 1\)"),
    ("loss.confidence_penalty", -1.0, r"confidence_penalty=-1.0: must be >= 0"),
    ("mixup.alpha", -0.2, r"mixup.alpha=-0.2: must be >= 0"),
    ("batch_size", 100, r"batch_size=100: must be divisible by the 8 devices"),
    ("num_classes", 7, r"num_classes=7 but dataset 'mnist1d' has 10 classes"),
    ("model.name", "resnet9000", r"model.name='resnet9000': expected one of"),
    ("optimizer.name", "adagrad", r"optimizer.name='adagrad': expected one of adam, sgd"),
    ("data.label_noise.kind", "weird", r"data.label_noise.kind='weird'"),
    ("num_steps", 0, r"num_steps=0: must be a positive integer"),
])
def test_bad_config_values_are_one_line_errors_naming_the_field(tmp_path, field, value, message):
  with pytest.raises(UserError, match=message) as error:
    train.train_and_evaluate(small_config(**{field: value}), str(tmp_path))
  assert "\n" not in str(error.value)


def test_unknown_config_field_is_rejected(tmp_path):
  config = small_config()
  config.loss.smothing = 0.1  # A typo must not be silently ignored.
  with pytest.raises(UserError, match="unknown config field 'loss.smothing'"):
    train.train_and_evaluate(config, str(tmp_path))


def test_a_workdir_of_another_experiment_is_not_resumed(tmp_path):
  one_device = jax.devices()[:1]
  train.train_and_evaluate(small_config(num_steps=20), str(tmp_path), devices=one_device)
  with pytest.raises(UserError, match=r"different config \(model.name: 'cnn1d' there, 'mlp' now\)"
                     r".*--restart"):
    train.train_and_evaluate(small_config(num_steps=20, **{"model.name": "mlp"}), str(tmp_path))
  results = train.train_and_evaluate(small_config(num_steps=20, **{"model.name": "mlp"}),
                                     str(tmp_path), restart=True, devices=one_device)
  assert results["config"]["model"]["name"] == "mlp"
  assert list(tmp_path.parent.glob(f"{tmp_path.name}.old-*"))  # The old run was moved, not lost.


def test_every_default_field_has_a_check_or_a_type():
  """Guard: a new field in configs/default.py must keep validate() passing on the default."""
  from ls_jax.trainer import config_checks
  config_checks.validate(default.get_config(), reference=default.get_config(), device_count=8)


def test_summary_line_flags_a_temperature_on_its_bound():
  config = small_config()
  results = {"steps": 40, "accuracy": 0.1, "nll": 2.3, "ece": 0.01, "mean_confidence": 0.1,
             "temperature": 100.0, "temperature_at_bound": True, "train_seconds": 1.0,
             "temperature_scaled": {"ece": 0.0}}
  assert "| 100.000 (at bound) |" in train.summary_line(results, config, "/tmp/run")
  results.update(temperature=1.5, temperature_at_bound=False)
  assert "| 1.500 |" in train.summary_line(results, config, "/tmp/run")
  del results["temperature_at_bound"]  # A run from before the flag.
  assert "| 1.500 |" in train.summary_line(results, config, "/tmp/run")
