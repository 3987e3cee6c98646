"""Label-smoothed cross-entropy, soft-target cross-entropy, entropy and the confidence penalty.

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

import functools
import numbers

import jax
from jax import lax
import jax.numpy as jnp
from jax.sharding import PartitionSpec
import numpy as np

Array = jax.Array
ArrayLike = jax.typing.ArrayLike

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

  Args:
    logits: floating `[..., K]` unnormalized log-probabilities (bfloat16/float16 are upcast).
    labels: integer `[...]` class indices, shape `logits.shape[:-1]`.
    label_smoothing: scalar `a` in `[-1, 1)` (negative: Wei et al. 2022, see above), Python
      number or (traced) array; a traced value is not range-checked.
    where: optional boolean `[...]`; where False the loss and its gradient are 0, even if those
      logits are NaN or infinite.

  Returns:
    float32 `[...]` per-example losses (float64 for float64 logits).

  Raises:
    ValueError: on bad shapes or dtypes, or a concrete `label_smoothing` outside `[-1, 1)`.
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
  return _integer_label_cross_entropy(logits, labels, label_smoothing, where)


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


def _compute_dtype(logits: Array) -> jnp.dtype:
  """float32 for 16- and 32-bit logits, float64 for float64 logits."""
  return jnp.promote_types(logits.dtype, jnp.float32)


def _checked_logits(function: str, logits: ArrayLike) -> Array:
  logits = jnp.asarray(logits)
  if not jnp.issubdtype(logits.dtype, jnp.floating):
    raise ValueError(f"{function}: logits must be floating point, got dtype {logits.dtype}.")
  if logits.ndim < 1 or logits.shape[-1] < 1:
    raise ValueError(
        f"{function}: logits must have a non-empty class axis (last), got shape {logits.shape}.")
  return logits


def _checked_where(
    function: str, where: ArrayLike | None, batch_shape: tuple[int, ...]) -> Array | None:
  if where is None:
    return None
  where = jnp.asarray(where)
  if where.dtype != jnp.bool_:
    raise ValueError(f"{function}: where must be a boolean array, got dtype {where.dtype}.")
  if where.shape != batch_shape:
    raise ValueError(
        f"{function}: where must have shape logits.shape[:-1] = {batch_shape}, got "
        f"{where.shape}.")
  return where


def _checked_integer_label_inputs(
    function: str, logits: ArrayLike, labels: ArrayLike, where: ArrayLike | None,
) -> tuple[Array, Array, Array | None]:
  logits = _checked_logits(function, logits)
  labels = jnp.asarray(labels)
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise ValueError(f"{function}: labels must be integers, got dtype {labels.dtype}.")
  if labels.shape != logits.shape[:-1]:
    raise ValueError(
        f"{function}: labels must have shape logits.shape[:-1] = {logits.shape[:-1]}, got "
        f"{labels.shape}.")
  if jnp.iinfo(labels.dtype).bits < 32:
    # The label-marking iota has the labels' dtype; int8/uint8/int16 could not count to K.
    labels = labels.astype(jnp.int32)
  return logits, labels, _checked_where(function, where, logits.shape[:-1])


def _checked_scalar(
    function: str, name: str, value: ArrayLike, low: float, high: float | None = None, *,
    low_open: bool = False, high_closed: bool = False,
) -> ArrayLike:
  """Checks `value` is a scalar and, when it is a Python or NumPy number, in `[low, high)`
  (`(low, ...` with `low_open`, `..., high]` with `high_closed`; no upper bound without `high`)."""
  if np.ndim(value) != 0:
    raise ValueError(f"{function}: {name} must be a scalar, got shape {np.shape(value)}.")
  if isinstance(value, (numbers.Real, np.ndarray, np.generic)):
    # Written as `not (low <= value)` so that NaN is rejected too.
    above_low = low < value if low_open else low <= value
    below_high = high is None or (value <= high if high_closed else value < high)
    if not (above_low and below_high):
      if high is None:
        allowed = f"{'>' if low_open else '>='} {low:g}"
      else:
        allowed = f"in {'(' if low_open else '['}{low:g}, {high:g}{']' if high_closed else ')'}"
      raise ValueError(f"{function}: {name} must be {allowed}, got {value}.")
  elif not jnp.issubdtype(jnp.result_type(value), jnp.floating):
    raise ValueError(
        f"{function}: {name} must be floating point, got dtype {jnp.result_type(value)}.")
  return value


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


# --- The output layer fused with the loss: the (tokens, V) logits are never built. ---

# Vocabulary columns per chunk. A chunk's logits take `tokens x LINEAR_CHUNK_SIZE x 4` bytes (64 MiB
# for 8192 tokens). On CPU, chunks of 1024-4096 timed within noise of each other (2048 tokens,
# d = 256, V = 32768); the compiled temporaries grow with the chunk (README, Benchmarks).
LINEAR_CHUNK_SIZE = 2048


def linear_smoothed_cross_entropy(
    hidden: ArrayLike,
    kernel: ArrayLike,
    labels: ArrayLike,
    label_smoothing: ArrayLike = 0.0,
    *,
    where: ArrayLike | None = None,
    z_loss: ArrayLike = 0.0,
    chunk_size: int = LINEAR_CHUNK_SIZE,
    gradient_in_forward: bool = False,
) -> Array:
  r"""`smoothed_cross_entropy(hidden @ kernel, ...)` plus a z-loss, without the `(tokens, V)` logits.

  With `z = hidden @ kernel` (V classes), `y = labels`, `a = label_smoothing`, `b = z_loss`:

    L = logsumexp(z) - (1 - a) * z_y - a * mean_k(z) + b * logsumexp(z)^2,

  the label-smoothed cross-entropy of `smoothed_cross_entropy` (Szegedy et al. 2016, §7; targets
  `(1 - a) * onehot(y) + a / V`) plus the z-loss of PaLM (Chowdhery et al. 2022, §5) and T5X,
  which keeps the softmax normalizer near 1. For a language model's output layer the logits, not
  the loss formula, are the cost: 8192 tokens at V = 128k take 4 GiB in float32, and as much again
  for their gradient. Here:

  - `logsumexp(z)` runs over chunks of `chunk_size` vocabulary columns with an online maximum
    (Milakov & Gimelshein 2018), so at most a `(tokens, chunk_size)` block exists at a time;
  - `z_y = hidden . kernel[:, y]` gathers one column per token, and
    `mean_k(z) = hidden . mean_k(kernel[:, k])`: smoothing costs one matrix-vector product;
  - the backward pass recomputes each chunk's logits and accumulates `d hidden`, and writes that
    chunk's columns of `d kernel`, from `softmax(z) * (1 + 2 b logsumexp(z))`; the `-a / V` and
    `-(1 - a) onehot(y)` parts of the gradient are the transposes of the mean and the gather: a
    rank-1 update and a scatter, never a `(tokens, V)` array.

  The same chunking underlies Cut Cross-Entropy (Wijmans et al., ICLR 2025, without smoothing),
  Liger-Kernel's fused linear cross-entropy (Hsu et al. 2024, in Triton), MaxText's vocabulary
  tiling and Levanter's blockwise loss (without smoothing).

  Memory: the temporaries are a few `(tokens, chunk_size)` float32 blocks. For fwd+grad at
  8192 tokens, d = 1024, V = 128000, XLA's compiled temporary memory is 236 MiB, against 8000 MiB
  for `hidden @ kernel` followed by this loss or optax's (34x less; 164-308 MiB for chunks of
  1024-4096). A larger chunk means fewer, larger matrix products per pass.

  `gradient_in_forward=True` computes the gradients while computing the loss, the way Liger-Kernel
  does: over blocks of tokens with all V columns (about `tokens x chunk_size` logits per block), so
  the logits are computed once instead of twice (three matrix products in all instead of four).
  The backward pass then only scales the saved gradients by the loss's cotangent. That is exact for
  `d hidden`, `d label_smoothing` and `d z_loss` whatever the cotangent, and for `d kernel` when the
  cotangent is the same for every unmasked token, as for `loss.mean()` or
  `loss.sum() / where.sum()`; otherwise the backward pass recomputes `d kernel` as the default mode
  does. The price is memory: a float32 `kernel`-sized gradient is accumulated and kept between
  the passes (1.1 GiB of temporaries at the size above, 7x less than the materialized path instead
  of 34x), and the gradient's work is done even when only the loss is used under `jax.vjp`.
  Recomputation is the default because it meets the memory goal (README, Benchmarks, for the
  measured times).

  Inputs of any floating dtype are multiplied in their own precision with float32 accumulation
  (`preferred_element_type`), bf16 included; the loss is float32 (float64 for float64 inputs).
  Labels outside `[0, V)` give a NaN loss and NaN gradients, as in `smoothed_cross_entropy`.
  Differentiable in `hidden`, `kernel`, `label_smoothing` and `z_loss`.

  Args:
    hidden: floating `[..., d]` inputs of the output layer (final hidden states).
    kernel: floating `[d, V]` output-layer weights (for a tied embedding `E [V, d]`, `E.T`).
    labels: integer `[...]` class indices, shape `hidden.shape[:-1]`.
    label_smoothing: scalar `a` in `[0, 1)`, Python number or (traced) array.
    where: optional boolean `[...]`; where False the loss and its gradients are 0, even if those
      hidden states are NaN or infinite (padding tokens).
    z_loss: scalar weight `b >= 0` of `logsumexp(z)^2` (T5X uses 1e-4).
    chunk_size: vocabulary columns per chunk; need not divide V (the last chunk is narrower).
    gradient_in_forward: compute the gradients in the forward pass (see above).

  Returns:
    float32 `[...]` per-token losses (float64 for float64 inputs).

  Raises:
    ValueError: on bad shapes or dtypes, a concrete `label_smoothing` outside `[0, 1)`, a concrete
      `z_loss < 0`, or a `chunk_size` that is not a positive integer.
  """
  name = "linear_smoothed_cross_entropy"
  hidden, kernel, labels, where, label_smoothing, z_loss = _checked_linear_inputs(
      name, hidden, kernel, labels, label_smoothing, where, z_loss, chunk_size)
  batch_shape = labels.shape
  hidden, labels, where = _flat_tokens(hidden, labels, where)
  safe_hidden = _poisoned_and_masked(hidden, labels, kernel.shape[1], where)
  if gradient_in_forward:
    loss = _linear_loss_gradient_in_forward(
        safe_hidden, kernel, labels, label_smoothing, z_loss, where, chunk_size)
  else:
    loss = _linear_loss(safe_hidden, kernel, labels, label_smoothing, z_loss, chunk_size)
  if where is not None:
    loss = jnp.where(where, loss, 0)
  return loss.reshape(batch_shape)


def vocab_parallel_linear_smoothed_cross_entropy(
    hidden: ArrayLike,
    kernel: ArrayLike,
    labels: ArrayLike,
    label_smoothing: ArrayLike = 0.0,
    *,
    mesh: jax.sharding.Mesh,
    model_axis: str = "model",
    data_axis: str | None = "data",
    where: ArrayLike | None = None,
    z_loss: ArrayLike = 0.0,
    chunk_size: int = LINEAR_CHUNK_SIZE,
) -> Array:
  r"""`linear_smoothed_cross_entropy` with `kernel`'s V columns split over the mesh axis `model_axis`.

  The tensor-parallel output layer of Megatron-LM (Shoeybi et al. 2019), with smoothing and z-loss.
  Inside `jax.shard_map`, each device reduces its own columns `V_s` to per-token numbers:
  `logsumexp` over `V_s` (chunked, as in `linear_smoothed_cross_entropy`), the label logit if the
  label falls in its slice (else 0), and `hidden . sum_{k in V_s} kernel[:, k]`. A `pmax` and
  three `psum`s over `model_axis` combine them into the exact loss; no logits cross devices, only
  `O(tokens)` numbers. Tokens are split over `data_axis` (None: replicated).

  Gradients are exact, neither scaled by a device count nor left partial: `hidden` and `kernel`
  enter the shards through `lax.pcast(..., to="varying")`, whose transpose sums the shards'
  `d hidden` over `model_axis` and `d kernel` over `data_axis` (the tests compare with the
  unsharded loss on 2-D meshes).

  Args:
    hidden, kernel, labels, label_smoothing, where, z_loss, chunk_size: as in
      `linear_smoothed_cross_entropy`; `chunk_size` applies within each device's slice.
    mesh: the device mesh, with axes `model_axis` and (unless None) `data_axis`.
    model_axis: mesh axis over which V is split; it must divide V.
    data_axis: mesh axis over which tokens are split; it must divide the number of tokens.

  Returns:
    float32 `[...]` per-token losses, sharded over `data_axis`.

  Raises:
    ValueError: as `linear_smoothed_cross_entropy`, or if the mesh axes do not divide V and the
      number of tokens.
  """
  name = "vocab_parallel_linear_smoothed_cross_entropy"
  hidden, kernel, labels, where, label_smoothing, z_loss = _checked_linear_inputs(
      name, hidden, kernel, labels, label_smoothing, where, z_loss, chunk_size)
  batch_shape = labels.shape
  hidden, labels, where = _flat_tokens(hidden, labels, where)
  for axis, size, what in ((model_axis, kernel.shape[1], "V"),
                           (data_axis, labels.shape[0], "the number of tokens")):
    if axis is None:
      continue
    if axis not in mesh.shape:
      raise ValueError(f"{name}: mesh has no axis {axis!r}; its axes are {tuple(mesh.shape)}.")
    if size % mesh.shape[axis]:
      raise ValueError(
          f"{name}: mesh axis {axis!r} of size {mesh.shape[axis]} must divide {what}, {size}.")
  safe_hidden = _poisoned_and_masked(hidden, labels, kernel.shape[1], where)

  def local_loss(hidden, kernel, labels, scalars):
    # Replicated -> varying, so that the gradients of the shards are summed (the transpose of the
    # cast is a psum): d hidden over model_axis, d kernel over data_axis.
    hidden = lax.pcast(hidden, model_axis, to="varying")
    if data_axis is not None:
      kernel = lax.pcast(kernel, data_axis, to="varying")
    return _linear_loss(hidden, kernel, labels, *scalars, chunk_size, axis_name=model_axis)

  tokens = PartitionSpec(data_axis)
  loss = jax.shard_map(
      local_loss, mesh=mesh, out_specs=tokens,
      in_specs=(PartitionSpec(data_axis, None), PartitionSpec(None, model_axis), tokens,
                PartitionSpec()),
  )(safe_hidden, kernel, labels, (label_smoothing, z_loss))
  if where is not None:
    loss = jnp.where(where, loss, 0)
  return loss.reshape(batch_shape)


def _linear_loss(
    hidden: Array, kernel: Array, labels: Array, label_smoothing: Array | None,
    z_loss: Array | None, chunk_size: int, axis_name: str | None = None,
) -> Array:
  """The per-token loss from a chunked logsumexp and two linear terms; autodiff does the rest.

  With `axis_name`, `kernel` holds this device's consecutive slice of the V columns, and the
  per-token partial results are combined over `axis_name`.
  """
  dtype = _linear_compute_dtype(hidden, kernel)
  local_classes = kernel.shape[1]
  log_normalizer = _linear_logsumexp(hidden, kernel, chunk_size)
  local_labels = labels
  combine = lambda partial: partial
  num_classes = local_classes
  if axis_name is not None:
    combine = functools.partial(lax.psum, axis_name=axis_name)
    num_classes = local_classes * lax.axis_size(axis_name)
    local_labels = labels - lax.axis_index(axis_name) * local_classes
    # The shift only guards exp against overflow; it cancels in the value and the gradient.
    shift = lax.pmax(lax.stop_gradient(log_normalizer), axis_name)
    log_normalizer = shift + jnp.log(combine(jnp.exp(log_normalizer - shift)))

  in_slice = (local_labels >= 0) & (local_labels < local_classes)
  label_columns = jnp.take(kernel, local_labels, axis=1, mode="clip")  # [d, tokens]
  label_logit = combine(jnp.where(
      in_slice, jnp.einsum("nd,dn->n", hidden, label_columns, preferred_element_type=dtype), 0))
  loss = log_normalizer - label_logit
  if label_smoothing is not None:
    column_sum = jnp.sum(kernel, axis=1, dtype=dtype)
    mean_logit = combine(jnp.dot(hidden.astype(dtype), column_sum)) / num_classes
    loss += label_smoothing * (label_logit - mean_logit)
  if z_loss is not None:
    loss += z_loss * log_normalizer**2
  return loss


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _linear_logsumexp(hidden: Array, kernel: Array, chunk_size: int) -> Array:
  """`logsumexp(hidden @ kernel, axis=-1)` for `hidden [N, d]`, over chunks of kernel columns."""
  return _linear_logsumexp_fwd(hidden, kernel, chunk_size)[0]


def _linear_logsumexp_fwd(
    hidden: Array, kernel: Array, chunk_size: int) -> tuple[Array, tuple[Array, Array, Array]]:
  dtype = _linear_compute_dtype(hidden, kernel)

  def add_chunk(carry, start, width):
    # Online logsumexp (Milakov & Gimelshein 2018): rescale the running sum to the new maximum.
    running_max, running_sum = carry
    logits = _chunk_logits(hidden, kernel, start, width, dtype)
    new_max = jnp.maximum(running_max, jnp.max(logits, axis=-1))
    running_sum = running_sum * jnp.exp(running_max - new_max) + jnp.sum(
        jnp.exp(logits - new_max[:, None]), axis=-1)
    return new_max, running_sum

  num_tokens = hidden.shape[0]
  start = (jnp.full((num_tokens,), -jnp.inf, dtype), jnp.zeros((num_tokens,), dtype))
  running_max, running_sum = _fold_chunks(kernel.shape[1], chunk_size, add_chunk, start)
  log_normalizer = running_max + jnp.log(running_sum)
  return log_normalizer, (hidden, kernel, log_normalizer)


def _linear_logsumexp_bwd(
    chunk_size: int, residuals: tuple[Array, Array, Array], cotangent: Array,
) -> tuple[Array, Array]:
  """Recomputes each chunk's logits; `d z = cotangent * softmax(z)`, then both matrix products."""
  hidden, kernel, log_normalizer = residuals
  dtype = log_normalizer.dtype
  operand_dtype = jnp.result_type(hidden, kernel)

  def add_chunk(carry, start, width):
    d_hidden, d_kernel = carry
    kernel_chunk = lax.dynamic_slice_in_dim(kernel, start, width, axis=1)
    logits = jnp.dot(hidden, kernel_chunk, preferred_element_type=dtype)
    d_logits = (cotangent[:, None] * jnp.exp(logits - log_normalizer[:, None])).astype(
        operand_dtype)
    d_hidden += jnp.dot(d_logits, kernel_chunk.T, preferred_element_type=dtype)
    d_kernel_chunk = jnp.dot(hidden.T, d_logits, preferred_element_type=dtype)
    d_kernel = lax.dynamic_update_slice_in_dim(
        d_kernel, d_kernel_chunk.astype(kernel.dtype), start, axis=1)
    return d_hidden, d_kernel

  start = (jnp.zeros(hidden.shape, dtype), jnp.zeros_like(kernel))
  d_hidden, d_kernel = _fold_chunks(kernel.shape[1], chunk_size, add_chunk, start)
  return d_hidden.astype(hidden.dtype), d_kernel


_linear_logsumexp.defvjp(_linear_logsumexp_fwd, _linear_logsumexp_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(6,))
def _linear_loss_gradient_in_forward(
    hidden: Array, kernel: Array, labels: Array, label_smoothing: Array | None,
    z_loss: Array | None, where: Array | None, chunk_size: int) -> Array:
  """`_linear_loss`, differentiated Liger-style (see `linear_smoothed_cross_entropy`)."""
  del where  # Only the backward pass needs it.
  return _linear_loss(hidden, kernel, labels, label_smoothing, z_loss, chunk_size)


def _linear_loss_gradient_in_forward_fwd(
    hidden, kernel, labels, label_smoothing, z_loss, where, chunk_size):
  """Loss and per-token gradients over blocks of tokens, each with all V logits."""
  dtype = _linear_compute_dtype(hidden, kernel)
  operand_dtype = jnp.result_type(hidden, kernel)
  num_tokens, num_classes = hidden.shape[0], kernel.shape[1]
  # About as many logits per block as a vocabulary chunk of the default mode holds.
  block_tokens = max(1, min(num_tokens, num_tokens * chunk_size // num_classes))

  def add_block(carry, start, width):
    loss, d_hidden, d_kernel, d_smoothing, d_z_loss = carry
    hidden_block = lax.dynamic_slice_in_dim(hidden, start, width)
    label_block = lax.dynamic_slice_in_dim(labels, start, width)
    logits = jnp.dot(hidden_block, kernel, preferred_element_type=dtype)
    log_normalizer = jax.nn.logsumexp(logits, axis=-1)
    probs = jnp.exp(logits - log_normalizer[:, None])
    is_label = lax.broadcasted_iota(label_block.dtype, logits.shape, 1) == label_block[:, None]
    label_logit = jnp.sum(jnp.where(is_label, logits, 0), axis=-1)
    block_loss = log_normalizer - label_logit
    # d loss / d logits = (1 + 2 b lse) softmax - a / V - (1 - a) onehot.
    if z_loss is not None:
      block_loss += z_loss * log_normalizer**2
      probs *= 1 + 2 * z_loss * log_normalizer[:, None]
      d_z_loss = lax.dynamic_update_slice_in_dim(d_z_loss, log_normalizer**2, start, 0)
    if label_smoothing is None:
      d_logits = jnp.where(is_label, probs - 1, probs)
    else:
      smoothing_slope = label_logit - jnp.mean(logits, axis=-1)
      block_loss += label_smoothing * smoothing_slope
      d_logits = probs - label_smoothing / num_classes - jnp.where(
          is_label, 1 - label_smoothing, 0)
      d_smoothing = lax.dynamic_update_slice_in_dim(d_smoothing, smoothing_slope, start, 0)
    d_logits = d_logits.astype(operand_dtype)
    loss = lax.dynamic_update_slice_in_dim(loss, block_loss, start, 0)
    d_hidden = lax.dynamic_update_slice_in_dim(
        d_hidden, jnp.dot(d_logits, kernel.T, preferred_element_type=dtype), start, 0)
    d_kernel += jnp.dot(hidden_block.T, d_logits, preferred_element_type=dtype)
    return loss, d_hidden, d_kernel, d_smoothing, d_z_loss

  per_token = jnp.zeros((num_tokens,), dtype)
  start = (per_token, jnp.zeros(hidden.shape, dtype), jnp.zeros(kernel.shape, dtype),
           per_token, per_token)
  loss, *gradients = _fold_chunks(num_tokens, block_tokens, add_block, start)
  residuals = (hidden, kernel, labels, label_smoothing, z_loss, where, *gradients)
  return loss, residuals


def _linear_loss_gradient_in_forward_bwd(chunk_size, residuals, cotangent):
  (hidden, kernel, labels, label_smoothing, z_loss, where,
   d_hidden, d_kernel, d_smoothing, d_z_loss) = residuals
  # The saved d kernel sums the tokens' gradients with weight 1; it is exact when the cotangent is
  # one common value c over the tokens that reach the kernel (masked ones have zero hidden states).
  active = jnp.ones(cotangent.shape, bool) if where is None else where
  largest = jnp.max(jnp.where(active, cotangent, -jnp.inf), initial=-jnp.inf)
  smallest = jnp.min(jnp.where(active, cotangent, jnp.inf), initial=jnp.inf)
  common = jnp.where(jnp.isfinite(largest), largest, 0)

  def recomputed_d_kernel():
    _, pullback = jax.vjp(
        lambda kernel: _linear_loss(hidden, kernel, labels, label_smoothing, z_loss, chunk_size),
        kernel)
    return pullback(cotangent)[0]

  d_kernel = lax.cond(
      largest <= smallest, lambda: (common * d_kernel).astype(kernel.dtype), recomputed_d_kernel)
  d_hidden = (cotangent[:, None] * d_hidden).astype(hidden.dtype)
  scalar_gradient = lambda scalar, per_token: (
      None if scalar is None else jnp.sum(cotangent * per_token).astype(scalar.dtype))
  return (d_hidden, d_kernel, None, scalar_gradient(label_smoothing, d_smoothing),
          scalar_gradient(z_loss, d_z_loss), None)


_linear_loss_gradient_in_forward.defvjp(
    _linear_loss_gradient_in_forward_fwd, _linear_loss_gradient_in_forward_bwd)


def _fold_chunks(size: int, chunk_size: int, add_chunk, carry):
  """`carry = add_chunk(carry, start, width)` over `[0, size)` in chunks of `chunk_size`.

  The full chunks after the first run in one `fori_loop` (a traced `start`); a narrower last chunk,
  if any, runs after it with its own static width, so V need not be padded (a padded copy of the
  kernel would cost as much memory as the kernel). The first chunk runs before the loop because
  under `shard_map` its results vary over more mesh axes than the initial carry does, and a loop
  carry must keep one type.
  """
  num_full, remainder = divmod(size, chunk_size)
  if num_full:
    carry = add_chunk(carry, 0, chunk_size)
    carry = lax.fori_loop(
        1, num_full, lambda i, carry: add_chunk(carry, i * chunk_size, chunk_size), carry)
  if remainder:
    carry = add_chunk(carry, num_full * chunk_size, remainder)
  return carry


def _chunk_logits(hidden: Array, kernel: Array, start, width: int, dtype) -> Array:
  return jnp.dot(hidden, lax.dynamic_slice_in_dim(kernel, start, width, axis=1),
                 preferred_element_type=dtype)


def _linear_compute_dtype(hidden: Array, kernel: Array) -> jnp.dtype:
  return jnp.promote_types(jnp.result_type(hidden, kernel), jnp.float32)


def _flat_tokens(
    hidden: Array, labels: Array, where: Array | None) -> tuple[Array, Array, Array | None]:
  """`[..., d]`, `[...]` -> `[N, d]`, `[N]`."""
  return (hidden.reshape(-1, hidden.shape[-1]), labels.reshape(-1),
          None if where is None else where.reshape(-1))


def _poisoned_and_masked(
    hidden: Array, labels: Array, num_classes: int, where: Array | None) -> Array:
  """Hidden rows as the loss must see them: NaN for an invalid label, then 0 where masked.

  Multiplying by NaN (rather than selecting it) makes the gradients NaN too, as in
  `smoothed_cross_entropy`; selecting 0 keeps NaN or inf hidden states of masked tokens out of
  the value and the gradients.
  """
  invalid = (labels < 0) | (labels >= num_classes)
  if where is not None:
    invalid &= where
  hidden = hidden * jnp.where(invalid, jnp.nan, 1).astype(hidden.dtype)[:, None]
  return hidden if where is None else jnp.where(where[:, None], hidden, 0)


def _checked_linear_inputs(
    function: str, hidden: ArrayLike, kernel: ArrayLike, labels: ArrayLike,
    label_smoothing: ArrayLike, where: ArrayLike | None, z_loss: ArrayLike, chunk_size: int,
) -> tuple[Array, Array, Array, Array | None, Array | None, Array | None]:
  """Checks shapes and dtypes; Python zeros of `label_smoothing`/`z_loss` become None (skipped)."""
  hidden, kernel = jnp.asarray(hidden), jnp.asarray(kernel)
  for array_name, array in (("hidden", hidden), ("kernel", kernel)):
    if not jnp.issubdtype(array.dtype, jnp.floating):
      raise ValueError(f"{function}: {array_name} must be floating point, got dtype {array.dtype}.")
  if hidden.ndim < 1:
    raise ValueError(f"{function}: hidden must have a feature axis (last), got shape ().")
  if kernel.ndim != 2 or kernel.shape[0] != hidden.shape[-1] or kernel.shape[1] < 1:
    raise ValueError(
        f"{function}: kernel must have shape (d, V) = ({hidden.shape[-1]}, V >= 1) for hidden of "
        f"shape {hidden.shape}, got {kernel.shape}.")
  if isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral) or chunk_size < 1:
    raise ValueError(f"{function}: chunk_size must be a positive integer, got {chunk_size!r}.")
  labels = jnp.asarray(labels)
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise ValueError(f"{function}: labels must be integers, got dtype {labels.dtype}.")
  batch_shape = hidden.shape[:-1]
  if labels.shape != batch_shape:
    raise ValueError(
        f"{function}: labels must have shape hidden.shape[:-1] = {batch_shape}, got "
        f"{labels.shape}.")
  if jnp.iinfo(labels.dtype).bits < 32:
    labels = labels.astype(jnp.int32)  # As in smoothed_cross_entropy: offsets count to V.
  if where is not None:
    where = jnp.asarray(where)
    if where.dtype != jnp.bool_ or where.shape != batch_shape:
      raise ValueError(
          f"{function}: where must be a boolean array of shape hidden.shape[:-1] = {batch_shape}, "
          f"got {where.dtype} {where.shape}.")
  label_smoothing = _checked_scalar(function, "label_smoothing", label_smoothing,
                                    low=NEGATIVE_SMOOTHING_MIN, high=1.0)
  z_loss = _checked_scalar(function, "z_loss", z_loss, low=0.0)
  dtype = _linear_compute_dtype(hidden, kernel)
  scalars = [None if isinstance(value, numbers.Real) and value == 0 else jnp.asarray(value, dtype)
             for value in (label_smoothing, z_loss)]
  return hidden, kernel, labels, where, *scalars
