"""Classification losses: label-smoothed and soft-target cross-entropy, entropy, the confidence
penalty, focal loss and knowledge distillation.

Convention: label smoothing with strength `a` over `K` classes trains against
`q'(k) = (1 - a) * onehot(y)(k) + a / K`, so the uniform mass `a / K` goes to all `K` classes,
the true one included (Szegedy et al. 2016, "Rethinking the Inception Architecture", §7; the same
as `optax.smooth_labels`, PyTorch `CrossEntropyLoss(label_smoothing=a)` and Keras).

Negative label smoothing (Wei et al. 2022, "To Smooth or Not? When Label Smoothing Meets Noisy
Labels", ICML) is the same formula with `a < 0`; see `smoothed_cross_entropy` for its range and
what it does to the targets and the loss. The losses accept `a` in `[NEGATIVE_SMOOTHING_MIN, 1)`,
that is `[-1, 1)`.

fairseq uses the "K-1 variant": the true class gets `1 - a` and each other class `a / (K - 1)`.
That is this convention with `a' = a * K / (K - 1)`: pass `label_smoothing=a * K / (K - 1)`.

Pitfall: smoothing puts `a / K` on every class, so a `-inf` logit (a common way to mask invalid
classes) makes the smoothed loss `+inf`. With smoothing, mask invalid classes with a large negative
finite logit, or build soft targets over the valid classes only and use `soft_cross_entropy`.

All losses return one value per example, computed in float32 (float64 for float64 logits) whatever
the logits' dtype; gradients come back in the logits' dtype. All functions are pure and safe under
`jit`, `vmap`, `grad`, forward-mode differentiation and sharding.
"""

import numbers

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from ls_jax.losses._checks import (Array, ArrayLike, _checked_integer_label_inputs,
                                   _checked_logits, _checked_scalar, _checked_where,
                                   _compute_dtype)

# The most negative label smoothing accepted: targets q'_y = 2 - 1/K, q'_k = -1/K (see
# `smoothed_cross_entropy`). Wei et al. 2022 use a in (-inf, 1) in theory; below -1 we have no
# evidence it trains at all.
NEGATIVE_SMOOTHING_MIN = -1.0


def check_labels(labels: ArrayLike, num_classes: int) -> None:
  """Raises `ValueError` naming the first label outside `[0, num_classes)`; runs on the host.

  `smoothed_cross_entropy` turns such labels into NaN losses on device; call this on user-supplied
  datasets at load time to get an error that says which label is wrong instead.

  Args:
    labels: integer class labels, any shape.
    num_classes: the number of classes `K`.

  Raises:
    ValueError: if `labels` are not integers, `num_classes` is not a positive integer, or a label is
      outside `[0, num_classes)`.
  """
  if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
    raise ValueError(f"num_classes must be an integer, got {num_classes!r}.")
  if num_classes < 1:
    raise ValueError(f"num_classes must be positive, got {num_classes}.")
  labels = np.asarray(labels)
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"labels must be integers, got dtype {labels.dtype}.")
  out_of_range = (labels < 0) | (labels >= num_classes)
  if out_of_range.any():
    # argmax of a boolean array is the first True in C order: the first bad label.
    index = np.unravel_index(int(np.argmax(out_of_range)), labels.shape)
    raise ValueError(
        f"labels at index {tuple(int(i) for i in index)} is {labels[index]}, outside the valid "
        f"range [0, {num_classes}).")


def smoothed_cross_entropy(
    logits: ArrayLike,
    labels: ArrayLike,
    label_smoothing: ArrayLike = 0.0,
    *,
    where: ArrayLike | None = None,
    class_weights: ArrayLike | None = None,
) -> Array:
  r"""Cross-entropy against label-smoothed targets, from integer labels.

  With `z = logits`, `y = labels`, `a = label_smoothing` and `K` classes the targets are
  `q'(k) = (1 - a) * [k == y] + a / K` (Szegedy et al. 2016, §7), and

    L = -sum_k q'(k) * log_softmax(z)(k) = logsumexp(z) - (1 - a) * z_y - a * mean_k(z).

  The closed form needs no one-hot targets: `z_y` is gathered. The gradient
  `dL/dz = softmax(z) - q'` is one fused elementwise expression (a comparison with an iota marks
  the label), so neither pass materializes a `(batch, K)` array beyond what log-softmax needs.

  With `label_smoothing` the Python number 0 the uniform term is skipped, and the result is exactly
  `optax.softmax_cross_entropy_with_integer_labels`. A traced `label_smoothing` (a schedule) is
  fine; the loss is differentiable in it too (`dL/da = z_y - mean(z)`).

  Negative smoothing, `-1 <= a < 0` (Wei et al. 2022, ICML, "To Smooth or Not? When Label
  Smoothing Meets Noisy Labels"): the same closed form and gradient. The targets still sum to 1,
  but `q'_y = 1 - a + a/K > 1` and every other class gets `q'_k = a/K < 0`: the loss rewards
  pushing the other classes' probabilities down, beyond what CE asks. It is then NOT bounded below
  in the logits: along `z = t * onehot(y)`, `L = log(e^t + K - 1) - (1 - a + a/K) t`, which goes to
  `-inf` like `-|a| (K-1)/K * t` as `t -> inf`, and the gradient `softmax(z) - q'` is never 0 (q'
  is not a distribution), so training keeps growing the label's margin at a rate set by `|a|`
  (for `0 <= a < 1` the minimum is finite, at `softmax(z) = q'`). Wei et al. report that this helps
  at high label-noise rates with finite training; bound the run (steps, weight decay) and watch the
  logit norms. We accept `a >= -1`: there the label's weight is at most `2 - 1/K`, and a
  confidently right example gains (slope `|a|(K-1)/K <= (K-1)/K`) less than a confidently wrong
  one loses (along `z = t * onehot(k)`, `k != y`, the loss rises like `(1 + |a|/K) t`) for every
  K. Past `a = -K/(K-2)` the gain wins; below -1 is untested ground either way.

  Labels outside `[0, K)` give a NaN loss (and NaN gradient) rather than a plausible number; use
  `check_labels` on the host to find them.

  Class weights `w` (PyTorch `CrossEntropyLoss(weight=w, label_smoothing=a)`, `reduction='none'`;
  `cross_entropy_loss_label_smoothing` in ATen's LossNLL.cpp): each class's term of the smoothed
  cross-entropy is weighted by that class's weight,

    L = -sum_k w_k * q'(k) * log_softmax(z)(k)
      = -[(1 - a) * w_y * log p_y + (a / K) * sum_k w_k * log p_k],

  so the smoothing term is weighted by every class's weight, not by the label's. Reduce a batch
  with `weighted_mean` for PyTorch's `reduction='mean'` (divide by `sum_i w_{y_i}`, not by the
  number of examples). A class of weight 0 contributes 0 even where its logit is `-inf`. The
  weighted path is plain `jnp` (autodiff gradient
  `dL/dz_j = p_j * [(1 - a) w_y + (a/K) sum_k w_k] - (1 - a) w_y [j == y] - (a/K) w_j`);
  `class_weights=None` leaves the unweighted path above exactly as it is.

  Args:
    logits: floating `[..., K]` unnormalized log-probabilities (bfloat16/float16 are upcast).
    labels: integer `[...]` class indices, shape `logits.shape[:-1]`.
    label_smoothing: scalar `a` in `[-1, 1)` (negative: Wei et al. 2022, see above), Python
      number or (traced) array; a traced value is not range-checked.
    where: optional boolean `[...]`; where False the loss and its gradient are 0, even if those
      logits are NaN or infinite.
    class_weights: optional `[K]` non-negative class weights `w` (PyTorch's `weight`); concrete
      NumPy/Python values are checked, traced ones are not.

  Returns:
    float32 `[...]` per-example losses (float64 for float64 logits).

  Raises:
    ValueError: on bad shapes or dtypes, a concrete `label_smoothing` outside `[-1, 1)`, or
      `class_weights` that are not `[K]`, not real, or (concrete) negative or not finite.
  """
  logits, labels, where = _checked_integer_label_inputs(
      "smoothed_cross_entropy", logits, labels, where)
  label_smoothing = _checked_scalar(
      "smoothed_cross_entropy", "label_smoothing", label_smoothing, low=NEGATIVE_SMOOTHING_MIN,
      high=1.0)
  if isinstance(label_smoothing, numbers.Real) and label_smoothing == 0:
    # None selects the plain cross-entropy branch, bit-identical to unsmoothed CE.
    label_smoothing = None
  else:
    label_smoothing = jnp.asarray(label_smoothing, _compute_dtype(logits))
  if class_weights is not None:
    class_weights = _checked_class_weights(
        "smoothed_cross_entropy", class_weights, logits.shape[-1])
    return _weighted_cross_entropy(logits, labels, label_smoothing, class_weights, where)
  return _integer_label_cross_entropy(logits, labels, label_smoothing, where)


def weighted_mean(
    per_example: ArrayLike,
    labels: ArrayLike,
    class_weights: ArrayLike,
    *,
    where: ArrayLike | None = None,
) -> Array:
  r"""The class-weighted mean of per-example losses: PyTorch's `reduction='mean'` with weights.

    mean = sum_i m_i * L_i / sum_i m_i * w_{y_i},   m_i = where_i (1 when `where` is None).

  This is how PyTorch's `CrossEntropyLoss(weight=w, reduction='mean')` (and `NLLLoss`) reduce,
  label smoothing included: the denominator is the total weight of the examples' labels, not their
  number. Pass the `smoothed_cross_entropy(..., class_weights=w)` losses. Masked examples (`where`
  False, PyTorch's `ignore_index`) count in neither sum, whatever their loss (NaN included) and
  label (any integer, e.g. a padding value such as -100); their gradient is 0.

  When the denominator is 0 (every example masked, or only zero-weight labels) the result is 0
  with a 0 gradient, where PyTorch returns NaN: an all-padding batch then does not poison training.

  Args:
    per_example: floating `[...]` per-example losses (for example weighted smoothed CE).
    labels: integer `[...]` class indices, the shape of `per_example`.
    class_weights: `[K]` class weights `w`, the ones the losses were computed with.
    where: optional boolean `[...]`; False excludes an example.

  Returns:
    A float32 scalar (float64 for float64 losses). Unmasked labels outside `[0, K)` give NaN.

  Raises:
    ValueError: on bad shapes or dtypes, or concrete class weights that are negative or not
      finite.
  """
  function = "weighted_mean"
  per_example = jnp.asarray(per_example)
  if not jnp.issubdtype(per_example.dtype, jnp.floating):
    raise ValueError(
        f"{function}: per_example must be floating point, got dtype {per_example.dtype}.")
  labels = jnp.asarray(labels)
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise ValueError(f"{function}: labels must be integers, got dtype {labels.dtype}.")
  if labels.shape != per_example.shape:
    raise ValueError(
        f"{function}: labels must have the shape of per_example {per_example.shape}, got "
        f"{labels.shape}.")
  if np.ndim(class_weights) != 1:
    raise ValueError(
        f"{function}: class_weights must be a [K] vector, got shape {np.shape(class_weights)}.")
  num_classes = np.shape(class_weights)[0]
  class_weights = _checked_class_weights(function, class_weights, num_classes)
  where = _checked_where(function, where, per_example.shape)
  dtype = jnp.promote_types(per_example.dtype, jnp.float32)
  values = per_example.astype(dtype)
  labels = labels.astype(jnp.int32) if jnp.iinfo(labels.dtype).bits < 32 else labels
  label_weight = jnp.take(jnp.asarray(class_weights, dtype), labels, mode="clip")
  label_weight = _nan_for_invalid_zero_for_masked(label_weight, labels, num_classes, where)
  if where is not None:  # Select (not multiply): a masked NaN loss must not reach the sum.
    values = jnp.where(where, values, 0)
  total_weight = jnp.sum(label_weight)
  positive = total_weight != 0
  # Double where: dividing by a 0 total and discarding the result would still give NaN gradients.
  return jnp.where(positive, jnp.sum(values) / jnp.where(positive, total_weight, 1), 0)


def _checked_class_weights(function: str, class_weights: ArrayLike, num_classes: int) -> Array:
  """`[K]` real class weights; concrete NumPy/Python ones must be finite and `>= 0`."""
  shape = np.shape(class_weights)
  if shape != (num_classes,):
    raise ValueError(
        f"{function}: class_weights must have shape (K,) = ({num_classes},), got {shape}.")
  dtype = jnp.result_type(class_weights)
  if dtype == jnp.bool_ or not (jnp.issubdtype(dtype, jnp.integer)
                                or jnp.issubdtype(dtype, jnp.floating)):
    raise ValueError(f"{function}: class_weights must be real numbers, got dtype {dtype}.")
  if isinstance(class_weights, (np.ndarray, np.generic, list, tuple)):
    values = np.asarray(class_weights, np.float64)
    bad = ~((values >= 0) & np.isfinite(values))  # NaN fails `>= 0`.
    if bad.any():
      index = int(np.argmax(bad))
      raise ValueError(
          f"{function}: class_weights must be finite and >= 0, got {values[index]} for class "
          f"{index}.")
  return jnp.asarray(class_weights)


def _weighted_cross_entropy(
    logits: Array, labels: Array, label_smoothing: Array | None, class_weights: Array,
    where: Array | None) -> Array:
  """`-[(1 - a) w_y log p_y + (a/K) sum_k w_k log p_k]` in plain jnp (autodiff gradients)."""
  dtype = _compute_dtype(logits)
  z = logits.astype(dtype)
  num_classes = z.shape[-1]
  # Adding NaN (not selecting it) poisons the gradient of a row with an invalid label as well.
  z = z + jnp.where((labels >= 0) & (labels < num_classes), 0, jnp.nan)[..., None]
  if where is not None:  # Double where: masked rows must not leak NaN into the gradient.
    z = jnp.where(where[..., None], z, 0)
  weights = class_weights.astype(dtype)
  log_probs = jax.nn.log_softmax(z, axis=-1)
  # A class of weight 0 contributes 0, even with a -inf logit (IEEE 0 * -inf would be NaN).
  weighted_log_probs = jnp.where(weights == 0, 0, weights * log_probs)
  loss = -_label_logit(weighted_log_probs, labels)
  if label_smoothing is not None:
    loss = (1 - label_smoothing) * loss - label_smoothing / num_classes * jnp.sum(
        weighted_log_probs, axis=-1)
  return _nan_for_invalid_zero_for_masked(loss, labels, num_classes, where)


def soft_cross_entropy(
    logits: ArrayLike,
    targets: ArrayLike,
    *,
    where: ArrayLike | None = None,
) -> Array:
  r"""Cross-entropy against probability-vector targets (Mixup, distillation, smoothed one-hots).

    L = -sum_k q(k) * log_softmax(z)(k).

  Classes with target exactly 0 contribute 0 even when their logit is `-inf`, so masking invalid
  classes with `-inf` logits works here when the targets put no mass on them.

  Args:
    logits: floating `[..., K]` unnormalized log-probabilities (bfloat16/float16 are upcast).
    targets: floating `[..., K]` target distributions, same shape as `logits`.
    where: optional boolean `[...]`; where False the loss and its gradient are 0, even if those
      logits or targets are NaN or infinite.

  Returns:
    float32 `[...]` per-example losses (float64 for float64 logits).

  Raises:
    ValueError: on bad shapes or dtypes.
  """
  logits = _checked_logits("soft_cross_entropy", logits)
  targets = jnp.asarray(targets)
  if targets.shape != logits.shape:
    raise ValueError(
        f"soft_cross_entropy: targets must have the shape of logits {logits.shape}, got "
        f"{targets.shape}.")
  if not jnp.issubdtype(targets.dtype, jnp.floating):
    raise ValueError(
        f"soft_cross_entropy: targets must be floating point, got dtype {targets.dtype}.")
  where = _checked_where("soft_cross_entropy", where, logits.shape[:-1])
  dtype = _compute_dtype(logits)
  logits = logits.astype(dtype)
  targets = targets.astype(dtype)
  if where is not None:
    # Double where: zeroing only the loss would still send 0 * NaN = NaN into the gradient.
    logits = jnp.where(where[..., None], logits, 0)
    targets = jnp.where(where[..., None], targets, 0)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  # A target of 0 on a -inf logit contributes 0 (the limit of q log p); IEEE 0 * -inf would be NaN
  # in the value and in the gradient. A positive target there still gives +inf, as it should.
  log_probs = jnp.where((targets == 0) & jnp.isneginf(log_probs), 0, log_probs)
  loss = -jnp.sum(targets * log_probs, axis=-1)
  return loss if where is None else jnp.where(where, loss, 0)


def entropy(logits: ArrayLike) -> Array:
  r"""Shannon entropy of `softmax(logits)` in nats, per example.

    H(p) = -sum_k p_k * log p_k,   p = softmax(z),   dH/dz_i = p_i * (-log p_i - H).

  Finite for extreme logits: classes with `p_k = 0` (including `-inf` logits) contribute 0.

  Args:
    logits: floating `[..., K]` unnormalized log-probabilities (bfloat16/float16 are upcast).

  Returns:
    float32 `[...]` entropies in `[0, log K]` (float64 for float64 logits).

  Raises:
    ValueError: if `logits` is not a floating array with a class axis.
  """
  logits = _checked_logits("entropy", logits)
  logits = logits.astype(_compute_dtype(logits))
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  probs = jnp.exp(log_probs)
  # p log p -> 0 as p -> 0, but for -inf logits IEEE 0 * -inf is NaN, in value and gradient.
  log_probs = jnp.where(jnp.isneginf(log_probs), 0, log_probs)
  return -jnp.sum(probs * log_probs, axis=-1)


def confidence_penalty(
    logits: ArrayLike,
    labels: ArrayLike,
    beta: ArrayLike,
    *,
    label_smoothing: ArrayLike = 0.0,
    where: ArrayLike | None = None,
) -> Array:
  r"""Cross-entropy minus `beta` times the predictive entropy: the confidence penalty.

    L = smoothed_cross_entropy(z, y, a) - beta * H(softmax(z)).

  From Pereyra et al. 2017, "Regularizing Neural Networks by Penalizing Confident Output
  Distributions". Since `-H(p) = KL(p || u) - log K`, this adds `beta * KL(p || u)` up to a
  constant, the reverse direction of label smoothing's `KL(u || p)`. `beta = 0` gives the
  cross-entropy.

  Args:
    logits: floating `[..., K]` unnormalized log-probabilities (bfloat16/float16 are upcast).
    labels: integer `[...]` class indices, shape `logits.shape[:-1]`.
    beta: scalar penalty strength `>= 0`, Python number or (traced) array.
    label_smoothing: scalar `a` in `[-1, 1)`; see `smoothed_cross_entropy`.
    where: optional boolean `[...]`; where False the loss and its gradient are 0, even if those
      logits are NaN or infinite.

  Returns:
    float32 `[...]` per-example losses (float64 for float64 logits).

  Raises:
    ValueError: on bad shapes or dtypes, a concrete `beta < 0`, or a concrete `label_smoothing`
      outside `[-1, 1)`.
  """
  logits, labels, where = _checked_integer_label_inputs("confidence_penalty", logits, labels, where)
  beta = _checked_scalar("confidence_penalty", "beta", beta, low=0.0)
  cross_entropy = smoothed_cross_entropy(logits, labels, label_smoothing, where=where)
  if where is None:
    return cross_entropy - beta * entropy(logits)
  # Double where, as in soft_cross_entropy: masked rows must not leak NaN into the gradient.
  safe_logits = jnp.where(where[..., None], logits, 0)
  return cross_entropy - jnp.where(where, beta * entropy(safe_logits), 0)


def focal_loss(
    logits: ArrayLike,
    labels: ArrayLike,
    gamma: ArrayLike,
    *,
    where: ArrayLike | None = None,
) -> Array:
  r"""Focal loss: cross-entropy down-weighted on examples the model already gets right.

    L = -(1 - p_y)^gamma * log p_y,   p = softmax(z),

  from Lin et al. 2017, "Focal Loss for Dense Object Detection", eq. 4 (without their class
  weight alpha), in the multi-class form of Mukhoti et al. 2020, "Calibrating Deep Neural Networks
  using Focal Loss", who show it improves calibration as an implicit entropy regularizer: focal
  loss >= CE - gamma * H(p). `gamma = 0` is the cross-entropy; they use gamma in {1, 2, 3}.

  `log p_y` is computed as `z_y - z_max - log1p(sum_{k != argmax} exp(z_k - z_max))` and
  `1 - p_y` as `-expm1(log p_y)`, so both keep their relative precision when `p_y` is near 1,
  where the loss is smallest (plain `z_y - logsumexp(z)` loses it to cancellation in float32).

  Args:
    logits: floating `[..., K]` unnormalized log-probabilities (bfloat16/float16 are upcast).
    labels: integer `[...]` class indices, shape `logits.shape[:-1]`.
    gamma: scalar focusing parameter `>= 0`, Python number or (traced) array.
    where: optional boolean `[...]`; where False the loss and its gradient are 0, even if those
      logits are NaN or infinite.

  Returns:
    float32 `[...]` per-example losses (float64 for float64 logits); NaN, with NaN gradients,
    where a label is outside `[0, K)`, as for `smoothed_cross_entropy`.

  Raises:
    ValueError: on bad shapes or dtypes, or a concrete `gamma < 0`.
  """
  logits, labels, where = _checked_integer_label_inputs("focal_loss", logits, labels, where)
  gamma = _checked_scalar("focal_loss", "gamma", gamma, low=0.0)
  z = logits.astype(_compute_dtype(logits))
  num_classes = z.shape[-1]
  # Adding NaN (not selecting it) poisons the gradient of a row with an invalid label as well.
  z = z + jnp.where((labels >= 0) & (labels < num_classes), 0, jnp.nan)[..., None]
  if where is not None:  # Double where: masked rows must not leak NaN into the gradient.
    z = jnp.where(where[..., None], z, 0)
  top = jnp.argmax(z, axis=-1)
  z_top = jnp.take_along_axis(z, top[..., None], axis=-1)
  is_top = lax.broadcasted_iota(top.dtype, z.shape, z.ndim - 1) == top[..., None]
  rest = jnp.sum(jnp.where(is_top, 0, jnp.exp(z - z_top)), axis=-1)
  log_p = _label_logit(z, labels) - z_top[..., 0] - jnp.log1p(rest)
  one_minus_p = -jnp.expm1(log_p)
  positive = one_minus_p > 0
  # x^gamma at x = 0 has an infinite or NaN derivative for gamma < 1: take it only where x > 0.
  weight = jnp.where(positive, jnp.power(jnp.where(positive, one_minus_p, 1), gamma),
                     jnp.where(gamma == 0, 1, 0).astype(z.dtype))
  return _nan_for_invalid_zero_for_masked(-weight * log_p, labels, z.shape[-1], where)


@jax.custom_jvp
def _integer_label_cross_entropy(
    logits: Array, labels: Array, label_smoothing: Array | None, where: Array | None) -> Array:
  """`smoothed_cross_entropy` after input checking; `label_smoothing=None` means plain CE."""
  z = logits.astype(_compute_dtype(logits))
  label_logit = _label_logit(z, labels)
  # jax.nn.logsumexp minus the gathered label logit is exactly optax's integer-label CE.
  loss = jax.nn.logsumexp(z, axis=-1) - label_logit
  if label_smoothing is not None:
    loss += label_smoothing * (label_logit - jnp.mean(z, axis=-1))
  return _nan_for_invalid_zero_for_masked(loss, labels, z.shape[-1], where)


@_integer_label_cross_entropy.defjvp
def _integer_label_cross_entropy_jvp(
    primals: tuple[Array, Array, Array | None, Array | None],
    tangents: tuple[Array, Array, Array | None, Array | None],
) -> tuple[Array, Array]:
  """Tangent `sum_k (softmax(z) - q')_k * dz_k + (z_y - mean(z)) * da`, masked like the loss.

  A JVP rule (not a VJP) keeps forward mode and higher derivatives working; reverse mode
  transposes it into `cotangent * (softmax(z) - q')`, one fused elementwise pass.
  """
  logits, labels, label_smoothing, where = primals
  logits_dot, _, label_smoothing_dot, _ = tangents
  dtype = _compute_dtype(logits)
  z = logits.astype(dtype)
  num_classes = z.shape[-1]

  # The same max shift as jax.nn.logsumexp. exp(z - shift) feeds both the normalizer and the
  # softmax in the gradient, so XLA computes it once; recomputing it in the backward pass (a hand
  # VJP that saves only the logits) measured ~1.6x slower on CPU, where exp dominates.
  shift = lax.stop_gradient(jnp.max(z, axis=-1, keepdims=True))
  shift = jnp.where(jnp.isfinite(shift), shift, 0)
  exp_shifted = jnp.exp(z - shift)
  sum_exp = jnp.sum(exp_shifted, axis=-1)
  label_logit = _label_logit(z, labels)
  loss = jnp.log(sum_exp) + shift[..., 0] - label_logit

  probs = exp_shifted * (1 / sum_exp)[..., None]
  is_label = lax.broadcasted_iota(labels.dtype, z.shape, z.ndim - 1) == labels[..., None]
  if label_smoothing is None:
    dloss_dlogits = jnp.where(is_label, probs - 1, probs)
  else:
    uniform_minus_label = label_logit - jnp.mean(z, axis=-1)
    loss += label_smoothing * uniform_minus_label
    dloss_dlogits = probs - label_smoothing / num_classes - jnp.where(
        is_label, 1 - label_smoothing, 0)
  loss = _nan_for_invalid_zero_for_masked(loss, labels, num_classes, where)

  # Rows with invalid labels get NaN coefficients; masked rows get 0, which also stops NaN or inf
  # logits there from reaching the cotangent (0 * NaN would be NaN).
  dloss_dlogits = _nan_for_invalid_zero_for_masked(
      dloss_dlogits, labels[..., None], num_classes, None if where is None else where[..., None])
  loss_dot = jnp.sum(dloss_dlogits * logits_dot.astype(dtype), axis=-1)
  if label_smoothing is not None:
    loss_dot += _nan_for_invalid_zero_for_masked(
        uniform_minus_label, labels, num_classes, where) * label_smoothing_dot
  if where is not None:
    loss_dot = jnp.where(where, loss_dot, 0)
  return loss, loss_dot


def _label_logit(z: Array, labels: Array) -> Array:
  """`z[..., labels]`; out-of-range labels are clipped here and turned into NaN by the caller."""
  return jnp.take_along_axis(z, labels[..., None], axis=-1, mode="clip")[..., 0]


def _nan_for_invalid_zero_for_masked(
    values: Array, labels: Array, num_classes: int, where: Array | None) -> Array:
  """NaN where a label is outside `[0, num_classes)`, then 0 where `where` is False."""
  values = jnp.where((labels >= 0) & (labels < num_classes), values, jnp.nan)
  return values if where is None else jnp.where(where, values, 0)




def distillation_loss(
    student_logits: ArrayLike,
    teacher_logits: ArrayLike,
    labels: ArrayLike,
    *,
    temperature: ArrayLike,
    weight: ArrayLike,
    label_smoothing: ArrayLike = 0.0,
    where: ArrayLike | None = None,
) -> Array:
  r"""Knowledge distillation: hard-label loss plus `T^2` times the KL to the softened teacher.

  With student logits `s`, teacher logits `t`, labels `y`, temperature `T` and weight `w`
  (Hinton et al. 2015, "Distilling the Knowledge in a Neural Network", §2):

    L = (1 - w) * smoothed_cross_entropy(s, y, a) + w * T^2 * KL(p_t || p_s),
    p_t = softmax(t / T),   p_s = softmax(s / T),   KL(p || q) = sum_k p_k (log p_k - log q_k).

  The hard-label term uses the student's own `label_smoothing` `a` at temperature 1. The `T^2`
  keeps the soft term's gradient on the scale of the hard one as `T` changes (Hinton §2):
  `dL_soft/ds = w * T * (p_s - p_t)`, which tends to `w / K * (s - mean(s) - (t - mean(t)))` as
  `T -> inf` (logit matching, Hinton §2.1). The KL is computed as `H(p_t, p_s) - H(p_t)`; it differs
  from the cross-entropy to the teacher only by the teacher's entropy, a constant for the student,
  so it is 0 when the student matches the teacher.

  The teacher gets `stop_gradient`: no gradient flows into `teacher_logits`.

  Args:
    student_logits: floating `[..., K]` student logits (bfloat16/float16 are upcast).
    teacher_logits: floating `[..., K]` teacher logits, the shape of `student_logits`.
    labels: integer `[...]` class indices, shape `student_logits.shape[:-1]`.
    temperature: scalar `T > 0`, Python number or (traced) array.
    weight: scalar `w` in `[0, 1]` on the distillation term; `w = 0` is the student's own loss.
    label_smoothing: scalar `a` in `[-1, 1)` for the hard-label term; see `smoothed_cross_entropy`.
    where: optional boolean `[...]`; where False the loss and its gradient are 0, even if those
      logits are NaN or infinite.

  Returns:
    float32 `[...]` per-example losses (float64 for float64 student logits).

  Raises:
    ValueError: on bad shapes or dtypes, a concrete `temperature <= 0`, a concrete `weight` outside
      `[0, 1]` or a concrete `label_smoothing` outside `[-1, 1)`.
  """
  function = "distillation_loss"
  student_logits, labels, where = _checked_integer_label_inputs(
      function, student_logits, labels, where)
  teacher_logits = _checked_logits(function, teacher_logits)
  if teacher_logits.shape != student_logits.shape:
    raise ValueError(
        f"{function}: teacher_logits must have the shape of student_logits "
        f"{student_logits.shape}, got {teacher_logits.shape}.")
  temperature = _checked_scalar(function, "temperature", temperature, low=0.0, low_open=True)
  weight = _checked_scalar(function, "weight", weight, low=0.0, high=1.0, high_closed=True)

  dtype = _compute_dtype(student_logits)
  hard = smoothed_cross_entropy(student_logits, labels, label_smoothing, where=where)
  teacher = lax.stop_gradient(teacher_logits).astype(dtype)
  if where is not None:
    # Double where, as in soft_cross_entropy: masked rows must not leak NaN into the loss.
    teacher = jnp.where(where[..., None], teacher, 0)
  teacher_scaled = teacher / temperature
  teacher_probs = jax.nn.softmax(teacher_scaled, axis=-1)
  kl = (soft_cross_entropy(student_logits.astype(dtype) / temperature, teacher_probs, where=where)
        - entropy(teacher_scaled))
  soft = weight * temperature**2 * kl
  loss = (1 - weight) * hard + soft
  return loss if where is None else jnp.where(where, loss, 0)
