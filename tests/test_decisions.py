"""The decision experiment (ls_jax/experiments/decisions.py): thresholds, costs and regret against
brute-force NumPy on hand-made cases, and the report end to end on fake binary runs."""
import csv
import importlib.util
import json
import pathlib

import numpy as np
import pytest
from scipy import special

from ls_jax import binary_calibration
from ls_jax.experiments import decisions, reports

REPO = pathlib.Path(__file__).resolve().parents[1]
CPU = "Fake CPU 9000"


# --- Thresholds, costs, regret -------------------------------------------------------------------


def test_bayes_threshold_is_c_fp_over_the_sum_and_rejects_bad_costs():
  assert decisions.bayes_threshold(1, 4) == pytest.approx(0.2)
  assert decisions.bayes_threshold(1.0, 20.0) == pytest.approx(1 / 21)
  assert decisions.bayes_threshold(3, 3) == pytest.approx(0.5)
  for c_fp, c_fn in ((0, 1), (1, -2), (1, float("inf")), (float("nan"), 1)):
    with pytest.raises(ValueError, match="must be a positive finite cost"):
      decisions.bayes_threshold(c_fp, c_fn)


def test_cost_counts_false_positives_and_false_negatives():
  labels = np.array([1, 0, 1, 0, 1])
  d = np.array([True, True, False, False, False])  # 1 FP, 2 FN.
  assert decisions.cost(d, labels, 1.0, 5.0) == pytest.approx((1 * 1 + 5 * 2) / 5)
  with pytest.raises(ValueError, match="labels must be 0 or 1"):
    decisions.cost(d, np.array([1, 0, 2, 0, 1]), 1, 1)
  with pytest.raises(ValueError, match="do not match"):
    decisions.cost(d, labels[:4], 1, 1)
  with pytest.raises(ValueError, match=r"1-D array in \[0, 1\]"):
    decisions.decide([0.2, 1.3], 0.5)


def _brute_force_threshold(p, y, c_fp, c_fn):
  """Every threshold (each distinct p, 0 and +inf); the lowest cost, ties to the largest."""
  best = None
  for t in sorted({0.0, np.inf, *p.tolist()}):
    d = p >= t
    c = c_fp * np.sum(d & (y == 0)) + c_fn * np.sum(~d & (y == 1))
    if best is None or c <= best[0]:
      best = (c, t)
  return best


@pytest.mark.parametrize("seed", range(6))
def test_tuned_threshold_matches_a_brute_force_sweep(seed):
  rng = np.random.default_rng(seed)
  n = int(rng.integers(1, 40))
  p = np.round(rng.uniform(size=n), 1)  # Ties on purpose.
  y = (rng.uniform(size=n) < p).astype(int)
  for ratio in decisions.RATIOS:
    t = decisions.tuned_threshold(p, y, 1.0, ratio)
    best_cost, best_t = _brute_force_threshold(p, y, 1.0, ratio)
    d = p >= t
    assert np.sum(d & (y == 0)) + ratio * np.sum(~d & (y == 1)) == pytest.approx(best_cost)
    # The same split: the tuned threshold lies between best_t's neighbours (a midpoint, or an end).
    assert np.array_equal(d, p >= best_t)


def test_tuned_threshold_ties_go_to_the_largest():
  # Ranked backwards. At ratio 1: t=0 -> 1 FP; t=0.5 -> 1 FP + 1 FN; t=inf -> 1 FN: a tie.
  p, y = np.array([0.2, 0.8]), np.array([1, 0])
  assert decisions.tuned_threshold(p, y, 1, 1) == np.inf
  assert decisions.tuned_threshold(p, y, 1, 3) == 0.0  # FNs cost 3: everything positive.


def test_regret_is_zero_for_the_true_probabilities_and_brute_force_otherwise():
  rng = np.random.default_rng(0)
  true_p = rng.uniform(size=200)
  for ratio in decisions.RATIOS:
    t = decisions.bayes_threshold(1, ratio)
    assert decisions.regret(decisions.decide(true_p, t), true_p, 1, ratio) == 0.0
    model = np.clip(true_p + rng.normal(0, 0.2, size=200), 0, 1)
    d = model >= t
    per_example = np.where(d, 1 - true_p, ratio * true_p) - np.minimum(1 - true_p, ratio * true_p)
    assert decisions.regret(d, true_p, 1, ratio) == pytest.approx(per_example.mean())
    assert decisions.regret(d, true_p, 1, ratio) >= 0


def test_smoothed_probabilities_decide_every_example_positive_below_a_half():
  """a = 0.2: probabilities in [0.1, 0.9]; at r = 20 (t = 1/21 < 0.1) every example is positive."""
  rng = np.random.default_rng(1)
  p = 0.1 + 0.8 * special.expit(rng.normal(0, 4, size=500))
  y = (rng.uniform(size=500) < 0.3).astype(int)
  metrics = decisions.decision_metrics(p[:100], y[:100], p, y)
  assert metrics["positives_bayes_r20"] == 1.0 and metrics["positives_bayes_r50"] == 1.0
  assert metrics["cost_bayes_r20"] == pytest.approx(np.mean(y == 0))  # Every negative is a FP.
  assert metrics["positives_bayes_r1"] < 1.0


# --- The report on fake runs ---------------------------------------------------------------------


def _split(task, n, seed):
  rng = np.random.default_rng([seed, len(task)])
  true_p = special.expit(rng.normal(-1, 2, size=n))
  return true_p, (rng.uniform(size=n) < true_p).astype(np.int64)


TEST = {task: _split(task, 300, 1) for task in ("binary_synthetic", "breast_cancer")}
VAL = {task: _split(task, 120, 2) for task in ("binary_synthetic", "breast_cancer")}


def _truth(task):
  if task != "binary_synthetic":
    return None
  true_p, labels = TEST[task]
  return {"label": labels, "true_probability": true_p, "ambiguous": np.abs(true_p - 0.5) < 0.1}


def _bins(logits, labels):
  bins = binary_calibration.binary_reliability_bins(special.expit(logits), labels)
  return {k: [None if np.isnan(x) else float(x) for x in np.asarray(v, np.float64)]
          for k, v in bins._asdict().items()}


def fake_run(root, task, seed, a=0.0, gamma=0.0):
  """A binary run: the truth's logit, sharpened, plus seed noise; LS compresses p into
  [a/2, 1 - a/2] as its targets do."""
  rng = np.random.default_rng([seed, int(100 * a), int(10 * gamma), len(task)])
  def logits(true_p):
    z = 1.6 * special.logit(true_p) + rng.normal(0, 0.5, size=true_p.shape)
    return special.logit(a / 2 + (1 - a) * special.expit(z)).astype(np.float32)
  (val_p, val_y), (test_p, test_y) = VAL[task], TEST[task]
  val_z, test_z = logits(val_p), logits(test_p)
  t = binary_calibration.fit_binary_temperature(val_z, val_y)
  workdir = root / f"{task}_a={a}_g={gamma}_seed{seed}"
  workdir.mkdir(parents=True)
  np.savez(workdir / "predictions.npz", val_logits=val_z, val_labels=val_y, test_logits=test_z,
           test_labels=test_y)
  results = {**binary_calibration.binary_calibration_metrics(test_z, test_y),
             "validation": binary_calibration.binary_calibration_metrics(val_z, val_y),
             "temperature": t, "temperature_at_bound": False,
             "temperature_scaled": binary_calibration.binary_calibration_metrics(test_z / t,
                                                                                 test_y),
             "reliability": _bins(test_z, test_y),
             "reliability_temperature_scaled": _bins(test_z / t, test_y),
             "environment": {"cpu_model": CPU, "jax_version": "0.10.2", "backend": "cpu"},
             "config": {"seed": seed, "num_classes": 1, "num_steps": 100,
                        "data": {"name": task}, "model": {"name": "mlp"},
                        "loss": {"label_smoothing": a, "focal_gamma": gamma}}}
  (workdir / "results.json").write_text(json.dumps(results))
  return workdir


def _load_script():
  spec = importlib.util.spec_from_file_location("report_script", REPO / "scripts" / "report.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_report_end_to_end_on_fake_binary_runs(tmp_path, monkeypatch):
  monkeypatch.setattr(decisions, "synthetic_truth", _truth)
  runs_dir = tmp_path / "runs"
  for task in TEST:
    for seed in range(3):
      for a, gamma in ((0.0, 0.0), (0.2, 0.0), (0.0, 2.0)):
        fake_run(runs_dir, task, seed, a, gamma)
  out = tmp_path / "out"
  assert _load_script().main(["decisions", "--runs", str(runs_dir), "--out", str(out)]) == 0
  with open(out / "summary.csv", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  text = (out / "summary.md").read_text()
  assert "scripts/report.py decisions --runs" in text and CPU in text
  assert {p.name for p in out.glob("*.png")} == {
      "cost.png", "cost_vs_ce.png", "regret.png", "reliability_binary_synthetic.png",
      "reliability_breast_cancer.png"}

  def one(group, metric, baseline=""):
    (row,) = [r for r in rows if r["group"] == group and r["metric"] == metric
              and r["baseline"] == baseline]
    return row

  # LS 0.2's probabilities stay above 0.1 > 1/21: every example positive at r = 20, every seed.
  ls = one("binary_synthetic LS 0.2", "positives_bayes_r20", "binary_synthetic CE")
  assert float(ls["mean"]) == 1.0 and ls["measure"] == "positives_bayes" and ls["ratio"] == "20"
  assert "| binary_synthetic | LS 0.2 | 20 | 0.048 | 3 of 3 |" in text
  # The paired difference of the cost is the mean of the per-seed differences, recomputed here.
  def cost(a, seed, scaled=False):
    workdir = runs_dir / f"binary_synthetic_a={a}_g=0.0_seed{seed}"
    with np.load(workdir / "predictions.npz") as pr:
      z, y = pr["test_logits"].astype(np.float64), pr["test_labels"]
    t = json.loads((workdir / "results.json").read_text())["temperature"] if scaled else 1.0
    d = special.expit(z / t) >= 1 / 6
    return np.mean((d & (y == 0)) + 5 * (~d & (y == 1)))
  diff = one("binary_synthetic LS 0.2", "cost_bayes_r5", "binary_synthetic CE")
  assert float(diff["diff"]) == pytest.approx(np.mean([cost(0.2, s) - cost(0.0, s)
                                                        for s in range(3)]))
  ts = one("binary_synthetic LS 0.2 + TS", "cost_bayes_r5", "binary_synthetic CE + TS")
  assert float(ts["diff"]) == pytest.approx(np.mean([cost(0.2, s, True) - cost(0.0, s, True)
                                                      for s in range(3)]))
  # The truth's own decisions have no regret metric, but its confidence on the ambiguous examples
  # is the reference of every model's excess confidence.
  truth = one(f"binary_synthetic {decisions.TRUTH}", "confidence_ambiguous")
  ce = one("binary_synthetic CE", "confidence_ambiguous")
  excess = one("binary_synthetic CE", "excess_confidence_ambiguous")
  assert float(ce["mean"]) - float(truth["mean"]) == pytest.approx(float(excess["mean"]))
  assert float(one("binary_synthetic Focal 2.0", "regret_bayes_r1", "binary_synthetic CE")
               ["mean"]) >= 0
  # Only the synthetic task knows the truth; both have calibration rows after TS.
  assert not [r for r in rows if r["task"] == "breast_cancer" and r["measure"] == "regret_bayes"]
  assert one("breast_cancer Focal 2.0 + TS", "ece", "breast_cancer CE + TS")["n"] == "3"


def test_report_needs_ce_runs_of_each_task(tmp_path, monkeypatch):
  monkeypatch.setattr(decisions, "synthetic_truth", _truth)
  fake_run(tmp_path, "breast_cancer", 0, 0.2)
  fake_run(tmp_path, "breast_cancer", 1, 0.2)
  with pytest.raises(ValueError, match="breast_cancer: no finished CE runs"):
    decisions.report(decisions.runs_lib.load(tmp_path))


def test_the_registry_runs_the_decisions_sweep_then_its_report():
  steps = reports.REPORTS["decisions"].steps
  assert [type(s).__name__ for s in steps] == ["Sweep", "Results"]
  assert steps[0].spec == "decisions.py" and steps[1].args == ("--runs", "{runs}/decisions")
