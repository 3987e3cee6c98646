"""scripts/sweep.py cannot corrupt evidence by accident: real sweep.py processes.

* a workdir trained with another config is named and refused, and replaced only when asked;
* two sweeps on one --out never train one run at the same time;
* `kill -9` of a sweep: its train.py processes checkpoint and exit, the rerun finishes every run;
* every point is validated before anything starts; a sweep file's Python error is one line;
* floats reach the command line, the config and the workdir name unchanged and distinct;
* the SLURM job takes its resources as flags and runs from wherever the repository is.

Most runs here are a fake train.py (`FAKE_TRAIN`, a 'step' every 50 ms, SIGTERM checkpoints) so
that the process-level behaviour is tested in seconds; the slow test kills a real sweep.
"""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

from hypothesis import given, settings, strategies as st
import pytest

from ls_jax.experiments import sweeps

ROOT = pathlib.Path(__file__).resolve().parents[1]
SWEEP = ROOT / "scripts" / "sweep.py"

# A stand-in for scripts/train.py: resumes from its 'checkpoint', logs each invocation with its
# start and end, stops on SIGTERM after saving, and writes results.json with the config train.py
# would have trained (sweeps.build_config of the same arguments).
FAKE_TRAIN = '''
import json, os, pathlib, signal, sys, time
sys.path.insert(0, {root!r})
args = [a[2:].split("=", 1) for a in sys.argv[1:]]
flags = dict(args)
workdir = pathlib.Path(flags["workdir"])
workdir.mkdir(parents=True, exist_ok=True)
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
ckpt = workdir / "ckpt"
step = int(ckpt.read_text()) if ckpt.exists() else 0
with open(workdir / "invocations", "a") as f:
  f.write(f"start {{os.getpid()}} {{time.time()}} {{step}}\\n")
steps = int(os.environ.get("FAKE_STEPS", "40"))
while step < steps and not stop:
  time.sleep(0.05)
  step += 1
  ckpt.write_text(str(step))
with open(workdir / "invocations", "a") as f:
  f.write(f"end {{os.getpid()}} {{time.time()}} {{step}}\\n")
if step >= steps:
  from ls_jax.experiments import sweeps
  overrides = {{k[len("config."):]: v for k, v in args if k.startswith("config.")}}
  seed = int(overrides.pop("seed"))
  run = sweeps.Run(workdir.name, flags["config"], overrides, seed)
  config = sweeps.build_config(run, root={root!r}).to_dict()
  (workdir / "results.json").write_text(json.dumps({{"config": config, "accuracy": 0.5}},
                                                   default=list))
'''


def sweep_file(tmp_path, points, seeds=(0,), name="s.py"):
  path = tmp_path / name
  path.write_text(f"def get_sweep(arg):\n  return {{'config': 'configs/digits.py', "
                  f"'seeds': {list(seeds)}, 'points': {points!r}}}\n")
  return path


def fake_train(tmp_path):
  path = tmp_path / "fake_train.py"
  path.write_text(FAKE_TRAIN.format(root=str(ROOT)))
  return path


def env(**extra):
  base = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  return {**base, **extra}


def sweep_py(*args, check_rc=0, extra_env=None):
  done = subprocess.run([sys.executable, str(SWEEP), *map(str, args)], capture_output=True,
                        text=True, cwd=ROOT, check=False, env=env(**(extra_env or {})))
  assert done.returncode == check_rc, done.stdout + done.stderr
  return done


def start_sweep(*args, extra_env=None):
  return subprocess.Popen([sys.executable, str(SWEEP), *map(str, args)], cwd=ROOT, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=env(**(extra_env or {})))


def invocations(workdir):
  """[(start, end, first step, last step)] of each fake train.py that ran in `workdir`."""
  starts, result = {}, []
  for line in (workdir / "invocations").read_text().splitlines():
    what, pid, when, step = line.split()
    if what == "start":
      starts[pid] = (float(when), int(step))
    else:
      began, first = starts.pop(pid)
      result.append((began, float(when), first, int(step)))
  assert not starts, f"a fake train.py never ended: {starts}"
  return sorted(result)


def assert_never_overlapping(workdir):
  spans = invocations(workdir)
  for (_, end, *_), (start, *_) in zip(spans, spans[1:]):
    assert end <= start, f"two train.py at once in {workdir}: {spans}"
  return spans


# --- 1. A run trained with another config ------------------------------------------------------


def test_a_run_trained_with_another_config_is_refused_then_replaced_when_asked(tmp_path):
  sweep = sweep_file(tmp_path, [{"loss.label_smoothing": 0.1}])
  out, fake = tmp_path / "out", fake_train(tmp_path)
  name = "digits_loss.label_smoothing=0.1_seed0"
  sweep_py(sweep, "--out", out, "--override", "num_steps=20", "--train-script", fake,
           extra_env={"FAKE_STEPS": "2"})
  assert json.loads((out / name / "results.json").read_text())["config"]["num_steps"] == 20
  # The same sweep, same --out, without the override: the 20-step run is not its run.
  refused = sweep_py(sweep, "--out", out, "--train-script", fake, check_rc=2)
  digits_steps = sweeps.build_config(sweeps.Run(name, "configs/digits.py", {}, 0), root=ROOT).num_steps
  assert f"{out / name} (results.json): num_steps: 20 there, {digits_steps} here" in refused.stdout
  assert refused.stderr.count("\n") == 1 and "--restart-mismatched" in refused.stderr
  assert len(invocations(out / name)) == 1  # Nothing started.
  # Log and checkpoint intervals are no difference (train.py resumes across them).
  same = sweep_py(sweep, "--out", out, "--override", "num_steps=20", "--override",
                  "log_every_steps=7", "--train-script", fake)
  assert same.stdout.startswith("1 runs: 1 already finished, 0 to run")
  # Asked: the old run moves aside (out of summarize.py's way) and the run trains afresh.
  replaced = sweep_py(sweep, "--out", out, "--restart-mismatched", "--train-script", fake,
                      extra_env={"FAKE_STEPS": "2"})
  assert "moved" in replaced.stdout and "1 of 1 runs have results" in replaced.stdout
  (aside,) = (out / "replaced").iterdir()
  assert json.loads((aside / "results.json").read_text())["config"]["num_steps"] == 20
  assert json.loads((out / name / "results.json").read_text())["config"]["num_steps"] == (
      digits_steps)
  # An unfinished run (config.json only) with another config is a mismatch too.
  (out / name / "results.json").unlink()
  config = json.loads(json.dumps(sweeps.build_config(sweeps.Run(name, "configs/digits.py", {
      "loss.label_smoothing": 0.1}, 0), {"batch_size": "7"}, root=ROOT).to_dict(), default=list))
  (out / name / "config.json").write_text(json.dumps(config))
  refused = sweep_py(sweep, "--out", out, "--train-script", fake, check_rc=2)
  assert "(config.json): batch_size: 7 there" in refused.stdout


# --- 2. Concurrency and kill -9 ---------------------------------------------------------------


def test_two_sweeps_on_one_out_never_train_one_run_at_once(tmp_path):
  sweep = sweep_file(tmp_path, [{"mixup.alpha": a} for a in (0.1, 0.2, 0.3)])
  out, fake = tmp_path / "out", fake_train(tmp_path)
  args = (sweep, "--out", out, "--parallel", "1", "--train-script", fake)
  first = start_sweep(*args, extra_env={"FAKE_STEPS": "50"})
  second = start_sweep(*args, extra_env={"FAKE_STEPS": "50"})
  said = []
  for proc in (first, second):
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stdout + stderr
    assert "3 of 3 runs have results" in stdout
    said.append(stdout)
  assert any("running elsewhere" in s for s in said), said
  for workdir in out.glob("digits_*"):
    assert len(assert_never_overlapping(workdir)) == 1, workdir  # Each run trained once.


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_kill_9_of_a_sweep_stops_its_runs_and_the_rerun_finishes_every_run(tmp_path, sig):
  sweep = sweep_file(tmp_path, [{"mixup.alpha": a} for a in (0.1, 0.2)])
  out, fake = tmp_path / "out", fake_train(tmp_path)
  args = (sweep, "--out", out, "--parallel", "2", "--train-script", fake)
  proc = start_sweep(*args, extra_env={"FAKE_STEPS": "100"})
  ckpts = [out / f"digits_mixup.alpha={a}_seed0" / "ckpt" for a in (0.1, 0.2)]
  deadline = time.time() + 60
  while not all(c.exists() for c in ckpts):
    assert time.time() < deadline and proc.poll() is None, proc.communicate()
    time.sleep(0.1)
  proc.send_signal(sig)  # SIGKILL: no handler of the sweep runs; SIGTERM: the sweep's handler.
  _, stderr = proc.communicate()
  if sig == signal.SIGTERM:
    assert proc.returncode == 143 and stderr.count("\n") == 1, stderr
    assert "stopped by SIGTERM; 2 running runs checkpointed" in stderr
  rerun = sweep_py(*args, extra_env={"FAKE_STEPS": "100"})  # At once: a run may still be ending.
  assert "2 of 2 runs have results" in rerun.stdout
  for ckpt in ckpts:
    spans = assert_never_overlapping(ckpt.parent)
    assert len(spans) == 2, spans  # Stopped by the kernel's SIGTERM, then resumed: not restarted.
    (_, _, _, stopped), (_, _, resumed, finished) = spans
    assert 0 < stopped < 100 and resumed == stopped and finished == 100


@pytest.mark.slow
def test_kill_9_of_a_real_sweep_then_rerun_gives_the_uninterrupted_results(tmp_path):
  sweep = sweep_file(tmp_path, [{"loss.label_smoothing": 0.1}, {"mixup.alpha": 0.2}])
  tiny = ("--override", "num_steps=300", "--override", "checkpoint_every_steps=20",
          "--override", "log_every_steps=20", "--parallel", "2")
  sweep_py(sweep, "--out", tmp_path / "reference", *tiny)
  out = tmp_path / "killed"
  proc = start_sweep(sweep, "--out", out, *tiny)
  deadline = time.time() + 240
  while len(list(out.glob("*/checkpoints/[0-9]*"))) < 2:
    assert time.time() < deadline and proc.poll() is None, proc.communicate()
    time.sleep(0.2)
  proc.kill()
  proc.communicate()
  rerun = sweep_py(sweep, "--out", out, *tiny)
  assert "2 of 2 runs have results" in rerun.stdout
  for reference in (tmp_path / "reference").glob("digits_*"):
    log = (out / "logs" / f"{reference.name}.log").read_text()
    assert "resuming from step" in log and "stopped by SIGTERM" in log, log
    ours, theirs = (json.loads((d / "results.json").read_text())
                    for d in (out / reference.name, reference))
    for key in ("accuracy", "nll", "ece", "temperature", "steps"):
      assert ours[key] == theirs[key], key


# --- 3. Checked before anything starts -------------------------------------------------------


@pytest.mark.parametrize("point, expected", [
    ({"loss.label_smothing": 0.1}, "unknown config field 'loss.label_smothing'"),
    ({"num_steps": "abc"}, "config.num_steps: invalid literal for int()"),
    ({"loss.label_smoothing": 2.0}, "config.loss.label_smoothing=2.0: must be in"),
])
def test_a_bad_point_is_one_line_naming_point_and_field_and_nothing_starts(tmp_path, point,
                                                                          expected):
  sweep = sweep_file(tmp_path, [{"mixup.alpha": 0.2}, point])
  done = sweep_py(sweep, "--out", tmp_path / "out", check_rc=2)
  assert done.stderr.count("\n") == 1 and expected in done.stderr, done.stderr
  assert f"point {point}" in done.stderr and str(sweep) in done.stderr
  assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("body, expected", [
    ("def get_sweep(arg):\n  points = []\n  return points[3]\n", ":3: IndexError: list index"),
    ("def get_sweep(arg)\n  return {}\n", ":1: SyntaxError:"),
    ("import configs.sweeps.nonexistent\n", ":1: ModuleNotFoundError: No module named"),
])
def test_a_python_error_in_a_sweep_file_is_one_line_with_file_and_line(tmp_path, body, expected):
  path = tmp_path / "broken.py"
  path.write_text(body)
  done = sweep_py(path, "--out", tmp_path / "out", "--print", check_rc=2)
  assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
  assert done.stderr.startswith(f"sweep.py: error: {path}{expected}"), done.stderr


# --- 4. Floats unchanged -----------------------------------------------------------------------


def _old_name_format(value):
  return f"{value:g}" if isinstance(value, float) else str(value)


def test_the_committed_sweeps_keep_their_workdir_names():
  for spec in ("strength.py", "calibration.py", "selective.py", "noise.py", "methods.py:select",
               "distillation_teachers.py", "representations_digits.py"):
    for run in sweeps.runs(sweeps.load(f"configs/sweeps/{spec}")):
      assert all(sweeps.format_value(v) == _old_name_format(v) for v in run.overrides.values())


@settings(max_examples=100, deadline=None)
@given(st.floats(min_value=-1.0, max_value=1.0, exclude_max=True),
       st.floats(min_value=-1.0, max_value=1.0, exclude_max=True))
def test_any_float_reaches_training_and_its_name_unchanged_and_distinct(a, b):
  runs = [sweeps.Run(sweeps.workdir_name("configs/digits.py", {"loss.label_smoothing": v}, 0),
                     "configs/digits.py", {"loss.label_smoothing": v}, 0) for v in (a, b)]
  for run, v in zip(runs, (a, b)):
    spelt = run.name.split("=")[1].removesuffix("_seed0")
    assert float(spelt) == v and str(float(spelt)) == str(v)  # -0.0 stays -0.0.
    assert f"--config.loss.label_smoothing={spelt}" in sweeps.command(run, "o", "t.py")
    resolved = sweeps.build_config(run, root=ROOT).loss.label_smoothing
    assert resolved == v and str(resolved) == str(v)
  assert (runs[0].name == runs[1].name) == (str(a) == str(b))


# --- 5. SLURM ------------------------------------------------------------------------------------


def test_slurm_takes_resources_as_flags_and_runs_where_the_repository_is(tmp_path):
  out = tmp_path / "out"
  sweep_py("configs/sweeps/selective.py", "--out", out, "--slurm", "--seeds", "0",
           "--match", "smoothing=0.05_", "--time", "1:30:00", "--cpus-per-task", "3",
           "--mem", "5G", "--throttle", "7")
  script = (out / "sweep.sbatch").read_text()
  for line in ("#SBATCH --array=0-0%7", "#SBATCH --time=1:30:00", "#SBATCH --cpus-per-task=3",
               "#SBATCH --mem=5G"):
    assert line in script
  commands = (out / "commands.txt").read_text()
  # No absolute path of this checkout or its Python: the job runs from $LS_JAX_REPO (default: the
  # directory sbatch was called from) with $LS_JAX_PYTHON.
  assert str(ROOT) not in script + commands and sys.executable not in script + commands
  # Run task 0 as SLURM would, with a Python that only echoes its arguments.
  task = {"SLURM_ARRAY_TASK_ID": "0", "SLURM_SUBMIT_DIR": str(ROOT), "LS_JAX_PYTHON": "echo"}
  done = subprocess.run(["bash", str(out / "sweep.sbatch")], capture_output=True, text=True,
                        cwd=tmp_path, env={**os.environ, **task}, check=True)
  assert done.stdout.startswith("scripts/train.py --config=configs/mnist1d.py "
                                "--config.loss.label_smoothing=0.05 --config.seed=0 --workdir=")
  # The task takes the run's lock: another process holding it makes the task exit 75.
  (lock,) = (out / ".locks").glob("*.lock")
  holder = subprocess.Popen(["flock", str(lock), "sleep", "30"])
  try:
    time.sleep(0.5)
    busy = subprocess.run(["bash", str(out / "sweep.sbatch")], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, **task}, check=False)
    assert busy.returncode == 75 and not busy.stdout
  finally:
    holder.send_signal(signal.SIGTERM)
    holder.wait()
