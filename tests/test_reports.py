"""The reports of experiments 1-6 and the registry: hand-built cases for the logic, fake run
directories end to end through scripts/report.py, and scripts/reproduce.sh in TINY mode."""
import csv
import importlib.util
import json
import os
import pathlib
import shutil
import subprocess

import numpy as np
import pytest
from scipy import special, stats

from ls_jax import calibration, statistics
from ls_jax.experiments import calibration as calibration_report
from ls_jax.experiments import confidence, reports, strength
from ls_jax.experiments import runs as study
import overlay_venv

REPO = pathlib.Path(__file__).resolve().parents[1]
NUM_CLASSES = 4
CPU = "Fake CPU 9000"


def _load_script():
  spec = importlib.util.spec_from_file_location("report_script", REPO / "scripts" / "report.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


# --- Hand-built cases ----------------------------------------------------------------------------


def test_pick_example_takes_the_largest_gap_among_eligible_examples():
  labels = np.array([0, 1, 2, 0, 1])
  ce = np.array([[0.99, 0.005, 0.005],   # gap 0.49: eligible
                 [0.001, 0.999, 0.0],    # LS wrong below: not eligible
                 [0.02, 0.01, 0.97],     # CE below 0.98: not eligible
                 [0.995, 0.004, 0.001],  # gap 0.545: the pick
                 [0.49, 0.51, 0.0]])     # CE right but not confident
  ls = np.array([[0.5, 0.3, 0.2],
                 [0.6, 0.3, 0.1],
                 [0.35, 0.25, 0.4],
                 [0.45, 0.3, 0.25],
                 [0.1, 0.8, 0.1]])
  assert confidence.pick_example(ce, ls, labels) == 3
  assert confidence.pick_example(ce, ls, labels, min_ce_confidence=0.999) is None
  # Every both-right example when the bar is 0: example 2 (0.97 - 0.4 = 0.57) beats example 3.
  assert confidence.pick_example(ce, ls, labels, min_ce_confidence=0.0) == 2
  # Ties go to the lowest index.
  assert confidence.pick_example(np.tile(ce[3], (2, 1)), np.tile(ls[3], (2, 1)), np.array([0, 0])) == 0
  with pytest.raises(ValueError, match="must both be"):
    confidence.pick_example(ce, ls[:4], labels)


def _accuracy(means, noise):
  """{a: {seed: mean + noise[seed]}}: seeds shift every strength alike."""
  return {a: {s: m + e for s, e in enumerate(noise)} for a, m in means.items()}


def test_accuracy_drop_finds_the_first_significant_drop_above_the_peak():
  noise = [0.0, 0.003, -0.002, 0.001, -0.004]
  wiggle = np.array([0.001, -0.001, 0.0005, -0.0005, 0.0])  # Per-seed differences: a spread.
  accuracy = _accuracy({0.0: 0.90, 0.1: 0.95, 0.3: 0.949, 0.5: 0.93, 0.9: 0.80}, noise)
  for a in (0.0, 0.3, 0.5):
    accuracy[a] = {s: v + wiggle[s] for s, v in accuracy[a].items()}
  accuracy[0.3] = {s: v + 3 * wiggle[s] for s, v in accuracy[0.3].items()}
  drop = strength.accuracy_drop(accuracy)
  assert drop.peak == 0.1
  # 0.3 is 0.001 lower, within noise (CI includes 0); 0.5 is 0.02 lower, every seed alike.
  by_a = dict(drop.comparisons)
  assert by_a[0.3].ci_low < 0 < by_a[0.3].ci_high
  assert drop.first_drop == 0.5
  expected = stats.ttest_rel([accuracy[0.5][s] for s in range(5)],
                             [accuracy[0.1][s] for s in range(5)])
  np.testing.assert_allclose(by_a[0.5].p_value, expected.pvalue, rtol=1e-10)
  # CE (a = 0) is far below the peak, but it lies below the peak's a: not a "drop" with strength.
  assert by_a[0.0].ci_high < 0


def test_accuracy_drop_says_none_when_no_larger_a_is_significantly_lower():
  rng = np.random.default_rng(0)
  accuracy = {a: {s: 0.95 + rng.normal(0, 0.003) for s in range(10)} for a in (0.0, 0.1, 0.2)}
  accuracy[0.2] = {s: v + 0.01 for s, v in accuracy[0.2].items()}  # The peak is the last a.
  drop = strength.accuracy_drop(accuracy)
  assert drop.peak == 0.2 and drop.first_drop is None
  with pytest.raises(ValueError, match="at least one"):
    strength.accuracy_drop({})


def test_confidence_split_against_a_hand_computed_case():
  probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
  split = confidence.confidence_split(probs, np.array([0, 1, 1, 0]))
  np.testing.assert_allclose([split["correct"], split["wrong"]], [0.85, 0.65])
  assert np.isnan(confidence.confidence_split(probs[:2], np.array([0, 1]))["wrong"])


def test_pooled_reliability_weights_bins_by_count():
  a = {"edges": [0, 0.5, 1], "accuracy": [None, 1.0], "mean_confidence": [None, 0.9],
       "count": [0, 2]}
  b = {"edges": [0, 0.5, 1], "accuracy": [None, 0.0], "mean_confidence": [None, 0.6],
       "count": [0, 6]}
  pooled = calibration_report.pooled_reliability([a, b])
  np.testing.assert_allclose(pooled["accuracy"][1], 2 / 8)
  np.testing.assert_allclose(pooled["mean_confidence"][1], (2 * 0.9 + 6 * 0.6) / 8)
  assert np.isnan(pooled["accuracy"][0]) and list(pooled["count"]) == [0, 8]
  with pytest.raises(ValueError, match="different edges"):
    calibration_report.pooled_reliability([a, {**b, "edges": [0, 0.4, 1]}])


def test_where_rejects_a_name_not_in_the_method_table():
  with pytest.raises(ValueError, match="unknown method 'alpha'"):
    study.where([], alpha=0.2)


def test_every_registered_experiment_is_a_report_command():
  parser = _load_script()._parser()  # pylint: disable=protected-access
  for name, experiment in reports.REPORTS.items():
    args = parser.parse_args([name, "--runs", "a", "b", "--out", "o"])
    assert args.runs == ["a", "b"] and callable(experiment.plot)
    for option in experiment.options:
      assert getattr(args, option.name) == option.default


# --- Fake runs, end to end -----------------------------------------------------------------------


def _config(seed, overrides):
  config = {"seed": seed, "num_classes": NUM_CLASSES, "num_steps": 100,
            "data": {"name": "mnist1d", "label_noise": {"kind": "symmetric", "rate": 0.0}},
            "model": {"name": "cnn1d"}, "loss": {"label_smoothing": 0.0, "confidence_penalty": 0.0},
            "mixup": {"alpha": 0.0}, "cutmix": {"alpha": 0.0}}
  for dotted, value in overrides.items():
    *path, last = dotted.split(".")
    node = config
    for part in path:
      node = node.setdefault(part, {})
    node[last] = value
  return config


def _bins_json(logits, labels):
  bins = calibration.reliability_bins(special.softmax(logits, axis=1), labels)
  return {k: [None if np.isnan(x) else float(x) for x in np.asarray(v, np.float64)]
          for k, v in bins._asdict().items()}


def fake_run(root: pathlib.Path, seed: int, overrides: dict, sharpness: float = 3.0,
             name: str = "") -> pathlib.Path:
  """A workdir with results.json and predictions.npz whose metrics come from its own logits.

  The logits depend on the seed and the method (through `sharpness`), so that paired differences
  are neither zero nor constant.
  """
  rng = np.random.default_rng([seed, int(1000 * sharpness)])
  def split(n):
    labels = rng.integers(0, NUM_CLASSES, size=n)
    logits = rng.normal(size=(n, NUM_CLASSES)) + sharpness * np.eye(NUM_CLASSES)[labels]
    return logits.astype(np.float32), labels
  (val_logits, val_labels), (test_logits, test_labels) = split(80), split(120)
  workdir = root / (name or "_".join([*(f"{k}={v}" for k, v in overrides.items()), f"seed{seed}"]))
  workdir.mkdir(parents=True)
  np.savez(workdir / "predictions.npz", val_logits=val_logits, val_labels=val_labels,
           test_logits=test_logits, test_labels=test_labels)
  t = calibration.fit_temperature(val_logits, val_labels)
  results = {**calibration.calibration_metrics(test_logits, test_labels),
             "validation": calibration.calibration_metrics(val_logits, val_labels),
             "temperature": t,
             "temperature_scaled": calibration.calibration_metrics(test_logits / t, test_labels),
             "reliability": _bins_json(test_logits, test_labels),
             "reliability_temperature_scaled": _bins_json(test_logits / t, test_labels),
             "environment": {"cpu_model": CPU, "jax_version": "0.10.2", "backend": "cpu"},
             "config": _config(seed, overrides)}
  (workdir / "results.json").write_text(json.dumps(results))
  return workdir


EVIDENCE = ([({"loss.label_smoothing": a}, 2.0 + 2 * a) for a in (0.0, 0.05, 0.1, 0.3, 0.5)]
            + [({"loss.confidence_penalty": 0.1}, 2.5), ({"mixup.alpha": 0.2}, 2.8),
               ({"loss.focal_gamma": 3.0}, 1.6)])


def _evidence(root):
  for seed in range(3):
    for overrides, sharpness in EVIDENCE:
      fake_run(root, seed, overrides, sharpness)
  return root


def _run_report(tmp_path, experiment, runs, *extra):
  out = tmp_path / "out" / experiment
  assert _load_script().main([experiment, "--runs", str(runs), "--out", str(out), *extra]) == 0
  with open(out / "summary.csv", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  text = (out / "summary.md").read_text()
  assert f"scripts/report.py {experiment} --runs" in text and CPU in text
  for png in out.glob("*.png"):
    assert png.stat().st_size < 300_000
  return out, rows, text


def _row(rows, group, metric, baseline):
  (row,) = [r for r in rows if r["group"] == group and r["metric"] == metric
            and r["baseline"] == baseline]
  return row


def _paired_mean(runs_dir, key_a, key_b, metric):
  values = {}
  for path in runs_dir.glob("*/results.json"):
    results = json.loads(path.read_text())
    values[path.parent.name] = results[metric]
  return np.mean([values[f"{key_a}_seed{s}"] - values[f"{key_b}_seed{s}"] for s in range(3)])


def test_strength_report_end_to_end(tmp_path):
  runs = _evidence(tmp_path / "runs")
  out, rows, text = _run_report(tmp_path, "strength", runs)
  assert (out / "strength.png").exists()
  # The CP, Mixup and Focal runs are not strengths; five strengths of 3 seeds each.
  assert {r["group"] for r in rows} == {"CE", "LS 0.05", "LS 0.1", "LS 0.3", "LS 0.5"}
  row = _row(rows, "LS 0.3", "accuracy", "CE")
  np.testing.assert_allclose(float(row["diff"]), _paired_mean(
      runs, "loss.label_smoothing=0.3", "loss.label_smoothing=0.0", "accuracy"), rtol=1e-9)
  assert "## Where does accuracy drop?" in text and "(n=3)" in text


def test_confidence_report_end_to_end(tmp_path):
  runs = _evidence(tmp_path / "runs")
  out, rows, text = _run_report(tmp_path, "confidence", runs)
  assert (out / "confidence_example.png").exists() and (out / "confidence_histogram.png").exists()
  expected = []
  for s in range(3):  # Mean max-softmax of the correct test predictions, per seed, by hand.
    with np.load(runs / f"loss.label_smoothing=0.0_seed{s}" / "predictions.npz") as p:
      probs = special.softmax(p["test_logits"].astype(np.float64), axis=1)
      correct = probs.argmax(1) == p["test_labels"]
    expected.append(probs.max(1)[correct].mean())
  row = _row(rows, "CE", "mean_confidence_correct", "")
  np.testing.assert_allclose(float(row["mean"]), np.mean(expected), rtol=1e-9)
  assert row["n"] == "3" and "seed 0, the test example" in text


def test_calibration_report_end_to_end(tmp_path):
  runs = _evidence(tmp_path / "runs")
  out, rows, text = _run_report(tmp_path, "calibration", runs)
  assert (out / "reliability.png").exists()
  assert "Müller et al. 2019, Table 3" in text
  # Every point of configs/sweeps/calibration.py, labelled by the method table; focal vs CE too.
  assert {r["group"] for r in rows if r["metric"] == "ece"} == {
      f"{m}{ts}" for m in ("CE", "LS 0.1", "CP 0.1", "Focal 3.0", "Mixup 0.2") for ts in ("", " + TS")}
  focal = _row(rows, "Focal 3.0", "ece", "CE")
  np.testing.assert_allclose(float(focal["diff"]), _paired_mean(
      runs, "loss.focal_gamma=3.0", "loss.label_smoothing=0.0", "ece"), rtol=1e-9)
  # TS rows read temperature_scaled; compared with CE and with the same method without TS.
  ts = _row(rows, "LS 0.1 + TS", "ece", "LS 0.1")
  expected = []
  for s in range(3):
    r = json.loads((runs / f"loss.label_smoothing=0.1_seed{s}" / "results.json").read_text())
    expected.append(r["temperature_scaled"]["ece"] - r["ece"])
  np.testing.assert_allclose(float(ts["diff"]), np.mean(expected), rtol=1e-9)


def test_selective_report_end_to_end(tmp_path):
  runs = _evidence(tmp_path / "runs")
  out, rows, _ = _run_report(tmp_path, "selective", runs)
  assert (out / "risk_coverage.png").exists()
  assert {r["group"] for r in rows} == {"CE", "CE + logit norm", "LS 0.05", "LS 0.05 + logit norm",
                                        "LS 0.1", "LS 0.1 + logit norm", "LS 0.3",
                                        "LS 0.3 + logit norm"}  # 0.5 is not a selective point.
  row = _row(rows, "LS 0.1 + logit norm", "aurc", "LS 0.1")
  differences = []
  for s in range(3):
    with np.load(runs / f"loss.label_smoothing=0.1_seed{s}" / "predictions.npz") as p:
      correct = p["test_logits"].argmax(1) == p["test_labels"]
      pnorm = calibration.max_logit_pnorm(
          p["test_logits"], calibration.fit_logit_norm_p(p["val_logits"], p["val_labels"]))
      softmax = special.softmax(p["test_logits"].astype(np.float64), axis=1).max(1)
    differences.append(calibration.area_under_risk_coverage(pnorm, correct)
                       - calibration.area_under_risk_coverage(softmax, correct))
  comparison = statistics.paired_comparison(differences, np.zeros(3))
  np.testing.assert_allclose(float(row["diff"]), comparison.mean_difference, rtol=1e-9)
  np.testing.assert_allclose(float(row["diff_ci_low"]), comparison.ci_low, rtol=1e-9)


def test_methods_report_end_to_end(tmp_path):
  runs, selection = tmp_path / "runs", tmp_path / "select"
  for model in ("cnn1d", "mlp"):
    for seed in range(3):
      for overrides, sharpness in (({}, 3.0), ({"loss.label_smoothing": 0.1}, 3.5)):
        fake_run(runs, seed, {"model.name": model, **overrides}, sharpness)
    for seed in (100, 101):
      for a in (0.1, 0.2):
        fake_run(selection, seed, {"model.name": model, "loss.label_smoothing": a}, 3 + a)
  out, rows, text = _run_report(tmp_path, "methods", runs, "--selection", str(selection))
  assert (out / "methods.png").exists()
  assert text.count("**picked**") == 2  # LS 0.1 of each model was evaluated.
  assert "| mnist1d cnn1d | 94% |" in text and "| mnist1d mlp | 68% |" in text
  row = _row(rows, "mnist1d mlp LS 0.1", "accuracy", "mnist1d mlp CE")
  np.testing.assert_allclose(float(row["diff"]), _paired_mean(
      runs, "model.name=mlp_loss.label_smoothing=0.1", "model.name=mlp", "accuracy"), rtol=1e-9)


def test_noise_report_end_to_end(tmp_path):
  runs = tmp_path / "runs"
  settings = [{"data.label_noise.rate": 0.0},
              {"data.label_noise.kind": "symmetric", "data.label_noise.rate": 0.2},
              {"data.label_noise.kind": "asymmetric", "data.label_noise.rate": 0.2}]
  for seed in range(3):
    for i, setting in enumerate(settings):
      for a in (0.0, -0.3):
        fake_run(runs, seed, {**setting, "loss.label_smoothing": a}, 3.0 - i * 0.5 + a)
  out, rows, text = _run_report(tmp_path, "noise", runs)
  assert (out / "noise_accuracy.png").exists()
  assert "## Negative label smoothing" in text
  row = _row(rows, "mnist1d cnn1d 20% asymmetric noise: LS -0.3", "accuracy",
             "mnist1d cnn1d 20% asymmetric noise: CE")
  np.testing.assert_allclose(float(row["diff"]), _paired_mean(
      runs, "data.label_noise.kind=asymmetric_data.label_noise.rate=0.2_loss.label_smoothing=-0.3",
      "data.label_noise.kind=asymmetric_data.label_noise.rate=0.2_loss.label_smoothing=0.0",
      "accuracy"), rtol=1e-9)


def test_noise_report_of_fine_tuned_runs_pairs_them_with_ce_fine_tuned_alike(tmp_path, capsys):
  runs = tmp_path / "runs"
  for seed in range(3):
    for a in (0.0, -1.0):
      fake_run(runs, seed, {"data.label_noise.kind": "symmetric", "data.label_noise.rate": 0.4,
                            "loss.label_smoothing": a, "num_steps": 1000,
                            "optimizer.learning_rate": 1e-3,
                            "init_from": f"/runs/noise/ce_sym0.4_seed{seed}"}, 2.0 + a,
               name=f"finetune_ls{a}_seed{seed}")
  out, rows, text = _run_report(tmp_path, "noise", runs)
  assert "starts from the final weights of the finished run in its `init_from`" in text
  assert "1000 steps of adam at 0.001" in text
  # Grouped across seeds although init_from differs by seed; named by its start, without the long
  # path and the seed.
  row = _row(rows, "mnist1d cnn1d 40% symmetric noise: LS -1.0 (from ce_sym0.4)", "accuracy",
             "mnist1d cnn1d 40% symmetric noise: CE (from ce_sym0.4)")
  assert row["n"] == "3"
  fake_run(runs, 0, {"data.label_noise.kind": "symmetric", "data.label_noise.rate": 0.4})
  assert _load_script().main(["noise", "--runs", str(runs), "--out", str(tmp_path / "x")]) == 2
  assert "mix training from scratch with fine-tuning" in capsys.readouterr().err


def test_report_rejects_a_directory_without_runs(tmp_path, capsys):
  assert _load_script().main(["strength", "--runs", str(tmp_path), "--out", str(tmp_path)]) == 2
  assert "no finished run" in capsys.readouterr().err


def test_reproduce_tiny_mode_runs_the_confidence_experiment(tmp_path):
  """TINY=1: the sweep (2 runs x 2 seeds of 20 steps) and the report, end to end, into tmp, through
  scripts/reproduce.sh (the environment) and scripts/reproduce.py (the registry's steps)."""
  venv = tmp_path / "venv"
  overlay_venv.create(venv)
  shutil.copy(REPO / "requirements.txt", venv / ".ls_jax_requirements")  # Nothing to install.
  # One device, as a user has (the tests' XLA_FLAGS fake 8, which batch 100 does not divide).
  env = {**{k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}, "VIRTUAL_ENV": str(venv),
         "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
         "TINY": "1", "TINY_DIR": str(tmp_path / "tiny")}
  done = subprocess.run([str(REPO / "scripts" / "reproduce.sh"), "confidence"], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=600, check=False)
  assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
  runs = sorted(p.parent.name for p in (tmp_path / "tiny" / "evidence").glob("*/results.json"))
  assert runs == sorted(f"mnist1d_loss.label_smoothing={a}_seed{s}"
                        for a in ("0", "0.1") for s in (0, 1))
  out = tmp_path / "tiny" / "results" / "confidence"
  assert {p.name for p in out.iterdir()} >= {"summary.csv", "summary.md",
                                              "confidence_histogram.png"}
  assert "scripts/report.py confidence" in (out / "summary.md").read_text()
  bad = subprocess.run([str(REPO / "scripts" / "reproduce.sh"), "nonsense"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=60, check=False)
  assert bad.returncode == 2 and "unknown experiment 'nonsense'" in bad.stderr
  # The same steps as the registry entry lists (the exact non-TINY commands: test_scripts.py).
  assert [s.out for s in reports.REPORTS["confidence"].steps if isinstance(s, reports.Sweep)] == [
      "evidence"]


def test_values_by_seed_leaves_out_undefined_values():
  """A NaN metric (e.g. the AUROC of a run without errors) is not a seed's value: n drops."""
  runs = [{"config": {"seed": s}, "selective": {"auroc": v}}
          for s, v in enumerate([0.9, float("nan"), 0.8])]
  assert study.values_by_seed(runs, study.Metric("auroc", "selective.auroc", "higher")) == {
      0: 0.9, 2: 0.8}
