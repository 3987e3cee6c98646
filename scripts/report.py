#!/usr/bin/env python
"""One experiment's report of issue 8: summary.csv, summary.md and small PNG figures.

  python scripts/report.py strength --runs runs/evidence --out docs/results/strength
  python scripts/report.py methods --runs runs/methods --selection runs/methods_select \
      --out docs/results/methods

EXPERIMENT is one of methods, strength, confidence, calibration, selective, noise. --runs holds
the workdirs (strength, confidence, calibration and selective read the shared runs/evidence and
take the runs they need). The analysis is `ls_jax.experiments.reports`; this script draws its figures.
"""
import argparse
import pathlib
import shlex
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from ls_jax.experiments import reports, study  # pylint: disable=g-import-not-at-top

DPI = 110
MIN_ALPHA = 0.15  # An almost empty bin stays visible.


def _errorbar(ax, x, s, **kwargs):
  """Means with their 95% CIs as error bars (a NaN CI, n < 2, draws the mean alone)."""
  low = np.nan_to_num(s["mean"] - s["ci_low"])
  high = np.nan_to_num(s["ci_high"] - s["mean"])
  return ax.errorbar(x, s["mean"], yerr=[low, high], capsize=3, marker="o", ms=4, **kwargs)


def plot_methods(data):
  models = data["models"]
  figure, axes = plt.subplots(2, len(models), figsize=(4.2 * len(models), 6.4), squeeze=False,
                              layout="constrained")
  for column, (model, d) in enumerate(models.items()):
    x = np.arange(len(d["methods"]))
    for row, metric in enumerate(("accuracy", "ece")):
      ax = axes[row, column]
      _errorbar(ax, x, d[metric], ls="none", color="C0", label="ours, mean and 95% CI")
      if metric == "accuracy" and d["published"] is not None:
        ax.axhline(d["published"], color="C3", ls="--", lw=1,
                   label=f"published CE {d['published']:.0%} (Greydanus 2020)")
      ax.set_xticks(x, d["methods"], rotation=35, ha="right", fontsize=8)
      ax.set_ylabel(f"test {metric.upper() if metric == 'ece' else metric}")
      ax.grid(alpha=0.3)
      if row == 0:
        ax.set_title(model)
        ax.legend(fontsize=7, loc="best")
  return {"methods": figure}


def plot_strength(data):
  figure, axes = plt.subplots(1, 4, figsize=(15, 3.6), layout="constrained")
  a = data["a"]
  for ax, metric in zip(axes, reports.STRENGTH_METRICS):
    _errorbar(ax, a, data[metric], color="C0", label="ours, mean and 95% CI")
    ax.set_xlabel("label smoothing a")
    ax.set_ylabel(f"test {metric.replace('_', ' ')}")
    ax.grid(alpha=0.3)
  grid = np.linspace(0, a.max(), 100)
  axes[3].plot(grid, 1 - grid + grid / data["num_classes"], color="C3", ls="--",
               label=f"training ceiling 1 - a + a/K (K={data['num_classes']})")
  if data["first_drop"] is not None:
    axes[0].axvline(data["first_drop"], color="C3", lw=1, ls=":",
                    label=f"first significant drop below peak (a={data['first_drop']:g})")
  axes[0].axvline(data["peak"], color="C2", lw=1, ls=":", label=f"peak (a={data['peak']:g})")
  for ax in (axes[0], axes[3]):  # Below the panel, where it hides no point.
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2))
  return {"strength": figure}


def plot_confidence(example, histogram):
  figures = {}
  if example is not None:
    figure, axes = plt.subplots(1, 2, figsize=(8, 3), sharey=True, layout="constrained")
    classes = np.arange(len(example["ce"]))
    for ax, (name, p) in zip(axes, (("CE", example["ce"]), (example["ls_label"], example["ls"]))):
      colors = ["C2" if k == example["label"] else "C7" for k in classes]
      ax.bar(classes, p, color=colors)
      ax.set_title(f"{name}: p(class {example['label']}) = {p[example['label']]:.3f}")
      ax.set_xlabel("class (green: the true one)")
      ax.set_xticks(classes)
      ax.set_ylim(0, 1.05)
    axes[0].set_ylabel("softmax probability")
    figure.suptitle(f"seed {example['seed']}, test example {example['index']}", fontsize=10)
    figures["confidence_example"] = figure
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
  figures["confidence_histogram"] = figure
  return figures


def plot_reliability(diagrams):
  names = list(diagrams)
  columns = len(names) // 2
  figure, axes = plt.subplots(2, columns, figsize=(3.1 * columns, 6.2), sharex=True, sharey=True,
                              layout="constrained", squeeze=False)
  for i, name in enumerate(names):
    ax = axes[i % 2, i // 2]  # Each method's column: without TS on top, with TS below.
    d = diagrams[name]
    edges, width = d["edges"], np.diff(d["edges"])
    filled = d["count"] > 0
    # Opacity: the bin's share of examples relative to the fullest bin, so a bin of 2 is faint.
    share = np.maximum(d["count"][filled] / d["count"].max(), MIN_ALPHA)
    colors = [(*matplotlib.colors.to_rgb("C0"), alpha) for alpha in share]
    ax.bar(edges[:-1][filled], d["accuracy"][filled], width=width[filled], align="edge",
           color=colors, edgecolor="k", lw=0.4, label="accuracy of the bin (opacity: its size)")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.plot(d["mean_confidence"][filled], d["accuracy"][filled], "C3.", ms=4,
            label="(mean confidence, accuracy)")
    ax.set_title(name, fontsize=10)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
  for ax in axes[-1]:
    ax.set_xlabel("confidence (15 bins)")
  for ax in axes[:, 0]:
    ax.set_ylabel("accuracy")
  axes[0, 0].legend(fontsize=7, loc="upper left")
  return {"reliability": figure}


def plot_risk_coverage(curves):
  figure, ax = plt.subplots(figsize=(6, 4), layout="constrained")
  for i, (name, curve) in enumerate(curves.items()):
    normalized = "logit norm" in name
    ax.plot(curve["coverage"], curve["risk"], color=f"C{i // 2}", ls="--" if normalized else "-",
            lw=1.3, label=name)
  ax.set_xlabel("coverage (fraction accepted, most confident first)")
  ax.set_ylabel("selective risk (error rate), mean over seeds")
  ax.set_xlim(0, 1)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8, loc="upper left")
  return {"risk_coverage": figure}


def plot_noise(noise):
  figure, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True, layout="constrained")
  figure.suptitle(noise["title"], fontsize=10)
  titles = {"symmetric": "symmetric noise", "asymmetric": "pairwise noise (k -> k+1)"}
  for ax, (kind, methods) in zip(axes, noise["panels"].items()):
    for i, (method, s) in enumerate(methods.items()):
      _errorbar(ax, s["rate"] + (i - len(methods) / 2) * 0.004, s, color=f"C{i}", label=method)
    ax.set_title(titles[kind])
    ax.set_xlabel("noise rate")
    ax.grid(alpha=0.3)
  axes[0].set_ylabel("clean test accuracy (mean, 95% CI)")
  axes[0].legend(fontsize=8, loc="lower left")
  return {"noise_accuracy": figure}


def figures(experiment: str, report: reports.Report):
  f = report.figures
  return {"methods": lambda: plot_methods(f["methods"]),
          "strength": lambda: plot_strength(f["strength"]),
          "confidence": lambda: plot_confidence(f["confidence_example"],
                                                f["confidence_histogram"]),
          "calibration": lambda: plot_reliability(f["reliability"]),
          "selective": lambda: plot_risk_coverage(f["risk_coverage"]),
          "noise": lambda: plot_noise(f["noise"])}[experiment]()


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("experiment", choices=sorted(reports.REPORTS))
  parser.add_argument("--runs", required=True, help="directory of workdirs")
  parser.add_argument("--selection", help="methods only: the select stage's runs")
  parser.add_argument("--out", required=True, help="where summary.csv, summary.md, *.png go")
  args = parser.parse_args(argv)
  command = "python scripts/report.py " + shlex.join(sys.argv[1:] if argv is None else argv)
  try:
    workdirs = study.find_workdirs([args.runs])
    if not workdirs:
      raise ValueError(f"no finished run (results.json) under {args.runs}")
    runs = [study.load_run(w) for w in workdirs]
    if args.experiment == "methods":
      selection = ([study.load_run(w) for w in study.find_workdirs([args.selection])]
                   if args.selection else None)
      report = reports.methods(runs, selection)
    elif args.selection:
      raise ValueError("--selection is for the methods report only")
    else:
      report = reports.REPORTS[args.experiment](runs)
  except ValueError as e:
    print(f"report.py: error: {e}", file=sys.stderr)
    return 2
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  study.write_csv(report.rows, out / "summary.csv")
  pngs = []
  for name, figure in figures(args.experiment, report).items():
    figure.savefig(out / f"{name}.png", dpi=DPI)
    plt.close(figure)
    pngs.append(f"{name}.png")
  text = "\n\n".join([reports.header(args.experiment.capitalize(), command, report.runs)]
                     + report.sections + ["Figures: " + ", ".join(f"![{p}]({p})" for p in pngs)])
  (out / "summary.md").write_text(text + "\n")
  print(f"wrote {out}/summary.csv, summary.md, {', '.join(pngs)} ({len(report.runs)} runs)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
