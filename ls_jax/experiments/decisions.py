"""The decision experiment: does binary label smoothing improve decisions at a cost threshold?

Sweep: configs/sweeps/decisions.py (binary CE, binary LS at several a, binary focal loss, on the
`binary_synthetic` and `breast_cancer` tasks, 10 seeds). Each run's P(y = 1) = sigmoid(logit)
comes from its predictions.npz; its temperature-scaled version applies the run's own T (fitted on
validation, results.json) to the same logits, so every method is also shown "+ TS" without
retraining.

For each cost ratio r = c_FN / c_FP (c_FP = 1), a run decides y = 1 iff p >= t with
  * the Bayes threshold t = c_FP / (c_FP + c_FN) = 1 / (1 + r) (Elkan 2001): what trusting the
    probabilities gives;
  * a threshold tuned on validation: the one of the candidates (0, the midpoints of the sorted
    distinct validation probabilities, and +inf) with the lowest validation cost, ties to the
    largest.
Reported per run: the test cost per example, mean of c_FP FP + c_FN FN over the realized test
labels; the fraction of test examples predicted positive; on the synthetic task, whose true
P(y = 1 | x) is known, the regret against the Bayes-optimal decisions of the TRUE probabilities,
measured in expected cost under the true p (deciding 1 costs (1 - p) c_FP, deciding 0 costs
p c_FN), which has a lower variance than realized labels. Also: the model's mean confidence
max(p, 1 - p) on the ambiguous examples (true p near 0.5) against the truth's, mean |p - p_true|,
and the calibration and ranking of P(y = 1) from results.json (ECE, Brier, NLL, AUROC, AP), raw
and after TS.

Every number is per run and goes through `runs.variant_rows`: mean and 95% CI over seeds, and the
difference with CE of the same task (and each "+ TS" with "CE + TS") paired by seed.
"""
import functools
import math
import pathlib
from typing import Any

import numpy as np
from scipy import special

from ls_jax.experiments import calibration as calibration_report
from ls_jax.experiments import runs as runs_lib
from ls_jax.experiments.runs import Metric
from ls_jax.trainer import methods

RATIOS = (1, 2, 3, 5, 10, 20, 50)  # c_FN / c_FP, with c_FP = 1.
C_FP = 1.0
SYNTHETIC = "binary_synthetic"  # It and its variants (`binary_synthetic/amb0`) know P(y = 1 | x).
# Their features (`embedded_datasets.split_features`): the true probability and the ambiguous flag.
TRUE_PROBABILITY = "true_prob"
AMBIGUOUS = "ambiguous"
TS = "+ TS"
TRUTH = "truth (Bayes decisions with the true p)"
# From results.json: raw at the top level, after TS under `temperature_scaled`.
CALIBRATION = (Metric("accuracy", "accuracy", "higher"), Metric("ece", "ece", "lower"),
               Metric("top_label_ece", "top_label_ece", "lower"),
               Metric("brier", "brier", "lower"), Metric("nll", "nll", "lower"),
               Metric("auroc", "auroc", "higher"),
               Metric("average_precision", "average_precision", "higher"))
PUBLISHED = (
    "| paper | setting | CE | TS | LS | focal |\n"
    "|---|---|---|---|---|---|\n"
    "| Müller et al. 2019, Table 3 | CIFAR-100 ResNet-56, ECE (15 bins, top-1) | 0.150 "
    "| 0.021 (T = 1.9) | 0.024 (a = 0.05) | |\n"
    "| Müller et al. 2019, Table 3 | ImageNet Inception-v4, ECE | 0.071 | 0.022 (T = 1.4) "
    "| 0.035 (a = 0.1) | |\n"
    "| Mukhoti et al. 2020 | CIFAR-10 ResNet-50, error / ECE % | 4.95 / 4.35 | "
    "| 5.29 / 2.96 (a = 0.05; fitted T ≈ 0.9) | better calibrated than CE and LS before TS "
    "(FLSD-53) |")


# --- Decisions -----------------------------------------------------------------------------------


def _check_costs(c_fp: float, c_fn: float) -> None:
  for name, c in (("c_FP", c_fp), ("c_FN", c_fn)):
    if not (isinstance(c, (int, float, np.floating, np.integer)) and math.isfinite(c) and c > 0):
      raise ValueError(f"{name} must be a positive finite cost, got {c!r}")


def _checked(probabilities: Any, labels: Any = None, what: str = "labels"
             ) -> tuple[np.ndarray, np.ndarray | None]:
  p = np.asarray(probabilities, np.float64)
  if p.ndim != 1 or np.any(~((p >= 0) & (p <= 1))):
    raise ValueError(f"probabilities must be a 1-D array in [0, 1], got shape {p.shape}")
  if labels is None:
    return p, None
  y = np.asarray(labels)
  if y.shape != p.shape:
    raise ValueError(f"{what} of shape {y.shape} do not match probabilities of shape {p.shape}")
  if what == "labels" and not np.all((y == 0) | (y == 1)):
    raise ValueError(f"labels must be 0 or 1, got {sorted(set(np.unique(y)) - {0, 1})[:3]}")
  if what == "true probabilities" and np.any(~((y >= 0) & (y <= 1))):
    raise ValueError("true probabilities must lie in [0, 1]")
  return p, y.astype(np.float64)


def bayes_threshold(c_fp: float, c_fn: float) -> float:
  """`c_FP / (c_FP + c_FN)`: with calibrated p, deciding 1 iff p >= t minimizes expected cost."""
  _check_costs(c_fp, c_fn)
  return c_fp / (c_fp + c_fn)


def decide(probabilities: Any, threshold: float) -> np.ndarray:
  """y = 1 iff p >= threshold."""
  p, _ = _checked(probabilities)
  return p >= threshold


def cost(decisions: Any, labels: Any, c_fp: float, c_fn: float) -> float:
  """Realized cost per example: mean of c_FP [decided 1, y = 0] + c_FN [decided 0, y = 1]."""
  _check_costs(c_fp, c_fn)
  d = np.asarray(decisions, bool)
  _, y = _checked(d.astype(np.float64), labels)
  return float(np.mean(c_fp * (d & (y == 0)) + c_fn * (~d & (y == 1))))


def expected_cost(decisions: Any, true_probabilities: Any, c_fp: float, c_fn: float) -> float:
  """Expected cost per example under the true P(y = 1): (1 - p) c_FP if decided 1, else p c_FN."""
  _check_costs(c_fp, c_fn)
  d = np.asarray(decisions, bool)
  _, p = _checked(d.astype(np.float64), true_probabilities, "true probabilities")
  return float(np.mean(np.where(d, (1 - p) * c_fp, p * c_fn)))


def regret(decisions: Any, true_probabilities: Any, c_fp: float, c_fn: float) -> float:
  """Expected cost of `decisions` minus that of the Bayes-optimal decisions of the true p (>= 0)."""
  best = decide(true_probabilities, bayes_threshold(c_fp, c_fn))
  return (expected_cost(decisions, true_probabilities, c_fp, c_fn)
          - expected_cost(best, true_probabilities, c_fp, c_fn))


def candidate_thresholds(probabilities: Any) -> np.ndarray:
  """0 (everything positive), the midpoints of the sorted distinct probabilities, and +inf
  (everything negative): one threshold for every way to split the examples by p."""
  p, _ = _checked(probabilities)
  distinct = np.unique(p)
  return np.concatenate([[0.0], (distinct[:-1] + distinct[1:]) / 2, [np.inf]])


def tuned_threshold(probabilities: Any, labels: Any, c_fp: float, c_fn: float) -> float:
  """The candidate threshold (`candidate_thresholds`) of lowest cost on (probabilities, labels);
  ties go to the largest."""
  _check_costs(c_fp, c_fn)
  p, y = _checked(probabilities, labels)
  candidates = candidate_thresholds(p)
  order = np.argsort(p, kind="stable")
  p, y = p[order], y[order]
  below = np.searchsorted(p, candidates, side="left")  # Decided 0: p < t.
  positives_below = np.concatenate([[0.0], np.cumsum(y)])[below]
  false_negatives = positives_below
  false_positives = (len(p) - below) - (y.sum() - positives_below)
  costs = c_fp * false_positives + c_fn * false_negatives
  best = np.flatnonzero(costs == costs.min())[-1]
  return float(candidates[best])


def decision_metrics(val_p: np.ndarray, val_y: np.ndarray, test_p: np.ndarray,
                     test_y: np.ndarray, true_p: np.ndarray | None = None,
                     ratios: tuple[float, ...] = RATIOS) -> dict[str, float]:
  """Per ratio r: `cost_{bayes,tuned}_r{r}`, `positives_*` (fraction decided 1), `threshold_tuned`
  (NaN where it is +inf: nothing positive), and with `true_p`, `regret_*`."""
  out = {}
  for r in ratios:
    c_fn = C_FP * r
    thresholds = {"bayes": bayes_threshold(C_FP, c_fn),
                  "tuned": tuned_threshold(val_p, val_y, C_FP, c_fn)}
    for rule, t in thresholds.items():
      d = decide(test_p, t)
      out[f"cost_{rule}_r{r:g}"] = cost(d, test_y, C_FP, c_fn)
      out[f"positives_{rule}_r{r:g}"] = float(d.mean())
      if true_p is not None:
        out[f"regret_{rule}_r{r:g}"] = regret(d, true_p, C_FP, c_fn)
    out[f"threshold_tuned_r{r:g}"] = thresholds["tuned"] if np.isfinite(thresholds["tuned"]) \
        else float("nan")
  return out


def confidence(p: np.ndarray) -> np.ndarray:
  """max(p, 1 - p): the confidence of the decision at 0.5."""
  return np.maximum(p, 1 - p)


def truth_metrics(test_p: np.ndarray, true_p: np.ndarray, ambiguous: np.ndarray
                  ) -> dict[str, float]:
  """The model's P(y = 1) against the truth: mean |p - p_true| (all, ambiguous), the mean
  confidence on the ambiguous examples, and its excess over the truth's confidence there."""
  ambiguous = np.asarray(ambiguous, bool)
  error = np.abs(test_p - true_p)
  return {"prob_error": float(error.mean()),
          "prob_error_ambiguous": float(error[ambiguous].mean()),
          "confidence_ambiguous": float(confidence(test_p[ambiguous]).mean()),
          "excess_confidence_ambiguous": float(confidence(test_p[ambiguous]).mean()
                                               - confidence(true_p[ambiguous]).mean())}


# --- Runs -> rows --------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def synthetic_truth(task: str) -> dict[str, np.ndarray] | None:
  """The test split's labels, true P(y = 1) and ambiguous flags of `task`, in evaluation order;
  None for a task without a known truth."""
  if not task.startswith(SYNTHETIC):
    return None
  from ls_jax.trainer import embedded_datasets  # pylint: disable=g-import-not-at-top
  features = embedded_datasets.split_features(task, "test")
  return {"label": np.asarray(features["label"]),
          "true_probability": np.asarray(features[TRUE_PROBABILITY], np.float64),
          "ambiguous": np.asarray(features[AMBIGUOUS], bool)}


def _predictions(run: runs_lib.Run) -> dict[str, np.ndarray]:
  path = pathlib.Path(run["workdir"]) / "predictions.npz"
  if not path.exists():
    raise ValueError(f"{run['workdir']}: no predictions.npz (the report needs the logits)")
  with np.load(path) as predictions:
    out = {k: np.asarray(predictions[k]) for k in ("val_logits", "val_labels", "test_logits",
                                                   "test_labels")}
  if out["test_logits"].ndim != 1:
    raise ValueError(f"{run['workdir']}: logits of shape {out['test_logits'].shape}, not a "
                     "binary run (num_classes = 1)")
  return out


def run_metrics(run: runs_lib.Run, task: str, scaled: bool) -> dict[str, float]:
  """Every metric of one run (raw, or with its T applied to the logits when `scaled`)."""
  predictions = _predictions(run)
  t = float(run["temperature"]) if scaled else 1.0
  val_p = special.expit(predictions["val_logits"].astype(np.float64) / t)
  test_p = special.expit(predictions["test_logits"].astype(np.float64) / t)
  truth = synthetic_truth(task)
  true_p = None
  if truth is not None:
    if not np.array_equal(truth["label"], predictions["test_labels"]):
      raise ValueError(f"{run['workdir']}: test labels differ from {task}'s test split (another "
                       "order or version of the data?)")
    true_p = truth["true_probability"]
  source = run.get("temperature_scaled", {}) if scaled else run
  out = {m.name: float(source[m.key]) for m in CALIBRATION if m.key in source}
  if not scaled:  # A T at its bound: validation separated by the logits, TS degenerate.
    out["temperature"] = float(run["temperature"])
    out["temperature_at_bound"] = float(bool(run.get("temperature_at_bound", False)))
  out.update(p_min=float(test_p.min()), p_max=float(test_p.max()))
  decided = decision_metrics(val_p, predictions["val_labels"], test_p, predictions["test_labels"],
                             true_p)
  if scaled:  # TS moves neither the 0.5 decisions nor the validation split a tuned threshold picks.
    out.pop("accuracy", None)
    decided = {k: v for k, v in decided.items()
               if not k.startswith(("positives_tuned", "threshold_tuned"))}
  out.update(decided)
  if truth is not None:
    out.update(truth_metrics(test_p, true_p, truth["ambiguous"]))
  return out


def truth_run(run: runs_lib.Run, task: str) -> dict[str, float]:
  """The Bayes decisions of the true p on the same test split (the same for every seed)."""
  truth = synthetic_truth(task)
  true_p, labels = truth["true_probability"], truth["label"]
  out = {"confidence_ambiguous": float(confidence(true_p[truth["ambiguous"]]).mean()),
         "p_min": float(true_p.min()), "p_max": float(true_p.max())}
  for r in RATIOS:
    d = decide(true_p, bayes_threshold(C_FP, C_FP * r))
    out[f"cost_bayes_r{r:g}"] = cost(d, labels, C_FP, C_FP * r)
    out[f"positives_bayes_r{r:g}"] = float(d.mean())
  del run
  return out


def metric_list(names: list[str]) -> tuple[Metric, ...]:
  better = {m.name: m.better for m in CALIBRATION}
  def direction(name):
    if name in better:
      return better[name]
    if name.startswith(("cost_", "regret_", "prob_error")):
      return "lower"
    return None  # positives, thresholds, confidence, p range, temperature.
  return tuple(Metric(n, f"metrics.{n}", direction(n)) for n in names)


def _derived(run: runs_lib.Run, metrics: dict[str, float]) -> runs_lib.Run:
  return {"config": run["config"], "workdir": run["workdir"],
          "environment": run.get("environment", {}), "metrics": metrics}


def _describe(row: dict[str, Any], task: str, method: str) -> dict[str, Any]:
  """summary.csv's descriptive columns: task, method, measure and ratio (for per-ratio metrics)."""
  measure, ratio = row["metric"], ""
  head, sep, tail = measure.rpartition("_r")
  if sep and tail.replace(".", "").isdigit():
    measure, ratio = head, tail
  return {"task": task, "method": method, "measure": measure, "ratio": ratio, **row}


def report(runs: list[runs_lib.Run]) -> runs_lib.Report:
  """Every task among the runs; within it every method (CE first) with and without TS."""
  by_task: dict[str, list[runs_lib.Run]] = {}
  for run in runs:
    by_task.setdefault(str(runs_lib.value(run, "data.name")), []).append(run)
  rows, figures, used = [], {"tasks": {}}, []
  all_positive = []
  for task in sorted(by_task, key=lambda t: (not t.startswith(SYNTHETIC), t)):
    groups = runs_lib.group(by_task[task])
    names = {key: methods.label(members[0]["config"]) for key, members in groups.items()}
    if len(set(names.values())) < len(names):
      raise ValueError(f"{task}: runs of one method differ in more than the seed: "
                       f"{sorted(runs_lib.labels(groups).values())}")
    if methods.BASELINE not in names.values():
      raise ValueError(f"{task}: no finished CE runs (every method off) to compare with")
    variants, comparisons, method_of, diagrams = [], [], {}, {}
    ce, ce_ts = f"{task} {methods.BASELINE}", f"{task} {methods.BASELINE} {TS}"
    for key, members in groups.items():
      name = names[key]
      for scaled in (False, True):
        label = f"{task} {name}" + (f" {TS}" if scaled else "")
        method_of[label] = name + (f" {TS}" if scaled else "")
        derived = [_derived(r, run_metrics(r, task, scaled)) for r in members]
        variants.append(runs_lib.Variant(label, derived, "{}"))
        if label == ce_ts or (not scaled and label != ce):
          comparisons.append((label, ce))
        elif scaled:  # Each method + TS against CE + TS: TS on both sides.
          comparisons.append((label, ce_ts))
        reliability = "reliability_temperature_scaled" if scaled else "reliability"
        if all(reliability in r for r in members):
          diagrams[method_of[label]] = calibration_report.pooled_reliability(
              [r[reliability] for r in members])
        for r_value in RATIOS:
          n = sum(d["metrics"][f"positives_bayes_r{r_value:g}"] == 1.0 for d in derived)
          if n:
            all_positive.append((task, method_of[label], r_value, n, len(derived)))
      used += members
    if synthetic_truth(task) is not None:
      ce_members = groups[next(k for k, v in names.items() if v == methods.BASELINE)]
      label = f"{task} {TRUTH}"
      method_of[label] = TRUTH
      variants.append(runs_lib.Variant(
          label, [_derived(r, truth_run(r, task)) for r in ce_members], "{}"))
    names_all = list(dict.fromkeys(n for v in variants for n in v.runs[0]["metrics"]))
    task_rows = runs_lib.variant_rows(variants, metric_list(names_all), comparisons)
    rows += [_describe(r, task, method_of[r["group"]]) for r in task_rows]
    figures["tasks"][task] = {
        "methods": [v.label for v in variants], "method_of": method_of,
        "rows": task_rows, "reliability": diagrams, "truth": synthetic_truth(task) is not None}
  return runs_lib.Report(rows, sections(rows, figures, all_positive), figures, used)


# --- summary.md ----------------------------------------------------------------------------------


def _ratio_names(measure: str) -> list[str]:
  return [f"{measure}_r{r:g}" for r in RATIOS]


def sections(rows: list[dict[str, Any]], figures: dict[str, Any],
             all_positive: list[tuple]) -> list[str]:
  out = [
      "Cost ratio r = c_FN / c_FP with c_FP = 1; Bayes threshold t = 1 / (1 + r): "
      + ", ".join(f"r = {r:g}: t = {1 / (1 + r):.3f}" for r in RATIOS) + ". Binary LS trains "
      "toward targets in [a/2, 1 - a/2], so a threshold below a/2 (a = 0.2: t < 0.1, r > 9) lies "
      "outside the range its probabilities aim at. Costs are per test example, on the realized "
      "test labels; regret (synthetic task) is the expected cost under the true P(y = 1) minus "
      "that of the Bayes decisions made with the true P(y = 1). Tuned: the threshold of lowest "
      "validation cost among 0, the midpoints of the validation probabilities and +inf (ties to "
      "the largest)."]
  for task, data in figures["tasks"].items():
    task_rows = [r for r in rows if r["task"] == task]
    blocks = [("Expected test cost per example at the Bayes threshold", "cost_bayes"),
              ("Expected test cost per example at the threshold tuned on validation",
               "cost_tuned")]
    if data["truth"]:
      blocks += [("Regret at the Bayes threshold (expected cost under the true p)",
                  "regret_bayes"),
                 ("Regret at the tuned threshold", "regret_tuned")]
    blocks += [("Fraction of test examples decided positive at the Bayes threshold",
                "positives_bayes"),
               ("Tuned threshold (mean over seeds)", "threshold_tuned")]
    out.append(f"## {task}")
    for title, measure in blocks:
      names = _ratio_names(measure)
      out.append(f"### {title}, mean [95% CI]\n\n" + runs_lib.wide_table(task_rows, names))
      if not measure.startswith(("positives", "threshold")):
        out.append("Paired with CE (and each + TS with CE + TS):\n\n" + runs_lib.difference_table(
            [r for r in task_rows if r["baseline"]], names))
    calibration = [m.name for m in CALIBRATION] + ["temperature", "temperature_at_bound",
                                                   "p_min", "p_max"]
    out.append("### Calibration and ranking of P(y = 1), mean [95% CI]\n\n"
               + runs_lib.wide_table(task_rows, calibration))
    out.append("Paired:\n\n" + runs_lib.difference_table(
        [r for r in task_rows if r["baseline"]], [m.name for m in CALIBRATION]))
    if data["truth"]:
      names = ["confidence_ambiguous", "excess_confidence_ambiguous", "prob_error",
               "prob_error_ambiguous"]
      out.append("### Against the true P(y = 1): confidence max(p, 1 - p) on the ambiguous test "
                 "examples, its excess over the truth's, mean |p - p_true|\n\n"
                 + runs_lib.wide_table(task_rows, names))
      out.append("Paired:\n\n" + runs_lib.difference_table(
          [r for r in task_rows if r["baseline"]], names))
  lines = [f"| {t} | {m} | {r:g} | {1 / (1 + r):.3f} | {n} of {total} |"
           for t, m, r, n, total in all_positive]
  out.append("## Runs that decide every test example positive at the Bayes threshold\n\n"
             + ("| task | method | r | t | runs |\n|---|---|---|---|---|\n" + "\n".join(lines)
                if lines else "None."))
  out.append("## Published beside ours (multi-class, top-1 calibration; no decision costs)\n\n"
             + PUBLISHED)
  out.append("Every row, with std, p-value and verdict: summary.csv.")
  return out


# --- Figures -------------------------------------------------------------------------------------


def _style(method: str, methods_order: list[str]) -> dict[str, Any]:
  base = method.removesuffix(f" {TS}")
  bases = list(dict.fromkeys(m.removesuffix(f" {TS}") for m in methods_order if m != TRUTH))
  if method == TRUTH:
    return {"color": "k", "ls": ":", "marker": None}
  return {"color": f"C{bases.index(base) % 10}", "ls": "--" if method.endswith(TS) else "-"}


def plot(figures: dict[str, Any]) -> dict[str, Any]:
  """cost.png (cost against r per method, Bayes and tuned thresholds, per task), cost_vs_ce.png
  (the paired differences with CE), regret.png (synthetic task) and reliability_<task>.png."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from ls_jax.experiments import plots  # pylint: disable=g-import-not-at-top
  tasks = figures["tasks"]
  out = {}

  def curves(name, measures, titles, diff=False, only=lambda task: True, log=True):
    chosen = [t for t in tasks if only(t)]
    if not chosen:
      return
    figure, axes = plt.subplots(len(chosen), len(measures), figsize=(5.2 * len(measures),
                                3.6 * len(chosen)), squeeze=False, layout="constrained")
    for i, task in enumerate(chosen):
      data = tasks[task]
      order = [data["method_of"][g] for g in data["methods"]]
      for j, measure in enumerate(measures):
        ax = axes[i, j]
        for group in data["methods"]:
          method = data["method_of"][group]
          # The truth's Bayes decisions are the optimum every threshold rule aims at.
          metrics = _ratio_names("cost_bayes" if method == TRUTH and measure.startswith("cost")
                                 else measure)
          rows = [r for r in data["rows"] if r["group"] == group and r["metric"] in metrics]
          if diff:
            base = f"{task} {methods.BASELINE}"
            rows = [r for r in rows if r["baseline"] == base]
            if not rows:
              continue
            by = {r["metric"]: r for r in rows}
            s = {"mean": np.array([runs_lib.as_float(by[m]["diff"]) for m in metrics]),
                 "ci_low": np.array([runs_lib.as_float(by[m]["diff_ci_low"]) for m in metrics]),
                 "ci_high": np.array([runs_lib.as_float(by[m]["diff_ci_high"]) for m in metrics])}
          else:
            if {r["metric"] for r in rows} != set(metrics):
              continue
            first = {m: next(r for r in rows if r["metric"] == m) for m in metrics}
            s = {k: np.array([runs_lib.as_float(first[m][k]) for m in metrics])
                 for k in ("mean", "ci_low", "ci_high")}
          style = _style(method, order)
          x = np.array(RATIOS, np.float64) * (1 + 0.012 * (order.index(method) - len(order) / 2))
          plots.errorbar(ax, x, s, label=method, color=style["color"], ls=style["ls"],
                         lw=1.1)
        if diff:
          ax.axhline(0, color="k", lw=0.8)
        ax.set_xscale("log")
        if log and not diff:
          ax.set_yscale("log")
        ax.set_xticks(RATIOS, [f"{r:g}" for r in RATIOS])
        ax.set_xlabel("cost ratio r = c_FN / c_FP")
        ax.set_title(f"{task}: {titles[j]}", fontsize=10)
        ax.grid(alpha=0.3)
    handles = {}
    for ax in axes.flat:
      for handle, label in zip(*ax.get_legend_handles_labels()):
        handles.setdefault(label, handle)
    figure.legend(list(handles.values()), list(handles), loc="outside lower center",
                  ncol=min(len(handles), 5), fontsize=7, frameon=False)
    out[name] = figure

  curves("cost", ["cost_bayes", "cost_tuned"],
         ["test cost per example, Bayes threshold 1/(1+r)", "test cost, threshold tuned on val"])
  curves("cost_vs_ce", ["cost_bayes", "cost_tuned"],
         ["Δ test cost vs CE (paired), Bayes threshold", "Δ test cost vs CE, tuned threshold"],
         diff=True)
  curves("regret", ["regret_bayes", "regret_tuned"],
         ["regret vs true-p Bayes decisions, Bayes threshold", "regret, tuned threshold"],
         only=lambda task: tasks[task]["truth"], log=False)
  for task, data in tasks.items():
    diagrams = data["reliability"]
    if not diagrams:
      continue
    plain = [m for m in diagrams if not m.endswith(TS)]
    figure, axes = plt.subplots(2, len(plain), figsize=(2.6 * len(plain), 5.6), sharex=True,
                                sharey=True, squeeze=False, layout="constrained")
    for column, method in enumerate(plain):
      for row, name in enumerate((method, f"{method} {TS}")):
        ax = axes[row, column]
        if name in diagrams:
          plots.reliability(ax, diagrams[name], points=True, min_alpha=0.15)
        ax.set_title(name, fontsize=9)
        ax.set(xlim=(0, 1), ylim=(0, 1))
      axes[1, column].set_xlabel("predicted P(y = 1)")
    for row in range(2):
      axes[row, 0].set_ylabel("fraction positive")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    labels = [label.replace("accuracy per bin", "fraction positive per bin").replace(
        "(mean confidence, accuracy)", "(mean P(y = 1), fraction positive)") for label in labels]
    figure.legend(handles, labels, loc="outside lower center", ncol=len(handles), fontsize=7,
                  frameon=False)
    figure.suptitle(f"{task}: reliability of P(y = 1), test, pooled over seeds", fontsize=10)
    out[f"reliability_{task}"] = figure
  return out
