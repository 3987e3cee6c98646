"""Finished runs as evidence: load them, group them, pair them with CE, build rows, write reports.

Every experiment reads runs through this module, so that each one groups, pairs, formats and
writes the same way:

* load: `load(paths)` reads every finished workdir (results.json, and predictions.npz's selective
  metrics); `resolved` / `value` fill the fields an older run's config lacks with their defaults.
* group: runs are grouped by their WHOLE resolved config except `seed` and the fields that do not
  change what is trained or measured (`BOOKKEEPING_FIELDS`). Runs that differ in anything else are
  never pooled.
* pair: each group is compared with its baseline, the group with the same config but every method
  of the method table (`ls_jax.trainer.methods.METHODS`) at its `off` value: CE on the same data,
  model, noise and recipe. Pairs are by seed (the same seed gives the same init and data order);
  only seeds present in both groups are paired, and the row names the others. A group whose CE
  baseline is not among the runs says so (`NO_BASELINE`) instead of being dropped.
* row: one summary.csv row per (group, metric[, baseline]) (`COLUMNS`); a verdict says "improves"
  or "worse" only where the 95% CI of the paired difference excludes 0 (for metrics with no
  better direction, "higher" or "lower"), otherwise "no difference detected (n=...)".
* write: `write` puts a `Report` in a directory: summary.csv, summary.md and its PNG figures; every
  number is formatted by `format_number`.
"""
import csv
import json
import math
import pathlib
import re
from typing import Any, Callable, NamedTuple, Optional

import numpy as np
from scipy import special

from ls_jax import calibration, statistics
from ls_jax.trainer import methods
from ls_jax.trainer import default_config
from ls_jax.trainer.default_config import BOOKKEEPING_FIELDS

SEED_FIELD = "seed"
# Fields that name another run's workdir. `scripts/sweep.py` names a workdir by its seed
# (`..._seed3`), and a run of seed s usually starts from, or learns from, the run of seed s: such
# paths count as one experiment across seeds.
RUN_DIR_FIELDS = ("init_from", "distill.teacher_workdir")
# The columns of every summary.csv, in order. A report may put descriptive columns before them.
COLUMNS = ("group", "metric", "n", "mean", "std", "ci_low", "ci_high", "seeds", "baseline",
           "n_paired", "diff", "diff_ci_low", "diff_ci_high", "p_value", "verdict",
           "unpaired_seeds")
NO_BASELINE = "no baseline: the runs hold no CE run of this experiment"

Run = dict[str, Any]  # results.json, plus `workdir` (and `selective` where predictions.npz exists).


class Metric(NamedTuple):
  """A per-run number: `key` into the run (dotted, or a tuple of keys), `better` is 'higher',
  'lower' or None."""
  name: str
  key: str | tuple[str, ...]
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
    # Binary runs (one sigmoid output): the ranking of P(y = 1), and its calibration after Platt
    # scaling (`ls_jax.binary_calibration`). "auroc" above is the misclassification AUROC.
    Metric("roc_auc", "auroc", "higher"),
    Metric("average_precision", "average_precision", "higher"),
    Metric("top_label_ece", "top_label_ece", "lower"),
    Metric("platt_ece", "platt_scaled.ece", "lower"),
    Metric("platt_nll", "platt_scaled.nll", "lower"),
)
BY_NAME = {m.name: m for m in METRICS}


# --- Loading -------------------------------------------------------------------------------------


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


def load_run(workdir: pathlib.Path) -> Run | None:
  """results.json of `workdir` (None if unfinished), plus `selective` from predictions.npz."""
  workdir = pathlib.Path(workdir)
  path = workdir / "results.json"
  if not path.exists():
    return None
  results = json.loads(path.read_text())
  results["workdir"] = str(workdir)
  # A classifier's [examples, K] logits; not a language model's per-token outputs, nor a binary
  # run's one logit per example (its ranking metrics are in results.json).
  if ((workdir / "predictions.npz").exists() and "perplexity" not in results
      and methods.value(results.get("config", {}), "num_classes") != 1):
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


def load(paths: list[str] | str) -> list[Run]:
  """Every finished run under `paths` (workdirs or directories of workdirs), in name order.

  Raises:
    ValueError: if there is none.
  """
  paths = [paths] if isinstance(paths, (str, pathlib.Path)) else list(paths)
  workdirs = find_workdirs([str(p) for p in paths])
  if not workdirs:
    raise ValueError(f"no finished run (results.json) under {' '.join(map(str, paths))}")
  return [load_run(w) for w in workdirs]


def value(run: Run, field: str) -> Any:
  """A dotted config field of a run, its default where the run's config predates the field."""
  return methods.value(run["config"], field)


def seed(run: Run) -> int:
  return int(run["config"][SEED_FIELD])


# --- Grouping and baselines ----------------------------------------------------------------------


def experiment_key(config: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
  """The `resolved` config without seed and bookkeeping fields, as a hashable sorted tuple.

  In `RUN_DIR_FIELDS` a trailing `_seed<N>` is a wildcard.
  """
  flat = default_config.resolved(config)
  for field in RUN_DIR_FIELDS:
    flat[field] = methods.SEED_SUFFIX.sub("_seed*", str(flat[field]).rstrip("/"))
  return tuple(sorted((k, v) for k, v in flat.items()
                      if k != SEED_FIELD and k not in BOOKKEEPING_FIELDS))


_NUMBER = re.compile(r"(-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)")


def natural(value: Any) -> tuple:
  """A sort key that puts numbers in numeric order, also inside strings ('LS 0.9' < 'LS 0.95' <
  'LS 10'; 'seed2' < 'seed10'), and never compares values of different types."""
  if value is None:
    return (0,)
  if isinstance(value, (bool, int, float, np.number)):
    return (1, float(value))
  if isinstance(value, (tuple, list)):
    return (3, tuple(natural(v) for v in value))
  return (2, tuple((0, float(part)) if i % 2 else (1, part)
                   for i, part in enumerate(_NUMBER.split(str(value))) if part))


def _group_order(key: tuple) -> tuple:
  """Experiments (the CE baseline's key) in natural order; within one, CE first, then the methods
  by their values in natural order."""
  base = baseline_key(key)
  return (tuple((k, natural(v)) for k, v in base), key != base,
          tuple((k, natural(v)) for k, v in key))


def group(runs: list[Run]) -> dict[tuple, list[Run]]:
  """Runs by `experiment_key`: experiments in natural order of their config, and within each its CE
  group first, then the methods in numeric order of their values (LS 0.9 before LS 0.95).

  Raises:
    ValueError: if one group holds the same seed twice (two copies of one run).
  """
  groups: dict[tuple, list[Run]] = {}
  for run in runs:
    groups.setdefault(experiment_key(run["config"]), []).append(run)
  groups = dict(sorted(groups.items(), key=lambda item: _group_order(item[0])))
  for members in groups.values():
    seeds = [seed(run) for run in members]
    if len(set(seeds)) != len(seeds):
      twice = sorted(s for s in set(seeds) if seeds.count(s) > 1)[0]
      workdirs = [r["workdir"] for r in members if seed(r) == twice]
      raise ValueError(f"seed {twice} appears twice in one group: {', '.join(workdirs)}")
  return groups


def baseline_key(key: tuple) -> tuple:
  """The key of the same experiment with every method of the table off: CE."""
  off = {m.field: m.off for m in methods.METHODS}
  return tuple((k, off.get(k, v)) for k, v in key)


def is_baseline(run: Run) -> bool:
  """Whether the run uses no method of the table (CE)."""
  return not methods.active(run["config"])


def where(runs: list[Run], **on: Any) -> list[Run]:
  """The runs that use exactly the given methods at the given values, every other one off:
  `where(runs)` is CE, `where(runs, LS=0.1, Mixup=0.2)` LS 0.1 + Mixup 0.2. Names are those of the
  method table (`ls_jax.trainer.methods.BY_NAME`)."""
  unknown = sorted(set(on) - set(methods.BY_NAME))
  if unknown:
    raise ValueError(f"unknown method {unknown[0]!r}; the method table has {sorted(methods.BY_NAME)}")
  wanted = {m.field: on.get(m.name, m.off) for m in methods.METHODS}
  return [r for r in runs if all(_same(value(r, f), v) for f, v in wanted.items())]


def _same(a: Any, b: Any) -> bool:
  if isinstance(a, (int, float)) and isinstance(b, (int, float)):
    return float(a) == float(b)
  return a == b


def labels(groups: dict[tuple, list[Run]]) -> dict[tuple, str]:
  """`data model method` plus every other field that differs between groups: unique labels."""
  fields = {k for key in groups for k, _ in key}
  varying = sorted(f for f in fields if len({dict(key).get(f) for key in groups}) > 1)
  # Named by `data model method` already (the noise too, unless its rate is 0). A run directory
  # (long) is named only where the names would otherwise repeat.
  unnamed = [f for f in varying if f not in methods.FIELDS and f not in ("data.name", "model.name")
             and not f.startswith("data.label_noise.") and f not in RUN_DIR_FIELDS]
  names = {}
  for key, members in groups.items():
    config = members[0]["config"]
    extra = ", ".join(f"{f}={dict(key).get(f)}" for f in unnamed)
    names[key] = (f"{value(members[0], 'data.name')} {value(members[0], 'model.name')} "
                  f"{methods.label(config)}" + (f" [{extra}]" if extra else ""))
  repeated = {name for name in names.values() if list(names.values()).count(name) > 1}
  for key, name in names.items():
    if name in repeated:  # E.g. two noise kinds at rate 0: name every differing field.
      names[key] = f"{name} [{', '.join(f'{f}={dict(key).get(f)}' for f in varying)}]"
  return names


def one_group(runs: list[Run], what: str) -> list[Run]:
  """`runs` if they form one group (differ only in seed), else a clear error."""
  if not runs:
    raise ValueError(f"no finished runs of {what}")
  groups = group(runs)
  if len(groups) > 1:
    raise ValueError(f"the runs of {what} differ in more than the seed: "
                     f"{sorted(labels(groups).values())}")
  return runs


# --- Rows ----------------------------------------------------------------------------------------


def metric_value(run: Run, metric: Metric) -> float | None:
  """The run's value of `metric`, None where it has none."""
  node: Any = run
  for part in metric.key.split(".") if isinstance(metric.key, str) else metric.key:
    if not isinstance(node, dict) or part not in node:
      return None
    node = node[part]
  return float(node)


def values_by_seed(members: list[Run], metric: Metric) -> dict[int, float]:
  """`{seed: value}` of `metric` over the runs of one group.

  Runs without the metric, or where it is NaN (undefined for that run, e.g. the misclassification
  AUROC of a run with no error), are left out, so `n` counts the runs that define it.
  """
  by_seed = {seed(r): metric_value(r, metric) for r in members}
  return {s: v for s, v in by_seed.items() if v is not None and not math.isnan(v)}


def verdict(comparison: statistics.PairedComparison, better: str | None) -> str:
  """'improves' / 'worse' (or 'higher' / 'lower') only when the 95% CI excludes 0."""
  if math.isnan(comparison.ci_low):
    if comparison.n < 2:
      return f"undetermined (n={comparison.n})"
    # No spread (every pair differs by the same amount): the difference is exact, its CI has
    # zero width.
    if comparison.mean_difference == 0:
      return f"identical in all {comparison.n} pairs"
    higher = comparison.mean_difference > 0
    word = ("higher" if higher else "lower") if better is None else (
        "improves" if higher == (better == "higher") else "worse")
    return (f"{word}: every one of the {comparison.n} pairs differs by exactly "
            f"{comparison.mean_difference:+.4g}")
  if comparison.ci_low <= 0 <= comparison.ci_high:
    return f"no difference detected (n={comparison.n})"
  higher = comparison.ci_low > 0
  if better is None:
    return "higher" if higher else "lower"
  return "improves" if higher == (better == "higher") else "worse"


def row(group_name: str, metric: Metric, by_seed: dict[int, float], baseline: str = "",
        base_by_seed: dict[int, float] | None = None, **columns: Any) -> dict[str, Any]:
  """The summary of one group's `{seed: value}`, and its comparison with `base_by_seed` if given.

  The comparison is `group - baseline`, paired on the seeds both have; the others are named in
  `unpaired_seeds`. `columns` (descriptive, e.g. `role="student"`) go before `COLUMNS`.

  Raises:
    ValueError: if `by_seed` is empty.
  """
  if not by_seed:
    raise ValueError(f"{group_name}: no seed has a value of {metric.name}")
  summary = statistics.summarize([by_seed[s] for s in sorted(by_seed)])
  result = {**columns, "group": group_name, "metric": metric.name, "n": summary.n,
            "mean": summary.mean, "std": summary.std, "ci_low": summary.ci_low,
            "ci_high": summary.ci_high, "seeds": " ".join(map(str, sorted(by_seed))),
            "baseline": "", "n_paired": "", "diff": "", "diff_ci_low": "", "diff_ci_high": "",
            "p_value": "", "verdict": "", "unpaired_seeds": ""}
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


def summarize(runs: list[Run], metrics=METRICS, **columns: Any) -> list[dict[str, Any]]:
  """One row per (group, metric): the group's statistics and its paired comparison with CE.

  A group without its CE baseline among `runs` gets `verdict` `NO_BASELINE`.
  """
  groups = group(runs)
  names = labels(groups)
  rows = []
  for key, members in groups.items():
    base_key = baseline_key(key)
    baseline = groups.get(base_key)
    for metric in metrics:
      by_seed = values_by_seed(members, metric)
      if not by_seed:
        continue
      if base_key == key:
        rows.append(row(names[key], metric, by_seed, **columns))
      elif baseline is None:
        rows.append({**row(names[key], metric, by_seed, **columns), "verdict": NO_BASELINE})
      else:
        rows.append(row(names[key], metric, by_seed, names[base_key],
                        values_by_seed(baseline, metric), **columns))
      if metric.name == "temperature":
        _flag_temperature_bounds(rows[-1], members)
  return rows


def _flag_temperature_bounds(summary_row: dict[str, Any], members: list[Run]) -> None:
  """A temperature fitted on its bound is no estimate (the fit wanted further): say so."""
  at_bound = sum(bool(m.get("temperature_at_bound")) for m in members)
  if at_bound:
    note = f"T on its fitting bound in {at_bound} of {len(members)} runs"
    summary_row["verdict"] = f"{summary_row['verdict']}; {note}" if summary_row["verdict"] else note


class Variant(NamedTuple):
  """A column of results: the runs of one group; `key` maps a metric's key to where this variant
  keeps it (`"temperature_scaled.{}"`: the metrics after temperature scaling)."""
  label: str
  runs: list[Run]
  key: str = "{}"


def variant_rows(variants: list[Variant], metrics: tuple[Metric, ...],
                 comparisons: list[tuple[str, str]]) -> list[dict[str, Any]]:
  """Rows of every variant and metric; a variant compared with others gets one row per baseline.

  `comparisons` are `(variant label, baseline label)` pairs: the row's difference is
  variant - baseline, paired by seed.
  """
  def keyed(metric, variant):
    return metric._replace(key=variant.key.format(metric.key))
  by_label = {v.label: v for v in variants}
  rows = []
  for variant in variants:
    baselines = [b for v, b in comparisons if v == variant.label]
    for metric in metrics:
      by_seed = values_by_seed(variant.runs, keyed(metric, variant))
      if not by_seed:
        continue
      if not baselines:
        rows.append(row(variant.label, metric, by_seed))
      for baseline in baselines:
        base = by_label[baseline]
        rows.append(row(variant.label, metric, by_seed, baseline,
                        values_by_seed(base.runs, keyed(metric, base))))
  return rows


def series(rows: list[dict[str, Any]], metric: str, groups: list[str]) -> dict[str, np.ndarray]:
  """`mean`, `ci_low`, `ci_high` of `metric` for `groups`, in that order (for error bars)."""
  first = {}
  for r in rows:
    if r["metric"] == metric:
      first.setdefault(r["group"], r)
  return {k: np.array([as_float(first[g][k]) for g in groups], dtype=np.float64)
          for k in ("mean", "ci_low", "ci_high")}


def as_float(x: Any) -> float:
  return float("nan") if x == "" or x is None else float(x)


# --- Formatting ----------------------------------------------------------------------------------


def format_number(x: Any, digits: int = 4, sign: bool = False) -> str:
  """Every number of every report: floats with `digits` decimals (`sign`: always +/-), NaN as
  'nan', '' and None as '', anything else as `str`."""
  if x == "" or x is None:
    return ""
  if isinstance(x, (float, np.floating)):
    return "nan" if math.isnan(x) else f"{x:{'+' if sign else ''}.{digits}f}"
  return str(x)


def interval(low: Any, high: Any, digits: int = 4, sign: bool = False) -> str:
  """`[low, high]`, or '' where there is none (n < 2, or no comparison)."""
  if low == "" or low is None or (isinstance(low, float) and math.isnan(low)):
    return ""
  return f"[{format_number(low, digits, sign)}, {format_number(high, digits, sign)}]"


def table(rows: list[dict[str, Any]], keys: tuple[str, ...] = ("group",)) -> str:
  """Rows as one markdown table: the `keys` columns, mean ± std, 95% CI, the paired difference."""
  lines = ["| " + " | ".join(keys) + " | n | mean ± std | 95% CI | baseline | Δ (paired) "
           "| 95% CI of Δ | p | verdict |", "|" + "---|" * (len(keys) + 8)]
  for r in rows:
    note = f" (paired on {r['n_paired']} seeds; unpaired: {r['unpaired_seeds']})" if (
        r["unpaired_seeds"]) else ""
    cells = [format_number(r.get(k, ""), 3) for k in keys]
    lines.append(f"| {' | '.join(cells)} | {r['n']} | {format_number(r['mean'])} ± "
                 f"{format_number(r['std'])} | {interval(r['ci_low'], r['ci_high'])} "
                 f"| {r['baseline']} | {format_number(r['diff'])} "
                 f"| {interval(r['diff_ci_low'], r['diff_ci_high'])} "
                 f"| {_p(r['p_value'])} | {r['verdict']}{note} |")
  return "\n".join(lines)


def _p(p_value: Any) -> str:
  """The p-value, '' where there is none (n < 2, or no spread: the verdict says which)."""
  return "" if isinstance(p_value, float) and math.isnan(p_value) else format_number(p_value, 3)


def markdown(rows: list[dict[str, Any]]) -> str:
  """One table per metric: mean ± std, 95% CI, and the paired difference with the baseline."""
  sections = []
  for metric in dict.fromkeys(r["metric"] for r in rows):
    sections.append(f"### {metric}\n\n" + table([r for r in rows if r["metric"] == metric]) + "\n")
  return "\n".join(sections)


def cell(r: dict[str, Any], digits: int) -> str:
  if r["ci_low"] == "" or math.isnan(r["ci_low"]):
    return f"{format_number(r['mean'], digits)} (n={r['n']})"
  return f"{format_number(r['mean'], digits)} {interval(r['ci_low'], r['ci_high'], digits)}"


def wide_table(rows: list[dict[str, Any]], metrics: list[str], digits: int = 4) -> str:
  """One line per group: n and `mean [95% CI]` of each metric."""
  groups = list(dict.fromkeys(r["group"] for r in rows))
  first = {}
  for r in rows:
    first.setdefault((r["group"], r["metric"]), r)
  lines = ["| group | n | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 2) + "|"]
  for g in groups:
    present = [m for m in metrics if (g, m) in first]
    if not present:
      continue
    cells = [cell(first[g, m], digits) if (g, m) in first else "" for m in metrics]
    lines.append(f"| {g} | {max(first[g, m]['n'] for m in present)} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def difference_table(rows: list[dict[str, Any]], metrics: list[str], digits: int = 4) -> str:
  """One line per (group, baseline): `Δ [95% CI], p, verdict` of each metric; groups without a
  baseline among the runs are listed with `NO_BASELINE`."""
  pairs = list(dict.fromkeys((r["group"], r["baseline"]) for r in rows
                             if r["baseline"] or r["verdict"] == NO_BASELINE))
  cell = {(r["group"], r["baseline"], r["metric"]): r for r in rows}
  lines = ["| group | vs | " + " | ".join(f"Δ {m}" for m in metrics) + " |",
           "|---" * (len(metrics) + 2) + "|"]
  for group_name, baseline in pairs:
    cells = []
    for m in metrics:
      r = cell.get((group_name, baseline, m))
      if r is None or r["diff"] == "":
        cells.append(r["verdict"] if r else "")
        continue
      ci = interval(r["diff_ci_low"], r["diff_ci_high"], digits, sign=True)
      p = "" if math.isnan(r["p_value"]) else f", p={r['p_value']:.3g}"
      cells.append(f"{format_number(r['diff'], digits, sign=True)}{' ' + ci if ci else ''}{p}: "
                   f"{r['verdict']}")
    lines.append(f"| {group_name} | {baseline or '(none)'} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def missing_baselines(rows: list[dict[str, Any]]) -> str:
  """A sentence naming the groups whose CE baseline is not among the runs ('' if none)."""
  missing = list(dict.fromkeys(r["group"] for r in rows if r["verdict"] == NO_BASELINE))
  return ("Not compared, no CE run with the same config among the runs: " + "; ".join(missing)
          + ".") if missing else ""


# --- Writing -------------------------------------------------------------------------------------


class Report(NamedTuple):
  """rows: summary.csv; sections: summary.md's markdown; figures: name -> data for the
  experiment's `plot`; runs: the runs it read."""
  rows: list[dict[str, Any]]
  sections: list[str]
  figures: dict[str, Any]
  runs: list[Run]


def header(title: str, command: str, runs: list[Run]) -> str:
  """The title, the command that made the report, the machine(s) and versions of the runs."""
  environments = [r.get("environment", {}) for r in runs]
  cpus = sorted({e.get("cpu_model", "unknown") for e in environments})
  versions = sorted({f"jax {e.get('jax_version', '?')}, {e.get('backend', '?')}"
                     for e in environments})
  return (f"# {title}\n\nMade by `{command}` from {len(runs)} runs. Machine (results.json "
          f"`environment.cpu_model`): {', '.join(cpus)}; {'; '.join(versions)}. Runs are "
          f"bit-identical only on the same machine with the same versions; elsewhere the means "
          f"move, and should stay within the CIs. 95% CIs are Student-t over seeds; Δ is paired "
          f"by seed (same init and data order), with the paired t-test p.\n")


def every_row_section(rows: list[dict[str, Any]]) -> str:
  return "## Every row (also in summary.csv)\n\n" + markdown(rows)


def write_csv(rows: list[dict[str, Any]], path: pathlib.Path) -> None:
  """summary.csv: the descriptive columns of the rows (first-seen order), then `COLUMNS`."""
  extra = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in COLUMNS]
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.DictWriter(f, fieldnames=[*extra, *COLUMNS], restval="")
    writer.writeheader()
    writer.writerows(rows)


DPI = 110


def write(report: Report, out: pathlib.Path | str, title: str, command: str,
          plot: Optional[Callable[[dict[str, Any]], dict[str, Any]]] = None) -> list[str]:
  """`out/summary.csv`, `out/summary.md` (header, sections, figures) and `out/<name>.png` for each
  figure that `plot(report.figures)` draws. Returns the names of the files written."""
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  write_csv(report.rows, out / "summary.csv")
  pngs = []
  if plot is not None and report.figures:
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
    for name, figure in plot(report.figures).items():
      figure.savefig(out / f"{name}.png", dpi=DPI, bbox_inches="tight")
      plt.close(figure)
      pngs.append(f"{name}.png")
  sections = [header(title, command, report.runs), *report.sections]
  if pngs:
    sections.append("Figures: " + ", ".join(f"![{p}]({p})" for p in pngs))
  (out / "summary.md").write_text("\n\n".join(sections) + "\n")
  return ["summary.csv", "summary.md", *pngs]


# --- The points of a sweep file ------------------------------------------------------------------


def matching(runs: list[Run], point: dict[str, Any]) -> list[Run]:
  """The runs trained at a sweep point: every field the point sets has its value, and every method
  of the table that the point does not set is off."""
  fields = {k: v for k, v in point.items() if k not in ("config", "name")}
  wanted = {**{m.field: m.off for m in methods.METHODS}, **fields}
  return [r for r in runs if all(_same(value(r, f), v) for f, v in wanted.items())]


def sweep_points(spec: str) -> list[dict[str, Any]]:
  """The points of a sweep file (`path[:arg]`, relative to the working directory)."""
  from ls_jax.experiments import sweeps  # pylint: disable=g-import-not-at-top
  return sweeps.load(spec)["points"]
