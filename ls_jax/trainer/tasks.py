"""What a task contributes to the generic train loop, so that the loop never asks which task it runs.

A task says how a batch becomes model inputs (and soft targets), what the loss of a batch and its
gradient are, which metrics the step can afford, what evaluation keeps of a batch, and what the
final results are.
Two tasks: `Classification` here (the losses of the method table, `ls_jax.trainer.methods`), and
next-token language modelling (`ls_jax.trainer.language_model.LanguageModel`).
"""
from typing import Any, Optional

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from scipy import special

from ls_jax import binary_calibration
from ls_jax import calibration
from ls_jax import models
from ls_jax.trainer import input_pipeline
from ls_jax.trainer import methods
from ls_jax.trainer.evaluation import bins_json
from ls_jax.trainer.language_model import LanguageModel


class Classification:
  """Images or 1-D signals with integer labels; logits from the model."""
  step_metric_names = ("loss", "accuracy", "mean_confidence", "grad_norm")
  validation_metric_names = ("accuracy", "nll", "ece", "mean_confidence")
  input_dtype = jnp.float32

  def model_kwargs(self, config: ml_collections.ConfigDict) -> dict[str, Any]:
    del config
    return {}

  def prepare(self, rng: jax.Array, batch: dict[str, jax.Array],
              config: ml_collections.ConfigDict) -> tuple[jax.Array, Optional[jax.Array]]:
    """Normalized, augmented and mixed inputs, and the mixed soft targets (None unmixed)."""
    augment_rng, mix_rng = jax.random.split(rng)
    images = input_pipeline.normalize(batch["image"], config.data.name,
                                      jnp.dtype(config.compute_dtype))
    if config.data.augment == "crop_flip":
      images = input_pipeline.random_crop_flip(augment_rng, images)
    return methods.mix_batch(mix_rng, images, batch["label"], config)

  def loss(self, model: flax.linen.Module, variables: dict[str, Any], inputs: jax.Array,
           labels: jax.Array, targets: Optional[jax.Array], config: ml_collections.ConfigDict, *,
           teacher_logits: Optional[jax.Array], vocab_mesh: Optional[jax.sharding.Mesh],
           has_batch_stats: bool) -> tuple[jax.Array, tuple[jax.Array, Any]]:
    """The batch's mean loss, and (logits, updated BatchNorm statistics or None)."""
    del vocab_mesh  # Classifiers are replicated (config validation).
    logits, batch_stats = _train_forward(model, variables, inputs, has_batch_stats)
    loss = methods.per_example_loss(logits, labels, targets, config, teacher_logits).mean()
    return loss, (logits, batch_stats)

  def loss_and_grads(self, model: flax.linen.Module, variables: dict[str, Any],
                     inputs: jax.Array, labels: jax.Array, targets: Optional[jax.Array],
                     config: ml_collections.ConfigDict, **loss_kwargs
                     ) -> tuple[tuple[jax.Array, tuple[jax.Array, Any]], Any]:
    """`((loss, aux), grads)`: `self.loss` and its gradient w.r.t. `variables["params"]`, what the
    train step applies (a language model computes its own, `LanguageModel.loss_and_grads`)."""
    return jax.value_and_grad(
        lambda params: self.loss(model, {**variables, "params": params}, inputs, labels, targets,
                                 config, **loss_kwargs), has_aux=True)(variables["params"])

  def step_metrics(self, logits: jax.Array, labels: jax.Array) -> dict[str, jax.Array]:
    return {"accuracy": jnp.mean(jnp.argmax(logits, -1) == labels),
            "mean_confidence": jnp.mean(jnp.max(jax.nn.softmax(logits), -1))}

  def eval_outputs(self, model: flax.linen.Module, variables: dict[str, Any], inputs: jax.Array,
                   labels: jax.Array, config: ml_collections.ConfigDict) -> dict[str, jax.Array]:
    del labels
    images = input_pipeline.normalize(inputs, config.data.name, jnp.dtype(config.compute_dtype))
    return {"logits": model.apply(variables, images, train=False)}

  def split_metrics(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
    return calibration.calibration_metrics(outputs["logits"], outputs["label"])

  def final_results(self, val_outputs: dict[str, np.ndarray], test_outputs: dict[str, np.ndarray]
                    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Test metrics, plus temperature scaling fitted on validation (Guo et al. 2017); and the
    predictions (float32 logits and labels of both splits) that analyses of a finished run read
    from `predictions.npz`, without retraining."""
    val_logits, val_labels = val_outputs["logits"], val_outputs["label"]
    test_logits, test_labels = test_outputs["logits"], test_outputs["label"]
    temperature, at_bound = calibration.fit_temperature_checked(val_logits, val_labels)
    scaled_logits = test_logits / temperature
    results = {
        **calibration.calibration_metrics(test_logits, test_labels),
        "validation": calibration.calibration_metrics(val_logits, val_labels),
        "temperature": float(temperature),
        # The fit ended on a bound of calibration.TEMPERATURE_BOUNDS: the validation split does not
        # determine T (e.g. every example right, or wrong, by a wide margin).
        "temperature_at_bound": bool(at_bound),
        "temperature_scaled": calibration.calibration_metrics(scaled_logits, test_labels),
        # What a reliability diagram and a confidence histogram draw (scripts/plot_calibration.py).
        "reliability": _reliability_json(test_logits, test_labels),
        "reliability_temperature_scaled": _reliability_json(scaled_logits, test_labels),
    }
    predictions = {"val_logits": val_logits, "val_labels": val_labels,
                   "test_logits": test_logits, "test_labels": test_labels}
    return results, predictions

  def summary_line(self, results: dict[str, Any], config: ml_collections.ConfigDict, method: str,
                   workdir: str) -> str:
    """A README-table row: what was trained, and the test metrics that answer the papers."""
    scaled = results["temperature_scaled"]
    return ("| dataset | model | method | steps | test acc | NLL | ECE | mean conf | T "
            "| ECE after TS | train s |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
            f"| {config.data.name} | {config.model.name} | {method} | {results['steps']} "
            f"| {results['accuracy']:.4f} | {results['nll']:.4f} | {results['ece']:.4f} "
            f"| {results['mean_confidence']:.4f} | {results['temperature']:.3f}"
            f"{' (at bound)' if results.get('temperature_at_bound') else ''} "
            f"| {scaled['ece']:.4f} | {results['train_seconds']:.1f} |\n"
            f"(full results: {workdir}/results.json)")


def _train_forward(model: flax.linen.Module, variables: dict[str, Any], inputs: jax.Array,
                   has_batch_stats: bool) -> tuple[jax.Array, Any]:
  """The model in training mode: (logits, updated BatchNorm statistics or None)."""
  if not has_batch_stats:
    return model.apply(variables, inputs, train=True), None
  logits, updates = model.apply(variables, inputs, train=True, mutable=["batch_stats"])
  return logits, updates["batch_stats"]


def _reliability_json(logits: np.ndarray, labels: np.ndarray) -> dict[str, list]:
  return bins_json(calibration.reliability_bins(
      special.softmax(logits.astype(np.float64), axis=1), labels))


class BinaryClassification(Classification):
  """Labels in {0, 1} and one sigmoid output (`num_classes = 1`): P(y = 1) = sigmoid(logit).

  The loss is the `binary_loss` of the method table (binary LS: targets y (1 - a) + a / 2).
  Evaluation measures the calibration of P(y = 1) and the ranking (AUROC, average precision;
  `ls_jax.binary_calibration`), and fits temperature and Platt scaling on validation; the
  predictions keep the test and validation logits, from which any decision threshold can be
  evaluated without retraining.
  """
  validation_metric_names = ("accuracy", "nll", "ece", "brier", "auroc")

  def loss(self, model: flax.linen.Module, variables: dict[str, Any], inputs: jax.Array,
           labels: jax.Array, targets: None, config: ml_collections.ConfigDict, *,
           teacher_logits: None, vocab_mesh: None,
           has_batch_stats: bool) -> tuple[jax.Array, tuple[jax.Array, Any]]:
    del targets, teacher_logits, vocab_mesh  # Config validation rules out mixing and teachers.
    logits, batch_stats = _train_forward(model, variables, inputs, has_batch_stats)
    logits = logits[..., 0]
    loss = methods.per_example_binary_loss(logits, labels, config).mean()
    return loss, (logits, batch_stats)

  def step_metrics(self, logits: jax.Array, labels: jax.Array) -> dict[str, jax.Array]:
    return {"accuracy": jnp.mean((logits > 0) == (labels == 1)),
            "mean_confidence": jnp.mean(jax.nn.sigmoid(jnp.abs(logits)))}

  def eval_outputs(self, model: flax.linen.Module, variables: dict[str, Any], inputs: jax.Array,
                   labels: jax.Array, config: ml_collections.ConfigDict) -> dict[str, jax.Array]:
    return {"logits": super().eval_outputs(model, variables, inputs, labels, config)["logits"][
        ..., 0]}

  def split_metrics(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
    return binary_calibration.binary_calibration_metrics(outputs["logits"], outputs["label"])

  def final_results(self, val_outputs: dict[str, np.ndarray], test_outputs: dict[str, np.ndarray]
                    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Test metrics of P(y = 1), and the same after temperature and Platt scaling fitted on
    validation (Guo et al. 2017; Platt 1999)."""
    val_logits, val_labels = val_outputs["logits"], val_outputs["label"]
    test_logits, test_labels = test_outputs["logits"], test_outputs["label"]
    temperature, at_bound = binary_calibration.fit_binary_temperature_checked(val_logits,
                                                                             val_labels)
    # With one class in validation the maximum-likelihood intercept is infinite: Platt's own
    # smoothed targets still give a fit (a small validation split with rare positives).
    one_class = bool(np.all(val_labels == val_labels[0]))
    platt_fit = binary_calibration.fit_platt(val_logits, val_labels, target_smoothing=one_class)
    scaled = test_logits / temperature
    platt = binary_calibration.apply_platt(test_logits, platt_fit.a, platt_fit.b)
    reliability = lambda logits: bins_json(binary_calibration.binary_reliability_bins(
        special.expit(logits.astype(np.float64)), test_labels))
    results = {
        **binary_calibration.binary_calibration_metrics(test_logits, test_labels),
        "validation": binary_calibration.binary_calibration_metrics(val_logits, val_labels),
        "temperature": float(temperature),
        "temperature_at_bound": bool(at_bound),
        "temperature_scaled": binary_calibration.binary_calibration_metrics(scaled, test_labels),
        "platt": {"a": platt_fit.a, "b": platt_fit.b, "at_bound": bool(platt_fit.at_bound),
                  "smoothed_targets": one_class},
        "platt_scaled": binary_calibration.binary_calibration_metrics(platt, test_labels),
        "reliability": reliability(test_logits),
        "reliability_temperature_scaled": reliability(scaled),
    }
    predictions = {"val_logits": val_logits, "val_labels": val_labels,
                   "test_logits": test_logits, "test_labels": test_labels}
    return results, predictions

  def summary_line(self, results: dict[str, Any], config: ml_collections.ConfigDict, method: str,
                   workdir: str) -> str:
    """A README-table row of a binary run: P(y = 1)'s calibration and ranking."""
    return ("| dataset | model | method | steps | test acc | NLL | ECE | Brier | AUROC | AP | T "
            "| train s |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n"
            f"| {config.data.name} | {config.model.name} | {method} | {results['steps']} "
            f"| {results['accuracy']:.4f} | {results['nll']:.4f} | {results['ece']:.4f} "
            f"| {results['brier']:.4f} | {results['auroc']:.4f} "
            f"| {results['average_precision']:.4f} | {results['temperature']:.3f}"
            f"{' (at bound)' if results['temperature_at_bound'] else ''} "
            f"| {results['train_seconds']:.1f} |\n(full results: {workdir}/results.json)")


Task = Classification | BinaryClassification | LanguageModel


def task_for(config: ml_collections.ConfigDict) -> Task:
  """The task `config` implies: a language model by its model, a binary task by its single output
  (`num_classes = 1`), else classification."""
  if config.model.name in models.LANGUAGE_MODELS:
    return LanguageModel()
  return BinaryClassification() if config.num_classes == 1 else Classification()
