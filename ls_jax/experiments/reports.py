"""The analysis behind each experiment report of issue 8: tables, paired verdicts, figure data.

One function per experiment (`REPORTS`), each taking the finished runs (`study.load_run` dicts)
and returning a `Report`: rows in `study.summarize`'s schema (one per group, metric and baseline;
written to summary.csv), markdown sections (summary.md) and the numbers each figure draws
(`scripts/report.py` draws them). Nothing here trains or plots.

Every comparison is paired by seed (the same seed gives the same init and data order) through
`study.row`, so a verdict says "improves" / "worse" only where the 95% CI of the difference
excludes 0, and "no difference detected (n=...)" otherwise.
"""
import pathlib
from typing import Any, NamedTuple

import numpy as np
from scipy import special

from ls_jax import calibration, statistics
from ls_jax.experiments import study
from ls_jax.trainer import methods
from ls_jax.experiments.study import Metric

METRICS = {m.name: m for m in study.METRICS}
# Metrics computed here from predictions.npz (`confidence_split`).
CONFIDENCE_CORRECT = Metric("mean_confidence_correct", "confidence_split.correct", None)
CONFIDENCE_WRONG = Metric("mean_confidence_wrong", "confidence_split.wrong", None)
ACCURACY_DIGITS = 4

# Published figures quoted beside ours (from the papers; see README "Results").
GREYDANUS_2020_TEST_ACCURACY = {("mnist1d", "cnn1d"): 0.94, ("mnist1d", "mlp"): 0.68}
MUELLER_2019_TABLE_3 = (
    "| Müller et al. 2019, Table 3 (ECE, 15 bins) | without | TS | LS |\n"
    "|---|---|---|---|\n"
    "| CIFAR-100 ResNet-56 | 0.150 | 0.021 (T = 1.9) | 0.024 (a = 0.05) |\n"
    "| ImageNet Inception-v4 | 0.071 | 0.022 (T = 1.4) | 0.035 (a = 0.1) |")


class Report(NamedTuple):
  """rows: summary.csv; sections: summary.md's markdown; figures: name -> data to draw; runs: the
  runs it read."""
  rows: list[dict[str, Any]]
  sections: list[str]
  figures: dict[str, Any]
  runs: list[dict[str, Any]]


class Variant(NamedTuple):
  """A column of results: the runs of one group; `key` maps a metric's key to where this variant
  keeps it (`"temperature_scaled.{}"`: the metrics after temperature scaling)."""
  label: str
  runs: list[dict[str, Any]]
  key: str = "{}"


# --- Selecting runs ------------------------------------------------------------------------------


def field(run: dict[str, Any], name: str) -> Any:
  """A dotted config field of a run (`loss.label_smoothing`)."""
  return study.flatten(run["config"])[name]


def method_fields(run: dict[str, Any]) -> tuple[float, ...]:
  """`(label_smoothing, confidence_penalty, mixup, cutmix)` of a run."""
  return tuple(float(field(run, f)) for f in study.METHOD_FIELDS)


def where(runs: list[dict[str, Any]], **methods: float) -> list[dict[str, Any]]:
  """Runs whose method fields are the given ones and 0 otherwise: `where(runs, label_smoothing=.1)`.

  Keys are the last part of `study.METHOD_FIELDS` (`label_smoothing`, `confidence_penalty`,
  `alpha` is ambiguous, so Mixup and CutMix are `mixup` and `cutmix`).
  """
  names = {"label_smoothing": 0, "confidence_penalty": 1, "mixup": 2, "cutmix": 3}
  unknown = set(methods) - set(names)
  if unknown:
    raise ValueError(f"unknown method field {sorted(unknown)[0]!r}; use one of {sorted(names)}")
  wanted = [0.0] * 4
  for name, value in methods.items():
    wanted[names[name]] = float(value)
  return [r for r in runs if method_fields(r) == tuple(wanted)]


def _one_group(runs: list[dict[str, Any]], what: str) -> list[dict[str, Any]]:
  """`runs` if they form one group (differ only in seed), else a clear error."""
  if not runs:
    raise ValueError(f"no finished runs of {what}")
  groups = study.group_runs(runs)
  if len(groups) > 1:
    raise ValueError(f"the runs of {what} differ in more than the seed: "
                     f"{sorted(study.labels(groups).values())}")
  return runs


def _metric(metric: Metric, key: str) -> Metric:
  return metric._replace(key=key.format(metric.key))


def variant_rows(variants: list[Variant], metrics: tuple[Metric, ...],
                 comparisons: list[tuple[str, str]]) -> list[dict[str, Any]]:
  """Rows of every variant and metric; a variant compared with others gets one row per baseline.

  `comparisons` are `(variant label, baseline label)` pairs: the row's difference is
  variant - baseline, paired by seed.
  """
  by_label = {v.label: v for v in variants}
  rows = []
  for variant in variants:
    baselines = [b for v, b in comparisons if v == variant.label]
    for metric in metrics:
      by_seed = study.values_by_seed(variant.runs, _metric(metric, variant.key))
      if not by_seed:
        continue
      if not baselines:
        rows.append(study.row(variant.label, metric, by_seed))
      for baseline in baselines:
        base = by_label[baseline]
        rows.append(study.row(variant.label, metric, by_seed, baseline,
                              study.values_by_seed(base.runs, _metric(metric, base.key))))
  return rows


def series(rows: list[dict[str, Any]], metric: str, groups: list[str]) -> dict[str, np.ndarray]:
  """`mean`, `ci_low`, `ci_high` of `metric` for `groups`, in that order (for error bars)."""
  first = {}
  for r in rows:
    if r["metric"] == metric:
      first.setdefault(r["group"], r)
  return {k: np.array([first[g][k] for g in groups], dtype=np.float64)
          for k in ("mean", "ci_low", "ci_high")}


# --- Markdown ------------------------------------------------------------------------------------


def header(title: str, command: str, runs: list[dict[str, Any]]) -> str:
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


def _cell(r: dict[str, Any], digits: int) -> str:
  if np.isnan(r["ci_low"]):
    return f"{r['mean']:.{digits}f} (n={r['n']})"
  return f"{r['mean']:.{digits}f} [{r['ci_low']:.{digits}f}, {r['ci_high']:.{digits}f}]"


def wide_table(rows: list[dict[str, Any]], metrics: list[str], digits: int = 4) -> str:
  """One line per group: n and `mean [95% CI]` of each metric."""
  groups = list(dict.fromkeys(r["group"] for r in rows))
  first = {}
  for r in rows:
    first.setdefault((r["group"], r["metric"]), r)
  lines = ["| group | n | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 2) + "|"]
  for g in groups:
    cells = [_cell(first[g, m], digits) if (g, m) in first else "" for m in metrics]
    n = max(first[g, m]["n"] for m in metrics if (g, m) in first)
    lines.append(f"| {g} | {n} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def difference_table(rows: list[dict[str, Any]], metrics: list[str], digits: int = 4) -> str:
  """One line per (group, baseline): `Δ [95% CI], p, verdict` of each metric."""
  pairs = list(dict.fromkeys((r["group"], r["baseline"]) for r in rows if r["baseline"]))
  cell = {(r["group"], r["baseline"], r["metric"]): r for r in rows if r["baseline"]}
  lines = ["| group | vs | " + " | ".join(f"Δ {m}" for m in metrics) + " |",
           "|---" * (len(metrics) + 2) + "|"]
  for group, baseline in pairs:
    cells = []
    for m in metrics:
      r = cell.get((group, baseline, m))
      if r is None or r["diff"] == "":
        cells.append(r["verdict"] if r else "")
        continue
      ci = ("" if np.isnan(r["diff_ci_low"]) else
            f" [{r['diff_ci_low']:+.{digits}f}, {r['diff_ci_high']:+.{digits}f}]")
      p = "" if np.isnan(r["p_value"]) else f", p={r['p_value']:.3g}"
      cells.append(f"{r['diff']:+.{digits}f}{ci}{p}: {r['verdict']}")
    lines.append(f"| {group} | {baseline} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def _full_rows_section(rows: list[dict[str, Any]]) -> str:
  return "## Every row (also in summary.csv)\n\n" + study.markdown(rows)


# --- Experiment 1: methods -----------------------------------------------------------------------

METHODS_METRICS = ("accuracy", "nll", "ece", "adaptive_ece", "brier", "mean_confidence")
SELECTION_METRIC = Metric("validation_accuracy", "validation.accuracy", "higher")


def _model(run: dict[str, Any]) -> tuple[str, str]:
  return field(run, "data.name"), field(run, "model.name")


def _by_model(runs: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
  by_model = {}
  for run in runs:
    by_model.setdefault(_model(run), []).append(run)
  return by_model


def methods(runs: list[dict[str, Any]], selection: list[dict[str, Any]] | None = None) -> Report:
  """CE and each method at its picked strength, per model, with paired differences vs CE.

  `selection` (the select stage's runs) shows the mean validation accuracy of every candidate
  strength, and which one was evaluated (its config, less the seed, is an evaluated group's).
  """
  by_model = _by_model(runs)
  rows = [r for members in by_model.values()
          for r in study.summarize(members, [METRICS[m] for m in METHODS_METRICS])]
  sections = ["## Test metrics, mean [95% CI] over seeds\n\n" + wide_table(rows, list(
      METHODS_METRICS)), "## Paired differences with CE of the same model\n\n" + difference_table(
          rows, ["accuracy", "nll", "ece", "brier"])]
  groups, names = {}, {}
  for members in by_model.values():
    model_groups = study.group_runs(members)
    groups.update(model_groups)
    names.update(study.labels(model_groups))
  if selection:
    lines = ["| candidate | seeds | mean validation accuracy | evaluated |", "|---|---|---|---|"]
    for members in _by_model(selection).values():
      candidates = study.group_runs(members)
      for key, label in study.labels(candidates).items():
        values = study.values_by_seed(candidates[key], SELECTION_METRIC)
        lines.append(f"| {label} | {' '.join(map(str, sorted(values)))} | "
                     f"{np.mean(list(values.values())):.4f} | "
                     f"{'**picked**' if key in groups else ''} |")
    sections.insert(0, "## Strength selection (select stage; the metric is the mean validation "
                    "accuracy over the selection seeds, ties to the weaker strength)\n\n"
                    + "\n".join(lines))
  published = ["| model | published CE test accuracy (Greydanus 2020) | ours, CE |",
               "|---|---|---|"]
  for key, members in groups.items():
    model = _model(members[0])
    if model in GREYDANUS_2020_TEST_ACCURACY and method_fields(members[0]) == (0.0,) * 4:
      ours = next(r for r in rows if r["group"] == names[key] and r["metric"] == "accuracy")
      published.append(f"| {' '.join(model)} | {GREYDANUS_2020_TEST_ACCURACY[model]:.0%} | "
                       f"{_cell(ours, ACCURACY_DIGITS)} |")
  sections.append("## Published beside ours\n\n" + "\n".join(published) + "\n\nGreydanus trained "
                  "on all 4,000 training signals; we hold 400 out for validation.")
  sections.append(_full_rows_section(rows))
  figure = {}  # Per model, CE first.
  for key, members in sorted(groups.items(), key=lambda g: method_fields(g[1][0]) != (0.0,) * 4):
    model = " ".join(_model(members[0]))
    figure.setdefault(model, []).append(names[key])
  figures = {"methods": {
      "models": {model: {"methods": [g.removeprefix(model + " ") for g in labels],
                         **{m: series(rows, m, labels) for m in ("accuracy", "ece")},
                         "published": GREYDANUS_2020_TEST_ACCURACY.get(tuple(model.split()))}
                 for model, labels in figure.items()}}}
  return Report(rows, sections, figures, runs + (selection or []))


# --- Experiment 2: strength ----------------------------------------------------------------------

STRENGTH_METRICS = ("accuracy", "nll", "ece", "mean_confidence")


class AccuracyDrop(NamedTuple):
  """peak: the strength with the highest mean accuracy; comparisons: (a, a - peak) for every other
  a; first_drop: the smallest a above the peak whose CI of the difference lies below 0, or None."""
  peak: float
  comparisons: list[tuple[float, statistics.PairedComparison]]
  first_drop: float | None


def accuracy_drop(accuracy: dict[float, dict[int, float]]) -> AccuracyDrop:
  """Where accuracy falls significantly below its peak as the smoothing strength grows.

  Args:
    accuracy: `{a: {seed: accuracy}}`.

  Each a is compared with the peak pairwise on their common seeds; the first drop is the smallest
  a above the peak with the whole 95% CI of `acc(a) - acc(peak)` below 0.
  """
  if not accuracy:
    raise ValueError("accuracy_drop needs at least one strength")
  peak = max(accuracy, key=lambda a: (np.mean(list(accuracy[a].values())), -a))
  comparisons = []
  for a in sorted(accuracy):
    if a == peak:
      continue
    common = sorted(set(accuracy[a]) & set(accuracy[peak]))
    if common:
      comparisons.append((a, statistics.paired_comparison([accuracy[a][s] for s in common],
                                                          [accuracy[peak][s] for s in common])))
  first_drop = next((a for a, c in comparisons if a > peak and c.ci_high < 0), None)
  return AccuracyDrop(peak, comparisons, first_drop)


def _by_strength(runs: list[dict[str, Any]]) -> dict[float, list[dict[str, Any]]]:
  """The runs of plain LS (CE at a = 0) by a; runs with any other method are left out."""
  by_a = {}
  for run in runs:
    ls, *others = method_fields(run)
    if not any(others):
      by_a.setdefault(ls, []).append(run)
  return by_a


def _strength_label(a: float) -> str:
  return "CE" if a == 0 else f"LS {a:g}"


def strength(runs: list[dict[str, Any]]) -> Report:
  """Accuracy, NLL, ECE and mean confidence against a; where accuracy drops below its peak."""
  by_a = _by_strength(runs)
  strengths = sorted(by_a)
  variants = [Variant(_strength_label(a), _one_group(by_a[a], f"a={a:g}")) for a in strengths]
  metrics = tuple(METRICS[m] for m in STRENGTH_METRICS + ("adaptive_ece", "brier"))
  rows = variant_rows(variants, metrics, [(v.label, "CE") for v in variants[1:]] if (
      0.0 in by_a) else [])
  accuracy = {a: study.values_by_seed(by_a[a], METRICS["accuracy"]) for a in strengths}
  drop = accuracy_drop(accuracy)
  peak = _strength_label(drop.peak)
  for a, comparison in drop.comparisons:
    row = study.row(_strength_label(a), METRICS["accuracy"], accuracy[a], f"peak {peak}",
                    accuracy[drop.peak])
    rows.append(row)
  num_classes = int(field(runs[0], "num_classes"))
  if drop.first_drop is None:
    verdict = (f"No significant drop below the peak ({peak}) was detected at any larger a "
               f"(n={min(len(v) for v in accuracy.values())} seeds per strength).")
  else:
    verdict = (f"Accuracy peaks at {peak}; the first larger a whose accuracy is significantly "
               f"below the peak (95% CI of the paired difference below 0) is a = "
               f"{drop.first_drop:g}.")
  drop_rows = [r for r in rows if r["baseline"] == f"peak {peak}"]
  sections = [
      "## Mean [95% CI] over seeds\n\n" + wide_table(rows, list(STRENGTH_METRICS)),
      f"## Where does accuracy drop?\n\n{verdict}\n\n" + difference_table(drop_rows, ["accuracy"]),
      f"Training-confidence ceiling: 1 - a + a/K with K = {num_classes}: the most confident "
      f"prediction that minimizes the smoothed loss.",
      "## Paired differences with CE\n\n" + difference_table(
          [r for r in rows if r["baseline"] == "CE"], list(STRENGTH_METRICS)),
      _full_rows_section(rows)]
  labels = [v.label for v in variants]
  figures = {"strength": {"a": np.array(strengths), "num_classes": num_classes,
                          "first_drop": drop.first_drop, "peak": drop.peak,
                          **{m: series(rows, m, labels) for m in STRENGTH_METRICS}}}
  return Report(rows, sections, figures, [r for v in variants for r in v.runs])


# --- Experiment 3: confidence, same init ---------------------------------------------------------


def _softmax(logits: np.ndarray) -> np.ndarray:
  return special.softmax(np.asarray(logits, dtype=np.float64), axis=1)


def test_probabilities(run: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
  """Softmax of the run's test logits (float64) and the test labels, from predictions.npz."""
  with np.load(pathlib.Path(run["workdir"]) / "predictions.npz") as predictions:
    return _softmax(predictions["test_logits"]), predictions["test_labels"]


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


def _finite_split(run: dict[str, Any], probs: np.ndarray, labels: np.ndarray) -> None:
  split = confidence_split(probs, labels)
  run["confidence_split"] = {k: v for k, v in split.items() if np.isfinite(v)}


def confidence(runs: list[dict[str, Any]], label_smoothing: float = 0.1) -> Report:
  """CE against LS from the same init: one example, max-softmax histograms, right vs wrong."""
  ce = _one_group(where(runs), "CE")
  ls = _one_group(where(runs, label_smoothing=label_smoothing), f"LS {label_smoothing:g}")
  probs = {}
  for run in ce + ls:
    probs[run["workdir"]] = test_probabilities(run)
    _finite_split(run, *probs[run["workdir"]])
  ls_label = f"LS {label_smoothing:g}"
  variants = [Variant("CE", ce), Variant(ls_label, ls)]
  metrics = (METRICS["accuracy"], METRICS["mean_confidence"], CONFIDENCE_CORRECT, CONFIDENCE_WRONG)
  rows = variant_rows(variants, metrics, [(ls_label, "CE")])
  names = [m.name for m in metrics]
  ce_by_seed = {r["config"]["seed"]: r for r in ce}
  ls_by_seed = {r["config"]["seed"]: r for r in ls}
  seed = min(set(ce_by_seed) & set(ls_by_seed))
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
           f": test index {index} (class {example['label']}), CE {ce_probs[index].max():.4f}, "
           f"{ls_label} {ls_probs[index].max():.4f}.")
  if example is None:
    pick += " No test example qualifies."
  sections = ["## Mean [95% CI] over seeds (test)\n\n" + wide_table(rows, names),
              f"## {ls_label} vs CE, paired by seed (same init and data order)\n\n"
              + difference_table(rows, names), pick,
              "The histograms pool the test predictions of every seed.",
              _full_rows_section(rows)]
  pooled = {name: np.concatenate([probs[r["workdir"]][0].max(axis=1) for r in group])
            for name, group in (("CE", ce), (ls_label, ls))}
  figures = {"confidence_example": example, "confidence_histogram": pooled}
  return Report(rows, sections, figures, ce + ls)


# --- Experiment 4: calibration -------------------------------------------------------------------

CALIBRATION_METRICS = ("ece", "adaptive_ece", "nll", "brier")
CALIBRATION_METHODS = (("CE", {}), ("LS 0.1", {"label_smoothing": 0.1}),
                       ("CP 0.1", {"confidence_penalty": 0.1}), ("Mixup 0.2", {"mixup": 0.2}))


def pooled_reliability(bins: list[dict[str, list]]) -> dict[str, np.ndarray]:
  """Reliability bins (results.json's `reliability`) pooled over runs: counts add, and each bin's
  accuracy and mean confidence are the count-weighted means (NaN for a bin empty in every run)."""
  edges = np.asarray(bins[0]["edges"], dtype=np.float64)
  for b in bins:
    if not np.array_equal(np.asarray(b["edges"], dtype=np.float64), edges):
      raise ValueError("reliability bins with different edges cannot be pooled")
  count = np.array([b["count"] for b in bins], dtype=np.float64)
  def weighted(name):
    values = np.array([[np.nan if v is None else v for v in b[name]] for b in bins], np.float64)
    total = np.nansum(np.where(count > 0, values, 0.0) * count, axis=0)
    return np.divide(total, count.sum(0), out=np.full(len(edges) - 1, np.nan),
                     where=count.sum(0) > 0)
  return {"edges": edges, "accuracy": weighted("accuracy"),
          "mean_confidence": weighted("mean_confidence"), "count": count.sum(0)}


def calibration_report(runs: list[dict[str, Any]]) -> Report:
  """CE, LS 0.1, CP 0.1, Mixup 0.2, each also after temperature scaling fitted on validation."""
  variants, diagrams = [], {}
  for name, methods_ in CALIBRATION_METHODS:
    members = _one_group(where(runs, **methods_), name)
    variants += [Variant(name, members), Variant(f"{name} + TS", members, "temperature_scaled.{}")]
    diagrams[name] = pooled_reliability([r["reliability"] for r in members])
    diagrams[f"{name} + TS"] = pooled_reliability(
        [r["reliability_temperature_scaled"] for r in members])
  metrics = tuple(METRICS[m] for m in ("accuracy",) + CALIBRATION_METRICS)
  comparisons = [(v.label, "CE") for v in variants if v.label != "CE"]
  comparisons += [(f"{n} + TS", n) for n, _ in CALIBRATION_METHODS if n != "CE"]
  rows = variant_rows(variants, metrics, comparisons)
  temperature = variant_rows(variants[::2], (METRICS["temperature"],), [])
  sections = [
      "## Test metrics, mean [95% CI] over seeds (TS: T fitted on validation only)\n\n"
      + wide_table(rows + temperature, list(CALIBRATION_METRICS) + ["temperature"]),
      "## Paired differences with CE (without TS)\n\n" + difference_table(
          [r for r in rows if r["baseline"] == "CE"], list(CALIBRATION_METRICS)),
      "## What TS adds to each method (paired, same runs)\n\n" + difference_table(
          [r for r in rows if r["group"].endswith("+ TS") and r["baseline"] != "CE"],
          list(CALIBRATION_METRICS)),
      "## Published beside ours\n\n" + MUELLER_2019_TABLE_3,
      "Reliability diagrams pool the test predictions of every seed (bin counts add).",
      _full_rows_section(rows + temperature)]
  return Report(rows + temperature, sections, {"reliability": diagrams},
                [r for v in variants[::2] for r in v.runs])


# --- Experiment 5: selective classification ------------------------------------------------------

SELECTIVE_STRENGTHS = (0.0, 0.05, 0.1, 0.3)  # configs/sweeps/selective.py
RISK_COVERAGE_CURVES = ("CE", "LS 0.1", "LS 0.3")  # Each with and without logit normalization.
SELECTIVE_METRICS = (Metric("aurc", "aurc", "lower"), Metric("auroc", "auroc", "higher"))


def selective(runs: list[dict[str, Any]]) -> Report:
  """CE and LS, ranked by max-softmax and by MaxLogit-pNorm (p fitted on validation, Xia 2025)."""
  by_a = {a: members for a, members in _by_strength(runs).items() if a in SELECTIVE_STRENGTHS}
  if 0.0 not in by_a:
    raise ValueError("no finished CE runs (label_smoothing=0) to compare with")
  variants, comparisons, norm = [], [], "+ logit norm"
  for a in sorted(by_a):
    members, label = _one_group(by_a[a], f"a={a:g}"), _strength_label(a)
    variants += [Variant(label, members, "selective.{}"),
                 Variant(f"{label} {norm}", members, "selective.{}_pnorm")]
    if a:
      comparisons += [(label, "CE"), (f"{label} {norm}", "CE"), (f"{label} {norm}", label)]
  comparisons.append((f"CE {norm}", "CE"))
  rows = variant_rows(variants, SELECTIVE_METRICS, comparisons)
  names = [m.name for m in SELECTIVE_METRICS]
  p = {v.label: sorted(r["selective"]["pnorm_p"] for r in v.runs) for v in variants[::2]}
  sections = [
      "## Test AURC (lower is better) and misclassification AUROC of the confidence score, mean "
      "[95% CI] over seeds\n\n" + wide_table(rows, names),
      "## Paired differences\n\n" + difference_table(rows, names),
      "MaxLogit-pNorm: `max_k (z_k - mean z) / ||z - mean z||_p`, p in 1..9 fitted per run on "
      "validation by AURC (`calibration.fit_logit_norm_p`), applied on test. Fitted p per run: "
      + "; ".join(f"{k}: {', '.join(f'{x:g}' for x in v)}" for k, v in p.items()) + ".",
      "Published (Xia et al., ICLR 2025, qualitative): LS consistently degrades selective "
      "classification (higher AURC); post-hoc logit normalization recovers it.",
      _full_rows_section(rows)]
  curves = {v.label: mean_risk_coverage(v.runs, v.key.endswith("_pnorm"))
            for v in variants if v.label.split(" +")[0] in RISK_COVERAGE_CURVES}
  return Report(rows, sections, {"risk_coverage": curves},
                [r for v in variants[::2] for r in v.runs])


def mean_risk_coverage(runs: list[dict[str, Any]], pnorm: bool) -> dict[str, np.ndarray]:
  """The test risk-coverage curve averaged over runs (same test set), by max-softmax or pNorm."""
  risks = []
  for run in runs:
    with np.load(pathlib.Path(run["workdir"]) / "predictions.npz") as predictions:
      logits, labels = predictions["test_logits"], predictions["test_labels"]
    score = (calibration.max_logit_pnorm(logits, run["selective"]["pnorm_p"]) if pnorm
             else _softmax(logits).max(axis=1))
    curve = calibration.risk_coverage_curve(score, logits.argmax(axis=1) == labels)
    risks.append(curve.risk)
  if len({len(r) for r in risks}) > 1:
    raise ValueError("risk-coverage curves of test sets of different sizes cannot be averaged")
  return {"coverage": curve.coverage, "risk": np.mean(risks, axis=0)}


# --- Experiment 6: label noise -------------------------------------------------------------------

NOISE_METRICS = ("accuracy", "ece")


def _noise(run: dict[str, Any]) -> tuple[str, float]:
  return field(run, "data.label_noise.kind"), float(field(run, "data.label_noise.rate"))


def _noise_protocol(configs: list[dict[str, Any]]) -> str:
  """How the runs (their `study.resolved` configs) were trained: from scratch, or fine-tuned from
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


def noise(runs: list[dict[str, Any]]) -> Report:
  """Clean-test accuracy and ECE per noise setting and method, paired with CE at that setting,
  for runs trained from scratch or fine-tuned from a CE warm-up (not both at once)."""
  configs = [study.resolved(r["config"]) for r in runs]
  protocol = _noise_protocol(configs)
  rows = study.summarize(runs, [METRICS[m] for m in NOISE_METRICS])
  groups = study.group_runs(runs)
  names = study.labels(groups)
  by_method: dict[str, dict[tuple[str, float], str]] = {}
  for key, members in groups.items():
    method = methods.label({**members[0]["config"], "data": {
        **members[0]["config"]["data"], "label_noise": {"kind": "symmetric", "rate": 0.0}}})
    by_method.setdefault(method, {})[_noise(members[0])] = names[key]
  negative = [r for r in rows if r["metric"] == "accuracy" and r["baseline"]
              and any(names[k] == r["group"] and method_fields(g[0])[0] < 0
                      for k, g in groups.items())]
  helps = [r["group"] for r in negative if r["verdict"] == "improves"]
  statement = ("Negative LS improves clean-test accuracy over CE (95% CI of the paired difference "
               f"above 0) at: {'; '.join(helps)}." if helps else
               "Negative LS improves clean-test accuracy over CE at no noise setting.")
  statement += " Elsewhere: " + "; ".join(
      f"{r['group']}: {r['verdict']}" for r in negative if r["group"] not in helps) + "."
  sections = [protocol,
              "## Clean-test accuracy and ECE, mean [95% CI] over seeds\n\n"
              + wide_table(rows, list(NOISE_METRICS)),
              "## Paired differences with CE at the same noise setting\n\n"
              + difference_table(rows, list(NOISE_METRICS)),
              "## Negative label smoothing (Wei et al. 2022)\n\n" + statement,
              "Published: Lukasik et al. 2020, LS often mitigates label noise; Wei et al. 2022, "
              "negative LS can beat positive LS at high noise rates, with a CE warm-up (their "
              "code fine-tunes the CE model; from scratch, a = -1 diverged for a user, "
              "github.com/UCSC-REAL/negative-label-smoothing issue 3). The README puts their "
              "CIFAR-10 numbers beside ours.",
              _full_rows_section(rows)]
  panels = {}
  for kind in ("symmetric", "asymmetric"):
    panels[kind] = {}
    for method, settings in by_method.items():
      points = sorted((rate, label) for (k, rate), label in settings.items()
                      if k == kind or rate == 0)
      if len(points) > 1 or any(rate for rate, _ in points):
        panels[kind][method] = {"rate": np.array([p for p, _ in points]),
                                **series(rows, "accuracy", [label for _, label in points])}
  models = ", ".join(sorted({f"{c['data.name']} {c['model.name']}" for c in configs}))
  title = models + (", fine-tuned from the CE warm-up: " + _finetune_recipe(configs)
                    if configs[0]["init_from"] else ", trained from scratch")
  return Report(rows, sections, {"noise": {"panels": panels, "title": title}}, runs)


REPORTS = {"methods": methods, "strength": strength, "confidence": confidence,
           "calibration": calibration_report, "selective": selective, "noise": noise}
