"""Preemption: SIGTERM saves and exits 0; `kill -9` at random points resumes bit-identically."""
import json
import random
import signal
import time

import launch

# Longer than launch.SMALL_RUN so that kills land while training, with a checkpoint every 20 steps.
RUN = ("--config=configs/mnist1d.py", "--config.batch_size=96", "--config.num_steps=400",
       "--config.log_every_steps=20", "--config.checkpoint_every_steps=20")


def test_sigterm_checkpoints_exits_zero_and_resume_matches_uninterrupted(tmp_path):
  reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
  assert launch.run([*RUN, f"--workdir={reference}"]).returncode == 0
  proc = launch.start([*RUN, f"--workdir={interrupted}"])
  launch.wait_for_training(interrupted, proc)
  proc.send_signal(signal.SIGTERM)
  _, stderr = proc.communicate(timeout=120)
  assert proc.returncode == 0, stderr[-2000:]
  said = launch.error_lines(stderr)
  assert len(said) == 1 and said[0].startswith("ls_jax: stopped by SIGTERM after step"), said
  stopped_at = int(said[0].split("after step ")[1].split(";")[0])
  assert 0 < stopped_at < 400
  assert (interrupted / "checkpoints" / str(stopped_at)).is_dir()
  assert not (interrupted / "results.json").exists()
  resumed = launch.run([*RUN, f"--workdir={interrupted}"])
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert f"ls_jax: resuming from step {stopped_at} in {interrupted}\n" in resumed.stderr
  launch.assert_trees_equal(launch.final_params(reference), launch.final_params(interrupted))
  ours, theirs = (json.loads((d / "results.json").read_text()) for d in (interrupted, reference))
  for key in ("accuracy", "nll", "ece", "mean_confidence", "temperature", "steps"):
    assert ours[key] == theirs[key], key


def test_kill_9_at_random_points_always_resumes_bit_identically(tmp_path):
  reference, victim = tmp_path / "reference", tmp_path / "victim"
  assert launch.run([*RUN, f"--workdir={reference}"]).returncode == 0
  rng = random.Random(0)
  kills, deadline = 0, time.time() + 240
  while not (victim / "results.json").exists():
    assert time.time() < deadline, f"no finished run after {kills} kills"
    proc = launch.start([*RUN, f"--workdir={victim}"])
    if kills < 4:  # Kill during training, at a random moment after it started.
      launch.wait_for_training(victim, proc)
      time.sleep(rng.uniform(0.0, 1.5))
      if proc.poll() is None:
        proc.kill()
        kills += 1
    proc.communicate(timeout=180)
  assert kills >= 3
  # Never a half-written checkpoint left behind as a step directory.
  for step_dir in (victim / "checkpoints").iterdir():
    if step_dir.name.isdigit():
      assert (step_dir / "state").is_dir(), step_dir
  # Data order, RNG, optimizer state and step all restored: bit-identical parameters.
  launch.assert_trees_equal(launch.final_params(reference), launch.final_params(victim))
