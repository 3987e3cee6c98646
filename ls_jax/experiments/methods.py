"""Experiment 1, methods: CE and each method of the table at its picked strength, per model.

Sweep: configs/sweeps/methods.py (`:select`, then `:evaluate,selection=<select out>`). The report
pairs every method with CE of the same model by seed, shows how each strength was picked (with
`selection`, the select stage's runs), and puts the published CE accuracy of Greydanus 2020 beside
ours.
"""
from typing import Any

import numpy as np

from ls_jax.experiments import runs as runs_lib
from ls_jax.experiments.runs import Metric

METRICS = ("accuracy", "nll", "ece", "adaptive_ece", "brier", "mean_confidence")
SELECTION_METRIC = Metric("validation_accuracy", "validation.accuracy", "higher")
ACCURACY_DIGITS = 4
# Published figures quoted beside ours (from the papers; see README "Results").
GREYDANUS_2020_TEST_ACCURACY = {("mnist1d", "cnn1d"): 0.94, ("mnist1d", "mlp"): 0.68}


def _model(run: runs_lib.Run) -> tuple[str, str]:
  return runs_lib.value(run, "data.name"), runs_lib.value(run, "model.name")


def _by_model(runs: list[runs_lib.Run]) -> dict[tuple[str, str], list[runs_lib.Run]]:
  by_model = {}
  for run in runs:
    by_model.setdefault(_model(run), []).append(run)
  return by_model


def report(runs: list[runs_lib.Run], selection: str | None = None) -> runs_lib.Report:
  """CE and each method at its picked strength, per model, with paired differences vs CE.

  `selection` (the select stage's runs directory) shows the mean validation accuracy of every
  candidate strength, and which one was evaluated (its config, less the seed, is an evaluated
  group's).
  """
  by_model = _by_model(runs)
  metrics = [runs_lib.BY_NAME[m] for m in METRICS]
  rows = [r for members in by_model.values() for r in runs_lib.summarize(members, metrics)]
  sections = ["## Test metrics, mean [95% CI] over seeds\n\n" + runs_lib.wide_table(
      rows, list(METRICS)), "## Paired differences with CE of the same model\n\n"
              + runs_lib.difference_table(rows, ["accuracy", "nll", "ece", "brier"])]
  missing = runs_lib.missing_baselines(rows)
  if missing:
    sections.append(missing)
  groups, names = {}, {}
  for members in by_model.values():
    model_groups = runs_lib.group(members)
    groups.update(model_groups)
    names.update(runs_lib.labels(model_groups))
  selection_runs = runs_lib.load(selection) if selection else []
  if selection_runs:
    lines = ["| candidate | seeds | mean validation accuracy | evaluated |", "|---|---|---|---|"]
    for members in _by_model(selection_runs).values():
      candidates = runs_lib.group(members)
      for key, label in runs_lib.labels(candidates).items():
        values = runs_lib.values_by_seed(candidates[key], SELECTION_METRIC)
        lines.append(f"| {label} | {' '.join(map(str, sorted(values)))} | "
                     f"{runs_lib.format_number(float(np.mean(list(values.values()))))} | "
                     f"{'**picked**' if key in groups else ''} |")
    sections.insert(0, "## Strength selection (select stage; the metric is the mean validation "
                    "accuracy over the selection seeds, ties to the weaker strength)\n\n"
                    + "\n".join(lines))
  published = ["| model | published CE test accuracy (Greydanus 2020) | ours, CE |",
               "|---|---|---|"]
  for key, members in groups.items():
    model = _model(members[0])
    if model in GREYDANUS_2020_TEST_ACCURACY and runs_lib.is_baseline(members[0]):
      ours = next(r for r in rows if r["group"] == names[key] and r["metric"] == "accuracy")
      published.append(f"| {' '.join(model)} | {GREYDANUS_2020_TEST_ACCURACY[model]:.0%} | "
                       f"{runs_lib.cell(ours, ACCURACY_DIGITS)} |")
  sections.append("## Published beside ours\n\n" + "\n".join(published) + "\n\nGreydanus trained "
                  "on all 4,000 training signals; we hold 400 out for validation.")
  sections.append(runs_lib.every_row_section(rows))
  figure = {}  # Per model, CE first.
  for key, members in sorted(groups.items(), key=lambda g: not runs_lib.is_baseline(g[1][0])):
    model = " ".join(_model(members[0]))
    figure.setdefault(model, []).append(names[key])
  figures = {"methods": {
      "models": {model: {"methods": [g.removeprefix(model + " ") for g in labels],
                         **{m: runs_lib.series(rows, m, labels) for m in ("accuracy", "ece")},
                         "published": GREYDANUS_2020_TEST_ACCURACY.get(tuple(model.split()))}
                 for model, labels in figure.items()}}}
  return runs_lib.Report(rows, sections, figures, runs + selection_runs)


def plot(figures: dict[str, Any]) -> dict[str, Any]:
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from ls_jax.experiments.plots import errorbar  # pylint: disable=g-import-not-at-top
  models = figures["methods"]["models"]
  figure, axes = plt.subplots(2, len(models), figsize=(4.2 * len(models), 6.4), squeeze=False,
                              layout="constrained")
  for column, (model, d) in enumerate(models.items()):
    x = np.arange(len(d["methods"]))
    for row, metric in enumerate(("accuracy", "ece")):
      ax = axes[row, column]
      errorbar(ax, x, d[metric], ls="none", color="C0", label="ours, mean and 95% CI")
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
