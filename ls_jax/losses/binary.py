"""Binary and multi-label losses: label-smoothed sigmoid cross-entropy and binary focal loss.

Convention: binary label smoothing with strength `a` trains each sigmoid output against the target

  t = y * (1 - a) + a / 2,

so `a = 0.2` gives the targets 0.9 / 0.1 (Keras `BinaryCrossentropy(label_smoothing=a)`). This is
the softmax convention of `classification` with `K = 2`: a sigmoid on the logit `z` is a softmax on
the two logits `[0, z]` (or `[-z/2, z/2]`), so

  sigmoid_cross_entropy(z, t) = soft_cross_entropy([0, z], [1 - t, t]),

and for hard labels `y` the smoothed target pair `[1 - t, t]` is exactly the two-class smoothed
one-hot `(1 - a) * onehot(y) + a / 2`: `smoothed_binary_cross_entropy(z, y, a)` equals
`smoothed_cross_entropy([0, z], y, a)` for `0 <= a < 1`, value and gradient in `z`. (timm's
`BinaryCrossEntropy` over `K` one-hot columns smooths to `a / K` and `1 - a + a / K` instead; that
is this convention with `a' = 2 a / K`.)

Every function is per ELEMENT: `logits` are `[...]` (one binary task) or `[..., C]` (`C`
independent binary tasks: multi-label), `labels` have the shape of `logits`, and the result has it
too. Losses are computed in float32 (float64 for float64 logits) whatever the logits' dtype;
gradients come back in the logits' dtype. Pure and safe under `jit`, `vmap`, `grad` and
forward-mode differentiation.

Labels may be booleans, integers in {0, 1} or floating soft labels in [0, 1]. Concrete NumPy or
Python labels are range-checked on the host (a `ValueError`); JAX arrays, traced or not, are not
copied to the host to be checked: an element whose label is out of range gets a NaN loss and NaN
gradient instead of a plausible number, like `smoothed_cross_entropy` does for labels outside
`[0, K)`.
"""

import numbers

import jax
import jax.numpy as jnp
import numpy as np

from ls_jax.losses._checks import Array, ArrayLike, _checked_scalar, _compute_dtype

_HOST_TYPES = (np.ndarray, np.generic, numbers.Number, list, tuple)


def smoothed_binary_cross_entropy(
    logits: ArrayLike,
    labels: ArrayLike,
    label_smoothing: ArrayLike = 0.0,
    *,
    pos_weight: ArrayLike | None = None,
    where: ArrayLike | None = None,
) -> Array:
  r"""Sigmoid cross-entropy against label-smoothed binary targets, per element.

  With `z = logits`, `y = labels`, `a = label_smoothing`, target `t = y (1 - a) + a / 2` and
  `sigma` the logistic sigmoid,

    L = -[p * t * log sigma(z) + (1 - t) * log(1 - sigma(z))]
      = p * t * softplus(-z) + (1 - t) * softplus(z),

  where `p = pos_weight` (1 when None). Both softplus terms are computed in a form that is exact
  for large `|z|` (no `log(1 - sigmoid)`, no cancellation), so `z = +-1e4` gives finite, exact
  losses. The gradient is `dL/dz = sigma(z) - t` for `p = 1`, and
  `(p t + 1 - t) * sigma(z) - p t` in general.

  `a = 0.2` gives the 0.9 / 0.1 targets (Keras `BinaryCrossentropy(label_smoothing=a)`); `a = 1`
  gives the constant target 0.5 (the loss then only pulls every logit to 0) and is accepted, as in
  Keras. With `label_smoothing` the Python number 0 the smoothing arithmetic is skipped, and the
  result is `optax.sigmoid_binary_cross_entropy(logits, labels)`.

  Relation to the softmax form with `K = 2`: sigmoid CE of logit `z` with target `t` equals
  softmax CE of logits `[0, z]` (or `[-z/2, z/2]`) with targets `[1 - t, t]`, and the smoothed
  target pair `[1 - t, t]` is the two-class `(1 - a) * onehot(y) + a / 2`: for hard labels this
  loss is `smoothed_cross_entropy(stack([0, z], -1), y, a)` (see the module docstring).

  `pos_weight` has the meaning of PyTorch's `BCEWithLogitsLoss(pos_weight=p)`: the positive term
  `t * log sigma(z)` is multiplied by `p` (with soft targets too), the negative term is not; `p >
  1` raises recall, `p = n_negative / n_positive` is the usual choice for rare positives. It is a
  scalar or a `[C]` vector broadcast over the last axis (one weight per label of a multi-label
  task).

  Args:
    logits: floating `[...]` or `[..., C]` logits, one per binary decision (bfloat16/float16 are
      upcast).
    labels: `[...]` or `[..., C]`, the shape of `logits`: booleans, integers in {0, 1} or floating
      soft labels in [0, 1]. Out-of-range JAX-array labels give NaN (see the module docstring).
    label_smoothing: scalar `a` in `[0, 1]`, Python number or (traced) array; a traced value is
      not range-checked.
    pos_weight: optional weight `>= 0` of the positive term: a scalar or a `[C]` vector
      (`C = logits.shape[-1]`); Python/NumPy values are checked, a traced one is not.
    where: optional boolean array of the shape of `logits`; where False the loss and its gradient
      are 0, even if those logits or labels are NaN, infinite or out of range.

  Returns:
    float32 per-element losses of the shape of `logits` (float64 for float64 logits).

  Raises:
    ValueError: on non-floating logits, a label shape or dtype that does not fit, concrete labels
      outside {0, 1} (integer) or [0, 1] (floating), a concrete `label_smoothing` outside
      `[0, 1]`, a `pos_weight` of the wrong shape or a concrete negative one, or a bad `where`.
  """
  function = "smoothed_binary_cross_entropy"
  logits, labels, where, valid = _checked_binary_inputs(function, logits, labels, where)
  label_smoothing = _checked_smoothing(function, label_smoothing)
  pos_weight = _checked_pos_weight(function, pos_weight, logits.shape)
  z, t, not_t = _prepared(logits, labels, label_smoothing, valid, where)
  loss = _sigmoid_cross_entropy(z, t, not_t, pos_weight)
  return loss if where is None else jnp.where(where, loss, 0)


def binary_focal_loss(
    logits: ArrayLike,
    labels: ArrayLike,
    gamma: ArrayLike,
    *,
    label_smoothing: ArrayLike = 0.0,
    alpha: ArrayLike | None = None,
    where: ArrayLike | None = None,
) -> Array:
  r"""Binary focal loss (Lin et al. 2017, eq. 5), per element, with optional alpha-balancing.

  With `p = sigmoid(z)`, target `t` (the label, smoothed as in `smoothed_binary_cross_entropy`),

    L = -alpha_t * (1 - p_t)^gamma * log p_t,

  where for hard labels `p_t = p` if `y = 1` else `1 - p`, and `alpha_t = alpha` if `y = 1` else
  `1 - alpha` (Lin et al. 2017, "Focal Loss for Dense Object Detection", eqs. 2-5). Soft targets
  use the form that is linear in `t`, the one of `optax.losses.sigmoid_focal_loss` given the same
  targets:

    log p_t -> -BCE(z, t) = t log p + (1 - t) log(1 - p),
    1 - p_t = t * (1 - p) + (1 - t) * p,
    alpha_t = alpha * t + (1 - alpha) * (1 - t).

  `log(1 - p_t)` is a log-sum-exp of `log sigmoid(z)` and `log sigmoid(-z)`, and the focal weight
  is `exp(gamma * log(1 - p_t))`: no `1 - p` cancellation, finite for `|z| = 1e4`, and no `x^gamma`
  at `x = 0` whose derivative would be infinite for `gamma < 1`. `gamma = 0` with `alpha=None` is
  exactly `smoothed_binary_cross_entropy` (`exp(0) = 1`). With `K = 2` this is `focal_loss` on the
  logits `[0, z]` (`softmax([0, z])_1 = sigmoid(z)`), for `alpha=None` and hard labels.

  `alpha=None` applies no balancing (optax's default too); Lin et al. use `alpha = 0.25` with
  `gamma = 2`. Note that `alpha` weights positives by `alpha` and negatives by `1 - alpha`, so
  `alpha = 0.5` halves the loss.

  Args:
    logits: floating `[...]` or `[..., C]` logits (bfloat16/float16 are upcast).
    labels: the shape of `logits`: booleans, integers in {0, 1} or floating soft labels in [0, 1].
    gamma: scalar focusing parameter `>= 0`, Python number or (traced) array.
    label_smoothing: scalar `a` in `[0, 1]`; targets `y (1 - a) + a / 2`. The loss is
      differentiable in a traced `a` wherever `0 < t < 1` (e.g. for `a > 0`), not at `t = 0, 1`.
    alpha: optional scalar in `[0, 1]`, the weight of the positive class.
    where: optional boolean array of the shape of `logits`; where False the loss and its gradient
      are 0, even if those logits or labels are NaN, infinite or out of range.

  Returns:
    float32 per-element losses of the shape of `logits` (float64 for float64 logits).

  Raises:
    ValueError: on the input errors of `smoothed_binary_cross_entropy`, a concrete `gamma < 0`,
      or a concrete `alpha` outside `[0, 1]`.
  """
  function = "binary_focal_loss"
  logits, labels, where, valid = _checked_binary_inputs(function, logits, labels, where)
  gamma = _checked_scalar(function, "gamma", gamma, low=0.0)
  label_smoothing = _checked_smoothing(function, label_smoothing)
  if alpha is not None:
    alpha = _checked_scalar(function, "alpha", alpha, low=0.0, high=1.0, high_closed=True)
  z, t, not_t = _prepared(logits, labels, label_smoothing, valid, where)
  cross_entropy = _sigmoid_cross_entropy(z, t, not_t, None)
  log_p, log_not_p = -jax.nn.softplus(-z), -jax.nn.softplus(z)
  # log(t (1 - p) + (1 - t) p); logsumexp drops a term whose weight is exactly 0, so a hard label
  # with a large margin gives log(1 - p_t) = -|z| rather than log(0).
  log_one_minus_p_t = jax.nn.logsumexp(
      jnp.stack([log_not_p, log_p], axis=-1), axis=-1, b=jnp.stack([t, not_t], axis=-1))
  loss = jnp.exp(gamma * log_one_minus_p_t) * cross_entropy
  if alpha is not None:
    loss = (alpha * t + (1 - alpha) * not_t) * loss
  return loss if where is None else jnp.where(where, loss, 0)


# --- Shared pieces. ---

def _checked_binary_inputs(
    function: str, logits: ArrayLike, labels: ArrayLike, where: ArrayLike | None,
) -> tuple[Array, Array, Array | None, Array | None]:
  """Checked `(logits, labels, where, valid)`; `valid` marks in-range labels (None: all are)."""
  logits = jnp.asarray(logits)
  if not jnp.issubdtype(logits.dtype, jnp.floating):
    raise ValueError(f"{function}: logits must be floating point, got dtype {logits.dtype}.")
  on_host = isinstance(labels, _HOST_TYPES)
  host_labels = np.asarray(labels) if on_host else None
  labels = jnp.asarray(labels)
  if labels.shape != logits.shape:
    raise ValueError(
        f"{function}: labels must have the shape of logits {logits.shape}, got {labels.shape}.")
  if labels.dtype == jnp.bool_:
    valid = None
  elif jnp.issubdtype(labels.dtype, jnp.integer):
    if on_host:
      _raise_first_bad(function, host_labels, (host_labels != 0) & (host_labels != 1), "{0, 1}")
      valid = None
    else:
      valid = (labels == 0) | (labels == 1)
  elif jnp.issubdtype(labels.dtype, jnp.floating):
    if on_host:
      # Written as `not (0 <= y <= 1)` so that NaN is rejected too.
      _raise_first_bad(function, host_labels, ~((host_labels >= 0) & (host_labels <= 1)),
                       "[0, 1]")
      valid = None
    else:
      valid = (labels >= 0) & (labels <= 1)
  else:
    raise ValueError(
        f"{function}: labels must be boolean, integer or floating point, got dtype "
        f"{labels.dtype}.")
  if where is not None:
    where = jnp.asarray(where)
    if where.dtype != jnp.bool_:
      raise ValueError(f"{function}: where must be a boolean array, got dtype {where.dtype}.")
    if where.shape != logits.shape:
      raise ValueError(
          f"{function}: where must have the shape of logits {logits.shape}, got {where.shape}.")
  return logits, labels, where, valid


def _raise_first_bad(function: str, labels: np.ndarray, bad: np.ndarray, allowed: str) -> None:
  if bad.any():
    # argmax of a boolean array is the first True in C order: the first bad label.
    index = np.unravel_index(int(np.argmax(bad)), labels.shape)
    raise ValueError(
        f"{function}: labels at index {tuple(int(i) for i in index)} is {labels[index]}, outside "
        f"{allowed}.")


def _checked_smoothing(function: str, label_smoothing: ArrayLike) -> ArrayLike | None:
  """The checked smoothing; None for the Python number 0 (no smoothing arithmetic at all)."""
  label_smoothing = _checked_scalar(
      function, "label_smoothing", label_smoothing, low=0.0, high=1.0, high_closed=True)
  if isinstance(label_smoothing, numbers.Real) and label_smoothing == 0:
    return None
  return label_smoothing


def _checked_pos_weight(
    function: str, pos_weight: ArrayLike | None, logits_shape: tuple[int, ...],
) -> ArrayLike | None:
  if pos_weight is None:
    return None
  shape = np.shape(pos_weight)
  # A class axis exists only for multi-label logits `[..., C]`: for binary `[B]` logits a `(B,)`
  # vector would silently weight examples, not classes.
  allowed = [()] + ([(logits_shape[-1],)] if len(logits_shape) >= 2 else [])
  if shape not in allowed:
    raise ValueError(
        f"{function}: pos_weight must be a scalar"
        + (f" or have shape (C,) = {allowed[1]}" if len(allowed) > 1 else "")
        + f", got shape {shape}.")
  dtype = jnp.result_type(pos_weight)
  if dtype == jnp.bool_ or not (jnp.issubdtype(dtype, jnp.integer)
                                or jnp.issubdtype(dtype, jnp.floating)):
    raise ValueError(f"{function}: pos_weight must be a real number, got dtype {dtype}.")
  if isinstance(pos_weight, _HOST_TYPES):
    values = np.asarray(pos_weight, np.float64)
    if not np.all((values >= 0) & np.isfinite(values)):  # NaN fails `>= 0`.
      raise ValueError(f"{function}: pos_weight must be finite and >= 0, got {pos_weight}.")
  return pos_weight


def _prepared(
    logits: Array, labels: Array, label_smoothing: ArrayLike | None, valid: Array | None,
    where: Array | None,
) -> tuple[Array, Array, Array]:
  """`(z, t, 1 - t)` in the compute dtype: logits NaN-poisoned where a label is invalid, all three
  zeroed where masked.

  `1 - t` is computed as `(1 - y) (1 - a) + a / 2`, not by subtracting the rounded `t` from 1, so
  that the 0.1 of a = 0.2 is the float32 0.1 (`1 - float32(0.9)` is off by 4e-7 relative).
  """
  dtype = _compute_dtype(logits)
  z = logits.astype(dtype)
  t = labels.astype(dtype)
  not_t = 1 - t
  if label_smoothing is not None:
    label_smoothing = jnp.asarray(label_smoothing, dtype)
    t = t * (1 - label_smoothing) + label_smoothing / 2
    not_t = not_t * (1 - label_smoothing) + label_smoothing / 2
  if valid is not None:
    # Adding NaN (not selecting it) poisons the gradient of an element with a bad label as well.
    z = z + jnp.where(valid, 0, jnp.nan).astype(dtype)
  if where is not None:
    # Double where: zeroing only the loss would still send 0 * NaN = NaN into the gradient.
    z = jnp.where(where, z, 0)
    t = jnp.where(where, t, 0)
    not_t = jnp.where(where, not_t, 0)
  return z, t, not_t


def _sigmoid_cross_entropy(
    z: Array, t: Array, not_t: Array, pos_weight: ArrayLike | None) -> Array:
  """`p t softplus(-z) + (1 - t) softplus(z)`: each term exact for large |z| (no cancellation)."""
  positive = t * jax.nn.softplus(-z)
  if pos_weight is not None:
    positive = jnp.asarray(pos_weight, z.dtype) * positive
  return positive + not_t * jax.nn.softplus(z)
