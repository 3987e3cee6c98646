"""Multi-process training on one machine: N processes on 127.0.0.1 == one process, same batch.

Each process is a real `scripts/train.py` with `--coordinator_address/--num_processes/
--process_id`, CPU devices and gloo collectives; every wait is bounded (launch.run_processes).
"""
import json
import shutil
import signal

import pytest

import launch


def results(workdir):
  return json.loads((workdir / "results.json").read_text())


def run_processes_ok(workdir, num_processes):
  run_processes_ok_args([*launch.SMALL_RUN, f"--workdir={workdir}"], num_processes)


def run_processes_ok_args(args, num_processes):
  for code, stderr in launch.run_processes(args, num_processes):
    assert code == 0, stderr[-2000:]


def run_single_ok(workdir, devices):
  done = launch.run([*launch.SMALL_RUN, f"--workdir={workdir}"], devices=devices)
  assert done.returncode == 0, done.stderr[-2000:]


def assert_same_run(a, b):
  # Same mesh size, global batch and data order; only the collectives' transport differs, so
  # reductions may be ordered differently: equal to float32 rounding, not bit for bit.
  launch.assert_trees_equal(launch.final_params(a), launch.final_params(b), exact=False)


def test_two_processes_equal_one_and_checkpoints_move_between_them(tmp_path):
  multi, single, resumed = tmp_path / "multi", tmp_path / "single", tmp_path / "resumed"
  run_processes_ok(multi, 2)
  run_single_ok(single, devices=2)
  assert_same_run(multi, single)
  assert results(multi)["environment"]["process_count"] == 2
  assert results(multi)["accuracy"] == pytest.approx(results(single)["accuracy"], abs=2e-3)

  # Multi -> single: drop the last checkpoints of the 2-process run, resume in one process.
  shutil.copytree(multi, resumed)
  for step in ("30", "40"):
    shutil.rmtree(resumed / "checkpoints" / step)
  (resumed / "results.json").unlink()
  run_single_ok(resumed, devices=2)
  assert_same_run(multi, resumed)
  # Single -> multi: and back.
  for step in ("30", "40"):
    shutil.rmtree(resumed / "checkpoints" / step)
  run_processes_ok(resumed, 2)
  assert_same_run(multi, resumed)


def test_four_processes_equal_one(tmp_path):
  run_processes_ok(tmp_path / "multi", 4)
  run_single_ok(tmp_path / "single", devices=4)
  assert_same_run(tmp_path / "multi", tmp_path / "single")


def test_sigterm_stops_every_process_at_the_same_step_and_resumes(tmp_path):
  args = [*launch.SMALL_RUN, "--config.num_steps=2000", "--config.log_every_steps=20",
          "--config.checkpoint_every_steps=1000", f"--workdir={tmp_path}"]
  procs = launch.start_processes(args, 2)
  launch.wait_for_training(tmp_path, procs[0])
  for proc in procs:  # A cluster preempting a job signals every process.
    proc.send_signal(signal.SIGTERM)
  outcomes = launch.wait_all(procs)
  said = []
  for code, stderr in outcomes:
    assert code == 0, stderr[-2000:]
    said += [line for line in launch.error_lines(stderr) if "stopped by SIGTERM" in line]
  assert len(said) == 1  # Process 0 speaks; both stopped.
  stopped_at = int(said[0].split("after step ")[1].split(";")[0])
  assert stopped_at % 20 == 0 and stopped_at < 2000  # At a sync point, the same one for both.
  assert (tmp_path / "checkpoints" / str(stopped_at)).is_dir()
  run_processes_ok_args(args, 2)
  assert results(tmp_path)["steps"] == 2000
