"""Label-noise injection for robustness studies, applied once to a training set at load time.

Host-side NumPy, deterministic given a seed: the same seed, labels and rate always corrupt the same
examples the same way, so runs that differ only in the loss see the same noisy training set.

Two noise models:
  * Symmetric (uniform) noise: each label is flipped with probability r to a class drawn uniformly
    from the K-1 *other* classes, so the realized flip rate is r. Another convention is common too
    (e.g. the data loader of DivideMix, Li et al. 2020): with probability r the label is redrawn
    uniformly from all K classes, which may return the same class, so only r·(K-1)/K of the labels
    actually change. To reproduce a number from such a paper, pass r_here = r_theirs·(K-1)/K.
  * Asymmetric (pairwise, class-dependent) noise: each label of class c is flipped with probability
    r to a fixed other class m(c) (Patrini et al. 2017, "Making Deep Neural Networks Robust to Label
    Noise: a Loss Correction Approach"). Classes that m does not map are never flipped.
"""
from collections.abc import Mapping
import dataclasses

import numpy as np

# Patrini et al. (2017), §6: TRUCK -> AUTOMOBILE, BIRD -> AIRPLANE, DEER -> HORSE, CAT <-> DOG, with
# the standard CIFAR-10 class order (0 airplane, 1 automobile, 2 bird, 3 cat, 4 deer, 5 dog, 6 frog,
# 7 horse, 8 ship, 9 truck).
CIFAR10_ASYMMETRIC_MAPPING: Mapping[int, int] = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}


@dataclasses.dataclass(frozen=True)
class NoisyLabels:
  """Labels after noise injection.

  Attributes:
    labels: the noisy labels, same shape and dtype as the clean ones.
    flipped: bool mask, True where the noisy label differs from the clean one.
  """
  labels: np.ndarray
  flipped: np.ndarray

  @property
  def realized_noise_rate(self) -> float:
    """Fraction of all labels that were changed."""
    return float(self.flipped.mean())


def _validate(labels: np.ndarray, num_classes: int, noise_rate: float) -> None:
  if num_classes < 2:
    raise ValueError(f"Label noise needs num_classes >= 2, got {num_classes}.")
  if not 0.0 <= noise_rate <= 1.0:  # Written this way so that NaN is rejected too.
    raise ValueError(f"noise_rate must be in [0, 1], got {noise_rate}.")
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"labels must be integers, got dtype {labels.dtype}.")
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise ValueError(
        f"labels must lie in [0, {num_classes}), got range [{labels.min()}, {labels.max()}].")


def symmetric_label_noise(
    labels: np.ndarray, num_classes: int, noise_rate: float, *, seed: int) -> NoisyLabels:
  """Flips each label with probability r to a uniformly random *other* class (the K-1 convention).

  `P(ỹ = j | y = c) = 1-r if j = c, else r/(K-1)`. See the module docstring for the other
  convention, in which only r·(K-1)/K of the labels change.

  Args:
    labels: integer labels in [0, K), any shape.
    num_classes: K >= 2.
    noise_rate: r in [0, 1]; 0 returns the labels unchanged.
    seed: seed of the NumPy Generator that draws the noise.

  Returns:
    The noisy labels and the mask of flipped ones.
  """
  labels = np.asarray(labels)
  _validate(labels, num_classes, noise_rate)
  rng = np.random.default_rng(seed)
  flip = rng.random(labels.shape) < noise_rate
  # A shift in 1..K-1 (mod K) reaches each of the other K-1 classes exactly once, so never y itself.
  shift = rng.integers(1, num_classes, size=labels.shape)
  noisy = np.where(flip, (labels + shift) % num_classes, labels).astype(labels.dtype)
  return NoisyLabels(labels=noisy, flipped=flip)


def asymmetric_label_noise(
    labels: np.ndarray,
    num_classes: int,
    noise_rate: float,
    *,
    seed: int,
    mapping: Mapping[int, int] | None = None,
) -> NoisyLabels:
  """Flips each label of class c with probability r to the fixed class `mapping[c]`.

  `P(ỹ = m(c) | y = c) = r` and `P(ỹ = c | y = c) = 1-r` for mapped classes; unmapped classes are
  kept. The realized rate is therefore r times the fraction of labels in mapped classes (about r/2
  for `CIFAR10_ASYMMETRIC_MAPPING` on balanced CIFAR-10).

  Args:
    labels: integer labels in [0, K), any shape.
    num_classes: K >= 2.
    noise_rate: r in [0, 1]; 0 returns the labels unchanged.
    seed: seed of the NumPy Generator that draws the noise.
    mapping: class -> different class; default `c -> (c+1) mod K` for every class.

  Returns:
    The noisy labels and the mask of flipped ones.
  """
  labels = np.asarray(labels)
  _validate(labels, num_classes, noise_rate)
  if mapping is None:
    mapping = {c: (c + 1) % num_classes for c in range(num_classes)}
  for source, target in mapping.items():
    if not (0 <= source < num_classes and 0 <= target < num_classes) or source == target:
      raise ValueError(
          f"mapping must send a class in [0, {num_classes}) to a different one, got "
          f"{source} -> {target}.")
  # Lookup table: unmapped classes map to themselves, so flipping them would change nothing.
  target_of = np.arange(num_classes)
  target_of[list(mapping.keys())] = list(mapping.values())
  rng = np.random.default_rng(seed)
  flip = (rng.random(labels.shape) < noise_rate) & (target_of[labels] != labels)
  noisy = np.where(flip, target_of[labels], labels).astype(labels.dtype)
  return NoisyLabels(labels=noisy, flipped=flip)
