"""Losses of ls_jax, one module per family behind this namespace (`from ls_jax import losses`).

* `classification`: label-smoothed cross-entropy from integer labels (no one-hot, optional
  PyTorch-style class weights and their `weighted_mean`), soft-target cross-entropy, entropy, the
  confidence penalty, focal loss and knowledge distillation.
* `binary`: per-element sigmoid losses for binary and multi-label tasks: label-smoothed binary
  cross-entropy (targets `y (1 - a) + a / 2`, optional `pos_weight`) and binary focal loss.
* `fused`: the output layer fused with label-smoothed cross-entropy at vocabulary scale, on one
  device or split over a mesh's vocabulary axis, and a training step's mean loss with its
  gradients in one pass (`linear_smoothed_cross_entropy_and_grads`).

Every loss is a pure per-example function, computed in float32 whatever the logits' dtype. The
smoothing convention (Szegedy et al. 2016, §7) is in `classification`'s docstring.
"""
from ls_jax.losses.binary import binary_focal_loss
from ls_jax.losses.binary import smoothed_binary_cross_entropy
from ls_jax.losses.classification import NEGATIVE_SMOOTHING_MIN
from ls_jax.losses.classification import check_labels
from ls_jax.losses.classification import confidence_penalty
from ls_jax.losses.classification import distillation_loss
from ls_jax.losses.classification import entropy
from ls_jax.losses.classification import focal_loss
from ls_jax.losses.classification import smoothed_cross_entropy
from ls_jax.losses.classification import soft_cross_entropy
from ls_jax.losses.classification import weighted_mean
from ls_jax.losses.fused import LINEAR_BLOCK_SIZE
from ls_jax.losses.fused import LINEAR_CHUNK_SIZE
from ls_jax.losses.fused import linear_smoothed_cross_entropy
from ls_jax.losses.fused import linear_smoothed_cross_entropy_and_grads
from ls_jax.losses.fused import vocab_parallel_linear_smoothed_cross_entropy

__all__ = [
    "LINEAR_BLOCK_SIZE",
    "LINEAR_CHUNK_SIZE",
    "NEGATIVE_SMOOTHING_MIN",
    "binary_focal_loss",
    "check_labels",
    "confidence_penalty",
    "distillation_loss",
    "entropy",
    "focal_loss",
    "linear_smoothed_cross_entropy",
    "linear_smoothed_cross_entropy_and_grads",
    "smoothed_binary_cross_entropy",
    "smoothed_cross_entropy",
    "soft_cross_entropy",
    "vocab_parallel_linear_smoothed_cross_entropy",
    "weighted_mean",
]
