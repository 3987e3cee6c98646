"""`scripts/sweep.py` (default mode): runs trained in long-lived workers, as train.py trains them.

* a run trained in a worker after other runs, or by one of two workers (a language model too),
  gives the results.json of the same run trained alone by scripts/train.py, every number equal
  (timings and the environment aside);
* a failing run fails alone, and a worker that dies fails only its run: the sweep goes on;
* SIGTERM or kill -9 of the sweep checkpoints the running runs, and the rerun resumes them.

Real training on MNIST-1D and the small language model (20 to 6000 steps): each test takes
seconds.
"""
import json
import os
import re
import signal
import subprocess
import time

import pytest

from test_sweep_safety import ROOT, env, start_sweep, sweep_file, sweep_py

IGNORED = ("train_seconds", "environment")  # Timings, and what machine and versions ran it.
TINY = ("--override", "num_steps=20")


def mnist1d_sweep(tmp_path, points, name="s.py"):
  path = sweep_file(tmp_path, points, name=name)
  path.write_text(path.read_text().replace("configs/digits.py", "configs/mnist1d.py"))
  return path


def numeric_leaves(node, path=""):
  """{path: value} of every number, bool and string of a results.json, `IGNORED` left out."""
  if isinstance(node, dict):
    return {k: v for key, value in node.items() if key not in IGNORED
            for k, v in numeric_leaves(value, f"{path}.{key}").items()}
  if isinstance(node, list):
    return {k: v for i, value in enumerate(node)
            for k, v in numeric_leaves(value, f"{path}[{i}]").items()}
  return {path: node}


def results(workdir):
  return json.loads((workdir / "results.json").read_text())


def test_runs_in_a_worker_after_others_equal_the_same_runs_alone(tmp_path):
  points = [{"loss.label_smoothing": 0.1}, {"loss.label_smoothing": 0.2, "mixup.alpha": 0.2},
            {"loss.label_smoothing": 0.0}]
  sweep = mnist1d_sweep(tmp_path, points)
  out = tmp_path / "out"
  done = sweep_py(sweep, "--out", out, "--parallel", "1", "--seeds", "3", *TINY)
  assert "3 of 3 runs have results" in done.stdout, done.stdout
  logs = sorted((out / "logs").glob("*.log"))
  workers = {log.read_text().splitlines()[0] for log in logs}
  assert len(logs) == 3 and len(workers) == 1, workers  # One worker trained all three.
  # The 2nd and 3rd runs: trained in the worker after other runs.
  assert_equal_to_runs_alone(sweep, out, tmp_path / "alone", "--seeds", "3", first=1)


def assert_equal_to_runs_alone(sweep, out, alone_out, *args, first=0):
  """The sweep's runs in `out` from the `first` on have the results.json of the same runs trained
  alone by train.py (the commands of `--print`)."""
  printed = sweep_py(sweep, "--out", alone_out, *args, *TINY, "--print").stdout.splitlines()
  for line in printed[first:]:
    argv = line.split()
    subprocess.run(argv, cwd=ROOT, check=True, capture_output=True, env=env())
    workdir = next(a.split("=", 1)[1] for a in argv if a.startswith("--workdir="))
    name = workdir.rsplit("/", 1)[1]
    ours, alone = (numeric_leaves(results(d)) for d in (out / name, alone_out / name))
    assert ours == alone, {k: (ours.get(k), alone.get(k)) for k in set(ours) | set(alone)
                           if ours.get(k) != alone.get(k)}
    assert len(ours) > 50 and ours[".steps"] == 20


def test_runs_of_two_workers_equal_the_same_runs_alone_a_language_model_too(tmp_path):
  """At --parallel 2 too, and for a language model, whose larger matrix products show XLA
  settings that the classifiers do not: the sweep sets nothing for its runs that train.py does
  not (XLA_FLAGS once changed the language model's numbers)."""
  points = [{"config": "configs/lm_pydoc.py", "optimizer.warmup_steps": 5},
            {"loss.label_smoothing": 0.1}]
  sweep = mnist1d_sweep(tmp_path, points)
  out = tmp_path / "out"
  done = sweep_py(sweep, "--out", out, "--parallel", "2", *TINY)
  assert "2 of 2 runs have results" in done.stdout, done.stdout
  assert_equal_to_runs_alone(sweep, out, tmp_path / "alone", "--parallel", "2")


def test_a_failing_run_and_a_dying_worker_fail_only_their_run(tmp_path):
  points = [{"num_steps": 1000, "checkpoint_every_steps": 20},  # Its worker is killed (-9).
            {"num_steps": 20, "distill.teacher_workdir": str(tmp_path / "no_teacher"),
             "name": "no_teacher"},  # A UserError.
            {"num_steps": 20, "loss.label_smoothing": 0.1}]
  sweep = mnist1d_sweep(tmp_path, points)
  out = tmp_path / "out"
  proc = start_sweep(sweep, "--out", out, "--parallel", "1")
  long_run = out / "mnist1d_num_steps=1000_checkpoint_every_steps=20_seed0"
  deadline = time.time() + 60
  while len(list(long_run.glob("checkpoints/[0-9]*"))) < 2:  # The first one is complete.
    assert time.time() < deadline and proc.poll() is None, proc.communicate()
    time.sleep(0.1)
  log = (out / "logs" / f"{long_run.name}.log").read_text()
  worker = int(re.match(r"# trained in-process by sweep worker (\d+)", log).group(1))
  os.kill(worker, signal.SIGKILL)
  stdout, stderr = proc.communicate(timeout=120)
  assert proc.returncode == 1, stdout + stderr
  assert "1 of 3 runs have results" in stdout, stdout
  failed = [line for line in stdout.splitlines() if line.startswith("failed: ")]
  assert len(failed) == 2 and any("no_teacher" in line for line in failed), failed
  teacher_log = (out / "logs" / "mnist1d_no_teacher_seed0.log").read_text()
  assert "ls_jax: error:" in teacher_log and "Traceback" not in teacher_log, teacher_log
  assert "died during this run (killed by SIGKILL)" in (
      out / "logs" / f"{long_run.name}.log").read_text()
  assert (out / "mnist1d_num_steps=20_loss.label_smoothing=0.1_seed0" / "results.json").exists()
  # The rerun resumes the killed run from its last checkpoint.
  rerun = sweep_py(sweep, "--out", out, "--parallel", "1", "--match", "1000")
  assert "1 of 1 runs have results" in rerun.stdout, rerun.stdout
  assert "resuming from step" in (out / "logs" / f"{long_run.name}.log").read_text()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_signal_checkpoints_the_running_runs_and_the_rerun_resumes_them(tmp_path, sig):
  """SIGTERM: the sweep's handler stops its workers; SIGKILL: the kernel does (PDEATHSIG)."""
  sweep = mnist1d_sweep(tmp_path, [{"loss.label_smoothing": 0.1}, {"mixup.alpha": 0.2}])
  # Long enough (~3 s at 0.45 ms a step) that neither run ends before both have checkpointed.
  args = (sweep, "--out", tmp_path / "out", "--override", "num_steps=6000", "--override",
          "checkpoint_every_steps=100", "--override", "log_every_steps=100", "--parallel", "2")
  proc = start_sweep(*args)
  out = tmp_path / "out"
  deadline = time.time() + 120
  workdirs = [out / "mnist1d_loss.label_smoothing=0.1_seed0", out / "mnist1d_mixup.alpha=0.2_seed0"]
  while not all(list(w.glob("checkpoints/[0-9]*")) for w in workdirs):  # Both in training.
    assert time.time() < deadline and proc.poll() is None, proc.communicate()
    time.sleep(0.1)
  proc.send_signal(sig)
  _, stderr = proc.communicate(timeout=60)
  if sig == signal.SIGTERM:
    assert proc.returncode == 143 and stderr.count("\n") == 1, stderr
    assert "stopped by SIGTERM; 2 running runs checkpointed" in stderr
    assert not list(out.glob("*/results.json"))
  rerun = sweep_py(*args)  # At once: after kill -9 the workers may still be checkpointing.
  assert "2 of 2 runs have results" in rerun.stdout, rerun.stdout
  for log in (out / "logs").glob("*.log"):
    text = log.read_text()
    assert "stopped by SIGTERM after step" in text and "resuming from step" in text, text
