"""Summaries of finished runs: groups that differ only in seed, CIs, paired differences, verdicts.

Runs are grouped by their WHOLE resolved config (results.json's `config`) except `seed` and the
fields that do not change what is trained or measured (`BOOKKEEPING_FIELDS`). Runs that differ in
anything else are never pooled. Each group is compared with its baseline, the group with the same
config but every method field at 0 (`METHOD_FIELDS`: plain CE on the same data, model, noise and
recipe), pairwise by seed: the same seed gives the same init and data order. Only seeds present in
both groups are paired, and the output says which were left out.

A verdict says "improves" or "worse" only where the 95% CI of the paired difference excludes 0
(for metrics with no better direction, "higher" or "lower"); otherwise "no difference detected
(n=...)".
"""
import csv
import json
import math
import re
import pathlib
from typing import Any, NamedTuple

import numpy as np
from scipy import special

from ls_jax import calibration, statistics
from ls_jax.trainer import methods

SEED_FIELD = "seed"
# Where the run's files go, how often it logs or checkpoints, how it batches evaluation and spreads
# over devices: none of these change the trained model or the metrics.
BOOKKEEPING_FIELDS = ("data.data_dir", "log_every_steps", "checkpoint_every_steps",
                      "keep_checkpoints", "eval_batch_size", "parallelism")
# Fields that name another run's workdir. `scripts/sweep.py` names a workdir by its seed
# (`..._seed3`), and a run of seed s usually starts from, or learns from, the run of seed s: such
# paths count as one experiment across seeds.
RUN_DIR_FIELDS = ("init_from", "distill.teacher_workdir")
METHOD_FIELDS = ("loss.label_smoothing", "loss.confidence_penalty", "mixup.alpha", "cutmix.alpha")


class Metric(NamedTuple):
  """A per-run number: `key` into results.json (dotted), `better` is 'higher', 'lower' or None."""
  name: str
  key: str
  better: str | None


METRICS = (
    Metric("accuracy", "accuracy", "higher"),
    Metric("nll", "nll", "lower"),
    Metric("ece", "ece", "lower"),
    Metric("adaptive_ece", "adaptive_ece", "lower"),
    Metric("brier", "brier", "lower"),
    Metric("mean_confidence", "mean_confidence", None),
    Metric("perplexity", "perplexity", "lower"),  # Language models (per token), as is entropy.
    Metric("entropy", "entropy", None),
    Metric("temperature", "temperature", None),
    Metric("ts_nll", "temperature_scaled.nll", "lower"),
    Metric("ts_ece", "temperature_scaled.ece", "lower"),
    Metric("ts_adaptive_ece", "temperature_scaled.adaptive_ece", "lower"),
    Metric("ts_brier", "temperature_scaled.brier", "lower"),
    # From predictions.npz, where the run wrote one (`selective_from_predictions`).
    Metric("aurc", "selective.aurc", "lower"),
    Metric("auroc", "selective.auroc", "higher"),
    Metric("aurc_pnorm", "selective.aurc_pnorm", "lower"),
    Metric("auroc_pnorm", "selective.auroc_pnorm", "higher"),
)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
  """`{"a": {"b": 1}}` -> `{"a.b": 1}`; lists become tuples so that values can be compared."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(flatten(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = tuple(value) if isinstance(value, list) else value
  return flat


def selective_from_predictions(path: pathlib.Path) -> dict[str, float]:
  """Test AURC and misclassification AUROC of max-softmax and of MaxLogit-pNorm (p from val)."""
  with np.load(path) as predictions:
    val_logits, val_labels = predictions["val_logits"], predictions["val_labels"]
    test_logits, test_labels = predictions["test_logits"], predictions["test_labels"]
  correct = test_logits.argmax(axis=1) == test_labels
  softmax = calibration.selective_metrics(special.softmax(test_logits.astype(np.float64), axis=1)
                                          .max(axis=1), correct)
  p = calibration.fit_logit_norm_p(val_logits, val_labels)
  pnorm = calibration.selective_metrics(calibration.max_logit_pnorm(test_logits, p), correct)
  return {**softmax, "aurc_pnorm": pnorm["aurc"], "auroc_pnorm": pnorm["auroc"], "pnorm_p": p}


def load_run(workdir: pathlib.Path) -> dict[str, Any] | None:
  """results.json of `workdir` (None if unfinished), plus `selective` from predictions.npz."""
  path = workdir / "results.json"
  if not path.exists():
    return None
  results = json.loads(path.read_text())
  results["workdir"] = str(workdir)
  if (workdir / "predictions.npz").exists() and "perplexity" not in results:  # Classifiers' logits.
    results["selective"] = selective_from_predictions(workdir / "predictions.npz")
  return results


def find_workdirs(paths: list[str]) -> list[pathlib.Path]:
  """Each path is a workdir (has results.json) or a directory whose subdirectories are workdirs."""
  workdirs = []
  for path in map(pathlib.Path, paths):
    if (path / "results.json").exists():
      workdirs.append(path)
    elif path.is_dir():
      workdirs.extend(sorted(p for p in path.iterdir() if (p / "results.json").exists()))
  return workdirs


def resolved(config: dict[str, Any]) -> dict[str, Any]:
  """A run's config, flat (`flatten`), with the default of every field it lacks: a field added
  after the run did not exist, so it changed nothing in that run."""
  from ls_jax.trainer import default_config  # pylint: disable=g-import-not-at-top
  return {**flatten(default_config.get_config().to_dict()), **flatten(config)}


def experiment_key(config: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
  """The `resolved` config without seed and bookkeeping fields, as a hashable sorted tuple.

  In `RUN_DIR_FIELDS` a trailing `_seed<N>` is a wildcard.
  """
  flat = resolved(config)
  for field in RUN_DIR_FIELDS:
    flat[field] = re.sub(r"_seed\d+$", "_seed*", flat[field].rstrip("/"))
  return tuple(sorted((k, v) for k, v in flat.items()
                      if k != SEED_FIELD and k not in BOOKKEEPING_FIELDS))


def group_runs(runs: list[dict[str, Any]]) -> dict[tuple, list[dict[str, Any]]]:
  """Runs by `experiment_key`, in first-seen order.

  Raises:
    ValueError: if one group holds the same seed twice (two copies of one run).
  """
  groups: dict[tuple, list[dict[str, Any]]] = {}
  for run in runs:
    groups.setdefault(experiment_key(run["config"]), []).append(run)
  for members in groups.values():
    seeds = [run["config"][SEED_FIELD] for run in members]
    if len(set(seeds)) != len(seeds):
      twice = sorted(s for s in set(seeds) if seeds.count(s) > 1)[0]
      workdirs = [r["workdir"] for r in members if r["config"][SEED_FIELD] == twice]
      raise ValueError(f"seed {twice} appears twice in one group: {', '.join(workdirs)}")
  return groups


def baseline_key(key: tuple) -> tuple:
  """The key of the same experiment with every method field at 0: CE."""
  return tuple((k, 0.0 if k in METHOD_FIELDS else v) for k, v in key)


def _value(run: dict[str, Any], metric: Metric) -> float | None:
  value: Any = run
  for part in metric.key.split("."):
    if not isinstance(value, dict) or part not in value:
      return None
    value = value[part]
  return float(value)


def verdict(comparison: statistics.PairedComparison, better: str | None) -> str:
  """'improves' / 'worse' (or 'higher' / 'lower') only when the 95% CI excludes 0."""
  if math.isnan(comparison.ci_low):
    if comparison.n < 2:
      return f"undetermined (n={comparison.n})"
    if comparison.mean_difference == 0:
      return f"no difference detected (n={comparison.n}, identical)"
    return f"undetermined: every seed differs by the same amount (n={comparison.n})"
  if comparison.ci_low <= 0 <= comparison.ci_high:
    return f"no difference detected (n={comparison.n})"
  higher = comparison.ci_low > 0
  if better is None:
    return "higher" if higher else "lower"
  return "improves" if higher == (better == "higher") else "worse"


def labels(groups: dict[tuple, list]) -> dict[tuple, str]:
  """`data model method` plus every other field that differs between groups: unique labels."""
  fields = {k for key in groups for k, _ in key}
  varying = sorted(f for f in fields if len({dict(key).get(f) for key in groups}) > 1)
  # Named by `data model method` already (the noise too, unless its rate is 0). A run directory
  # (long) is named only where the names would otherwise repeat.
  unnamed = [f for f in varying if f not in METHOD_FIELDS and f not in ("data.name", "model.name")
             and not f.startswith("data.label_noise.") and f not in RUN_DIR_FIELDS]
  names = {}
  for key, members in groups.items():
    config = members[0]["config"]
    extra = ", ".join(f"{f}={dict(key).get(f)}" for f in unnamed)
    names[key] = (f"{config['data']['name']} {config['model']['name']} {methods.label(config)}"
                  + (f" [{extra}]" if extra else ""))
  repeated = {name for name in names.values() if list(names.values()).count(name) > 1}
  for key, name in names.items():
    if name in repeated:  # E.g. two noise kinds at rate 0: name every differing field.
      names[key] = f"{name} [{', '.join(f'{f}={dict(key).get(f)}' for f in varying)}]"
  return names


def values_by_seed(members: list[dict[str, Any]], metric: Metric) -> dict[int, float]:
  """`{seed: value}` of `metric` over the runs of one group.

  Runs without the metric, or where it is NaN (undefined for that run, e.g. the misclassification
  AUROC of a run with no error), are left out, so `n` counts the runs that define it.
  """
  by_seed = {r["config"][SEED_FIELD]: _value(r, metric) for r in members}
  return {s: v for s, v in by_seed.items() if v is not None and not math.isnan(v)}


def row(group: str, metric: Metric, by_seed: dict[int, float], baseline: str = "",
        base_by_seed: dict[int, float] | None = None) -> dict[str, Any]:
  """The summary of one group's `{seed: value}`, and its comparison with `base_by_seed` if given.

  The comparison is `group - baseline`, paired on the seeds both have; the others are named in
  `unpaired_seeds`.
  """
  summary = statistics.summarize(list(by_seed.values()))
  result = {"group": group, "metric": metric.name, "n": summary.n, "mean": summary.mean,
            "std": summary.std, "ci_low": summary.ci_low, "ci_high": summary.ci_high,
            "seeds": " ".join(map(str, sorted(by_seed))), "baseline": "", "n_paired": "",
            "diff": "", "diff_ci_low": "", "diff_ci_high": "", "p_value": "", "verdict": "",
            "unpaired_seeds": ""}
  if base_by_seed is not None:
    common = sorted(set(by_seed) & set(base_by_seed))
    result["baseline"] = baseline
    result["unpaired_seeds"] = " ".join(map(str, sorted(set(by_seed) ^ set(base_by_seed))))
    if common:
      comparison = statistics.paired_comparison([by_seed[s] for s in common],
                                                [base_by_seed[s] for s in common])
      result.update(n_paired=comparison.n, diff=comparison.mean_difference,
                    diff_ci_low=comparison.ci_low, diff_ci_high=comparison.ci_high,
                    p_value=comparison.p_value, verdict=verdict(comparison, metric.better))
    else:
      result["verdict"] = "no common seeds with the baseline"
  return result


def summarize(runs: list[dict[str, Any]], metrics=METRICS) -> list[dict[str, Any]]:
  """One row per (group, metric): the group's statistics and its paired comparison with CE."""
  groups = group_runs(runs)
  names = labels(groups)
  rows = []
  for key, members in groups.items():
    base_key = baseline_key(key)
    baseline = groups.get(base_key) if base_key != key else None
    for metric in metrics:
      by_seed = values_by_seed(members, metric)
      if not by_seed:
        continue
      if baseline is None:
        rows.append(row(names[key], metric, by_seed))
      else:
        rows.append(row(names[key], metric, by_seed, names[base_key],
                        values_by_seed(baseline, metric)))
  return rows


def format_number(value: Any, digits: int = 4) -> str:
  if value == "" or value is None:
    return ""
  if isinstance(value, float) and math.isnan(value):
    return "nan"
  return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def write_csv(rows: list[dict[str, Any]], path: pathlib.Path) -> None:
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)


def markdown(rows: list[dict[str, Any]]) -> str:
  """One table per metric: mean ± std, 95% CI, and the paired difference with the baseline."""
  lines = []
  for metric in dict.fromkeys(r["metric"] for r in rows):
    lines += [f"### {metric}", "",
              "| group | n | mean ± std | 95% CI | baseline | Δ (paired) | 95% CI of Δ | p "
              "| verdict |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in (r for r in rows if r["metric"] == metric):
      note = f" (paired on {r['n_paired']} seeds; unpaired: {r['unpaired_seeds']})" if (
          r["unpaired_seeds"]) else ""
      ci = f"[{format_number(r['ci_low'])}, {format_number(r['ci_high'])}]"
      diff_ci = f"[{format_number(r['diff_ci_low'])}, {format_number(r['diff_ci_high'])}]" if (
          r["diff"] != "") else ""
      lines.append(f"| {r['group']} | {r['n']} | {format_number(r['mean'])} ± "
                   f"{format_number(r['std'])} | {ci} | {r['baseline']} "
                   f"| {format_number(r['diff'])} | {diff_ci} | {format_number(r['p_value'], 3)} "
                   f"| {r['verdict']}{note} |")
    lines.append("")
  return "\n".join(lines)
