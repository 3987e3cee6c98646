"""scripts/test.sh passes paths through to pytest; scripts/plot_calibration.py lays out its figure;
scripts/reproduce.py runs the registry's steps (the exact command lines, --print)."""
import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from configs import default
from ls_jax import calibration
import overlay_venv

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def test_sh_env(tmp_path_factory) -> dict[str, str]:
  """The environment of an activated venv that already has requirements.txt, as test.sh expects.

  The venv sees this interpreter's packages, and its requirements stamp matches, so test.sh
  installs nothing.
  """
  venv = tmp_path_factory.mktemp("test_sh") / "venv"
  overlay_venv.create(venv)
  shutil.copy(REPO_ROOT / "requirements.txt", venv / ".ls_jax_requirements")
  return {**os.environ, "VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}


def _collected(env: dict[str, str], cwd: pathlib.Path, *args: str) -> list[str]:
  """The test ids that `scripts/test.sh --collect-only ARGS` would run (-n 0: no workers)."""
  done = subprocess.run([str(REPO_ROOT / "scripts" / "test.sh"), "-n", "0", "--collect-only",
                         *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                        check=False)
  assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
  return [line for line in done.stdout.splitlines() if "::" in line]


def _files(test_ids: list[str]) -> set[str]:
  return {test_id.split("::")[0] for test_id in test_ids}


def test_test_sh_runs_only_the_paths_it_is_given(test_sh_env):
  assert _files(_collected(test_sh_env, REPO_ROOT, "tests/test_noise.py")) == {"tests/test_noise.py"}
  # Relative to where it is run from; a node id keeps its test name.
  test_ids = _collected(test_sh_env, REPO_ROOT / "tests", "test_noise.py",
                        "test_mixing.py::test_soft_targets_formula")
  assert _files(test_ids) == {"tests/test_noise.py", "tests/test_mixing.py"}
  assert [t for t in test_ids if "test_mixing" in t] == ["tests/test_mixing.py::test_soft_targets_formula"]


def test_test_sh_without_a_path_runs_the_whole_suite(test_sh_env):
  every_file = {f"tests/{p.name}" for p in (REPO_ROOT / "tests").glob("test_*.py")}
  assert _files(_collected(test_sh_env, REPO_ROOT, "-p", "no:cacheprovider")) == every_file


def _load_plot_calibration():
  spec = importlib.util.spec_from_file_location(
      "plot_calibration", REPO_ROOT / "scripts" / "plot_calibration.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _bins_json(probs: np.ndarray, labels: np.ndarray) -> dict:
  bins = calibration.reliability_bins(probs, labels)
  as_list = lambda x: [None if np.isnan(v) else float(v) for v in x]
  return {"edges": as_list(bins.edges), "mean_confidence": as_list(bins.mean_confidence),
          "accuracy": as_list(bins.accuracy), "count": [int(c) for c in bins.count]}


def _fake_results(seed: int, label_smoothing: float, model: str = "cnn1d") -> dict:
  """A results.json of a synthetic run: logits sharpened like CE, or softened like LS."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 10, 1000)
  logits = rng.normal(size=(1000, 10)) + 3.0 * np.eye(10)[labels]
  logits *= 0.6 if label_smoothing else 2.0
  probs = np.exp(logits - logits.max(1, keepdims=True))
  probs /= probs.sum(1, keepdims=True)
  config = default.get_config()
  config.seed, config.loss.label_smoothing, config.model.name = seed, label_smoothing, model
  return {**calibration.calibration_metrics(logits, labels), "temperature": 1.5,
          "reliability": _bins_json(probs, labels),
          "reliability_temperature_scaled": _bins_json(probs, labels),
          "config": json.loads(config.to_json())}


@pytest.fixture(scope="module")
def plot_calibration():
  return _load_plot_calibration()


def test_plot_titles_name_what_differs_between_runs(plot_calibration):
  runs = [_fake_results(0, 0.0), _fake_results(1, 0.0), _fake_results(0, 0.1)]
  figure = plot_calibration.plot(runs)
  titles = [ax.get_title().split("\n")[0] for ax in figure.axes if ax.get_title()]
  assert titles == ["CE, seed 0", "CE, seed 1", "LS 0.1, seed 0"]
  # A field that differs only in some runs is still named in every title.
  runs.append(_fake_results(0, 0.0, model="mlp"))
  figure = plot_calibration.plot(runs)
  titles = [ax.get_title().split("\n")[0] for ax in figure.axes if ax.get_title()]
  assert titles[0] == "CE, seed 0, model.name cnn1d" and titles[3] == "CE, seed 0, model.name mlp"


@pytest.mark.parametrize("num_runs, rows, columns", [(2, 1, 2), (3, 1, 3), (4, 2, 3), (6, 2, 3)])
def test_plot_grid_has_shared_axes(plot_calibration, num_runs, rows, columns):
  runs = [_fake_results(seed, 0.1 * (seed % 2)) for seed in range(num_runs)]
  figure = plot_calibration.plot(runs)
  assert len(figure.axes) == 2 * num_runs
  reliability, histograms = figure.axes[0::2], figure.axes[1::2]
  for group in (reliability, histograms):
    for ax in group[1:]:
      assert ax.get_shared_x_axes().joined(ax, reliability[0])
      assert ax.get_shared_y_axes().joined(ax, group[0])
  assert {ax.get_ylim() for ax in histograms} == {histograms[0].get_ylim()}
  assert reliability[0].get_xlim() == (0, 1) and reliability[0].get_ylim() == (0, 1)
  # The grid: at most 3 runs per row, each histogram right below its reliability diagram.
  figure.canvas.draw()
  boxes = [ax.get_position() for ax in reliability]
  lefts = sorted({round(b.x0, 3) for b in boxes})
  tops = sorted({round(b.y1, 3) for b in boxes}, reverse=True)
  assert (len(tops), len(lefts)) == (rows, columns)
  for index, (box, below) in enumerate(zip(boxes, [ax.get_position() for ax in histograms])):
    row, column = divmod(index, columns)
    assert (round(box.y1, 3), round(box.x0, 3)) == (tops[row], lefts[column])
    assert below.y1 < box.y0 and box.y0 - below.y1 < 0.1 * box.height
    assert below.x0 == pytest.approx(box.x0)


def test_plot_bars_fade_with_their_count_and_the_legend_covers_none(plot_calibration):
  results = _fake_results(0, 0.0)
  figure = plot_calibration.plot([results, _fake_results(1, 0.1)])
  counts = np.asarray(results["reliability"]["count"], float)
  bars = figure.axes[0].patches[:len(counts)]
  alphas = np.array([bar.get_facecolor()[3] for bar in bars])
  np.testing.assert_allclose(alphas, np.maximum(counts / counts.max(), 0.08))
  assert alphas[counts.argmax()] == 1.0 and alphas[counts == counts[counts > 0].min()].max() < 0.2
  figure.canvas.draw()
  legend = figure.legends[0].get_window_extent()
  for ax in figure.axes:
    assert not legend.overlaps(ax.get_window_extent())


def test_plot_calibration_command_line(tmp_path):
  for name, (seed, smoothing) in {"ce": (0, 0.0), "ls": (0, 0.1)}.items():
    (tmp_path / name).mkdir()
    (tmp_path / name / "results.json").write_text(json.dumps(_fake_results(seed, smoothing)))
  out = tmp_path / "calibration.png"
  done = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "plot_calibration.py"),
                         str(tmp_path / "ce"), str(tmp_path / "ls"), "--out", str(out)],
                        capture_output=True, text=True, timeout=120, check=False)
  assert done.returncode == 0, done.stderr
  assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- scripts/reproduce.py: each experiment's steps from the registry -------------------------------


def _reproduce_script():
  spec = importlib.util.spec_from_file_location("reproduce_script",
                                                REPO_ROOT / "scripts" / "reproduce.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _printed(capsys, monkeypatch, *args: str, **env: str) -> list[str]:
  monkeypatch.delenv("TINY", raising=False)
  for key, value in env.items():
    monkeypatch.setenv(key, value)
  assert _reproduce_script().main(["--print", *args]) == 0
  return capsys.readouterr().out.splitlines()


# What the per-experiment bash functions of scripts/reproduce.sh ran before the registry held the
# steps (printed with a stub interpreter): the registry must reproduce them exactly.
METHODS_AND_NOISE = r"""
python scripts/sweep.py configs/sweeps/methods.py:select --out runs/methods_select
python scripts/sweep.py configs/sweeps/methods.py:evaluate,selection=runs/methods_select --out runs/methods
python scripts/report.py methods --out docs/results/methods --runs runs/methods --selection runs/methods_select
python scripts/sweep.py configs/sweeps/noise.py --out runs/noise
python scripts/report.py noise --out docs/results/noise --runs runs/noise
python scripts/sweep.py configs/sweeps/noise.py:finetune,warmup=runs/noise,learning_rate=1e-3 --out runs/noise_finetune
python scripts/report.py noise --out docs/results/noise_finetune --runs runs/noise_finetune
python scripts/sweep.py configs/sweeps/noise.py:finetune,warmup=runs/noise,learning_rate=1e-4 --out runs/noise_finetune_lr1e-4
python scripts/report.py noise --out docs/results/noise_finetune_lr1e-4 --runs runs/noise_finetune_lr1e-4
python scripts/sweep.py configs/sweeps/calibration.py --out runs/evidence --match 'label_smoothing=(0|0\.1)_seed'
python scripts/report.py confidence --out docs/results/confidence --runs runs/evidence
""".strip().splitlines()


def test_reproduce_prints_the_exact_commands_of_methods_noise_and_confidence(capsys, monkeypatch):
  assert _printed(capsys, monkeypatch, "methods", "noise", "confidence") == METHODS_AND_NOISE


def test_reproduce_tiny_adds_seeds_steps_and_small_sets_and_keeps_the_select_seeds(
    capsys, monkeypatch):
  lines = _printed(capsys, monkeypatch, "methods", "information", TINY="1", TINY_DIR="/T")
  training = "--override num_steps=20 --override log_every_steps=10"
  assert lines == [
      f"python scripts/sweep.py configs/sweeps/methods.py:select --out /T/methods_select {training}",
      "python scripts/sweep.py configs/sweeps/methods.py:evaluate,selection=/T/methods_select "
      f"--out /T/methods --seeds 0,1 {training}",
      "python scripts/report.py methods --out /T/results/methods --runs /T/methods --selection "
      "/T/methods_select",
      "python scripts/sweep.py configs/sweeps/distillation_teachers.py --out "
      "/T/distillation_teachers --seeds 0,1 --override checkpoint_every_steps=10 --override "
      f"eval_every_steps=0 {training}",
      "python scripts/report.py information --out /T/results/information --runs "
      "/T/distillation_teachers --examples 20 --draws 4"]


def test_reproduce_runs_a_shared_sweep_once_and_covers_every_experiment(capsys, monkeypatch):
  lines = _printed(capsys, monkeypatch)
  teachers = [l for l in lines if "distillation_teachers.py" in l]
  assert len(teachers) == 1 and len(lines) == len(set(lines))
  reported = {l.split()[2] for l in lines if l.startswith("python scripts/report.py")}
  from ls_jax.experiments import reports  # pylint: disable=g-import-not-at-top
  assert reported == set(reports.REPORTS)
  assert ("python scripts/report.py language_model --out docs/results/language_model --runs "
          "runs/lm") in lines


def test_reproduce_rejects_an_unknown_experiment(capsys):
  assert _reproduce_script().main(["--print", "methods", "nonsense"]) == 2
  assert "unknown experiment 'nonsense'" in capsys.readouterr().err
