#!/usr/bin/env python
"""Benchmarks ls_jax.losses.smoothed_cross_entropy against optax; prints a markdown table.

Launch from the repository root:

  .venv/bin/python scripts/bench_losses.py

For each (batch, classes) shape and for the forward pass and forward+grad (of the mean loss), it
reports the median wall time over `--repeats` timed calls after one warm-up call, the ratio to
optax's integer-label cross-entropy, and XLA's compiled temporary memory
(`memory_analysis().temp_size_in_bytes`; inputs and outputs are not temporaries). The calls of all
losses are interleaved in rounds, each round in a fresh random order, so that load from other
processes hits them alike (with a fixed order, whichever loss ran first in a round measured up to
~1.5x slower). Takes about 2 minutes on an idle 2-core machine, longer under load.
"""
import argparse
import functools
import os
import pathlib
import platform
import random
import statistics
import sys
import time
from typing import Callable

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
import optax  # pylint: disable=g-import-not-at-top

from ls_jax import losses  # pylint: disable=g-import-not-at-top

LABEL_SMOOTHING = 0.1
SHAPES = ((4096, 1000), (8192, 32000))
BASELINE = "optax integer-label CE"


def optax_one_hot_smoothed(logits: jax.Array, labels: jax.Array) -> jax.Array:
  one_hot = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
  return optax.softmax_cross_entropy(logits, optax.smooth_labels(one_hot, LABEL_SMOOTHING))


LOSSES: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    f"ls_jax a={LABEL_SMOOTHING}": functools.partial(
        losses.smoothed_cross_entropy, label_smoothing=LABEL_SMOOTHING),
    "ls_jax a=0": losses.smoothed_cross_entropy,
    BASELINE: optax.softmax_cross_entropy_with_integer_labels,
    f"optax one-hot + smooth_labels a={LABEL_SMOOTHING}": optax_one_hot_smoothed,
}


def cpu_model() -> str:
  try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def machine_description() -> str:
  device = jax.devices()[0]
  return (f"{cpu_model()}, {len(os.sched_getaffinity(0))} cores available; jax {jax.__version__}, "
          f"optax {optax.__version__}, backend {jax.default_backend()} ({device.device_kind}); "
          f"load average {os.getloadavg()[0]:.1f} at start")


def compile_pair(loss_fn, logits, labels):
  """Compiled forward and forward+grad (of the mean loss) for one loss, with their temp bytes."""
  forward = jax.jit(loss_fn)
  forward_and_grad = jax.jit(jax.value_and_grad(lambda z, y: loss_fn(z, y).mean()))
  compiled = {}
  for mode, fn in (("forward", forward), ("forward+grad", forward_and_grad)):
    executable = fn.lower(logits, labels).compile()
    compiled[mode] = (executable, executable.memory_analysis().temp_size_in_bytes)
  return compiled


def time_interleaved(executables: dict[str, Callable], args, repeats: int) -> dict[str, float]:
  """Median seconds per call; one warm-up call each, then `repeats` shuffled rounds over all."""
  for executable in executables.values():
    jax.block_until_ready(executable(*args))
  times = {name: [] for name in executables}
  order = list(executables.items())
  shuffler = random.Random(0)
  for _ in range(repeats):
    shuffler.shuffle(order)
    for name, executable in order:
      start = time.perf_counter()
      jax.block_until_ready(executable(*args))
      times[name].append(time.perf_counter() - start)
  return {name: statistics.median(samples) for name, samples in times.items()}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=20, help="timed calls per loss and mode")
  args = parser.parse_args()
  start = time.perf_counter()

  print(f"Machine: {machine_description()}.")
  print(f"Median of {args.repeats} calls after warm-up, interleaved in shuffled rounds; float32 "
        "logits; temp = XLA compiled temporary memory.\n")
  print("| (B, K) | loss | forward ms | × optax int | forward temp MiB "
        "| fwd+grad ms | × optax int | fwd+grad temp MiB |")
  print("|---|---|---:|---:|---:|---:|---:|---:|")
  key_logits, key_labels = jax.random.split(jax.random.PRNGKey(0))
  for batch, num_classes in SHAPES:
    logits = jax.random.normal(key_logits, (batch, num_classes), jnp.float32)
    labels = jax.random.randint(key_labels, (batch,), 0, num_classes)
    compiled = {name: compile_pair(fn, logits, labels) for name, fn in LOSSES.items()}
    medians = {
        mode: time_interleaved(
            {name: modes[mode][0] for name, modes in compiled.items()}, (logits, labels),
            args.repeats)
        for mode in ("forward", "forward+grad")
    }
    for name, modes in compiled.items():
      cells = []
      for mode in ("forward", "forward+grad"):
        seconds = medians[mode][name]
        cells += [f"{seconds * 1e3:.1f}", f"{seconds / medians[mode][BASELINE]:.2f}",
                  f"{modes[mode][1] / 2**20:.1f}"]
      print(f"| ({batch}, {num_classes}) | {name} | " + " | ".join(cells) + " |", flush=True)
    del logits, compiled
  print(f"\nLoad average {os.getloadavg()[0]:.1f} at the end; took "
        f"{time.perf_counter() - start:.0f} s.")


if __name__ == "__main__":
  main()
