"""ls_jax.experiments.runs and scripts/summarize.py on synthetic results: grouping by the method
table, CE baselines, pairing, verdicts."""
import csv
import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from configs import default
from ls_jax import statistics
from ls_jax.experiments import runs as study
from ls_jax.trainer import methods


def fake_run(seed, accuracy, **fields):
  """A results.json-like dict: the default config with dotted `fields` set."""
  config = default.get_config().to_dict()
  config["seed"] = seed
  for dotted, value in fields.items():
    *parents, leaf = dotted.split("__")
    node = config
    for parent in parents:
      node = node[parent]
    node[leaf] = value
  return {"config": config, "accuracy": accuracy, "nll": 1 - accuracy,
          "workdir": f"runs/{seed}_{sorted(fields.items())}"}


def rows_for(rows, group_part, metric="accuracy"):
  return [r for r in rows if group_part in r["group"] and r["metric"] == metric]


def test_grouping_never_pools_runs_that_differ_in_anything_but_seed_and_bookkeeping():
  runs = [fake_run(s, 0.9) for s in range(3)]
  runs += [fake_run(s, 0.8, num_steps=50) for s in range(3)]           # Another recipe.
  runs += [fake_run(s, 0.9, optimizer__learning_rate=0.1) for s in range(2)]
  runs += [fake_run(3, 0.9, log_every_steps=7, eval_batch_size=10)]     # Bookkeeping only.
  groups = study.group(runs)
  assert sorted(len(g) for g in groups.values()) == [2, 3, 4]
  for members in groups.values():
    keys = {study.experiment_key(r["config"]) for r in members}
    assert len(keys) == 1
  # The labels tell the groups apart by the fields that differ.
  rows = study.summarize(runs)
  labels = {r["group"] for r in rows}
  assert len(labels) == 3 and any("num_steps=50" in label for label in labels)


def test_a_field_missing_from_an_older_run_counts_as_its_default():
  old = fake_run(0, 0.9)
  del old["config"]["eval_every_steps"], old["config"]["distill"]  # Fields added later.
  assert study.experiment_key(old["config"]) == study.experiment_key(fake_run(1, 0.9)["config"])
  assert len(study.group([old, fake_run(1, 0.9), fake_run(2, 0.9, distill__weight=0.2)])) == 2


def test_labels_are_unique_even_where_the_method_name_hides_a_difference():
  runs = [fake_run(0, 0.9, data__label_noise__kind=kind) for kind in ("symmetric", "asymmetric")]
  labels = {r["group"] for r in study.summarize(runs) if r["metric"] == "accuracy"}
  assert len(labels) == 2 and any("data.label_noise.kind=asymmetric" in label for label in labels)


def test_duplicate_seed_in_a_group_is_an_error():
  with pytest.raises(ValueError, match="seed 1 appears twice in one group"):
    study.group([fake_run(1, 0.9), fake_run(1, 0.91)])


def test_paired_comparison_with_ce_matches_scipy():
  rng = np.random.default_rng(0)
  ce = rng.normal(0.92, 0.01, size=10)
  ls = ce + rng.normal(0.01, 0.005, size=10)
  runs = [fake_run(s, float(ce[s])) for s in range(10)]
  runs += [fake_run(s, float(ls[s]), loss__label_smoothing=0.1) for s in range(10)]
  rows = study.summarize(runs)
  (row,) = rows_for(rows, "LS 0.1")
  assert row["baseline"].endswith("CE") and row["n_paired"] == 10
  np.testing.assert_allclose(row["diff"], np.mean(ls - ce), rtol=1e-12)
  np.testing.assert_allclose(row["p_value"], stats.ttest_rel(ls, ce).pvalue, rtol=1e-10)
  expected_ci = stats.t.interval(0.95, 9, loc=np.mean(ls - ce), scale=stats.sem(ls - ce))
  np.testing.assert_allclose([row["diff_ci_low"], row["diff_ci_high"]], expected_ci, rtol=1e-10)
  assert row["verdict"] == "improves"  # CI well above 0 for accuracy.
  (nll,) = rows_for(rows, "LS 0.1", "nll")
  assert nll["verdict"] == "improves"  # NLL = 1 - accuracy went down: lower is better.
  (ce_row,) = rows_for(rows, "cnn1d CE")
  assert ce_row["verdict"] == "" and ce_row["baseline"] == ""
  np.testing.assert_allclose([ce_row["ci_low"], ce_row["ci_high"]],
                             stats.t.interval(0.95, 9, loc=ce.mean(), scale=stats.sem(ce)))


def test_missing_seed_pairs_only_common_seeds_and_says_so():
  ce = {0: 0.90, 1: 0.91, 2: 0.92, 3: 0.93, 5: 0.95}
  ls = {0: 0.91, 1: 0.93, 2: 0.92, 3: 0.95, 4: 0.99}
  runs = [fake_run(s, a) for s, a in ce.items()]
  runs += [fake_run(s, a, loss__label_smoothing=0.1) for s, a in ls.items()]
  rows = study.summarize(runs)
  (row,) = rows_for(rows, "LS 0.1")
  assert row["n"] == 5 and row["n_paired"] == 4 and row["unpaired_seeds"] == "4 5"
  expected = statistics.paired_comparison([ls[s] for s in range(4)], [ce[s] for s in range(4)])
  np.testing.assert_allclose(row["p_value"], expected.p_value)
  assert "paired on 4 seeds; unpaired: 4 5" in study.markdown(rows)


def test_baseline_is_ce_with_the_same_noise():
  runs = [fake_run(s, 0.6 + 0.01 * s, data__label_noise__rate=0.4) for s in range(3)]
  runs += [fake_run(s, 0.9 + 0.01 * s) for s in range(3)]
  runs += [fake_run(s, 0.62 + 0.011 * s, data__label_noise__rate=0.4, loss__label_smoothing=-0.2)
           for s in range(3)]
  (row,) = rows_for(study.summarize(runs), "LS -0.2")
  assert row["baseline"].startswith("mnist1d cnn1d 40% symmetric noise: CE")
  np.testing.assert_allclose(row["diff"], 0.02 + 0.001, rtol=1e-9)


@pytest.mark.parametrize("a, b, better, expected", [
    ([1.0, 2.0, 3.0], [0.0, 0.5, 1.0], "higher", "improves"),
    ([1.0, 2.0, 3.0], [0.0, 0.5, 1.0], "lower", "worse"),
    ([1.0, 2.0, 3.0], [0.0, 0.5, 1.0], None, "higher"),
    ([1.0, 2.0, 3.1], [1.1, 1.9, 3.0], "higher", "no difference detected (n=3)"),
    ([1.0], [0.0], "higher", "undetermined (n=1)"),
    ([1.0, 2.0], [1.0, 2.0], "higher", "identical in all 2 pairs"),
    ([1.5, 2.5, 3.5], [1.0, 2.0, 3.0], "lower", "worse: every one of the 3 pairs differs by "
     "exactly +0.5"),
    ([1.0, 2.0], [1.5, 2.5], None, "lower: every one of the 2 pairs differs by exactly -0.5"),
])
def test_verdicts(a, b, better, expected):
  assert study.verdict(statistics.paired_comparison(a, b), better) == expected


def test_summarize_script_writes_csv_and_md_and_reads_predictions(tmp_path):
  rng = np.random.default_rng(0)
  for seed in range(3):
    for smoothing in (0.0, 0.1):
      run = fake_run(seed, 0.9 + 0.01 * seed + smoothing * 0.1, loss__label_smoothing=smoothing)
      workdir = tmp_path / f"ls{smoothing}_seed{seed}"
      workdir.mkdir()
      del run["workdir"]
      (workdir / "results.json").write_text(json.dumps(run))
      if seed < 2:  # predictions.npz is optional: runs without it just lack the selective rows.
        logits = rng.normal(size=(50, 10)).astype(np.float32)
        labels = rng.integers(0, 10, size=50)
        np.savez(workdir / "predictions.npz", val_logits=logits, val_labels=labels,
                 test_logits=logits, test_labels=labels)
  done = subprocess.run([sys.executable, "scripts/summarize.py", str(tmp_path)],
                        capture_output=True, text=True, check=False)
  assert done.returncode == 0, done.stderr
  with open(tmp_path / "summary.csv", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  metrics = {r["metric"] for r in rows}
  assert {"accuracy", "nll", "aurc", "auroc", "aurc_pnorm"} <= metrics
  assert {r["n"] for r in rows if r["metric"] == "aurc"} == {"2"}
  assert "### accuracy" in (tmp_path / "summary.md").read_text()


def test_summarize_script_with_nothing_to_read_is_one_line(tmp_path):
  done = subprocess.run([sys.executable, "scripts/summarize.py", str(tmp_path)],
                        capture_output=True, text=True, check=False)
  assert done.returncode == 2 and done.stderr.count("\n") == 1 and "no finished run" in done.stderr


def test_a_focal_run_gets_its_ce_baseline():
  rng = np.random.default_rng(1)
  ce = rng.normal(0.9, 0.01, size=4)
  focal = ce - 0.02 + rng.normal(0, 0.002, size=4)
  runs = [fake_run(s, float(ce[s])) for s in range(4)]
  runs += [fake_run(s, float(focal[s]), loss__focal_gamma=3.0) for s in range(4)]
  (row,) = rows_for(study.summarize(runs), "Focal 3.0")
  assert row["group"] == "mnist1d cnn1d Focal 3.0" and row["baseline"] == "mnist1d cnn1d CE"
  np.testing.assert_allclose(row["diff"], np.mean(focal - ce), rtol=1e-12)
  np.testing.assert_allclose(row["p_value"], stats.ttest_rel(focal, ce).pvalue, rtol=1e-10)
  assert row["verdict"] == "worse"


def test_a_group_without_its_baseline_is_reported_not_dropped():
  runs = [fake_run(s, 0.9 + 0.01 * s, loss__label_smoothing=0.1) for s in range(3)]
  runs += [fake_run(s, 0.8, loss__label_smoothing=0.1, num_steps=50) for s in range(2)]
  runs += [fake_run(s, 0.7, num_steps=50) for s in range(2)]  # CE of the second recipe only.
  rows = [r for r in study.summarize(runs) if r["metric"] == "accuracy"]
  assert len(rows) == 3
  (orphan,) = [r for r in rows if r["verdict"] == study.NO_BASELINE]
  assert orphan["group"] == "mnist1d cnn1d LS 0.1 [num_steps=1000]"
  assert orphan["n"] == 3 and orphan["mean"] == pytest.approx(0.91) and orphan["baseline"] == ""
  assert orphan["group"] in study.missing_baselines(rows)
  assert orphan["group"] in study.difference_table(rows, ["accuracy"])


def test_grouping_and_baselines_read_the_method_table(monkeypatch):
  """A method added to the table groups on its own and is paired with CE, with no other change."""
  new = dataclasses.replace(methods.BY_NAME["CP"], name="Sharpen", field="loss.sharpen", off=1.0,
                            checks=(), combines_with=())
  monkeypatch.setattr(methods, "METHODS", (*methods.METHODS, new))
  monkeypatch.setattr(methods, "FIELDS", (*methods.FIELDS, new.field))
  monkeypatch.setattr(methods, "BY_NAME", {**methods.BY_NAME, new.name: new})
  ce = [0.90, 0.91, 0.93]
  runs = [fake_run(s, ce[s], loss__sharpen=1.0) for s in range(3)]
  runs += [fake_run(s, ce[s] + 0.01 * (s + 1), loss__sharpen=2.0) for s in range(3)]
  (row,) = rows_for(study.summarize(runs), "Sharpen 2.0")
  assert row["baseline"] == "mnist1d cnn1d CE"
  np.testing.assert_allclose(row["diff"], 0.02, rtol=1e-9)
  assert [r["config"]["loss"]["sharpen"] for r in study.where(runs, Sharpen=2.0)] == [2.0] * 3
  assert len(study.where(runs)) == 3


def test_where_selects_by_method_names_of_the_table():
  runs = [fake_run(0, 0.9), fake_run(0, 0.9, loss__label_smoothing=0.1),
          fake_run(0, 0.9, loss__label_smoothing=0.1, mixup__alpha=0.2),
          fake_run(0, 0.9, loss__focal_gamma=2.0)]
  assert study.where(runs) == runs[:1]
  assert study.where(runs, LS=0.1) == runs[1:2]
  assert study.where(runs, LS=0.1, Mixup=0.2) == runs[2:3]
  assert study.where(runs, Focal=2) == runs[3:]
  with pytest.raises(ValueError, match="unknown method 'alpha'"):
    study.where(runs, alpha=0.2)


def test_format_number_is_the_one_formatter():
  assert study.format_number(0.123456) == "0.1235"
  assert study.format_number(np.float32(0.5), 2) == "0.50"
  assert study.format_number(0.05, 3, sign=True) == "+0.050"
  assert study.format_number(float("nan")) == "nan" and study.format_number("") == ""
  assert study.format_number(7) == "7" and study.interval(float("nan"), 1.0) == ""


def test_write_keeps_the_summary_csv_columns(tmp_path):
  runs = [fake_run(s, 0.9 + 0.01 * s, loss__label_smoothing=a) for s in range(2) for a in (0, .1)]
  rows = study.summarize(runs)
  study.write(study.Report(rows, ["text"], {}, runs), tmp_path, "T", "cmd")
  with open(tmp_path / "summary.csv", encoding="utf-8") as f:
    header = next(csv.reader(f))
  assert header == ("group,metric,n,mean,std,ci_low,ci_high,seeds,baseline,n_paired,diff,"
                    "diff_ci_low,diff_ci_high,p_value,verdict,unpaired_seeds").split(",")
  extra = [{"role": "x", **r} for r in rows]
  study.write(study.Report(extra, [], {}, runs), tmp_path, "T", "cmd")
  with open(tmp_path / "summary.csv", encoding="utf-8") as f:
    assert next(csv.reader(f)) == ["role", *header]


def test_groups_sort_numerically_with_ce_first_in_each_experiment():
  runs = []
  for rate in (0.6, 0.2):  # Given in the wrong order, as a directory listing may give them.
    for ls in (0.95, 0.9, 0.1, 0.0, -0.1, -0.3):
      runs += [fake_run(s, 0.9 + 0.01 * s + ls * 0.001 - rate, loss__label_smoothing=ls,
                        data__label_noise__rate=rate) for s in (10, 2)]
  groups = [r["group"] for r in study.summarize(runs) if r["metric"] == "accuracy"]
  methods_in_order = ["CE", "LS -0.3", "LS -0.1", "LS 0.1", "LS 0.9", "LS 0.95"]
  assert [g.split(": ")[1] for g in groups] == methods_in_order * 2, groups
  assert all("20%" in g for g in groups[:6]) and all("60%" in g for g in groups[6:])
  assert sorted(["LS 0.95", "LS 10", "LS 0.9", "seed10", "seed2"], key=study.natural) == [
      "LS 0.9", "LS 0.95", "LS 10", "seed2", "seed10"]


def test_a_zero_variance_difference_prints_a_real_result_not_nan():
  ce = [0.5, 0.625, 0.75]  # Exact in binary: every difference below is exactly equal.
  runs = [fake_run(s, ce[s]) for s in range(3)]
  runs += [fake_run(s, ce[s], loss__label_smoothing=0.1) for s in range(3)]          # Identical.
  runs += [fake_run(s, ce[s] + 0.25, loss__label_smoothing=0.2) for s in range(3)]   # Exact shift.
  rows = study.summarize(runs)
  (same,) = rows_for(rows, "LS 0.1")
  (shift,) = rows_for(rows, "LS 0.2")
  assert same["verdict"] == "identical in all 3 pairs"
  assert shift["verdict"] == "improves: every one of the 3 pairs differs by exactly +0.25"
  text = study.markdown(rows) + study.difference_table(rows, ["accuracy", "nll"])
  assert "nan" not in text and "undetermined" not in text
  assert "identical in all 3 pairs" in text and "by exactly -0.25" in text  # NLL = 1 - accuracy.


def test_pairing_is_by_seed_whatever_order_the_groups_list_their_seeds(tmp_path):
  rng = np.random.default_rng(3)
  seeds = [0, 1, 2, 5, 10, 11, 20]
  ce = {s: 0.9 + rng.normal(0, 0.01) for s in seeds}
  ls = {s: ce[s] + 0.02 + rng.normal(0, 0.002) for s in seeds}
  expected = statistics.paired_comparison([ls[s] for s in seeds], [ce[s] for s in seeds])
  for order in range(4):
    shuffled = [list(rng.permutation(seeds)) for _ in range(2)]
    runs = [fake_run(int(s), ce[s]) for s in shuffled[0]]
    runs += [fake_run(int(s), ls[s], loss__label_smoothing=0.1) for s in shuffled[1]]
    (row,) = rows_for(study.summarize(runs), "LS 0.1")
    assert row["n_paired"] == len(seeds), order
    np.testing.assert_allclose([row["diff"], row["diff_ci_low"], row["p_value"]],
                               [expected.mean_difference, expected.ci_low, expected.p_value],
                               rtol=1e-12)
  # From disk: directory order puts seed10 before seed2, in one group only.
  for name, values, fields in (("ce", ce, {}), ("ls", ls, {"loss__label_smoothing": 0.1})):
    for s in seeds:
      workdir = tmp_path / f"{name}_seed{s}"
      workdir.mkdir()
      run = fake_run(s, values[s], **fields)
      del run["workdir"]
      (workdir / "results.json").write_text(json.dumps(run))
  (row,) = rows_for(study.summarize(study.load([str(tmp_path)])), "LS 0.1")
  np.testing.assert_allclose(row["diff"], expected.mean_difference, rtol=1e-12)
  np.testing.assert_allclose(row["p_value"], expected.p_value, rtol=1e-12)


def test_a_temperature_fitted_on_its_bound_is_flagged_in_the_summary():
  runs = [{**fake_run(s, 0.9), "temperature": 1.5, "temperature_at_bound": False} for s in range(3)]
  runs += [{**fake_run(s, 0.9, loss__label_smoothing=0.3), "temperature": t,
            "temperature_at_bound": t == 0.01} for s, t in zip(range(3), (0.01, 0.7, 0.01))]
  rows = study.summarize(runs, [study.BY_NAME["temperature"]])
  (ce,) = rows_for(rows, "CE", "temperature")
  (ls,) = rows_for(rows, "LS 0.3", "temperature")
  assert "bound" not in ce["verdict"]
  assert ls["verdict"].endswith("T on its fitting bound in 2 of 3 runs"), ls["verdict"]


def test_a_binary_run_loads_without_selective_metrics(tmp_path):
  """A binary run's predictions hold one logit per example: no max-softmax selective metrics, and
  its ranking AUROC is read from results.json."""
  workdir = tmp_path / "binary_seed0"
  workdir.mkdir()
  config = default.get_config().to_dict()
  config["num_classes"] = 1
  (workdir / "results.json").write_text(json.dumps(
      {"config": config, "accuracy": 0.8, "auroc": 0.9, "average_precision": 0.7}))
  np.savez(workdir / "predictions.npz", val_logits=np.zeros(4), val_labels=np.array([0, 1, 0, 1]),
           test_logits=np.zeros(4), test_labels=np.array([0, 1, 0, 1]))
  run = study.load_run(workdir)
  assert "selective" not in run
  assert study.values_by_seed([run], study.BY_NAME["roc_auc"]) == {0: 0.9}
  assert study.values_by_seed([run], study.BY_NAME["auroc"]) == {}
