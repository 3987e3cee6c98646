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

The fused section (`--only fused`) times forward+grad of the output layer and the loss together,
for hidden states `[N, d]` and a kernel `[d, V]`: `linear_smoothed_cross_entropy_and_grads` (the
loss and its gradients in one pass) and `jax.value_and_grad` of `linear_smoothed_cross_entropy` in
both of its modes, against `hidden @ kernel` followed by `smoothed_cross_entropy` or by optax's
integer-label CE. It reports the median and the range over `--fused-rounds` interleaved rounds, and skips a
path whose compiled memory would not fit in the machine's available memory
(`--fused-rounds 0` compiles and reports memory only, running nothing). About 30 minutes on
2 cores.
"""
import argparse
import functools
import os
import pathlib
import random
import statistics
import sys
import time
from typing import Callable

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
import optax  # pylint: disable=g-import-not-at-top

from ls_jax.trainer import host  # pylint: disable=g-import-not-at-top
from ls_jax import losses  # pylint: disable=g-import-not-at-top

LABEL_SMOOTHING = 0.1
SHAPES = ((4096, 1000), (8192, 32000))
FUSED_SHAPES = ((8192, 1024, 32000), (8192, 1024, 128000))  # (N, d, V)
FUSED_BASELINE = "h @ W + optax integer-label CE"
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


def machine_description() -> str:
  device = jax.devices()[0]
  return (f"{host.cpu_model()}, {len(os.sched_getaffinity(0))} cores available; jax {jax.__version__}, "
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


def time_interleaved(
    executables: dict[str, Callable], args, repeats: int) -> dict[str, list[float]]:
  """Seconds per call; one warm-up call each, then `repeats` shuffled rounds over all."""
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
  return times


def bench_logits_losses(repeats: int) -> None:
  print(f"Median of {repeats} calls after warm-up, interleaved in shuffled rounds; float32 "
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
            repeats)
        for mode in ("forward", "forward+grad")
    }
    for name, modes in compiled.items():
      cells = []
      for mode in ("forward", "forward+grad"):
        seconds = statistics.median(medians[mode][name])
        baseline = statistics.median(medians[mode][BASELINE])
        cells += [f"{seconds * 1e3:.1f}", f"{seconds / baseline:.2f}",
                  f"{modes[mode][1] / 2**20:.1f}"]
      print(f"| ({batch}, {num_classes}) | {name} | " + " | ".join(cells) + " |", flush=True)
    del logits, compiled


def fused_losses(chunk_size: int) -> dict[str, Callable]:
  """Scalar (mean) losses of (hidden, kernel, labels): the fused paths and the materialized ones."""
  fused = lambda gradient_in_forward: lambda h, w, y: losses.linear_smoothed_cross_entropy(
      h, w, y, LABEL_SMOOTHING, chunk_size=chunk_size,
      gradient_in_forward=gradient_in_forward).mean()
  return {
      f"fused a={LABEL_SMOOTHING}, recompute, chunk {chunk_size}": fused(False),
      f"fused a={LABEL_SMOOTHING}, gradient in forward, chunk {chunk_size}": fused(True),
      f"h @ W + ls_jax a={LABEL_SMOOTHING}": lambda h, w, y: losses.smoothed_cross_entropy(
          h @ w, y, LABEL_SMOOTHING).mean(),
      FUSED_BASELINE: lambda h, w, y: optax.softmax_cross_entropy_with_integer_labels(
          h @ w, y).mean(),
  }


def fused_steps(chunk_size: int, block_size: int = losses.LINEAR_BLOCK_SIZE) -> dict[str, Callable]:
  """`(loss, (d_hidden, d_kernel))` of (hidden, kernel, labels) for every path: `jax.value_and_grad`
  of each `fused_losses` path, and `linear_smoothed_cross_entropy_and_grads` (named by
  `fused_and_grads_name`), which returns the gradients itself."""
  steps = {fused_and_grads_name(block_size): lambda h, w, y: (
      losses.linear_smoothed_cross_entropy_and_grads(
          h, w, y, LABEL_SMOOTHING, block_size=block_size, chunk_size=chunk_size))}
  for name, loss_fn in fused_losses(chunk_size).items():
    steps[name] = jax.value_and_grad(loss_fn, argnums=(0, 1))
  return steps


def fused_and_grads_name(block_size: int) -> str:
  return f"fused a={LABEL_SMOOTHING}, loss and grads in one pass, block {block_size}"


def available_bytes() -> int:
  for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
    if line.startswith("MemAvailable:"):
      return int(line.split()[1]) * 1024
  return 2**63


def bench_fused(shapes, rounds: int, chunk_size: int, block_size: int) -> None:
  print(f"\nOutput layer + loss, fwd+grad of the mean loss w.r.t. hidden and kernel; float32; "
        f"median [min, max] of {rounds} interleaved rounds after a warm-up call; temp = XLA "
        "compiled temporary memory.\n")
  print("| (N, d, V) | path | fwd+grad ms | [min, max] | × h@W+optax, per round: median "
        "[min, max] | temp MiB | memory ÷ h@W+optax |")
  print("|---|---|---:|---:|---:|---:|---:|")
  key_hidden, key_kernel, key_labels = jax.random.split(jax.random.PRNGKey(0), 3)
  for num_tokens, dim, num_classes in shapes:
    hidden = jax.random.normal(key_hidden, (num_tokens, dim), jnp.float32) / dim**0.5
    kernel = jax.random.normal(key_kernel, (dim, num_classes), jnp.float32)
    labels = jax.random.randint(key_labels, (num_tokens,), 0, num_classes)
    compiled, skipped = {}, []
    for name, step in fused_steps(chunk_size, min(block_size, num_tokens)).items():
      executable = jax.jit(step).lower(hidden, kernel, labels).compile()
      memory = executable.memory_analysis()
      needed = memory.temp_size_in_bytes + memory.output_size_in_bytes
      if rounds and needed > available_bytes():
        skipped.append(f"{name} (needs {needed / 2**30:.1f} GiB, "
                       f"{available_bytes() / 2**30:.1f} GiB available)")
        continue
      compiled[name] = (executable, memory.temp_size_in_bytes)
    times = {}
    if rounds:
      times = time_interleaved(
          {name: executable for name, (executable, _) in compiled.items()},
          (hidden, kernel, labels), rounds)
    has_baseline = FUSED_BASELINE in times
    baseline_temp = compiled[FUSED_BASELINE][1] if FUSED_BASELINE in compiled else None
    for name, (_, temp) in compiled.items():
      timing = "— | — | —"  # --fused-rounds 0: compiled memory only.
      if name in times:
        seconds = statistics.median(times[name])
        ratio = "—"
        if has_baseline:
          # Paired: each round's time over the baseline's in the same round, where load was alike.
          ratios = [mine / theirs for mine, theirs in zip(times[name], times[FUSED_BASELINE])]
          ratio = f"{statistics.median(ratios):.2f} [{min(ratios):.2f}, {max(ratios):.2f}]"
        timing = (f"{seconds * 1e3:.0f} | [{min(times[name]) * 1e3:.0f}, "
                  f"{max(times[name]) * 1e3:.0f}] | {ratio}")
      memory_ratio = f"{baseline_temp / temp:.0f}" if baseline_temp else "—"
      print(f"| ({num_tokens}, {dim}, {num_classes}) | {name} | {timing} | "
            f"{temp / 2**20:.0f} | {memory_ratio} |", flush=True)
    for line in skipped:
      print(f"| ({num_tokens}, {dim}, {num_classes}) | skipped: {line} | | | | | |", flush=True)
    del hidden, kernel, compiled


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=20, help="timed calls per loss and mode")
  parser.add_argument("--only", choices=("all", "logits", "fused"), default="all",
                      help="run only the losses-on-logits section or only the fused section")
  parser.add_argument("--fused-rounds", type=int, default=3, help="timed rounds, fused section (0: compiled memory only)")
  parser.add_argument("--fused-shapes", nargs="+", default=[",".join(map(str, shape))
                                                          for shape in FUSED_SHAPES],
                      help="N,d,V triples of the fused section")
  parser.add_argument("--chunk-size", type=int, default=losses.LINEAR_CHUNK_SIZE,
                      help="vocabulary chunk of the fused loss")
  parser.add_argument("--block-size", type=int, default=losses.LINEAR_BLOCK_SIZE,
                      help="tokens per block of linear_smoothed_cross_entropy_and_grads")
  args = parser.parse_args()
  start = time.perf_counter()
  print(f"Machine: {machine_description()}.")
  if args.only in ("all", "logits"):
    bench_logits_losses(args.repeats)
  if args.only in ("all", "fused"):
    shapes = [tuple(int(size) for size in shape.split(",")) for shape in args.fused_shapes]
    bench_fused(shapes, args.fused_rounds, args.chunk_size, args.block_size)
  print(f"\nLoad average {os.getloadavg()[0]:.1f} at the end; took "
        f"{time.perf_counter() - start:.0f} s.")


if __name__ == "__main__":
  main()
