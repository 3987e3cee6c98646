"""What label smoothing does to representations and to attacks: pure functions for the evidence.

Representation analyses (`template_plane`, `project_onto_template_plane`, `cluster_tightness`,
`gaussian_mutual_information`) run on the host in float64 NumPy, like `calibration`, so they read
saved outputs and do not depend on the accelerator's precision. The model-facing functions
(`penultimate_features`, the confidence probes, `fgsm`, `pgd`) are JAX, pure and jit-friendly; they
take a logits function `logits_fn(x) -> (n, K) logits`, usually a closure such as
`lambda x: model.apply(variables, x)`.

References:
  Müller, Kornblith & Hinton 2019, "When Does Label Smoothing Help?", NeurIPS (arXiv 1906.02629):
    §2 and Fig. 1 (projections of the penultimate layer), §4.1 (information erasure).
  Warde-Farley & Goodfellow 2016, "Adversarial Perturbations of Deep Neural Networks" (LS models
    extrapolate less extremely away from the data).
  Goodfellow, Shlens & Szegedy 2015, "Explaining and Harnessing Adversarial Examples" (FGSM).
  Madry et al. 2018, "Towards Deep Learning Models Resistant to Adversarial Attacks" (PGD).
  Goibert & Dohmatob 2019, "Adversarial Robustness via Label-Smoothing" (and its gradient-masking
    caveat: check a stronger, iterative attack before claiming robustness).
"""
from collections.abc import Callable, Sequence
import itertools
import math
from typing import Any, NamedTuple, Optional

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from ls_jax import losses

LogitsFn = Callable[[jax.Array], jax.Array]

# Rows of (draws x examples x dims) evaluated at once by the MI estimator: bounds its memory.
_MI_CHUNK_ELEMENTS = 1 << 22


# ------------------------------------------------------------------------------------------------
# Penultimate-layer geometry (Müller et al. 2019, §2).


class TemplatePlane(NamedTuple):
  """The plane through three class templates, with an orthonormal basis.

  Attributes:
    origin: (D,) the first template `w_a` (D = d + 1 when the bias is included).
    basis: (2, D) orthonormal rows `e1, e2` spanning the plane.
    template_coordinates: (3, 2) the three templates' own coordinates in the plane:
      `(0, 0)`, `(|w_b - w_a|, 0)` and `(e1 . (w_c - w_a), e2 . (w_c - w_a))` with the last > 0.
  """
  origin: np.ndarray
  basis: np.ndarray
  template_coordinates: np.ndarray


def template_plane(
    kernel: ArrayLike, class_ids: Sequence[int], bias: Optional[ArrayLike] = None
) -> TemplatePlane:
  r"""Orthonormal basis of the plane through the templates of three classes (Müller 2019, §2).

  The final Dense layer gives logit `z_k = x . w_k + b_k`, so the template of class `k` is the
  kernel column `w_k`. Müller et al. write the logit as `x^T w_k` and read it as a distance,
  `-2 x^T w_k = |x - w_k|^2 - |x|^2 - |w_k|^2`: up to terms shared by all classes when the template
  norms are equal, a larger logit means a closer template. The bias fits this reading when it is
  folded into the template: with `bias` given, templates are `[w_k; b_k]` in R^(d+1) and activations
  are augmented with a constant 1 (see `project_onto_template_plane`); without it, the plane lives
  in the d-dimensional feature space.

  Construction, for `class_ids = (a, b, c)`: the plane is the affine plane through `w_a`, `w_b`,
  `w_c`. Origin `w_a`; Gram-Schmidt on `(w_b - w_a, w_c - w_a)`:

    e1 = (w_b - w_a) / |w_b - w_a|,   u = (w_c - w_a) - (e1 . (w_c - w_a)) e1,   e2 = u / |u|.

  Müller et al. ("find an orthonormal basis of the plane crossing the templates of these three
  classes") do not say which point is the origin or which basis; any other choice is a rotation,
  reflection and shift of these coordinates, so distances and the figure's shape are the same.

  Args:
    kernel: (d, K) the final Dense kernel (`params['head']['kernel']` in `ls_jax.models`).
    class_ids: three distinct class indices `(a, b, c)` in `[0, K)`.
    bias: optional (K,) the final Dense bias; included as the last template coordinate.

  Returns:
    A `TemplatePlane`, in float64.

  Raises:
    ValueError: on bad shapes, bad class ids, or templates on one line (no unique plane).
  """
  templates = _templates(kernel, bias)
  num_classes = templates.shape[0]
  class_ids = tuple(class_ids)
  if (len(class_ids) != 3 or len(set(class_ids)) != 3
      or not all(isinstance(k, (int, np.integer)) and 0 <= k < num_classes for k in class_ids)):
    raise ValueError(
        f"class_ids must be three distinct integers in [0, {num_classes}), got {class_ids}.")
  w_a, w_b, w_c = templates[list(class_ids)]
  ab, ac = w_b - w_a, w_c - w_a
  ab_norm = np.linalg.norm(ab)
  e1 = ab / ab_norm if ab_norm > 0 else ab
  u = ac - (e1 @ ac) * e1
  # Relative test: float32 weights of nearly collinear templates leave a u of rounding size.
  if not ab_norm > 0 or not np.linalg.norm(u) > 1e-9 * max(ab_norm, np.linalg.norm(ac)):
    raise ValueError(
        f"The templates of classes {class_ids} lie on one line: no unique plane through them.")
  basis = np.stack([e1, u / np.linalg.norm(u)])
  return TemplatePlane(origin=w_a, basis=basis,
                       template_coordinates=np.stack([np.zeros(2), [ab_norm, 0.0], basis @ ac]))


def project_onto_template_plane(
    features: ArrayLike,
    kernel: ArrayLike,
    class_ids: Sequence[int],
    bias: Optional[ArrayLike] = None,
) -> np.ndarray:
  r"""2-D coordinates of penultimate activations in the plane of three templates (Müller, Fig. 1).

  With the plane of `template_plane` (origin `w_a`, orthonormal `e1`, `e2`), an activation `x` maps
  to the coordinates of its orthogonal projection onto the plane:

    (e1 . (x - w_a), e2 . (x - w_a)).

  Components of `x` orthogonal to the plane are dropped; points of the plane map exactly. With
  `bias` given, `x` is augmented to `[x; 1]` and templates to `[w_k; b_k]`, so that `[x; 1] . [w_k;
  b_k]` is the logit (Müller et al.'s convention); without it the plane lives in the d-dimensional
  feature space and the bias is ignored.

  Args:
    features: (N, d) penultimate activations (see `penultimate_features`).
    kernel: (d, K) the final Dense kernel.
    class_ids: three distinct class indices `(a, b, c)`.
    bias: optional (K,) the final Dense bias.

  Returns:
    float64 (N, 2) coordinates; the templates themselves are at
    `template_plane(...).template_coordinates`.

  Raises:
    ValueError: on bad shapes or class ids, or collinear templates.
  """
  plane = template_plane(kernel, class_ids, bias)
  features = np.asarray(features, np.float64)
  num_features = np.shape(kernel)[0]
  if features.ndim != 2 or features.shape[1] != num_features:
    raise ValueError(
        f"features must have shape (N, {num_features}) to match the kernel, got {features.shape}.")
  if bias is not None:
    features = np.concatenate([features, np.ones((len(features), 1))], axis=1)
  return (features - plane.origin) @ plane.basis.T


def cluster_tightness(
    points: ArrayLike, labels: ArrayLike, class_ids: Optional[Sequence[int]] = None
) -> float:
  r"""Mean distance to the own class centroid over mean distance between class centroids.

  With classes `C`, centroids `c_k = mean{p_i : y_i = k}` and `n` examples of those classes:

    tightness = [(1/n) sum_i |p_i - c_(y_i)|] / [mean over pairs j < k in C of |c_j - c_k|].

  0 when every class collapses to its centroid; larger when clusters are spread relative to their
  separation. It is invariant to rotation, translation and scale of `points`, so it can be compared
  across models. Pass full penultimate features (N, d) for the tightness in the full space, or the
  (N, 2) output of `project_onto_template_plane` for the tightness in Müller's figure.

  Why centroids and not templates in the denominator: the final layer is unchanged by
  `(x, W) -> (x / s, s W)`, so a ratio of feature spread to template distance would depend on an
  arbitrary scale `s^2`; both distances here are in the feature space.

  Args:
    points: (N, D) float features or projections.
    labels: (N,) integer classes.
    class_ids: the classes to include (default: every class present); at least 2, each present.

  Returns:
    The tightness ratio as a Python float.

  Raises:
    ValueError: on bad shapes, fewer than 2 classes, an absent class, or coincident centroids.
  """
  points = np.asarray(points, np.float64)
  labels = np.asarray(labels)
  if points.ndim != 2 or labels.shape != points.shape[:1]:
    raise ValueError(
        f"Expected points of shape (N, D) and labels of shape (N,), got {points.shape} and "
        f"{labels.shape}.")
  classes = np.unique(labels) if class_ids is None else np.asarray(list(class_ids))
  if len(classes) < 2:
    raise ValueError(f"cluster_tightness needs at least 2 classes, got {classes.tolist()}.")
  missing = [int(k) for k in classes if not np.any(labels == k)]
  if missing:
    raise ValueError(f"class_ids {missing} have no examples among the labels.")
  centroids = np.stack([points[labels == k].mean(axis=0) for k in classes])
  spread = np.mean(np.concatenate([
      np.linalg.norm(points[labels == k] - c, axis=1) for k, c in zip(classes, centroids)]))
  separation = np.mean([np.linalg.norm(centroids[j] - centroids[k])
                        for j, k in itertools.combinations(range(len(classes)), 2)])
  if not separation > 0:
    raise ValueError("All class centroids coincide: tightness is undefined.")
  return float(spread / separation)


# ------------------------------------------------------------------------------------------------
# Information erasure (Müller et al. 2019, §4.1).


def gaussian_mutual_information(samples: ArrayLike) -> float:
  r"""Müller et al.'s (2019, §4.1) Gaussian estimate of I(X; Y), in nats.

  Setting (Müller §4.1): `X` is the index of a training example, uniform over `N` examples, and `Y`
  is a function of the network's output on a randomly augmented copy of example `X`; Müller et al.
  use the difference of two logits, `Y = z_a - z_b`. The randomness of `Y` given `X` is the data
  augmentation. They approximate `p(y | x)` as Gaussian, `N(mu_x, sigma^2)`, with a per-example
  mean and one variance shared by all examples, both estimated from `L` augmented draws per example:

    mu_x = (1/L) sum_l y_(x,l),   sigma^2 = (1/(N L)) sum_(x,l) (y_(x,l) - mu_x)^2,

  and evaluate `I(X; Y) = E_(X,Y)[log p(y | x) - log p(y)]` with `p(y) = (1/N) sum_x' p(y | x')`:

    I_hat = log N + (1/(N L)) sum_(x,l) [ -(y_(x,l) - mu_x)^2 / (2 sigma^2)
                                          - logsumexp_x' ( -(y_(x,l) - mu_x')^2 / (2 sigma^2) ) ].

  The Gaussian normalizers cancel. `I_hat <= log N` always (the `x' = x` term is in the sum), and
  `I_hat = 0` exactly when all `mu_x` are equal: 0 means the logits say nothing about which example
  they came from, `log N` that every example is identifiable. The paper's printed estimator (§4.1)
  is `sum_x [-(y_x - mu_x)^2 / (2 sigma^2) - log sum_x' exp(-(y_x - mu_x')^2 / (2 sigma^2))]` with
  `sigma^2 = sum_x (y_x - mu_x)^2 / N`: a sum over examples without the `1/N`, without the
  `+ log N` of `p(y) = (1/N) sum_x' p(y | x')`, and one draw per example. As printed it is not in
  `[0, log N]` (people reproducing it get values near -4000); this is the normalized form of the
  same expression, averaged over all draws, with `sigma^2` pooled over examples and draws.

  Multi-dimensional `Y` (here `dims > 1`) uses a diagonal covariance shared by all examples: the
  same formula with `sum_d (y_d - mu_(x,d))^2 / (2 sigma_d^2)`; `dims = 1` is Müller's estimator.

  Assumptions and bias: Gaussian `p(y | x)` with equal variance for every example; the plug-in
  `mu_x` and `sigma^2` come from the same draws they are evaluated on, which biases `I_hat` up
  slightly for small `L` (the variance is underestimated by `(L - 1) / L`).

  Args:
    samples: (N, L) or (N, L, dims) float values `y_(x,l)`: `N >= 2` examples, `L >= 2` draws
      (augmentations) each.

  Returns:
    The estimate in nats, a Python float in `(-inf, log N]`.

  Raises:
    ValueError: on bad shapes, non-finite samples, or zero within-example variance in a dimension.
  """
  samples = np.asarray(samples, np.float64)
  if samples.ndim not in (2, 3) or min(samples.shape[:2]) < 2 or samples.shape[-1] < 1:
    raise ValueError(
        "samples must have shape (num_examples >= 2, num_draws >= 2) or (num_examples, num_draws, "
        f"dims), got {samples.shape}.")
  if samples.ndim == 2:
    samples = samples[..., None]
  if not np.all(np.isfinite(samples)):
    raise ValueError("samples must be finite.")
  num_examples, num_draws, dims = samples.shape
  means = samples.mean(axis=1)  # (N, D)
  variances = np.mean((samples - means[:, None]) ** 2, axis=(0, 1))  # (D,), pooled over examples.
  if not np.all(variances > 0):
    constant = np.flatnonzero(~(variances > 0)).tolist()
    raise ValueError(
        f"The within-example variance is 0 in dimensions {constant}: the Gaussian model is "
        "undefined.")
  scale = np.sqrt(2 * variances)
  values = (samples / scale).reshape(-1, dims)  # Row r = (x, l) in C order.
  centers = means / scale
  own = -np.sum((samples / scale - centers[:, None]) ** 2, axis=-1).reshape(-1)
  chunk = max(1, _MI_CHUNK_ELEMENTS // (num_examples * dims))
  log_normalizer = np.concatenate([
      special.logsumexp(-np.sum((values[i:i + chunk, None] - centers) ** 2, axis=-1), axis=1)
      for i in range(0, len(values), chunk)])
  return float(math.log(num_examples) + np.mean(own - log_normalizer))


# ------------------------------------------------------------------------------------------------
# Reading a model's penultimate layer.


def penultimate_features(
    model: nn.Module, variables: Any, x: jax.Array, **apply_kwargs: Any
) -> tuple[jax.Array, jax.Array]:
  """(features, logits) for `x`: the activations sown as intermediates/'features', in one pass.

  Every model of `ls_jax.models` sows its penultimate representation (the final Dense's input)
  with `classifier_head`, so `logits = features @ kernel + bias` with the kernel and bias of
  `variables['params']['head']` (see `head_kernel_and_bias`). Runs in inference mode
  (`train=False`, BatchNorm running averages).

  Args:
    model: a model from `ls_jax.models`.
    variables: its Flax variables (`{'params': ...}` plus `'batch_stats'` for BatchNorm models).
    x: a batch of inputs, already normalized as the model was trained.
    **apply_kwargs: passed on to `model.apply`.

  Returns:
    features (N, d) in the compute dtype and logits (N, K) float32.

  Raises:
    ValueError: if the model sows no intermediates/'features'.
  """
  logits, state = model.apply(variables, x, train=False, mutable=["intermediates"], **apply_kwargs)
  sown = state.get("intermediates", {}).get("features")
  if sown is None:
    raise ValueError(
        f"{type(model).__name__} sows no intermediates/'features'; build its last layer with "
        "ls_jax.models.cnn.classifier_head.")
  (features,) = sown
  return features, logits


def head_kernel_and_bias(variables: Any) -> tuple[jax.Array, jax.Array]:
  """The final Dense layer's (d, K) kernel (its columns are the class templates) and (K,) bias."""
  head = variables["params"]["head"]
  return head["kernel"], head["bias"]


# ------------------------------------------------------------------------------------------------
# Extrapolation away from the data (Warde-Farley & Goodfellow 2016).


def mean_max_confidence(logits: jax.Array) -> jax.Array:
  """Mean over examples of the top-1 softmax probability `max_k softmax(z)_k`."""
  return jnp.mean(jnp.max(jax.nn.softmax(logits.astype(jnp.float32), axis=-1), axis=-1))


def scaled_input_confidence(
    logits_fn: LogitsFn, x: jax.Array, scales: Sequence[float]
) -> jax.Array:
  """Mean max-softmax confidence on `s * x` for each `s` in `scales`: (len(scales),) float32.

  `x` is scaled in the space the model reads, i.e. after the input normalization, so `s * x` moves
  each example along the ray from the normalized data mean (0) through it: `s = 1` is the data,
  large `s` extrapolates away from it. A piecewise-linear network's logits grow linearly along such
  a ray, so CE models tend to confidence 1; Warde-Farley & Goodfellow (2016) report that LS models
  extrapolate less extremely.
  """
  if len(scales) == 0:
    raise ValueError("scales must be a non-empty sequence of numbers.")
  return jnp.stack([mean_max_confidence(logits_fn(s * x)) for s in scales])


def matched_gaussian_noise(rng: jax.Array, x: jax.Array, num_samples: Optional[int] = None
                           ) -> jax.Array:
  """Pure-noise inputs with the per-coordinate mean and standard deviation of the data `x`.

  Each input coordinate `j` (pixel and channel, or time step) is drawn i.i.d. from
  `N(mean_j, std_j^2)`, with `mean_j` and `std_j` taken over the examples of `x` (axis 0). The noise
  matches the data's first two moments coordinate by coordinate but none of its correlations, so it
  is off the data manifold.

  Args:
    rng: a JAX PRNG key.
    x: (n, ...) data, n >= 2, in the space the model reads (normalized).
    num_samples: how many noise inputs (default n).

  Returns:
    (num_samples, ...) noise of `x`'s dtype.
  """
  if x.ndim < 1 or x.shape[0] < 2:
    raise ValueError(f"x must have at least 2 examples along axis 0, got shape {x.shape}.")
  num_samples = x.shape[0] if num_samples is None else num_samples
  mean, std = jnp.mean(x, axis=0), jnp.std(x, axis=0)
  return (mean + std * jax.random.normal(rng, (num_samples, *x.shape[1:]))).astype(x.dtype)


# ------------------------------------------------------------------------------------------------
# Adversarial inputs: FGSM and PGD on the cross-entropy.


def input_gradient(logits_fn: LogitsFn, x: jax.Array, labels: jax.Array) -> jax.Array:
  """`d/dx sum_i CE(logits_fn(x)_i, y_i)`: each example's own loss gradient, in one backward pass.

  The cross-entropy is the plain one (no smoothing) against the true labels, whatever the model
  was trained with, as in Goodfellow et al. 2015 and Goibert & Dohmatob 2019.
  """
  return jax.grad(lambda inputs: jnp.sum(losses.smoothed_cross_entropy(logits_fn(inputs), labels))
                  )(x)


def fgsm(
    logits_fn: LogitsFn,
    x: jax.Array,
    labels: jax.Array,
    epsilon: float,
    *,
    clip_range: Optional[tuple[float, float]] = None,
) -> jax.Array:
  r"""Fast gradient sign method (Goodfellow, Shlens & Szegedy 2015, §4).

    x_adv = clip(x + epsilon * sign(grad_x CE(logits_fn(x), y)), clip_range).

  One step of L-infinity steepest ascent on the cross-entropy, so `|x_adv - x|_inf <= epsilon`.
  Where the gradient is exactly 0 (a saturated softmax in float32) `sign` is 0 and the input does
  not move: one way gradient masking makes a model look robust. Pure and jit-friendly
  (`jax.jit(functools.partial(fgsm, logits_fn, epsilon=0.1))`).

  Args:
    logits_fn: `x -> (n, K)` logits.
    x: (n, ...) inputs in the space `logits_fn` reads.
    labels: (n,) integer true labels.
    epsilon: the L-infinity budget, >= 0.
    clip_range: optional `(low, high)` valid input range, applied after the step.

  Returns:
    (n, ...) adversarial inputs, `x`'s dtype.
  """
  _check_attack_inputs(x, labels, epsilon, clip_range)
  step = epsilon * jnp.sign(input_gradient(logits_fn, x, labels))
  return _clipped(x + step.astype(x.dtype), clip_range)


def pgd(
    logits_fn: LogitsFn,
    x: jax.Array,
    labels: jax.Array,
    epsilon: float,
    *,
    step_size: float,
    num_steps: int,
    rng: Optional[jax.Array] = None,
    clip_range: Optional[tuple[float, float]] = None,
) -> jax.Array:
  r"""Projected gradient descent on the negative CE in an L-infinity ball (Madry et al. 2018, §2).

    x^0 = x (+ uniform noise in [-epsilon, epsilon] if `rng` is given, Madry's random start),
    x^(t+1) = clip(proj_ball(x^t + step_size * sign(grad_x CE(logits_fn(x^t), y))), clip_range),

  where `proj_ball` clips each coordinate to `[x - epsilon, x + epsilon]`. With one step,
  `step_size = epsilon` and no random start this is exactly `fgsm`. Iterating defeats some gradient
  masking that fools a single step (Goibert & Dohmatob 2019 report LS robustness to FGSM; check it
  with PGD before claiming it).

  Args:
    logits_fn: `x -> (n, K)` logits.
    x: (n, ...) inputs in the space `logits_fn` reads.
    labels: (n,) integer true labels.
    epsilon: the L-infinity budget, >= 0.
    step_size: `alpha`, the size of each sign step, > 0.
    num_steps: number of steps, a Python int >= 1.
    rng: optional PRNG key for the random start.
    clip_range: optional `(low, high)` valid input range, applied after every step.

  Returns:
    (n, ...) adversarial inputs within `epsilon` of `x` in L-infinity, `x`'s dtype.
  """
  _check_attack_inputs(x, labels, epsilon, clip_range)
  if isinstance(step_size, (int, float, np.number)) and not step_size > 0:
    raise ValueError(f"step_size must be > 0, got {step_size}.")
  if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
    raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}.")
  low, high = x - epsilon, x + epsilon
  start = x
  if rng is not None:
    noise = jax.random.uniform(rng, x.shape, minval=-epsilon, maxval=epsilon)
    start = _clipped(x + noise.astype(x.dtype), clip_range)

  def step(_, x_adv):
    x_adv = x_adv + (step_size * jnp.sign(input_gradient(logits_fn, x_adv, labels))).astype(x.dtype)
    return _clipped(jnp.clip(x_adv, low, high), clip_range)

  return lax.fori_loop(0, num_steps, step, start)


def accuracy_under_attack(
    logits_fn: LogitsFn,
    attack: Callable[[jax.Array, jax.Array], jax.Array],
    x: ArrayLike,
    labels: ArrayLike,
    *,
    batch_size: int,
) -> float:
  """Top-1 accuracy of `logits_fn` on `attack(x, labels)`, over a dataset in batches.

  `attack(x_batch, labels_batch) -> adversarial batch` is jitted with the prediction, e.g.
  `functools.partial(fgsm, logits_fn, epsilon=0.1)`, or `lambda x, y: x` for clean accuracy.
  A PGD random start built from a fixed key reuses that key for every batch.

  Args:
    logits_fn: `x -> (n, K)` logits.
    attack: the attack, `(x, labels) -> x_adv`.
    x: (N, ...) inputs in the space `logits_fn` reads.
    labels: (N,) integer true labels.
    batch_size: examples per batch (the last may be smaller), >= 1.

  Returns:
    The fraction of examples still classified correctly, a Python float.
  """
  x, labels = np.asarray(x), np.asarray(labels)
  if x.ndim < 1 or len(x) == 0 or labels.shape != x.shape[:1]:
    raise ValueError(
        f"Expected x of shape (N, ...) with N > 0 and labels of shape (N,), got {x.shape} and "
        f"{labels.shape}.")
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}.")

  @jax.jit
  def num_correct(x_batch, labels_batch):
    predictions = jnp.argmax(logits_fn(attack(x_batch, labels_batch)), axis=-1)
    return jnp.sum(predictions == labels_batch)

  correct = sum(int(num_correct(x[i:i + batch_size], labels[i:i + batch_size]))
                for i in range(0, len(x), batch_size))
  return correct / len(x)


def _check_attack_inputs(x: jax.Array, labels: jax.Array, epsilon: float,
                         clip_range: Optional[tuple[float, float]]) -> None:
  if x.ndim < 1 or jnp.shape(labels) != x.shape[:1]:
    raise ValueError(
        f"Expected x of shape (n, ...) and labels of shape (n,), got {x.shape} and "
        f"{jnp.shape(labels)}.")
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(f"x must be floating point, got dtype {x.dtype}.")
  if isinstance(epsilon, (int, float, np.number)) and not epsilon >= 0:
    raise ValueError(f"epsilon must be >= 0, got {epsilon}.")
  if clip_range is not None and (len(clip_range) != 2 or not clip_range[0] < clip_range[1]):
    raise ValueError(f"clip_range must be (low, high) with low < high, got {clip_range}.")


def _clipped(x: jax.Array, clip_range: Optional[tuple[float, float]]) -> jax.Array:
  return x if clip_range is None else jnp.clip(x, *clip_range)


def _templates(kernel: ArrayLike, bias: Optional[ArrayLike]) -> np.ndarray:
  """(K, d) kernel columns, or (K, d + 1) `[w_k; b_k]` with the bias; float64, checked."""
  kernel = np.asarray(kernel, np.float64)
  if kernel.ndim != 2:
    raise ValueError(f"kernel must have shape (d, K), got {kernel.shape}.")
  templates = kernel.T
  if bias is None:
    return templates
  bias = np.asarray(bias, np.float64)
  if bias.shape != (kernel.shape[1],):
    raise ValueError(f"bias must have shape ({kernel.shape[1]},) to match the kernel, got "
                     f"{bias.shape}.")
  return np.concatenate([templates, bias[:, None]], axis=1)
