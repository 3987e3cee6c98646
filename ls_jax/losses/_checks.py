"""Input checks and dtype rules shared by every loss family (private)."""

import numbers

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
ArrayLike = jax.typing.ArrayLike

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

