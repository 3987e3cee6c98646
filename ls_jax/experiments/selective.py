"""Experiment 5, selective classification: does LS degrade the ranking of right versus wrong?

Sweep: configs/sweeps/selective.py; its points are the report's groups. Test AURC and the
misclassification AUROC of max-softmax and of MaxLogit-pNorm (p fitted on validation, Xia et al.
2025), each paired by seed with CE, and each pNorm with the same runs' max-softmax.
"""
import pathlib
from typing import Any

import numpy as np

from ls_jax import calibration
from ls_jax.experiments import runs as runs_lib
from ls_jax.experiments.runs import Metric
from ls_jax.trainer import methods

SWEEP = "configs/sweeps/selective.py"
RISK_COVERAGE_CURVES = ("CE", "LS 0.1", "LS 0.3")  # Each with and without logit normalization.
METRICS = (Metric("aurc", "aurc", "lower"), Metric("auroc", "auroc", "higher"))
NORM = "+ logit norm"


def report(runs: list[runs_lib.Run], sweep: str = SWEEP) -> runs_lib.Report:
  """Each point of `sweep`, ranked by max-softmax and by MaxLogit-pNorm."""
  variants, comparisons = [], []
  for point in runs_lib.sweep_points(sweep):
    members = runs_lib.matching(runs, point)
    if not members:
      continue
    label = methods.label(members[0]["config"])
    runs_lib.one_group(members, label)
    variants += [runs_lib.Variant(label, members, "selective.{}"),
                 runs_lib.Variant(f"{label} {NORM}", members, "selective.{}_pnorm")]
    if label != methods.BASELINE:
      comparisons += [(label, methods.BASELINE), (f"{label} {NORM}", methods.BASELINE),
                      (f"{label} {NORM}", label)]
  if methods.BASELINE not in {v.label for v in variants}:
    raise ValueError("no finished CE runs (every method off) to compare with")
  comparisons.append((f"{methods.BASELINE} {NORM}", methods.BASELINE))
  rows = runs_lib.variant_rows(variants, METRICS, comparisons)
  names = [m.name for m in METRICS]
  p = {v.label: sorted(r["selective"]["pnorm_p"] for r in v.runs) for v in variants[::2]}
  sections = [
      "## Test AURC (lower is better) and misclassification AUROC of the confidence score, mean "
      "[95% CI] over seeds\n\n" + runs_lib.wide_table(rows, names),
      "## Paired differences\n\n" + runs_lib.difference_table(rows, names),
      "MaxLogit-pNorm: `max_k (z_k - mean z) / ||z - mean z||_p`, p in 1..9 fitted per run on "
      "validation by AURC (`calibration.fit_logit_norm_p`), applied on test. Fitted p per run: "
      + "; ".join(f"{k}: {', '.join(f'{x:g}' for x in v)}" for k, v in p.items()) + ".",
      "Published (Xia et al., ICLR 2025, qualitative): LS consistently degrades selective "
      "classification (higher AURC); post-hoc logit normalization recovers it.",
      runs_lib.every_row_section(rows)]
  curves = {v.label: mean_risk_coverage(v.runs, v.key.endswith("_pnorm"))
            for v in variants if v.label.split(" +")[0] in RISK_COVERAGE_CURVES}
  return runs_lib.Report(rows, sections, {"risk_coverage": curves},
                         [r for v in variants[::2] for r in v.runs])


def mean_risk_coverage(runs: list[runs_lib.Run], pnorm: bool) -> dict[str, np.ndarray]:
  """The test risk-coverage curve averaged over runs (same test set), by max-softmax or pNorm."""
  from ls_jax.experiments.confidence import softmax  # pylint: disable=g-import-not-at-top
  risks = []
  for run in runs:
    with np.load(pathlib.Path(run["workdir"]) / "predictions.npz") as predictions:
      logits, labels = predictions["test_logits"], predictions["test_labels"]
    score = (calibration.max_logit_pnorm(logits, run["selective"]["pnorm_p"]) if pnorm
             else softmax(logits).max(axis=1))
    curve = calibration.risk_coverage_curve(score, logits.argmax(axis=1) == labels)
    risks.append(curve.risk)
  if len({len(r) for r in risks}) > 1:
    raise ValueError("risk-coverage curves of test sets of different sizes cannot be averaged")
  return {"coverage": curve.coverage, "risk": np.mean(risks, axis=0)}


def plot(figures: dict[str, Any]) -> dict[str, Any]:
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  figure, ax = plt.subplots(figsize=(6, 4), layout="constrained")
  for i, (name, curve) in enumerate(figures["risk_coverage"].items()):
    ax.plot(curve["coverage"], curve["risk"], color=f"C{i // 2}",
            ls="--" if "logit norm" in name else "-", lw=1.3, label=name)
  ax.set_xlabel("coverage (fraction accepted, most confident first)")
  ax.set_ylabel("selective risk (error rate), mean over seeds")
  ax.set_xlim(0, 1)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8, loc="upper left")
  return {"risk_coverage": figure}
