"""Language model: next-token CE against label smoothing, seed by seed.

Sweep: configs/sweeps/lm.py (configs/lm_pydoc.py at a = 0 and 0.1, 10 seeds). Per-token test
accuracy, perplexity, NLL, ECE, mean confidence and entropy of the next-token distribution (from
each run's results.json), each LS strength paired with CE by seed, and the reliability diagrams
pooled over seeds.
"""
from typing import Any

import numpy as np

from ls_jax.experiments import calibration
from ls_jax.experiments import runs as runs_lib
from ls_jax.trainer import methods

METRICS = tuple(runs_lib.BY_NAME[m] for m in ("accuracy", "perplexity", "nll", "ece",
                                              "mean_confidence", "entropy"))


def report(runs: list[runs_lib.Run]) -> runs_lib.Report:
  """CE and every plain-LS group of language-model runs; each LS group against CE by seed."""
  runs = [r for r in runs if "perplexity" in r]
  if not runs:
    raise ValueError("no language-model run (results.json with a perplexity) among the runs")
  ce = runs_lib.one_group(runs_lib.where(runs), methods.BASELINE)
  by_a: dict[float, list[runs_lib.Run]] = {}
  for run in runs:
    if methods.active(run["config"]) == (methods.LABEL_SMOOTHING,):
      by_a.setdefault(float(runs_lib.value(run, methods.LABEL_SMOOTHING.field)), []).append(run)
  if not by_a:
    raise ValueError("no label-smoothing run to compare with CE")
  variants = [runs_lib.Variant(methods.BASELINE, ce)]
  for a in sorted(by_a):
    label = methods.label(by_a[a][0]["config"])
    variants.append(runs_lib.Variant(label, runs_lib.one_group(by_a[a], label)))
  rows = runs_lib.variant_rows(variants, METRICS,
                               [(v.label, methods.BASELINE) for v in variants[1:]])
  names = [m.name for m in METRICS]
  used = [r for v in variants for r in v.runs]
  tokens = sorted({int(r["tokens"]) for r in used if "tokens" in r})
  sections = [
      "## Mean [95% CI] over seeds (test split, per next token"
      + (f", {' / '.join(f'{t:,}' for t in tokens)} tokens" if tokens else "") + ")\n\n"
      + runs_lib.wide_table(rows, names),
      "## Against CE, paired by seed (same init and data order)\n\n"
      + runs_lib.difference_table(rows, names),
      "Perplexity = exp(NLL); entropy (nats) is that of the predicted next-token distribution; "
      "ECE uses 15 equal-width confidence bins over tokens. The reliability diagrams pool the "
      "bins of every seed (counts add).",
      runs_lib.every_row_section(rows)]
  diagrams = {v.label: calibration.pooled_reliability([r["reliability"] for r in v.runs])
              for v in variants if all("reliability" in r for r in v.runs)}
  return runs_lib.Report(rows, sections, {"reliability": diagrams} if diagrams else {}, used)


def plot(figures: dict[str, Any]) -> dict[str, Any]:
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  diagrams = figures["reliability"]
  figure, axes = plt.subplots(1, len(diagrams), figsize=(3.1 * len(diagrams), 3.3), sharey=True,
                              layout="constrained", squeeze=False)
  for ax, (name, d) in zip(axes[0], diagrams.items()):
    edges, filled = d["edges"], d["count"] > 0
    ax.bar(edges[:-1][filled], d["accuracy"][filled], width=np.diff(edges)[filled], align="edge",
           color="C0", alpha=0.6, edgecolor="k", lw=0.4, label="accuracy of the bin")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.plot(d["mean_confidence"][filled], d["accuracy"][filled], "C3.", ms=4,
            label="(mean confidence, accuracy)")
    ax.set_title(f"{name} (next tokens)", fontsize=10)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (15 bins)")
  axes[0, 0].set_ylabel("accuracy")
  axes[0, 0].legend(fontsize=7, loc="upper left")
  return {"reliability": figure}
