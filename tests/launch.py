"""Running scripts/train.py as real processes (multi-host, preemption, CLI tests)."""
import os
import pathlib
import socket
import subprocess
import sys
import time

import numpy as np

from ls_jax.trainer import checkpointing

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
TRAIN = str(REPO_ROOT / "scripts" / "train.py")

# A short MNIST-1D run that every process test shares; batch 96 divides 1, 2, 4 and 8 devices.
SMALL_RUN = ("--config=configs/mnist1d.py", "--config.batch_size=96", "--config.num_steps=40",
             "--config.log_every_steps=10", "--config.checkpoint_every_steps=10")


def env(devices_per_process: int = 1) -> dict[str, str]:
  environment = dict(os.environ)
  environment["JAX_PLATFORMS"] = "cpu"
  environment["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices_per_process}"
  return environment


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def start(args, *, devices: int = 1, extra_env=None) -> subprocess.Popen:
  return subprocess.Popen([sys.executable, TRAIN, *args], cwd=REPO_ROOT,
                          env={**env(devices), **(extra_env or {})},
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run(args, *, devices: int = 1, timeout: float = 240) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, TRAIN, *args], cwd=REPO_ROOT, env=env(devices),
                        capture_output=True, text=True, timeout=timeout, check=False)


def start_processes(args, num_processes: int) -> list[subprocess.Popen]:
  """Starts `num_processes` cooperating processes on 127.0.0.1."""
  port = free_port()
  return [start([*args, f"--coordinator_address=127.0.0.1:{port}",
                 f"--num_processes={num_processes}", f"--process_id={i}",
                 "--distributed_timeout=60"]) for i in range(num_processes)]


def wait_for_training(workdir, proc, timeout: float = 120) -> None:
  """Until the run has logged a step (it is past start-up and compilation)."""
  deadline = time.time() + timeout
  while time.time() < deadline and proc.poll() is None:
    metrics = pathlib.Path(workdir) / "metrics.jsonl"
    if metrics.exists() and metrics.read_text().strip():
      return
    time.sleep(0.05)
  raise AssertionError("the run did not start training in time")


def wait_until_catching_signals(proc, timeout: float = 60) -> None:
  """Until the program has installed its SIGTERM handler (Linux /proc: the `SigCgt` mask).

  Before that, in the first tens of milliseconds of interpreter start-up, a signal has its
  default effect (the process dies with no output); nothing of the run exists yet then.
  """
  deadline = time.time() + timeout
  while time.time() < deadline and proc.poll() is None:
    try:
      with open(f"/proc/{proc.pid}/status", encoding="utf-8") as status:
        caught = next(int(line.split()[1], 16) for line in status if line.startswith("SigCgt"))
    except (OSError, StopIteration):
      caught = 0
    if caught & (1 << (15 - 1)):  # Bit n-1 is signal n; SIGTERM is 15.
      return
    time.sleep(0.005)


def run_processes(args, num_processes: int, *, timeout: float = 240) -> list[tuple[int, str]]:
  """Runs `num_processes` cooperating processes to the end; every wait is bounded."""
  return wait_all(start_processes(args, num_processes), timeout=timeout)


def wait_all(procs: list[subprocess.Popen], *, timeout: float = 240) -> list[tuple[int, str]]:
  outcomes = []
  try:
    for proc in procs:
      _, stderr = proc.communicate(timeout=timeout)
      outcomes.append((proc.returncode, stderr))
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  return outcomes


def final_params(workdir: pathlib.Path) -> dict:
  steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
  return checkpointing.read_state_arrays(workdir / "checkpoints" / str(steps[-1]))


def error_lines(stderr: str) -> list[str]:
  """What the program itself said, without JAX/absl/TFDS logging and the one-time note that an
  embedded dataset is being built (a first run on a fresh machine)."""
  return [line for line in stderr.splitlines()
          if line.strip() and not line.startswith(("WARNING", "I1", "W1", "E1", "[Gloo]",
                                                   "ls_jax: building the embedded dataset"))
          and "absl" not in line]


def assert_trees_equal(a, b, *, exact: bool = True) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    if exact:
      np.testing.assert_array_equal(x, y)
    else:
      # Reductions ordered differently differ in the last float32 bit; over 40 Adam steps at
      # lr 1e-2, gradients that are zero up to rounding turn that into steps of ~1e-5 (seen:
      # 1.3e-5 on 4 of 1875 weights, 4 processes against 1). A real bug moves far more.
      np.testing.assert_allclose(x, y, rtol=1e-4, atol=5e-5)
