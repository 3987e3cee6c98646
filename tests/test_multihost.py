"""Multi-process training on one machine: N processes on 127.0.0.1 == one process, same batch.

Each process is a real `scripts/train.py` with `--coordinator_address/--num_processes/
--process_id`, CPU devices and gloo collectives; every wait is bounded (launch.run_processes).
"""
import json
import shutil

import pytest

import launch


def results(workdir):
  return json.loads((workdir / "results.json").read_text())


def run_processes_ok(workdir, num_processes):
  for code, stderr in launch.run_processes([*launch.SMALL_RUN, f"--workdir={workdir}"],
                                           num_processes):
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
