"""`init_from`: a finished run's final weights start a new run, with a fresh optimizer and step."""
import json
import shutil

import jax
import numpy as np
import pytest

import launch
from ls_jax.trainer import finished_runs, train
from ls_jax.trainer import state as state_lib
from ls_jax import models
from ls_jax.experiments import runs
from ls_jax.trainer.errors import UserError
from test_train import small_config


@pytest.fixture(scope="module")
def warmup_dir(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("warmup")
  train.train_and_evaluate(small_config(num_steps=40), str(workdir), devices=jax.devices()[:1])
  return workdir


def fresh_state(config):
  model = models.get_model(config.model.name, num_classes=config.num_classes)
  return state_lib.create_train_state(jax.random.key(1), model, (40,),
                                  state_lib.make_optimizer(config.optimizer, config.num_steps))


def test_warm_start_takes_the_final_params_and_keeps_a_fresh_optimizer(warmup_dir):
  config = small_config(init_from=str(warmup_dir))
  state = fresh_state(config)
  warm = finished_runs.warm_start(state, config)
  launch.assert_trees_equal(warm.params, launch.final_params(warmup_dir)["params"])
  assert int(warm.step) == 0
  # A fresh Adam: zero moments and a zero count.
  assert all(not np.any(np.asarray(leaf)) for leaf in jax.tree.leaves(warm.opt_state))
  assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(warm.params),
                                                      jax.tree.leaves(state.params)))


def test_a_run_fine_tuned_at_a_tiny_rate_stays_at_its_warm_up(warmup_dir, tmp_path):
  """Through the trainer: 5 Adam steps of 1e-7 move no weight by more than 2e-6 (an Adam step is
  at most ~3.2x the rate: (1 - b1) / sqrt(1 - b2)), so the fine-tuned run ends where the warm-up
  ended, its test accuracy too."""
  config = small_config(num_steps=5, init_from=str(warmup_dir),
                        **{"optimizer.learning_rate": 1e-7, "optimizer.warmup_steps": 0})
  results = train.train_and_evaluate(config, str(tmp_path), devices=jax.devices()[:1])
  tuned = launch.final_params(tmp_path)["params"]
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=2e-6),
               tuned, launch.final_params(warmup_dir)["params"])
  warmup_results = json.loads((warmup_dir / "results.json").read_text())
  assert abs(results["accuracy"] - warmup_results["accuracy"]) <= 0.002
  assert results["steps"] == 5 and results["config"]["init_from"] == str(warmup_dir)


def test_a_missing_or_mismatched_init_from_run_is_one_line(warmup_dir, tmp_path):
  with pytest.raises(UserError, match="init_from=.* holds no run") as error:
    train.train_and_evaluate(small_config(init_from=str(tmp_path / "nothing")), str(tmp_path / "a"))
  assert "\n" not in str(error.value)
  with pytest.raises(UserError, match=r"has model.name='cnn1d', this run 'mlp'"):
    train.train_and_evaluate(small_config(init_from=str(warmup_dir), **{"model.name": "mlp"}),
                             str(tmp_path / "b"))


def test_other_parameter_shapes_are_one_line(warmup_dir):
  """Same model name, other shapes (here a state built for the MLP): the weights cannot be placed."""
  with pytest.raises(UserError, match="other parameter shapes than this run"):
    finished_runs.warm_start(fresh_state(small_config(**{"model.name": "mlp"})),
                             small_config(init_from=str(warmup_dir)))


def test_a_resumed_run_needs_its_own_checkpoint_not_the_init_from_run(tmp_path):
  """After the first checkpoint, this run's own checkpoint is what counts: the warm-up may be gone."""
  warmup, tuned = tmp_path / "warmup", tmp_path / "tuned"
  devices = jax.devices()[:1]
  train.train_and_evaluate(small_config(num_steps=20), str(warmup), devices=devices)
  config = small_config(num_steps=20, init_from=str(warmup), checkpoint_every_steps=10)
  train.train_and_evaluate(config, str(tuned), devices=devices)
  reference = launch.final_params(tuned)
  for path in (tuned / "checkpoints" / "20", tuned / "results.json"):
    shutil.rmtree(path) if path.is_dir() else path.unlink()
  shutil.rmtree(warmup)
  results = train.train_and_evaluate(config, str(tuned), devices=devices)  # Resumes from step 10.
  assert results["steps"] == 20
  launch.assert_trees_equal(launch.final_params(tuned), reference)


def test_runs_started_from_the_same_run_of_other_seeds_form_one_experiment():
  def key(init_from, seed):
    return runs.experiment_key(small_config(seed=seed, init_from=init_from).to_dict())
  assert key("runs/noise/ce_seed0", 0) == key("runs/noise/ce_seed1/", 1)
  assert key("runs/noise/ce_seed0", 0) != key("runs/noise/ls_seed0", 0)
  assert key("", 0) != key("runs/noise/ce_seed0", 0)


def test_a_fine_tuned_run_is_labelled_by_the_run_it_started_from(warmup_dir, tmp_path):
  from ls_jax.trainer import methods
  config = small_config(num_steps=2, init_from=str(warmup_dir) + "/",
                        **{"loss.label_smoothing": 0.4})
  assert methods.label(config.to_dict()) == f"LS 0.4 (from {warmup_dir.name})"
  assert methods.label(config.to_dict(), start=False) == "LS 0.4"
  # The runs of one group start each from its seed's run: one label for all of them.
  for seed in (0, 7):
    config.init_from = f"/runs/noise/ce_sym0.4_seed{seed}"
    config.data.label_noise.rate = 0.4
    assert methods.label(config) == "40% symmetric noise: LS 0.4 (from ce_sym0.4)"
  config.init_from = ""
  assert methods.label(config) == "40% symmetric noise: LS 0.4"  # Without init_from: as before.


def test_loading_a_finished_run_logs_no_checkpoint_metadata_warning(warmup_dir, caplog):
  import logging
  from ls_jax.trainer import checkpointing
  with caplog.at_level(logging.INFO):
    state = checkpointing.read_state_arrays(warmup_dir / "checkpoints" / "40")
  assert "params" in state
  assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
