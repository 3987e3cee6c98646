#!/usr/bin/env python
"""Train-step throughput for CE and each method of the table (`ls_jax/trainer/methods.py`) side by
side, and the default run end to end.

  python scripts/bench_train.py                   # both parts, ~5 minutes on 2 CPU cores
  python scripts/bench_train.py --skip_step_table --rounds 5

Part 1 times the jitted train step alone, as the loop runs it: the training split resident on
device, the batch gathered inside the step (the MNIST-1D CNN at batch 100, 200 steps a timing;
a CIFAR ResNet-20 at batch 128, 3 steps), methods interleaved in shuffled rounds; and counts
compilations (must be 1 per method).

Part 2 times whole processes, end to end: `python scripts/train.py` on the default config
(imports, dataset from its cache, compilation, 6000 steps, logging, checkpoints, evaluation)
against `scripts/torch_mnist1d.py`, a plain PyTorch script of the same model and recipe that reads
the same data from an .npz cache (needs `pip install torch`). One untimed run of each warms the
caches (dataset, JAX's compilation cache, the OS's file cache); then `--rounds` rounds run the
processes in a shuffled order each round, and the table gives the median, the range and the
per-round ratio. A third process, ls_jax with the compilation cache off, shows what a first run
costs.
"""
import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # pylint: disable=g-import-not-at-top
import numpy as np

from configs import cifar10, mnist1d  # pylint: disable=g-import-not-at-top
from ls_jax.trainer import host, input_pipeline, train
from ls_jax.trainer import parallel
from ls_jax.trainer import state as state_lib
from ls_jax.trainer import methods
from ls_jax.trainer import tasks
from ls_jax import models

# CE and every method of the table at its typical value (KD needs a finished teacher: not timed).
METHODS = {"CE": {}, **{f"{m.name} {m.example}": {m.field: m.example}
                         for m in methods.METHODS if m.example is not None}}


def machine() -> str:
  return (f"{host.cpu_model()}, {os.cpu_count()} cores, jax {jax.__version__} ({jax.default_backend()}, "
          f"{jax.device_count()} device(s))")


def compiled_step(config, input_shape):
  """The loop's jitted step, a state and a synthetic device-resident training split."""
  model = models.get_model(config.model.name, num_classes=config.num_classes)
  parallelism = parallel.Parallelism("jit", parallel.data_mesh())
  step = train.compile_train_step(parallelism, model, config, resident_data=True)
  state = parallelism.to_device(state_lib.create_train_state(
      jax.random.key(0), model, input_shape, state_lib.make_optimizer(config.optimizer, 10_000)))
  rng = np.random.default_rng(0)
  num_examples = 10 * config.batch_size
  split = input_pipeline.Split(
      "synthetic", labels=rng.integers(0, config.num_classes, num_examples).astype(np.int32),
      images=rng.normal(size=(num_examples,) + input_shape).astype(np.float32))
  feed = parallel.ResidentFeed(split, config, parallelism)
  inputs = feed(0)
  sums = parallelism.new_metric_sums(tasks.task_for(config).step_metric_names)
  state, sums = step(state, sums, *inputs, jax.random.key(1), None)
  jax.block_until_ready(sums)
  return step, (state, sums), inputs


def time_methods(base, input_shape, steps: int, repeats: int, method_overrides=None,
                 order_seed: int = 0):
  """Seconds per step of each method's compiled step, `repeats` timings of `steps` steps each, the
  methods interleaved in a fresh random order each round. Returns (times, compiled), where
  compiled[method] = [batch_size, step, carry, inputs]."""
  method_overrides = METHODS if method_overrides is None else method_overrides
  compiled = {}
  for method, overrides in method_overrides.items():
    config = base.copy_and_resolve_references()
    config.update_from_flattened_dict(overrides)
    compiled[method] = [config.batch_size, *compiled_step(config, input_shape)]
  times = {method: [] for method in method_overrides}
  order = np.random.default_rng(order_seed)
  # Methods interleaved in a fresh random order each round, so drift in machine load (other
  # processes, frequency scaling) spreads over all of them instead of biasing one.
  for _ in range(repeats):
    for method in order.permutation(list(method_overrides)):
      _, step, carry, inputs = compiled[method]
      start = time.perf_counter()
      for _ in range(steps):
        carry = step(*carry, *inputs, jax.random.key(1), None)
      jax.block_until_ready(carry)
      times[method].append((time.perf_counter() - start) / steps)
      compiled[method][2] = carry
  return times, compiled


def step_table():
  print("\n## Train step alone (synthetic batch on device)\n")
  print("| model | batch | method | ms/step | steps/s | examples/s | vs CE | compilations |")
  print("|---|---|---|---|---|---|---|---|")
  # (model, config, input shape, steps per timing, timings): fewer steps for the slow ResNet.
  cases = [("cnn1d", mnist1d.get_config(), (40,), 200, 15),
           ("resnet20", cifar10.get_config("resnet20"), (32, 32, 3), 3, 5)]
  for name, base, input_shape, steps, repeats in cases:
    times, compiled = time_methods(base, input_shape, steps, repeats)
    reference = statistics.median(times["CE"])
    for method, (batch_size, step, _, _) in compiled.items():
      seconds = statistics.median(times[method])
      print(f"| {name} | {batch_size} | {method} | {seconds * 1e3:.3f} | {1 / seconds:.0f} "
            f"| {batch_size / seconds:.0f} | {seconds / reference:.3f}x "
            f"| {step._cache_size()} |", flush=True)  # pylint: disable=protected-access


def write_torch_data(path: str) -> None:
  """The split ls_jax trains on by default, from its TFDS cache, as torch_mnist1d.py's .npz."""
  dataset = input_pipeline.load_dataset(mnist1d.get_config().data, num_classes=10, seed=0)
  np.savez(path, x_train=dataset.train.images, y_train=dataset.train.labels,
           x_test=dataset.test.images, y_test=dataset.test.labels)


def _timed(command: list[str]) -> float:
  start = time.perf_counter()
  subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  return time.perf_counter() - start


def end_to_end(rounds: int) -> None:
  print("\n## Default MNIST-1D run, whole process against whole process\n")
  try:
    import torch  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    print("PyTorch is not installed (pip install torch): part 2 skipped.")
    return
  repo = pathlib.Path(__file__).resolve().parents[1]
  with tempfile.TemporaryDirectory() as tmp:
    # The same split ls_jax trains on, from its TFDS cache, as the PyTorch script's .npz cache.
    cache = f"{tmp}/mnist1d.npz"
    write_torch_data(cache)
    runs = iter(range(10**6))
    ours = lambda *flags: [sys.executable, str(repo / "scripts/train.py"),
                           "--config=configs/mnist1d.py", f"--workdir={tmp}/run{next(runs)}", *flags]
    commands = {
        "ls_jax (`python scripts/train.py`)": lambda: ours(),
        "ls_jax, compilation cache off": lambda: ours("--compilation_cache_dir="),
        f"PyTorch {torch.__version__} (`scripts/torch_mnist1d.py`)":
            lambda: [sys.executable, str(repo / "scripts/torch_mnist1d.py"), f"--data={cache}"],
    }
    for make in commands.values():  # Untimed: warms the caches.
      _timed(make())
    times = {name: [] for name in commands}
    order = np.random.default_rng(1)
    for _ in range(rounds):
      for name in order.permutation(list(commands)):
        times[name].append(_timed(commands[name]()))
  torch_name = list(commands)[-1]
  print(f"{rounds} rounds, shuffled order each round; wall seconds of the whole process.\n")
  print("| process | median s | min-max s | PyTorch / this, per round: median (min-max) |")
  print("|---|---|---|---|")
  for name, seconds in times.items():
    ratios = [t / s for t, s in zip(times[torch_name], seconds)]
    print(f"| {name} | {statistics.median(seconds):.1f} | {min(seconds):.1f}-{max(seconds):.1f} "
          f"| {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) |", flush=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--skip_end_to_end", action="store_true")
  parser.add_argument("--skip_step_table", action="store_true")
  parser.add_argument("--rounds", type=int, default=5, help="end-to-end rounds (>= 3)")
  args = parser.parse_args()
  print(f"Machine: {machine()}")
  if not args.skip_step_table:
    step_table()
  if not args.skip_end_to_end:
    end_to_end(args.rounds)


if __name__ == "__main__":
  main()
