"""The binary task (`num_classes = 1`): the trainer's loop, evaluation and config checks on it."""
import json

import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics

from configs import binary_synthetic
from ls_jax.trainer import config_checks, default_config, methods, tasks, train
from ls_jax.trainer.errors import UserError


def small_config(**overrides):
  config = binary_synthetic.get_config()
  config.num_steps = 60
  config.log_every_steps = 20
  config.checkpoint_every_steps = 60
  config.update_from_flattened_dict(overrides)
  return config


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("binary") / "run"
  results = train.train_and_evaluate(small_config(**{"loss.label_smoothing": 0.2}), str(workdir))
  return workdir, results


def test_results_are_the_metrics_of_the_saved_test_logits(finished_run):
  workdir, results = finished_run
  saved = np.load(workdir / "predictions.npz")
  logits, labels = saved["test_logits"], saved["test_labels"]
  assert logits.shape == labels.shape == (5000,)
  probs = 1 / (1 + np.exp(-logits.astype(np.float64)))
  assert results["accuracy"] == pytest.approx(np.mean((logits > 0) == (labels == 1)))
  assert results["auroc"] == pytest.approx(metrics.roc_auc_score(labels, logits), abs=1e-9)
  assert results["average_precision"] == pytest.approx(
      metrics.average_precision_score(labels, logits), abs=1e-9)
  assert results["brier"] == pytest.approx(np.mean((probs - labels) ** 2), rel=1e-6)
  assert results["nll"] == pytest.approx(metrics.log_loss(labels, probs), rel=1e-5)
  # Temperature scaling divides the logits by the T fitted on validation.
  scaled = results["temperature_scaled"]
  assert scaled["auroc"] == pytest.approx(results["auroc"], abs=1e-12)  # A monotone map.
  platt = json.loads((workdir / "results.json").read_text())["platt"]
  assert platt.keys() == {"a", "b", "at_bound", "smoothed_targets"}
  np.testing.assert_allclose(results["platt_scaled"]["auroc"], results["auroc"], atol=1e-12)


def test_one_class_validation_still_fits_platt_with_its_smoothed_targets():
  task = tasks.BinaryClassification()
  rng = np.random.default_rng(0)
  test = {"logits": rng.normal(size=200).astype(np.float32),
          "label": rng.integers(0, 2, size=200)}
  val = {"logits": rng.normal(size=30).astype(np.float32), "label": np.zeros(30, np.int64)}
  results, _ = task.final_results(val, test)
  assert results["platt"]["smoothed_targets"] and np.isfinite(results["platt"]["b"])
  assert np.isnan(results["validation"]["auroc"])  # One class: no ranking to measure.


@pytest.mark.parametrize("label_smoothing,gamma", [(0.0, 0.0), (0.2, 0.0), (0.0, 2.0)])
def test_the_step_loss_is_the_binary_formula(label_smoothing, gamma):
  config = small_config(**{"loss.label_smoothing": label_smoothing, "loss.focal_gamma": gamma})
  z = jnp.asarray(np.random.default_rng(0).normal(size=64) * 3, jnp.float32)
  y = jnp.asarray(np.random.default_rng(1).integers(0, 2, size=64), jnp.int32)
  zd, yd = np.asarray(z, np.float64), np.asarray(y, np.float64)
  t = yd * (1 - label_smoothing) + label_smoothing / 2
  p = 1 / (1 + np.exp(-zd))
  p_t = np.where(yd == 1, p, 1 - p)
  expected = -(t * np.log(p) + (1 - t) * np.log(1 - p)) * (1 - p_t) ** gamma
  np.testing.assert_allclose(methods.per_example_binary_loss(z, y, config), expected, rtol=2e-5)


@pytest.mark.parametrize("overrides,field", [
    ({"loss.confidence_penalty": 0.1}, "loss.confidence_penalty"),
    ({"mixup.alpha": 0.2}, "mixup.alpha"),
    ({"cutmix.alpha": 1.0}, "cutmix.alpha"),
    ({"distill.teacher_workdir": "runs/t"}, "distill.teacher_workdir"),
    ({"loss.label_smoothing": -0.1}, "loss.label_smoothing"),
])
def test_methods_without_a_binary_form_are_refused_in_one_line(overrides, field):
  with pytest.raises(UserError) as raised:
    config_checks.validate(small_config(**overrides), reference=default_config.get_config(),
                           device_count=1)
  assert str(raised.value).startswith(f"config.{field}=") and "\n" not in str(raised.value)
