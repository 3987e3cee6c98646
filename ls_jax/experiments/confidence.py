"""Experiment 3, confidence from the same init: CE against LS, seed by seed.

Sweep: the CE and LS 0.1 runs of configs/sweeps/calibration.py (the same seed gives the same init
and data order). One test example where CE is far more confident than LS (both right), max-softmax
histograms, and the mean confidence of right and of wrong predictions, paired by seed.
"""
import pathlib
from typing import Any

import numpy as np
from scipy import special

from ls_jax.experiments import runs as runs_lib
from ls_jax.experiments.runs import Metric
from ls_jax.trainer import methods

# Metrics computed here from predictions.npz (`confidence_split`).
CONFIDENCE_CORRECT = Metric("mean_confidence_correct", "confidence_split.correct", None)
CONFIDENCE_WRONG = Metric("mean_confidence_wrong", "confidence_split.wrong", None)


def softmax(logits: np.ndarray) -> np.ndarray:
  return special.softmax(np.asarray(logits, dtype=np.float64), axis=1)


def test_probabilities(run: runs_lib.Run) -> tuple[np.ndarray, np.ndarray]:
  """Softmax of the run's test logits (float64) and the test labels, from predictions.npz."""
  with np.load(pathlib.Path(run["workdir"]) / "predictions.npz") as predictions:
    return softmax(predictions["test_logits"]), predictions["test_labels"]


def pick_example(ce_probs: np.ndarray, ls_probs: np.ndarray, labels: np.ndarray,
                 min_ce_confidence: float = 0.98) -> int | None:
  """The test example where CE is most confident relative to LS, both right; None if none.

  Among the examples both models classify correctly with CE's max-softmax above
  `min_ce_confidence`, the one with the largest `max p_CE - max p_LS` (ties: the lowest index).
  """
  if not ce_probs.shape == ls_probs.shape == (len(labels), ce_probs.shape[-1]):
    raise ValueError(f"CE and LS probabilities must both be (n, K) for n = {len(labels)} labels, "
                     f"got {ce_probs.shape} and {ls_probs.shape}")
  ce_max, ls_max = ce_probs.max(axis=1), ls_probs.max(axis=1)
  eligible = ((ce_probs.argmax(axis=1) == labels) & (ls_probs.argmax(axis=1) == labels)
              & (ce_max > min_ce_confidence))
  if not eligible.any():
    return None
  gap = np.where(eligible, ce_max - ls_max, -np.inf)
  return int(np.argmax(gap))


def confidence_split(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
  """Mean max-softmax on the correct and on the wrong predictions (NaN where there are none)."""
  confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
  return {"correct": float(confidence[correct].mean()) if correct.any() else float("nan"),
          "wrong": float(confidence[~correct].mean()) if (~correct).any() else float("nan")}


def report(runs: list[runs_lib.Run], label_smoothing: float = 0.1) -> runs_lib.Report:
  """CE against LS from the same init: one example, max-softmax histograms, right vs wrong."""
  ce = runs_lib.one_group(runs_lib.where(runs), methods.BASELINE)
  ls = runs_lib.where(runs, LS=label_smoothing)
  ls_label = methods.label(ls[0]["config"]) if ls else f"LS {label_smoothing:g}"
  ls = runs_lib.one_group(ls, ls_label)
  probs = {}
  for run in ce + ls:
    probs[run["workdir"]] = test_probabilities(run)
    split = confidence_split(*probs[run["workdir"]])
    run["confidence_split"] = {k: v for k, v in split.items() if np.isfinite(v)}
  variants = [runs_lib.Variant(methods.BASELINE, ce), runs_lib.Variant(ls_label, ls)]
  metrics = (runs_lib.BY_NAME["accuracy"], runs_lib.BY_NAME["mean_confidence"],
             CONFIDENCE_CORRECT, CONFIDENCE_WRONG)
  rows = runs_lib.variant_rows(variants, metrics, [(ls_label, methods.BASELINE)])
  names = [m.name for m in metrics]
  ce_by_seed = {runs_lib.seed(r): r for r in ce}
  ls_by_seed = {runs_lib.seed(r): r for r in ls}
  common = set(ce_by_seed) & set(ls_by_seed)
  if not common:
    raise ValueError(f"CE and {ls_label} share no seed: nothing to compare from the same init")
  seed = min(common)
  (ce_probs, labels), (ls_probs, _) = (probs[ce_by_seed[seed]["workdir"]],
                                       probs[ls_by_seed[seed]["workdir"]])
  threshold = 0.98
  index = pick_example(ce_probs, ls_probs, labels, threshold)
  if index is None:  # E.g. a 20-step smoke run: no CE prediction is that confident.
    threshold = 0.0
    index = pick_example(ce_probs, ls_probs, labels, threshold)
  example = None if index is None else {
      "seed": seed, "index": index, "label": int(labels[index]), "ce": ce_probs[index],
      "ls": ls_probs[index], "ls_label": ls_label}
  pick = (f"The example: seed {seed}, the test example with the largest gap max p(CE) - max p(LS) "
          f"among those both classify correctly with CE's max-softmax > {threshold:g}")
  pick += ("." if example is None else
           f": test index {index} (class {example['label']}), CE "
           f"{runs_lib.format_number(float(ce_probs[index].max()))}, {ls_label} "
           f"{runs_lib.format_number(float(ls_probs[index].max()))}.")
  if example is None:
    pick += " No test example qualifies."
  sections = ["## Mean [95% CI] over seeds (test)\n\n" + runs_lib.wide_table(rows, names),
              f"## {ls_label} vs CE, paired by seed (same init and data order)\n\n"
              + runs_lib.difference_table(rows, names), pick,
              "The histograms pool the test predictions of every seed.",
              runs_lib.every_row_section(rows)]
  pooled = {name: np.concatenate([probs[r["workdir"]][0].max(axis=1) for r in group])
            for name, group in ((methods.BASELINE, ce), (ls_label, ls))}
  figures = {"confidence_example": example, "confidence_histogram": pooled}
  return runs_lib.Report(rows, sections, figures, ce + ls)


def plot(figures: dict[str, Any]) -> dict[str, Any]:
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  example, histogram = figures["confidence_example"], figures["confidence_histogram"]
  drawn = {}
  if example is not None:
    figure, axes = plt.subplots(1, 2, figsize=(8, 3), sharey=True, layout="constrained")
    classes = np.arange(len(example["ce"]))
    for ax, (name, p) in zip(axes, ((methods.BASELINE, example["ce"]),
                                    (example["ls_label"], example["ls"]))):
      colors = ["C2" if k == example["label"] else "C7" for k in classes]
      ax.bar(classes, p, color=colors)
      ax.set_title(f"{name}: p(class {example['label']}) = {p[example['label']]:.3f}")
      ax.set_xlabel("class (green: the true one)")
      ax.set_xticks(classes)
      ax.set_ylim(0, 1.05)
    axes[0].set_ylabel("softmax probability")
    figure.suptitle(f"seed {example['seed']}, test example {example['index']}", fontsize=10)
    drawn["confidence_example"] = figure
  figure, ax = plt.subplots(figsize=(6, 3.4), layout="constrained")
  bins = np.linspace(0, 1, 41)
  for color, (name, confidence) in zip(("C0", "C1"), histogram.items()):
    ax.hist(confidence, bins=bins, histtype="step", lw=1.5, color=color,
            weights=np.full(len(confidence), 1 / len(confidence)),
            label=f"{name} (mean {confidence.mean():.3f})")
  ax.set_yscale("log")
  ax.set_xlabel("max softmax probability (test, every seed pooled)")
  ax.set_ylabel("fraction of predictions")
  ax.legend(fontsize=8, loc="upper left")
  drawn["confidence_histogram"] = figure
  return drawn
