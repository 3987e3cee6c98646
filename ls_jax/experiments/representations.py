"""Experiments on representations: what label smoothing does to the penultimate layer, to the
information in the logits and to inputs away from the data. Three reports read the checkpoints of
finished runs (the CE and LS teachers of configs/sweeps/distillation_teachers.py, and the digits
CNNs of configs/sweeps/representations_digits.py):

* `projection_report`: Müller et al. 2019, Fig. 1: penultimate activations of three classes on the
  plane of their templates, and cluster tightness in the plane and in the full space;
* `information_report`: Müller §4.1's Gaussian estimate of I(X; z_a - z_b) at every checkpoint;
* `extrapolation_report`: confidence on scaled inputs and matched noise (Warde-Farley & Goodfellow
  2016), accuracy under FGSM and PGD (Goibert & Dohmatob 2019's gradient-masking check).

Every group is paired by seed with CE of the same experiment (`ls_jax.experiments.runs`).

The analyses (`template_plane`, `project_onto_template_plane`, `cluster_tightness`,
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
import functools
import itertools
import json
import math
import pathlib
from typing import Any, NamedTuple, Optional

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import ml_collections
import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from ls_jax import losses
from ls_jax.experiments import runs as runs_lib
from ls_jax.experiments.runs import Metric
from ls_jax.trainer import finished_runs, input_pipeline, methods

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


# ------------------------------------------------------------------------------------------------
# Reading the checkpoints of finished runs.

# Forward passes on the host run in batches of this many inputs (bounded memory on any model).
_BATCH = 4096


def checkpoint_steps(workdir: pathlib.Path) -> list[int]:
  """The steps of the run's complete checkpoints, ascending."""
  return sorted(int(p.name) for p in (pathlib.Path(workdir) / "checkpoints").glob("*")
                if p.name.isdigit())


def split_arrays(config: dict[str, Any], split: str) -> tuple[np.ndarray, np.ndarray]:
  """(inputs as the model reads them, labels) of the run's `train` or `test` split.

  `train` is the training slice of the config (`data.train_split`, without the validation slice);
  labels are the dataset's own, without the label noise a config may inject.
  """
  if split not in ("train", "test"):
    raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
  data = {**config["data"], "label_noise": {"rate": 0.0, "kind": "symmetric"}}
  part = getattr(_dataset(json.dumps(data, sort_keys=True), config["num_classes"]), split)
  inputs = np.asarray(input_pipeline.normalize(part.images, data["name"], jnp.float32))
  return inputs, part.labels


@functools.lru_cache(maxsize=4)
def _dataset(data_json: str, num_classes: int) -> input_pipeline.Dataset:
  data = ml_collections.ConfigDict(json.loads(data_json))
  return input_pipeline.load_dataset(data, num_classes=num_classes, seed=0)


class SavedModel(NamedTuple):
  """A checkpointed model: `logits(x)` runs it jitted, in batches, and returns NumPy."""
  model: Any
  variables: dict[str, Any]
  apply: Callable[..., jax.Array]

  def logits_fn(self, x: jax.Array) -> jax.Array:
    """JAX logits, for use inside other JAX functions (attacks, probes)."""
    return self.apply(self.variables, x)

  def logits(self, x: np.ndarray) -> np.ndarray:
    return np.concatenate([np.asarray(self.apply(self.variables, x[i:i + _BATCH]))
                           for i in range(0, len(x), _BATCH)])

  def features(self, x: np.ndarray) -> np.ndarray:
    return np.concatenate([
        np.asarray(penultimate_features(self.model, self.variables, x[i:i + _BATCH])[0])
        for i in range(0, len(x), _BATCH)], dtype=np.float64)


def saved_models(workdir: pathlib.Path, steps: Sequence[int]):
  """Yields `(step, SavedModel)` for each step, sharing one jitted apply (one compilation)."""
  apply = None
  for step in steps:
    model, variables = finished_runs.saved_model(workdir, step)
    if apply is None:
      apply = jax.jit(functools.partial(model.apply, train=False))
    yield step, SavedModel(model, variables, apply)


def final_model(workdir: pathlib.Path) -> SavedModel:
  steps = checkpoint_steps(workdir)
  if not steps:
    raise ValueError(f"run {workdir} has no checkpoint")
  return next(saved_models(workdir, steps[-1:]))[1]


# ------------------------------------------------------------------------------------------------
# a. Projections onto the plane of three templates (Müller et al. 2019, Fig. 1).


class Projection(NamedTuple):
  """One model's examples of three classes in the plane of their templates.

  Attributes:
    points: (n, 2) coordinates (`project_onto_template_plane`, bias folded in).
    labels: (n,) their classes, among the three.
    templates: (3, 2) the templates' own coordinates.
    plane_tightness: `cluster_tightness` of `points` (the figure's clusters).
    feature_tightness: the same in the full penultimate space, over every class.
  """
  points: np.ndarray
  labels: np.ndarray
  templates: np.ndarray
  plane_tightness: float
  feature_tightness: float


def project(model: SavedModel, x: np.ndarray, labels: np.ndarray,
            class_ids: Sequence[int]) -> Projection:
  """The Müller Fig. 1 projection of `x`'s examples of `class_ids`, with both tightness numbers."""
  features = model.features(x)
  kernel, bias = head_kernel_and_bias(model.variables)
  keep = np.isin(labels, class_ids)
  points = project_onto_template_plane(features[keep], kernel, class_ids, bias)
  templates = template_plane(kernel, class_ids, bias).template_coordinates
  return Projection(points, labels[keep], templates,
                    cluster_tightness(points, labels[keep], class_ids),
                    cluster_tightness(features, labels))


# ------------------------------------------------------------------------------------------------
# c. Information about the input in the logits, over training (Müller et al. 2019, §4.1).


def balanced_examples(labels: np.ndarray, class_pair: Sequence[int], num_examples: int
                      ) -> np.ndarray:
  """Indices of the first `num_examples / 2` examples of each of the two classes, in split order.

  Raises:
    ValueError: on an odd or too small `num_examples`, or a class with too few examples.
  """
  if num_examples < 4 or num_examples % 2:
    raise ValueError(f"num_examples must be even and >= 4, got {num_examples}.")
  if len(class_pair) != 2 or class_pair[0] == class_pair[1]:
    raise ValueError(f"class_pair must be two different classes, got {tuple(class_pair)}.")
  indices = []
  for k in class_pair:
    members = np.flatnonzero(labels == k)
    if len(members) < num_examples // 2:
      raise ValueError(f"class {k} has {len(members)} examples, fewer than the "
                       f"{num_examples // 2} asked for.")
    indices.append(members[:num_examples // 2])
  return np.concatenate(indices)


def perturb(rng: np.random.Generator, x: np.ndarray, max_shift: int, noise_std: float
            ) -> np.ndarray:
  """A random circular shift and Gaussian noise: the augmentation of the MI estimate.

  Example i becomes `roll(x_i, s_i, axis=0) + noise_std * e_i` with `s_i` uniform on the integers
  in `[-max_shift, max_shift]` and `e_i ~ N(0, I)`, all independent. The shift moves the pattern
  along the signal (axis 1 of `x`), as MNIST-1D's generator does when it places a digit.

  Args:
    rng: NumPy generator.
    x: (n, length, ...) float inputs.
    max_shift: the largest shift in samples, >= 0.
    noise_std: the noise's standard deviation, >= 0.

  Returns:
    float32 (n, length, ...) perturbed inputs.
  """
  if x.ndim < 2:
    raise ValueError(f"x must have shape (n, length, ...), got {x.shape}.")
  if max_shift < 0 or noise_std < 0:
    raise ValueError(f"max_shift and noise_std must be >= 0, got {max_shift} and {noise_std}.")
  shifts = rng.integers(-max_shift, max_shift + 1, size=len(x))
  positions = (np.arange(x.shape[1])[None, :] - shifts[:, None]) % x.shape[1]
  positions = positions.reshape(positions.shape + (1,) * (x.ndim - 2))
  shifted = np.take_along_axis(x, np.broadcast_to(positions, x.shape), axis=1)
  return (shifted + noise_std * rng.standard_normal(x.shape)).astype(np.float32)


def logit_difference_draws(model: SavedModel, x: np.ndarray, class_pair: Sequence[int], *,
                           num_draws: int, max_shift: int, noise_std: float, seed: int
                           ) -> np.ndarray:
  """(N, L) samples `y_(x,l) = z_a - z_b` of `L` perturbed copies (`perturb`) of each example.

  A fixed `seed` draws the same perturbations for every model: checkpoints and teachers are
  compared on common random numbers.
  """
  rng = np.random.default_rng(seed)
  draws = np.stack([perturb(rng, x, max_shift, noise_std) for _ in range(num_draws)], axis=1)
  logits = model.logits(draws.reshape((-1,) + x.shape[1:])).reshape(len(x), num_draws, -1)
  return logits[..., class_pair[0]].astype(np.float64) - logits[..., class_pair[1]]


def information_over_training(workdir: pathlib.Path, x: np.ndarray, class_pair: Sequence[int], *,
                              num_draws: int, max_shift: int, noise_std: float, seed: int = 0
                              ) -> dict[int, float]:
  """{step: `gaussian_mutual_information` of the logit difference} per checkpoint."""
  return {step: gaussian_mutual_information(logit_difference_draws(
      model, x, class_pair, num_draws=num_draws, max_shift=max_shift, noise_std=noise_std,
      seed=seed)) for step, model in saved_models(workdir, checkpoint_steps(workdir))}


# ------------------------------------------------------------------------------------------------
# d. Extrapolation away from the data and adversarial inputs.


def extrapolation(model: SavedModel, x: np.ndarray, scales: Sequence[float], seed: int = 0
                  ) -> dict[str, float]:
  """Mean max-softmax confidence on `s * x` per scale (`scale=s`) and on matched noise (`noise`)."""
  x = jnp.asarray(x)
  confidences = scaled_input_confidence(model.logits_fn, x, scales)
  noise = matched_gaussian_noise(jax.random.key(seed), x)
  result = {f"scale={s:g}": float(c) for s, c in zip(scales, confidences)}
  result["noise"] = float(mean_max_confidence(model.logits_fn(noise)))
  return result


def attack_accuracies(model: SavedModel, x: np.ndarray, labels: np.ndarray,
                      epsilons: Sequence[float], *, pgd_steps: int, seed: int = 0,
                      batch_size: int = 500) -> dict[str, float]:
  """Accuracy on clean inputs, and under FGSM and PGD at each L-infinity budget.

  PGD: `pgd_steps` sign steps of size `2.5 * epsilon / pgd_steps` from a uniform random start in
  the ball (Madry et al. 2018's step rule), on the plain cross-entropy of the true label.
  Keys: `clean`, `fgsm eps=e`, `pgd eps=e`.
  """
  if any(not e > 0 for e in epsilons):
    raise ValueError(f"epsilons must be > 0 (clean accuracy is reported anyway), got {epsilons}.")
  logits_fn = model.logits_fn
  result = {"clean": accuracy_under_attack(logits_fn, lambda xb, yb: xb, x, labels,
                                                    batch_size=batch_size)}
  key = jax.random.key(seed)
  for e in epsilons:
    result[f"fgsm eps={e:g}"] = accuracy_under_attack(
        logits_fn, functools.partial(fgsm, logits_fn, epsilon=e), x, labels,
        batch_size=batch_size)
    result[f"pgd eps={e:g}"] = accuracy_under_attack(
        logits_fn, functools.partial(pgd, logits_fn, epsilon=e,
                                     step_size=2.5 * e / pgd_steps, num_steps=pgd_steps, rng=key),
        x, labels, batch_size=batch_size)
  return result




# ------------------------------------------------------------------------------------------------
# The reports.


def _families(runs: list[runs_lib.Run]) -> dict[str, list[runs_lib.Run]]:
  """Runs by `data model` (each family has its own CE baseline and figure row)."""
  families = {}
  for run in runs:
    name = f"{runs_lib.value(run, 'data.name')} {runs_lib.value(run, 'model.name')}"
    families.setdefault(name, []).append(run)
  return families


def _table_section(heading: str, rows: list[dict[str, Any]], keys=("group", "metric")) -> str:
  return f"## {heading}\n\n" + runs_lib.table(rows, keys) + "\n\n" + (
      runs_lib.missing_baselines(rows))


def projection_report(runs: list[runs_lib.Run], classes: Sequence[int] = (0, 1, 2),
                      figure_ls: float = 0.1) -> runs_lib.Report:
  """Müller Fig. 1 for each model family among the runs; cluster tightness by group, vs CE."""
  classes = tuple(classes)
  spaces = [f"{space}, {split}" for space in ("plane", "features") for split in ("train", "test")]
  rows, panels = [], []
  for family, members in _families(runs).items():
    ce = runs_lib.where(members)
    shown = runs_lib.where(members, LS=figure_ls) or [
        r for r in members if r not in ce][:1]  # Else any other group, for the figure.
    shown_groups = [ce, runs_lib.group(shown)[runs_lib.experiment_key(shown[0]["config"])]
                    if shown else []]
    seeds = [set(map(runs_lib.seed, g)) for g in shown_groups if g]
    figure_seed = min(set.intersection(*seeds)) if seeds else None
    for run in members:
      model = final_model(run["workdir"])
      run["projection"] = {}
      for split in ("train", "test"):
        x, labels = split_arrays(run["config"], split)
        found = project(model, x, labels, classes)
        run["projection"][f"plane, {split}"] = found.plane_tightness
        run["projection"][f"features, {split}"] = found.feature_tightness
        if runs_lib.seed(run) == figure_seed and any(run in g for g in shown_groups):
          panels.append({"family": family, "label": methods.label(run["config"]), "split": split,
                         "seed": figure_seed, "points": found.points, "labels": found.labels,
                         "templates": found.templates})
    for space in spaces:
      rows += runs_lib.summarize(members, [Metric(f"tightness, {space}", ("projection", space),
                                                  None)])
  sections = [
      f"Penultimate activations of classes {classes} projected onto the plane through their "
      "three templates (`ls_jax.experiments.representations.project_onto_template_plane`, "
      "final-layer bias folded in as Müller et al. 2019 do; Fig. 1 there). Tightness "
      "(`representations.cluster_tightness`): mean distance to the own class centroid over mean "
      "distance between centroids, in the plane (the figure's three classes) and in the full "
      "penultimate space (every class). Lower is tighter. Δ is paired by seed with CE of the same "
      "model; the verdict names a direction only where the 95% CI excludes 0. The figure shows "
      "one seed.",
      "Published: Müller et al. 2019, Fig. 1 (CIFAR-10, CIFAR-100, ImageNet): with LS the "
      "clusters are tighter and equidistant from the other templates, on train and test.",
      _table_section("Cluster tightness", rows)]
  return runs_lib.Report(rows, sections, {"projection": {"panels": panels, "classes": classes}},
                         runs)


def information_report(runs: list[runs_lib.Run], class_pair: Sequence[int] = (0, 1),
                       examples: int = 600, draws: int = 50, max_shift: int = 2,
                       noise_std: float = 0.1) -> runs_lib.Report:
  """The MI estimate at every checkpoint of every run, each group paired with CE per step."""
  class_pair = tuple(class_pair)
  x, labels = split_arrays(runs[0]["config"], "train")
  x = x[balanced_examples(labels, class_pair, examples)]
  for run in runs:
    run["information"] = {str(step): mi for step, mi in information_over_training(
        pathlib.Path(run["workdir"]), x, class_pair, num_draws=draws, max_shift=max_shift,
        noise_std=noise_std).items()}
  steps = sorted(set.intersection(*(set(map(int, r["information"])) for r in runs)))
  rows = []
  for step in steps:
    rows += runs_lib.summarize(runs, [Metric(f"MI at step {step}", ("information", str(step)),
                                             None)], step=step)
  a, b = class_pair
  sections = [
      "Müller et al. 2019 §4.1's estimator (`representations.gaussian_mutual_information`): X is "
      f"one of N = {examples} training examples ({examples // 2} of each of classes {a} and {b}, "
      f"the first in the training split), Y the model's logit difference z_{a} − z_{b} on L = "
      f"{draws} perturbed copies of each, p(y|x) Gaussian with a per-example mean and a pooled "
      "variance. The perturbation (our configs have no augmentation; Müller used the training "
      f"augmentation): a circular shift by a uniform integer in [−{max_shift}, {max_shift}] "
      f"samples plus Gaussian noise of std {noise_std:g} (the data std is about 1), the same "
      "draws for every checkpoint and model. The estimate lies in [0, log N]; log 2 is what the "
      "class alone carries. Δ is paired by seed with CE at the same step.",
      "Published: Müller et al. 2019, Fig. 7 (CIFAR-10 ResNet-56): the estimate falls during "
      "training with LS and stays higher without.",
      _table_section("MI estimate (nats) by step", rows, ("step", "group"))]
  curves = {g: _series([next(r for r in rows if r["group"] == g and r["step"] == s)
                         for s in steps]) for g in dict.fromkeys(r["group"] for r in rows)}
  return runs_lib.Report(rows, sections, {"information": {
      "steps": np.array(steps), "curves": curves, "examples": examples, "class_pair": class_pair}},
                         runs)


def extrapolation_report(runs: list[runs_lib.Run],
                         scales: Sequence[float] = (1.0, 2.0, 4.0, 8.0, 16.0),
                         epsilons: Sequence[float] = (0.025, 0.05, 0.1, 0.2), pgd_steps: int = 10,
                         attack_examples: int = 1000) -> runs_lib.Report:
  """Confidence away from the data and accuracy under FGSM and PGD, each group vs CE."""
  x, labels = split_arrays(runs[0]["config"], "test")
  x, labels = x[:attack_examples], labels[:attack_examples]
  for run in runs:
    model = final_model(run["workdir"])
    run["probes"] = {**extrapolation(model, x, scales),
                     **attack_accuracies(model, x, labels, epsilons, pgd_steps=pgd_steps)}
  probes = list(runs[0]["probes"])
  confidence_probes = [p for p in probes if p.startswith(("scale", "noise"))]
  confidence, attacks = [], []
  for p in probes:
    better = None if p in confidence_probes else "higher"
    found = runs_lib.summarize(runs, [Metric(p, ("probes", p), better)])
    (confidence if p in confidence_probes else attacks).extend(found)
  masking = []
  for r in attacks:
    if r["metric"].startswith("fgsm") and r["verdict"] == "improves":
      pgd_row = next(p for p in attacks if p["group"] == r["group"]
                     and p["metric"] == r["metric"].replace("fgsm", "pgd"))
      masking.append(f"- {r['group']}, {r['metric']}: more accurate than CE under FGSM; under "
                     f"PGD at the same epsilon: {pgd_row['verdict']}.")
  sections = [
      f"The first {len(x)} test signals. Confidence: mean max-softmax on s·x (normalized inputs, "
      "`representations.scaled_input_confidence`) and on pure noise with the data's "
      "per-coordinate mean and std (`representations.matched_gaussian_noise`). Attacks on the "
      "plain cross-entropy of the true label: FGSM (`representations.fgsm`) and PGD "
      f"(`representations.pgd`, {pgd_steps} steps of 2.5·eps/{pgd_steps}, uniform random start), "
      "eps in the normalized units the model reads (the data's std is about 1). Δ is paired by "
      "seed with CE; the verdict names a direction only where the 95% CI excludes 0.",
      "Published: Warde-Farley & Goodfellow 2016 (LS models extrapolate less extremely); Goibert "
      "& Dohmatob 2019 (LS improves FGSM robustness; gradient masking can fake it, so check PGD).",
      "## Does an FGSM advantage survive PGD?\n\n" + "\n".join(
          masking or ["- No group shows an FGSM advantage over CE at any epsilon (CI includes 0 "
                      "or CE is better), so there is nothing for PGD to confirm."]),
      _table_section("Confidence away from the data", confidence),
      _table_section("Accuracy under attack", attacks)]
  groups = list(dict.fromkeys(r["group"] for r in confidence))
  lines = {g: {r["metric"]: r for r in confidence + attacks if r["group"] == g} for g in groups}
  return runs_lib.Report(confidence + attacks, sections, {"extrapolation": {
      "lines": lines, "scales": list(scales), "epsilons": list(epsilons),
      "pgd_steps": pgd_steps}}, runs)


def _series(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
  return {k: np.array([runs_lib.as_float(r[k]) for r in rows])
          for k in ("mean", "ci_low", "ci_high")}


def plot_projection(figures: dict[str, Any]) -> dict[str, Any]:
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  panels, classes = figures["projection"]["panels"], figures["projection"]["classes"]
  columns = 4
  rows = max(1, math.ceil(len(panels) / columns))
  figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.2 * rows), squeeze=False)
  for i, panel in enumerate(panels):
    ax = axes[i // columns][i % columns]
    for k in classes:
      ax.scatter(*panel["points"][panel["labels"] == k].T, s=3, alpha=0.5, label=f"class {k}")
    ax.scatter(*panel["templates"].T, marker="x", c="k", s=60, label="templates")
    ax.set_title(f"{panel['family']}, {panel['label']}, {panel['split']} (seed {panel['seed']})",
                 fontsize=8)
    ax.tick_params(labelsize=6)
  if panels:
    axes[0][0].legend(fontsize=6, markerscale=2)
  figure.tight_layout()
  return {"projection": figure}


def plot_information(figures: dict[str, Any]) -> dict[str, Any]:
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from ls_jax.experiments.plots import band  # pylint: disable=g-import-not-at-top
  data = figures["information"]
  figure, ax = plt.subplots(figsize=(5, 3.5), layout="constrained")
  for group_name, curve in data["curves"].items():
    band(ax, data["steps"], curve, group_name)
  ax.axhline(math.log(data["examples"]), color="grey", ls=":", lw=0.8, label="log N (ceiling)")
  ax.axhline(math.log(2), color="grey", ls="--", lw=0.8, label="log 2 (class only)")
  ax.set_xlabel("training step")
  a, b = data["class_pair"]
  ax.set_ylabel(f"I(X; z_{a} − z_{b}) estimate, nats")
  ax.legend(fontsize=7)
  return {"information": figure}


def plot_extrapolation(figures: dict[str, Any]) -> dict[str, Any]:
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from ls_jax.experiments.plots import band  # pylint: disable=g-import-not-at-top
  data = figures["extrapolation"]
  scales, epsilons = data["scales"], data["epsilons"]
  figure, axes = plt.subplots(1, 3, figsize=(15, 3.8), layout="constrained")
  for group_name, mine in data["lines"].items():
    band(axes[0], scales, _series([mine[f"scale={s:g}"] for s in scales]), group_name)
    axes[0].errorbar([2 * max(scales)], [mine["noise"]["mean"]], fmt="s",
                     color=axes[0].lines[-1].get_color())
    for ax, attack in zip(axes[1:], ("fgsm", "pgd")):
      band(ax, [0.0, *epsilons], _series(
          [mine["clean"]] + [mine[f"{attack} eps={e:g}"] for e in epsilons]), group_name)
  axes[0].set_xscale("log", base=2)
  axes[0].set_xlabel(f"input scale s (square at {2 * max(scales):g}: matched noise)")
  axes[0].set_ylabel("mean max-softmax confidence")
  for ax, attack in zip(axes[1:], ("FGSM", f"PGD ({data['pgd_steps']} steps, random start)")):
    ax.set_xlabel("L-inf epsilon (normalized input units)")
    ax.set_ylabel(f"test accuracy under {attack}")
  axes[0].legend(fontsize=7)
  return {"extrapolation": figure}
