"""SIGINT / SIGTERM at random moments: imports, data loading, compilation, training, evaluation.

Every outcome is one line and a defined exit status (0 after a checkpoint inside the loop,
128 + the signal number elsewhere), never a traceback or a crash, and the run always resumes to
the parameters of an uninterrupted run.
"""
import json
import random
import signal
import time

import launch

RUN = ("--config=configs/mnist1d.py", "--config.batch_size=96", "--config.num_steps=1500",
       "--config.log_every_steps=100", "--config.checkpoint_every_steps=500",
       "--config.eval_every_steps=500")


def test_signals_at_random_moments_end_in_one_line_and_the_run_resumes(tmp_path):
  reference, victim = tmp_path / "reference", tmp_path / "victim"
  start = time.time()
  assert launch.run([*RUN, f"--workdir={reference}"]).returncode == 0
  duration = time.time() - start
  rng = random.Random(0)
  # Stratified over the whole run, so that imports (the first ~1-2 s), compilation, training and
  # the final evaluation are all hit; the first three land inside the imports.
  delays = [0.0, 0.1, 0.4] + [duration * (i + rng.random()) / 8 for i in range(8)]
  outcomes = []
  for delay in delays:
    if (victim / "results.json").exists():
      break
    sig = rng.choice([signal.SIGINT, signal.SIGTERM])
    proc = launch.start([*RUN, f"--workdir={victim}"])
    launch.wait_until_catching_signals(proc)
    time.sleep(delay)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=240)
    assert "Traceback" not in stderr and "Fatal Python error" not in stderr, stderr[-3000:]
    # A resumed run first says so; that line is information, not an error.
    said = [line for line in launch.error_lines(stderr)
            if not line.startswith("ls_jax: resuming from step")]
    if proc.returncode == 128 + sig:  # Outside the loop: at once, one line.
      assert len(said) == 1 and said[0].startswith(f"ls_jax: stopped by {sig.name} "), said
      outcomes.append("at once")
    else:
      assert proc.returncode == 0, (proc.returncode, stderr[-3000:])
      stopped = [l for l in said if l.startswith(f"ls_jax: stopped by {sig.name} after step")]
      finished = "| mnist1d |" in stdout
      assert stopped or finished, said
      assert len(said) <= 1, said
      outcomes.append("checkpointed" if stopped else "finished")
    # Nothing half-written: every JSON file there parses.
    for path in victim.glob("*.json"):
      json.loads(path.read_text())
  assert "at once" in outcomes and "checkpointed" in outcomes, outcomes
  if not (victim / "results.json").exists():
    done = launch.run([*RUN, f"--workdir={victim}"])
    assert done.returncode == 0, done.stderr[-3000:]
  launch.assert_trees_equal(launch.final_params(reference), launch.final_params(victim))
