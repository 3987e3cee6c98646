"""Mixup and CutMix as pure functions of an RNG key, for use inside the jitted train step.

Both draw one mixing weight `lam ~ Beta(alpha, alpha)` and one partner permutation per batch, and
mix the inputs and the (optionally label-smoothed) one-hot targets with the same weight:

  Mixup (Zhang et al. 2018, "mixup: Beyond Empirical Risk Minimization"):
    x̃_i = lam·x_i + (1-lam)·x_π(i),   ỹ_i = lam·y_i + (1-lam)·y_π(i).
  CutMix (Yun et al. 2019, "CutMix: Regularization Strategy to Train Strong Classifiers with
  Localizable Features"): a box of area fraction `1-lam` from x_π(i) is pasted into x_i, and the
  targets are mixed by the area actually pasted after clipping to the image.

Everything has static shapes and stays on device: the partner is `jax.random.permutation`, and the
CutMix box is a mask built from iotas rather than a dynamic slice, so the functions compile once and
work on a batch sharded over a mesh. `num_classes`, `alpha` and `label_smoothing` are
hyperparameters: pass them as Python numbers (bind them with `functools.partial` before `jax.jit`).

Label smoothing (Szegedy et al. 2016, §7) combines through the `label_smoothing` argument, which
smooths each one-hot target once, before mixing; the smoothed target is affine in the one-hot, so
    ỹ = (1-a)·(lam·e_y + (1-lam)·e_y') + a/K.
Pitfall: these targets already contain the smoothing, so train on them with a plain soft-target
cross entropy (`losses.soft_cross_entropy`); feeding them to a loss that smooths again (or passing
`label_smoothing` to both) smooths twice, i.e. with an effective `1-(1-a)²`.
"""
import jax
import jax.numpy as jnp

from ls_jax import losses


def soft_targets(labels: jax.Array, num_classes: int, label_smoothing: float = 0.0) -> jax.Array:
  """Label-smoothed one-hot targets `q'(k) = (1-a)·δ(k,y) + a/K` (Szegedy et al. 2016, §7).

  Args:
    labels: integer class indices, any shape `S`.
    num_classes: K.
    label_smoothing: a in [-1, 1]; 0 gives the plain one-hot. Negative a (Wei et al. 2022, see
      `losses.smoothed_cross_entropy`) gives off-class targets `a/K < 0` and a label target above 1.

  Returns:
    float32 array of shape `S + (K,)` whose rows sum to 1.
  """
  if not losses.NEGATIVE_SMOOTHING_MIN <= label_smoothing <= 1.0:
    raise ValueError(f"label_smoothing must be in [{losses.NEGATIVE_SMOOTHING_MIN:g}, 1], got "
                     f"{label_smoothing}.")
  one_hot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
  return (1.0 - label_smoothing) * one_hot + label_smoothing / num_classes


def _validate_alpha(alpha: float) -> None:
  if not alpha >= 0.0:  # Written this way so that NaN is rejected too.
    raise ValueError(f"alpha (the Beta(alpha, alpha) concentration) must be >= 0, got {alpha}.")


def _check_batch(inputs: jax.Array, labels: jax.Array) -> None:
  if labels.ndim != 1 or inputs.shape[:1] != labels.shape:
    raise ValueError(
        f"Expected inputs of shape (N, ...) and labels of shape (N,), got {inputs.shape} and "
        f"{labels.shape}.")


def _mix_targets(targets: jax.Array, partner: jax.Array, lam: jax.Array) -> jax.Array:
  """`lam·t_i + (1-lam)·t_π(i)` for float32 targets of shape (N, K)."""
  return lam * targets + (1.0 - lam) * targets[partner]


def mixup(
    rng: jax.Array,
    inputs: jax.Array,
    labels: jax.Array,
    num_classes: int,
    alpha: float,
    *,
    label_smoothing: float = 0.0,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Mixup (Zhang et al. 2018): `x̃ = lam·x + (1-lam)·x[π]`, targets alike, `lam ~ Beta(α, α)`.

  One `lam` and one partner permutation `π` per batch, as in the paper's implementation; an example
  may be paired with itself. `alpha == 0` is the identity: the inputs come back unchanged with their
  (smoothed) one-hot targets and `lam = 1`. As `alpha -> 0`, Beta(α, α) puts its mass at 0 and 1, so
  mixup approaches the identity up to relabeling the example as its partner.

  Args:
    rng: PRNG key.
    inputs: floating array of shape (N, ...). The mix is computed in at least float32 and cast back,
      so bf16 in gives bf16 out.
    labels: integer array of shape (N,).
    num_classes: K.
    alpha: Beta concentration, >= 0 (1.0 on CIFAR, 0.1-0.4 on ImageNet in the paper).
    label_smoothing: a, applied to each one-hot once, before mixing (see the module docstring).

  Returns:
    `(mixed_inputs, targets, lam)`: mixed inputs with the dtype of `inputs`, float32 targets of
    shape (N, K) with rows summing to 1, and the float32 scalar `lam` (the weight of the example
    itself).
  """
  _validate_alpha(alpha)
  _check_batch(inputs, labels)
  if not jnp.issubdtype(inputs.dtype, jnp.floating):
    raise ValueError(f"mixup needs floating inputs (mixing rounds integers), got {inputs.dtype}.")
  targets = soft_targets(labels, num_classes, label_smoothing)
  if alpha == 0.0:
    return inputs, targets, jnp.float32(1.0)
  lam_rng, partner_rng = jax.random.split(rng)
  lam = jax.random.beta(lam_rng, alpha, alpha, dtype=jnp.float32)
  partner = jax.random.permutation(partner_rng, inputs.shape[0])
  # Mix in at least float32 so that a bf16 `lam` does not quantize the weight itself.
  compute_dtype = jnp.promote_types(inputs.dtype, jnp.float32)
  x = inputs.astype(compute_dtype)
  mixed = lam * x + (1.0 - lam) * x[partner]
  return mixed.astype(inputs.dtype), _mix_targets(targets, partner, lam), lam


def cutmix_mask(rng: jax.Array, spatial_shape: tuple[int, ...], lam: jax.Array) -> jax.Array:
  """Boolean box mask of volume fraction ≈ `1-lam`, at a uniformly random center, clipped.

  Following Yun et al. (2019), each side has length `round(S_d·(1-lam)^(1/D))` over the D spatial
  axes (`S·sqrt(1-lam)` for images), centered at a pixel drawn uniformly from the grid; the part
  that falls outside is cut off, so the true pasted fraction is `mean(mask) <= 1-lam` (up to
  rounding). Built by comparing iotas with the box corners, so the shape is static and no dynamic
  slicing is needed.

  Args:
    rng: PRNG key.
    spatial_shape: the spatial shape, e.g. (H, W) for images or (L,) for 1-D signals.
    lam: scalar in [0, 1], the fraction of the grid that should be kept.

  Returns:
    bool array of shape `spatial_shape`, True where the partner's pixels are pasted.
  """
  side_fraction = (1.0 - lam) ** (1.0 / len(spatial_shape))
  axis_rngs = jax.random.split(rng, len(spatial_shape))
  mask = jnp.ones(spatial_shape, dtype=bool)
  for axis, (size, axis_rng) in enumerate(zip(spatial_shape, axis_rngs)):
    length = jnp.round(size * side_fraction).astype(jnp.int32)
    start = jax.random.randint(axis_rng, (), 0, size) - length // 2
    position = jax.lax.broadcasted_iota(jnp.int32, spatial_shape, axis)
    mask &= (position >= start) & (position < start + length)
  return mask


def cutmix(
    rng: jax.Array,
    images: jax.Array,
    labels: jax.Array,
    num_classes: int,
    alpha: float,
    *,
    label_smoothing: float = 0.0,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """CutMix (Yun et al. 2019): paste a box of area `1-lam` from a partner, `lam ~ Beta(α, α)`.

  One `lam`, one box and one partner permutation per batch, as in the paper's implementation. The
  targets are mixed with the effective weight
    lam_eff = 1 - (pixels pasted after clipping) / (pixels per image),
  so they match what the image actually contains. `alpha == 0` is the identity (`lam_eff = 1`).

  Args:
    rng: PRNG key.
    images: array of shape (N, *spatial, C): NHWC images, or (N, L, C) 1-D signals. Any dtype:
      pixels are selected, not blended, so the dtype is kept exactly.
    labels: integer array of shape (N,).
    num_classes: K.
    alpha: Beta concentration, >= 0 (1.0 in the paper).
    label_smoothing: a, applied to each one-hot once, before mixing (see the module docstring).

  Returns:
    `(mixed_images, targets, lam_eff)`: mixed images with the dtype of `images`, float32 targets of
    shape (N, K) with rows summing to 1, and the float32 scalar `lam_eff` (the kept fraction).
  """
  _validate_alpha(alpha)
  _check_batch(images, labels)
  if images.ndim < 3:
    raise ValueError(f"cutmix needs images of shape (N, *spatial, C), got {images.shape}.")
  targets = soft_targets(labels, num_classes, label_smoothing)
  if alpha == 0.0:
    return images, targets, jnp.float32(1.0)
  lam_rng, box_rng, partner_rng = jax.random.split(rng, 3)
  lam = jax.random.beta(lam_rng, alpha, alpha, dtype=jnp.float32)
  mask = cutmix_mask(box_rng, images.shape[1:-1], lam)
  partner = jax.random.permutation(partner_rng, images.shape[0])
  mixed = jnp.where(mask[None, ..., None], images[partner], images)
  lam_eff = 1.0 - jnp.mean(mask, dtype=jnp.float32)
  return mixed, _mix_targets(targets, partner, lam_eff), lam_eff
