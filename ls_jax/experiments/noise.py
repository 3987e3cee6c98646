"""Experiment 6, label noise: each method of the noise sweep against CE at the same noise setting.

Sweep: configs/sweeps/noise.py (from scratch) and `noise.py:finetune,warmup=...` (fine-tuned from
the CE runs, Wei et al. 2022's protocol); report each on its own. Clean-test accuracy and ECE,
paired by seed with CE at the same noise kind and rate, and what negative LS does.
"""
from typing import Any

import numpy as np

from ls_jax.experiments import runs as runs_lib
from ls_jax.trainer import default_config, methods

METRICS = ("accuracy", "ece")


def _noise(run: runs_lib.Run) -> tuple[str, float]:
  return (runs_lib.value(run, "data.label_noise.kind"),
          float(runs_lib.value(run, "data.label_noise.rate")))


def _protocol(configs: list[dict[str, Any]]) -> str:
  """How the runs (their `default_config.resolved` configs) were trained: from scratch, or fine-tuned from
  finished runs (`init_from`)."""
  finetuned = {bool(c["init_from"]) for c in configs}
  if len(finetuned) > 1:
    raise ValueError("the runs mix training from scratch with fine-tuning (init_from); report "
                     "each on its own")
  if not finetuned.pop():
    return "Every run trains from scratch."
  return ("Every run starts from the final weights of the finished run in its `init_from` (in "
          "`configs/sweeps/noise.py:finetune`, the CE run of its own seed and noise setting: the "
          f"warm-up) and trains with the method shown: {_finetune_recipe(configs)}, from a fresh "
          "optimizer state. CE here is fine-tuned alike, the paired baseline.")


def _finetune_recipe(configs: list[dict[str, Any]]) -> str:
  recipes = sorted({(c["num_steps"], c["optimizer.name"], c["optimizer.learning_rate"])
                    for c in configs})
  return "; ".join(f"{n} steps of {name} at {lr:g}" for n, name, lr in recipes)


def report(runs: list[runs_lib.Run]) -> runs_lib.Report:
  """Clean-test accuracy and ECE per noise setting and method, paired with CE at that setting,
  for runs trained from scratch or fine-tuned from a CE warm-up (not both at once)."""
  configs = [default_config.resolved(r["config"]) for r in runs]
  protocol = _protocol(configs)
  rows = runs_lib.summarize(runs, [runs_lib.BY_NAME[m] for m in METRICS])
  groups = runs_lib.group(runs)
  names = runs_lib.labels(groups)
  by_method: dict[str, dict[tuple[str, float], str]] = {}
  negative_groups = set()
  for key, members in groups.items():
    clean = {**members[0]["config"], "data": {
        **members[0]["config"].get("data", {}), "label_noise": {"kind": "symmetric", "rate": 0.0}}}
    # The row is the method; the warm-up it was fine-tuned from differs with the noise (a column).
    by_method.setdefault(methods.label(clean, start=False), {})[_noise(members[0])] = names[key]
    if runs_lib.value(members[0], methods.LABEL_SMOOTHING.field) < 0:
      negative_groups.add(names[key])
  negative = [r for r in rows if r["metric"] == "accuracy" and r["baseline"]
              and r["group"] in negative_groups]
  helps = [r["group"] for r in negative if r["verdict"] == "improves"]
  statement = ("Negative LS improves clean-test accuracy over CE (95% CI of the paired difference "
               f"above 0) at: {'; '.join(helps)}." if helps else
               "Negative LS improves clean-test accuracy over CE at no noise setting.")
  statement += " Elsewhere: " + "; ".join(
      f"{r['group']}: {r['verdict']}" for r in negative if r["group"] not in helps) + "."
  sections = [protocol,
              "## Clean-test accuracy and ECE, mean [95% CI] over seeds\n\n"
              + runs_lib.wide_table(rows, list(METRICS)),
              "## Paired differences with CE at the same noise setting\n\n"
              + runs_lib.difference_table(rows, list(METRICS)),
              "## Negative label smoothing (Wei et al. 2022)\n\n" + statement,
              "Published: Lukasik et al. 2020, LS often mitigates label noise; Wei et al. 2022, "
              "negative LS can beat positive LS at high noise rates, with a CE warm-up (their "
              "code fine-tunes the CE model; from scratch, a = -1 diverged for a user, "
              "github.com/UCSC-REAL/negative-label-smoothing issue 3). The README puts their "
              "CIFAR-10 numbers beside ours.",
              runs_lib.every_row_section(rows)]
  missing = runs_lib.missing_baselines(rows)
  if missing:
    sections.insert(3, missing)
  panels = {}
  for kind in ("symmetric", "asymmetric"):
    panels[kind] = {}
    for method, settings in by_method.items():
      points = sorted((rate, label) for (k, rate), label in settings.items()
                      if k == kind or rate == 0)
      if len(points) > 1 or any(rate for rate, _ in points):
        panels[kind][method] = {"rate": np.array([p for p, _ in points]),
                                **runs_lib.series(rows, "accuracy", [label for _, label in points])}
  models = ", ".join(sorted({f"{c['data.name']} {c['model.name']}" for c in configs}))
  title = models + (", fine-tuned from the CE warm-up: " + _finetune_recipe(configs)
                    if configs[0]["init_from"] else ", trained from scratch")
  return runs_lib.Report(rows, sections, {"noise": {"panels": panels, "title": title}}, runs)


def plot(figures: dict[str, Any]) -> dict[str, Any]:
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from ls_jax.experiments.plots import errorbar  # pylint: disable=g-import-not-at-top
  noise = figures["noise"]
  figure, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True, layout="constrained")
  figure.suptitle(noise["title"], fontsize=10)
  titles = {"symmetric": "symmetric noise", "asymmetric": "pairwise noise (k -> k+1)"}
  for ax, (kind, panel) in zip(axes, noise["panels"].items()):
    for i, (method, s) in enumerate(panel.items()):
      errorbar(ax, s["rate"] + (i - len(panel) / 2) * 0.004, s, color=f"C{i}", label=method)
    ax.set_title(titles[kind])
    ax.set_xlabel("noise rate")
    ax.grid(alpha=0.3)
  axes[0].set_ylabel("clean test accuracy (mean, 95% CI)")
  axes[0].legend(fontsize=8, loc="lower left")
  return {"noise_accuracy": figure}
