"""Reliability diagrams (scripts/plot_calibration.py and the calibration experiment's figure, one
helper: ls_jax.experiments.plots.reliability) show each bin's count, grey out bins too small to
judge and keep every line out of them, and name the run in their titles."""
import importlib.util
import json
import pathlib
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np
import pytest

from configs import default
from ls_jax.experiments import calibration as calibration_experiment
from ls_jax.experiments import plots

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
EDGES = np.linspace(0, 1, 16)
# 15 bins: empty ones, near-empty ones (1, 3: accuracy 0 or 1), one just under the rule (29), one
# at it (30), and full ones.
COUNTS = [0, 0, 0, 1, 3, 0, 29, 30, 60, 80, 120, 200, 300, 400, 500]
SCALED_COUNTS = [0, 0, 3, 0, 500, 2, 40, 50, 100, 150, 200, 250, 300, 200, 1]
SMALL = np.array(COUNTS) < 30
SCALED_SMALL = np.array(SCALED_COUNTS) < 30


def _bins(counts: list[int], seed: int) -> dict:
  rng = np.random.default_rng(seed)
  centers = (EDGES[:-1] + EDGES[1:]) / 2
  accuracy = [None if c == 0 else float(round(rng.uniform(0, 1) * c) / c) if c < 5
              else float(np.clip(m - 0.05 + 0.02 * rng.normal(), 0, 1))
              for c, m in zip(counts, centers)]
  return {"edges": EDGES.tolist(),
          "mean_confidence": [None if c == 0 else float(m) for c, m in zip(counts, centers)],
          "accuracy": accuracy, "count": counts}


def fake_run(root: pathlib.Path, name: str, seed: int, label_smoothing: float) -> pathlib.Path:
  """A workdir whose results.json has the fields plot_calibration reads, and bins of 0, 3, 500."""
  config = default.get_config()
  config.seed, config.loss.label_smoothing = seed, label_smoothing
  results = {"accuracy": 0.9, "ece": 0.05, "mean_confidence": 0.93, "temperature": 1.4,
             "reliability": _bins(COUNTS, seed),
             "reliability_temperature_scaled": _bins(SCALED_COUNTS, seed + 100),
             "config": json.loads(config.to_json())}
  # The temperature-scaled line would jump to 0 and 1 in its bins of 1-3 examples.
  results["reliability_temperature_scaled"]["accuracy"][2] = 0.0
  results["reliability_temperature_scaled"]["accuracy"][5] = 1.0
  workdir = root / name
  workdir.mkdir(parents=True)
  (workdir / "results.json").write_text(json.dumps(results))
  return workdir


@pytest.fixture(scope="module")
def script():
  spec = importlib.util.spec_from_file_location(
      "plot_calibration_script", REPO_ROOT / "scripts" / "plot_calibration.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture
def two_seeds(tmp_path) -> list[pathlib.Path]:
  return [fake_run(tmp_path, f"ls0.1_seed{s}", s, 0.1) for s in (0, 1)]


def _load(workdirs):
  return [json.loads((w / "results.json").read_text()) for w in workdirs]


def test_small_bins_are_grey_and_no_line_passes_through_them(two_seeds):
  results = _load(two_seeds)[0]
  figure, (ax, counts_ax) = plt.subplots(2, 1)
  drawn = plots.reliability(ax, results["reliability"], counts_ax=counts_ax,
                            scaled=results["reliability_temperature_scaled"])
  np.testing.assert_array_equal(drawn["small"], SMALL)
  for bar, small in zip(drawn["bars"], SMALL):
    face = np.asarray(bar.get_facecolor()[:3])
    assert np.allclose(face, plots.SMALL_COLOR) == small
    assert (bar.get_hatch() == plots.SMALL_HATCH) == small
  # The temperature-scaled step line: one value per edge, NaN (a break) at each of its own small
  # bins, so the 0 and 1 of its 2- and 3-example bins are not drawn; its judged bins are.
  y = np.asarray(drawn["line"].get_ydata(), float)
  assert len(y) == len(EDGES)
  np.testing.assert_array_equal(np.isnan(y[:-1]), SCALED_SMALL)
  scaled_accuracy = np.array(results["reliability_temperature_scaled"]["accuracy"], float)
  np.testing.assert_allclose(y[:-1][~SCALED_SMALL], scaled_accuracy[~SCALED_SMALL])
  # The grey bins have a legend entry that names the rule.
  assert any(f"< {plots.MIN_COUNT} examples" in label
             for label in ax.get_legend_handles_labels()[1])
  plt.close(figure)


def test_each_bins_count_is_written_over_its_bar(two_seeds):
  results = _load(two_seeds)[0]
  figure, (ax, counts_ax) = plt.subplots(2, 1)
  drawn = plots.reliability(ax, results["reliability"], counts_ax=counts_ax)
  assert [t.get_text() for t in drawn["count_texts"]] == [str(c) for c in COUNTS]
  assert [t.get_text() for t in counts_ax.texts] == [str(c) for c in COUNTS]
  heights = [bar.get_height() for bar in drawn["count_bars"]]
  np.testing.assert_allclose(heights, np.array(COUNTS) / sum(COUNTS))
  for text, bar in zip(drawn["count_texts"], drawn["count_bars"]):  # Each above its own bar.
    assert text.xy == pytest.approx((bar.get_x() + bar.get_width() / 2, bar.get_height()))
  plt.close(figure)


def test_min_count_is_a_parameter():
  bins = _bins(COUNTS, 0)
  figure, ax = plt.subplots()
  assert not plots.reliability(ax, bins, min_count=0)["small"].any()
  np.testing.assert_array_equal(plots.reliability(ax, bins, min_count=100)["small"],
                                np.array(COUNTS) < 100)
  plt.close(figure)


def test_titles_name_the_run_and_tell_two_seeds_apart(script, two_seeds, tmp_path):
  ce = fake_run(tmp_path, "ce_seed0", 0, 0.0)
  workdirs = [*two_seeds, ce]
  figure = script.plot(_load(workdirs), [w.name for w in workdirs])
  titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
  assert [t.split("\n")[:2] for t in titles] == [
      ["ls0.1_seed0", "LS 0.1, seed 0"], ["ls0.1_seed1", "LS 0.1, seed 1"],
      ["ce_seed0", "CE, seed 0"]]
  # Without names, the method and its seed still tell two seeds apart, even when all seeds agree.
  figure = script.plot(_load(two_seeds[:1] + [ce]))
  assert [ax.get_title().split("\n")[0] for ax in figure.axes if ax.get_title()] == [
      "LS 0.1, seed 0", "CE, seed 0"]
  plt.close("all")


def test_script_marks_small_bins_and_counts_in_every_panel(script, two_seeds):
  figure = script.plot(_load(two_seeds), [w.name for w in two_seeds], min_count=30)
  reliability, histograms = figure.axes[0::2], figure.axes[1::2]
  for ax, counts_ax in zip(reliability, histograms):
    bars = ax.patches[:len(COUNTS)]
    assert [b.get_hatch() == plots.SMALL_HATCH for b in bars] == SMALL.tolist()
    line, = [l for l in ax.lines if l.get_label() == "after temperature scaling"]
    np.testing.assert_array_equal(np.isnan(np.asarray(line.get_ydata(), float))[:-1], SCALED_SMALL)
    assert [t.get_text() for t in counts_ax.texts] == [str(c) for c in COUNTS]
  # The count text has headroom: the tallest bar's count stays inside the (shared) y-range.
  figure.canvas.draw()
  for counts_ax in histograms:
    box = counts_ax.get_window_extent()
    for text in counts_ax.texts:
      assert text.get_window_extent().y1 <= box.y1 + 1
  plt.close(figure)


def test_command_line_takes_min_count(tmp_path, two_seeds):
  out = tmp_path / "calibration.png"
  done = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "plot_calibration.py"),
                         *map(str, two_seeds), "--out", str(out), "--min-count", "50"],
                        capture_output=True, text=True, timeout=120, check=False)
  assert done.returncode == 0, done.stderr
  assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert f"wrote {out}" in done.stdout
  helped = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "plot_calibration.py"),
                           "--help"], capture_output=True, text=True, timeout=120, check=True)
  assert "--min-count" in helped.stdout


def test_calibration_experiment_figure_uses_the_same_rule(two_seeds):
  results = _load(two_seeds)
  pooled = calibration_experiment.pooled_reliability([r["reliability"] for r in results])
  pooled_ts = calibration_experiment.pooled_reliability(
      [r["reliability_temperature_scaled"] for r in results])
  diagrams = {"LS 0.1": pooled, "LS 0.1 + TS": pooled_ts}
  figure = calibration_experiment.plot({"reliability": diagrams})["reliability"]
  pooled_small = pooled["count"] < plots.MIN_COUNT  # Counts add over seeds: 2 x 3 = 6 < 30.
  assert pooled_small.tolist() == (2 * np.array(COUNTS) < 30).tolist()
  panels = [ax for ax in figure.axes if ax.get_title()]
  assert [ax.get_title() for ax in panels] == ["LS 0.1", "LS 0.1 + TS"]
  bars = panels[0].patches[:len(COUNTS)]
  assert [b.get_hatch() == plots.SMALL_HATCH for b in bars] == pooled_small.tolist()
  # The (mean confidence, accuracy) points: one per judged bin, none in a small one.
  points, = [l for l in panels[0].lines if l.get_label() == "(mean confidence, accuracy)"]
  np.testing.assert_allclose(points.get_xdata(), pooled["mean_confidence"][~pooled_small])
  counts_axes = [ax for ax in figure.axes if not ax.get_title()]
  assert [t.get_text() for t in counts_axes[0].texts] == [f"{c:.0f}" for c in pooled["count"]]
  plt.close(figure)
