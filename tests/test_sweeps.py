"""Sweep files, the sweep runner and its modes; the end-to-end test trains every sweep file tiny.

The end-to-end test trains 12 runs of 20 steps (each ~7.5 CPU-s, mostly imports and compilation;
about a minute on 2 idle cores): two points of calibration.py (CE and Mixup) and one point of each
other sweep file, 2 seeds each (`--match`), then summarizes.
The methods evaluate stage is checked on fake selection results (it would need 252 selection runs).
"""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from configs.sweeps import distillation_teachers
from configs.sweeps.common import concat, product, sweep, zip_
from ls_jax.experiments import sweeps

ROOT = pathlib.Path(__file__).resolve().parents[1]
SWEEP_COUNTS = {"strength.py": 100, "calibration.py": 50, "selective.py": 40, "noise.py": 360,
                "methods.py:select": 153, "noise.py:finetune,warmup=runs/x": 240,
                "distillation_teachers.py": 15, "distillation_students.py:teachers=runs/t": 65,
                "representations_digits.py": 10}
TINY = ["--override", "num_steps=20", "--override", "log_every_steps=10", "--seeds", "0,1"]


def sweep_py(*args, check_rc=0):
  # Without conftest's 8 fake devices: the runs train as a user's would, on one CPU device.
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  done = subprocess.run([sys.executable, str(ROOT / "scripts" / "sweep.py"), *map(str, args)],
                        capture_output=True, text=True, cwd=ROOT, check=False, env=env)
  assert done.returncode == check_rc, done.stdout + done.stderr
  return done


def test_helpers():
  a, b = sweep("x", [1, 2]), sweep("y", ["u", "v"])
  assert product(a, b) == [{"x": 1, "y": "u"}, {"x": 1, "y": "v"}, {"x": 2, "y": "u"},
                           {"x": 2, "y": "v"}]
  assert zip_(a, b) == [{"x": 1, "y": "u"}, {"x": 2, "y": "v"}]
  assert concat(a, b) == a + b
  with pytest.raises(ValueError, match="one length"):
    zip_(a, sweep("y", [1]))
  with pytest.raises(ValueError, match="both set 'x'"):
    product(a, a)


def test_workdir_names_are_readable_stable_and_unique():
  assert sweeps.workdir_name("configs/mnist1d.py:mlp", {"loss.label_smoothing": 0.1}, 3) == (
      "mnist1d-mlp_loss.label_smoothing=0.1_seed3")
  assert sweeps.workdir_name("configs/digits.py", {}, 0) == "digits_seed0"
  with pytest.raises(ValueError, match="both named"):
    sweeps.runs({"config": "configs/mnist1d.py", "points": [{"mixup.alpha": 0.2}] * 2,
                 "seeds": [0]})


@pytest.mark.parametrize("spec, count", SWEEP_COUNTS.items())
def test_print_gives_one_command_per_run(spec, count):
  lines = sweep_py(f"configs/sweeps/{spec}", "--out", "runs/x", "--print").stdout.splitlines()
  assert len(lines) == count == len(set(lines))
  assert all("scripts/train.py --config=configs/" in line and "--workdir=runs/x/" in line
             for line in lines)


def test_the_command_runs_the_callers_train_script():
  run = sweeps.Run("x_seed2", "configs/mnist1d.py", {"loss.focal_gamma": 3.0}, 2)
  assert sweeps.command(run, "out", "/repo/scripts/train.py", {"num_steps": "20"}, "py") == [
      "py", "/repo/scripts/train.py", "--config=configs/mnist1d.py", "--config.loss.focal_gamma=3",
      "--config.seed=2", "--config.num_steps=20", "--workdir=out/x_seed2"]
  script = sweeps.slurm_script("c.txt", 3, "logs", time="1:00:00", cpus_per_task=4, mem="2G",
                               throttle=2, python=".venv/bin/python")
  assert 'cd "${LS_JAX_REPO:-$SLURM_SUBMIT_DIR}"\n' in script and "#SBATCH --array=0-2%2" in script
  assert 'PYTHON="${LS_JAX_PYTHON:-.venv/bin/python}"' in script


def test_focal_is_a_candidate_of_the_methods_sweep_and_a_point_of_calibration():
  select = sweeps.runs(sweeps.load("configs/sweeps/methods.py:select"))
  assert sorted({r.overrides.get("loss.focal_gamma") for r in select} - {None}) == [1.0, 2.0, 3.0]
  calibration = sweeps.load("configs/sweeps/calibration.py")["points"]
  assert {"loss.focal_gamma": 3.0} in calibration


def test_distillation_sweeps_names_and_the_seed_placeholder():
  assert sweeps.runs({"config": "configs/mnist1d.py", "seeds": [3],
                      "points": [{"x": "a/{seed}/b", "y": 1, "name": "short"}]}) == [
      sweeps.Run("mnist1d_short_seed3", "configs/mnist1d.py", {"x": "a/3/b", "y": 1}, 3)]
  teachers = sweeps.runs(sweeps.load("configs/sweeps/distillation_teachers.py"))
  assert {r.name for r in teachers} == {
      pathlib.Path(distillation_teachers.workdir("out", a, s)).name
      for a in (0.0, 0.1, 0.3) for s in range(5)}
  assert all(r.overrides["checkpoint_every_steps"] == 500 and r.overrides["keep_checkpoints"] == 13
             for r in teachers)
  students = sweeps.runs(sweeps.load("configs/sweeps/distillation_students.py:teachers=out"))
  distilled = [r for r in students if "distill.teacher_workdir" in r.overrides]
  assert len(distilled) == 60 and len({r.name for r in students}) == 65
  for run in distilled:  # Each student learns from the teacher of its own seed.
    teacher = pathlib.Path(run.overrides["distill.teacher_workdir"])
    assert teacher.parent == pathlib.Path("out").absolute()
    assert teacher.name.endswith(f"_seed{run.seed}") and run.overrides["distill.weight"] == 0.5
  assert "mnist1d-mlp_teacher=ls0.3_T=8_seed4" in {r.name for r in students}
  with pytest.raises(ValueError, match="needs teachers="):
    sweeps.load("configs/sweeps/distillation_students.py")


def test_methods_evaluate_picks_the_best_validation_accuracy(tmp_path):
  sweep_module = sweeps.load("configs/sweeps/methods.py:select")
  for run in sweeps.runs(sweep_module):
    # Validation accuracy peaks at LS 0.2, CP 0.05, Mixup 0.4, CutMix 1.0, LS 0.05 + Mixup 0.2.
    best = [{"loss.label_smoothing": 0.2}, {"loss.confidence_penalty": 0.05},
            {"loss.focal_gamma": 2.0}, {"mixup.alpha": 0.4}, {"cutmix.alpha": 1.0},
            {"loss.label_smoothing": 0.05, "mixup.alpha": 0.2}]
    value = 0.9 if run.overrides in best else 0.5
    workdir = tmp_path / run.name
    workdir.mkdir()
    (workdir / "results.json").write_text(json.dumps({"validation": {"accuracy": value}}))
  lines = sweep_py(f"configs/sweeps/methods.py:evaluate,selection={tmp_path}", "--out", "runs/x",
                   "--print").stdout.splitlines()
  assert len(lines) == 3 * 7 * 10
  seed0 = [line.split("--workdir=runs/x/")[1] for line in lines if line.endswith("_seed0")]
  assert sorted(n for n in seed0 if n.startswith("mnist1d-mlp")) == sorted([
      "mnist1d-mlp_seed0", "mnist1d-mlp_loss.label_smoothing=0.2_seed0",
      "mnist1d-mlp_loss.confidence_penalty=0.05_seed0", "mnist1d-mlp_loss.focal_gamma=2_seed0",
      "mnist1d-mlp_mixup.alpha=0.4_seed0",
      "mnist1d-mlp_cutmix.alpha=1_seed0",
      "mnist1d-mlp_loss.label_smoothing=0.05_mixup.alpha=0.2_seed0"])
  assert all("--config.seed=1" not in line or "_seed1" in line for line in lines)
  missing = sweep_py("configs/sweeps/methods.py:evaluate,selection=/nonexistent", "--out", "x",
                     "--print", check_rc=2)
  assert "selection run missing" in missing.stderr and missing.stderr.count("\n") == 1


def test_slurm_writes_an_array_job(tmp_path):
  done = sweep_py("configs/sweeps/selective.py", "--out", tmp_path, "--slurm", *TINY)
  commands = (tmp_path / "commands.txt").read_text().splitlines()
  script = (tmp_path / "sweep.sbatch").read_text()
  assert len(commands) == 8 and "--config.num_steps=20" in commands[0]
  assert "#SBATCH --array=0-7\n" in script and str(tmp_path / "commands.txt") in script
  for flag in ("--time=", "--cpus-per-task=", "--mem="):  # Defaults; sweep.py's flags set them.
    assert f"#SBATCH {flag}" in script
  assert "sbatch" in done.stdout


def test_every_sweep_file_runs_end_to_end_tiny(tmp_path):
  out = tmp_path / "runs"
  for spec, match in [("calibration.py", "smoothing=0_|mixup"),
                      ("strength.py", "smoothing=0.95_"),
                      ("selective.py", "smoothing=0.05_"),
                      ("noise.py", "asymmetric_.*rate=0.4_loss.label_smoothing=(0|-0.3)_"),
                      ("methods.py:select", "^digits_cutmix.alpha=1_"),
                      # Fine-tunes the CE runs of the line above (its warm-up).
                      (f"noise.py:finetune,warmup={out / 'noise'}",
                       "asymmetric_.*rate=0.4_.*smoothing=-1_")]:
    name = spec.split(".")[0] + ("_finetune" if ":finetune" in spec else "")
    done = sweep_py(f"configs/sweeps/{spec}", "--out", out / name, "--match", match,
                    *TINY)  # Exit status 0: every run has results.json.
    assert "failed:" not in done.stdout and "ETA" in done.stdout
  results = sorted(p.parent.name for p in out.glob("*/*/results.json"))
  assert len(results) == 4 + 2 * 6
  assert "digits_cutmix.alpha=1_seed1" in results
  tuned = json.loads(next((out / "noise_finetune").glob("*seed1/results.json")).read_text())
  assert tuned["config"]["init_from"] == str(
      out / "noise" / "mnist1d_data.label_noise.kind=asymmetric_data.label_noise.rate=0.4"
      "_loss.label_smoothing=0_seed1")
  assert tuned["config"]["loss"]["label_smoothing"] == -1.0
  # Rerunning skips the finished runs (and trains nothing).
  again = sweep_py("configs/sweeps/calibration.py", "--out", out / "calibration", "--match",
                   "smoothing=0_|mixup", *TINY)
  assert again.stdout.startswith("4 runs: 4 already finished, 0 to run")
  # A run without results.json (interrupted) is run again in its workdir, which resumes it.
  (out / "calibration" / "mnist1d_mixup.alpha=0.2_seed1" / "results.json").unlink()
  again = sweep_py("configs/sweeps/calibration.py", "--out", out / "calibration", "--match",
                   "smoothing=0_|mixup", *TINY)
  assert again.stdout.startswith("4 runs: 3 already finished, 1 to run")
  assert (out / "calibration" / "mnist1d_mixup.alpha=0.2_seed1" / "results.json").exists()
  # The calibration sweep summarizes into CE-paired rows.
  subprocess.run([sys.executable, "scripts/summarize.py", str(out / "calibration")], cwd=ROOT,
                 check=True, capture_output=True)
  md = (out / "calibration" / "summary.md").read_text()
  assert "mnist1d cnn1d Mixup 0.2" in md and "(n=2)" in md


def test_a_failed_run_is_named_with_its_log_and_the_sweep_goes_on(tmp_path):
  sweep_file = tmp_path / "bad.py"
  sweep_file.write_text(
      "def get_sweep(arg):\n"
      "  return {'config': 'configs/digits.py', 'seeds': [0],\n"
      "          'points': [{'init_from': '/nonexistent/run'}, {'mixup.alpha': 0.2}]}\n")
  # (A bad config value is refused before anything starts, tests/test_sweep_safety.py; this run
  # fails once started: the run it fine-tunes from does not exist.)
  done = sweep_py(sweep_file, "--out", tmp_path / "out", "--override", "num_steps=5",
                  "--parallel", "1", check_rc=1)
  bad = "digits_init_from=-nonexistent-run_seed0"
  log = tmp_path / "out" / "logs" / f"{bad}.log"
  assert f"failed: {bad}  log: {log}" in done.stdout
  assert "holds no run" in log.read_text()
  assert (tmp_path / "out" / "digits_mixup.alpha=0.2_seed0" / "results.json").exists()
