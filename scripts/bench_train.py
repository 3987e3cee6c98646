#!/usr/bin/env python
"""Train-step throughput for CE / LS / CP / Mixup side by side, and the default run end to end.

  python scripts/bench_train.py                 # both parts, ~3 minutes on 2 CPU cores
  python scripts/bench_train.py --skip_end_to_end

Part 1 times the jitted train step alone (a synthetic batch already on device; after
compilation, the median over interleaved rounds of 200 steps for the MNIST-1D CNN at batch 100,
and of 3 steps for a CIFAR ResNet-20 at batch 128), and counts compilations (must be 1 per method).
Part 2 runs the default MNIST-1D recipe (CNN, Adam 1e-2, batch 100, 6000 steps) through
`ls_jax.train.train_and_evaluate` -- input pipeline, logging and checkpoints included -- and, if
PyTorch is installed (`pip install torch`), a plain PyTorch loop of the same model and recipe on
the same data, and prints both wall times.
"""
import argparse
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # pylint: disable=g-import-not-at-top
import numpy as np

from configs import cifar10, mnist1d  # pylint: disable=g-import-not-at-top
from ls_jax import models, train

METHODS = {
    "CE": {},
    "LS 0.1": {"loss.label_smoothing": 0.1},
    "CP 0.1": {"loss.confidence_penalty": 0.1},
    "Mixup 0.2": {"mixup.alpha": 0.2},
}


def machine() -> str:
  cpu = platform.processor()
  try:
    cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if "model name" in l)
  except (OSError, StopIteration):
    pass
  return (f"{cpu}, {os.cpu_count()} cores, jax {jax.__version__} ({jax.default_backend()}, "
          f"{jax.device_count()} device(s))")


def compiled_step(config, input_shape):
  """The jitted train step, a state and a synthetic device-resident batch, compiled once."""
  model = models.get_model(config.model.name, num_classes=config.num_classes)
  parallelism = train.Parallelism("jit", train.data_mesh())
  step = parallelism.compile_step(model, config)
  state = parallelism.to_device(train.create_train_state(
      jax.random.key(0), model, input_shape, train.make_optimizer(config.optimizer, 10_000)))
  rng = np.random.default_rng(0)
  batch = parallelism.global_batch({
      "image": rng.normal(size=(config.batch_size,) + input_shape).astype(np.float32),
      "label": rng.integers(0, config.num_classes, config.batch_size).astype(np.int32)})
  state, metrics = step(state, batch, jax.random.key(1))
  jax.block_until_ready(metrics)
  return step, state, batch


def step_table():
  print("\n## Train step alone (synthetic batch on device)\n")
  print("| model | batch | method | ms/step | steps/s | examples/s | vs CE | compilations |")
  print("|---|---|---|---|---|---|---|---|")
  # (model, config, input shape, steps per timing, timings): fewer steps for the slow ResNet.
  cases = [("cnn1d", mnist1d.get_config(), (40,), 200, 15),
           ("resnet20", cifar10.get_config("resnet20"), (32, 32, 3), 3, 5)]
  order = np.random.default_rng(0)
  for name, base, input_shape, steps, repeats in cases:
    compiled = {}
    for method, overrides in METHODS.items():
      config = base.copy_and_resolve_references()
      config.update_from_flattened_dict(overrides)
      compiled[method] = [config.batch_size, *compiled_step(config, input_shape)]
    times = {method: [] for method in METHODS}
    # Methods interleaved in a fresh random order each round, so drift in machine load (other
    # processes, frequency scaling) spreads over all of them instead of biasing one.
    for _ in range(repeats):
      for method in order.permutation(list(METHODS)):
        _, step, state, batch = compiled[method]
        start = time.perf_counter()
        for _ in range(steps):
          state, metrics = step(state, batch, jax.random.key(1))
        jax.block_until_ready((state, metrics))
        times[method].append((time.perf_counter() - start) / steps)
        compiled[method][2] = state
    reference = statistics.median(times["CE"])
    for method, (batch_size, step, _, _) in compiled.items():
      seconds = statistics.median(times[method])
      print(f"| {name} | {batch_size} | {method} | {seconds * 1e3:.3f} | {1 / seconds:.0f} "
            f"| {batch_size / seconds:.0f} | {seconds / reference:.3f}x "
            f"| {step._cache_size()} |", flush=True)  # pylint: disable=protected-access


def torch_mnist1d_seconds(num_steps: int) -> tuple[float, float]:
  """The MNIST-1D quick-start loop in plain PyTorch: same CNN, Adam 1e-2, batch 100."""
  import torch  # pylint: disable=g-import-not-at-top
  from mnist1d.data import get_dataset_args, make_dataset  # pylint: disable=g-import-not-at-top
  data = make_dataset(get_dataset_args())
  x = torch.tensor(data["x"], dtype=torch.float32)[:, None]
  y = torch.tensor(data["y"])
  x_test = torch.tensor(data["x_test"], dtype=torch.float32)[:, None]
  torch.manual_seed(0)
  net = torch.nn.Sequential(
      torch.nn.Conv1d(1, 25, 5, stride=2, padding=1), torch.nn.ReLU(),
      torch.nn.Conv1d(25, 25, 3, stride=2, padding=1), torch.nn.ReLU(),
      torch.nn.Conv1d(25, 25, 3, stride=2, padding=1), torch.nn.ReLU(),
      torch.nn.Flatten(), torch.nn.Linear(125, 10))
  optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
  start = time.perf_counter()
  for step in range(num_steps):
    indices = torch.randint(0, len(x), (100,))
    loss = torch.nn.functional.cross_entropy(net(x[indices]), y[indices])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
  seconds = time.perf_counter() - start
  with torch.no_grad():
    accuracy = (net(x_test).argmax(1).numpy() == data["y_test"]).mean()
  return seconds, float(accuracy)


def end_to_end():
  print("\n## Default MNIST-1D run end to end (6000 steps, batch 100, 1 device)\n")
  print("| implementation | wall s (whole run) | train loop s | test accuracy |")
  print("|---|---|---|---|")
  config = mnist1d.get_config()
  with tempfile.TemporaryDirectory() as workdir:
    start = time.perf_counter()
    results = train.train_and_evaluate(config, workdir, devices=jax.devices()[:1])
    wall = time.perf_counter() - start
  print(f"| ls_jax `train_and_evaluate` (data, logs, 3 checkpoints, eval) | {wall:.1f} "
        f"| {results['train_seconds']:.1f} | {results['accuracy']:.4f} |", flush=True)
  try:
    import torch  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    print("| PyTorch loop | (not installed: pip install torch) | | |")
    return
  torch.set_num_threads(os.cpu_count())
  seconds, accuracy = torch_mnist1d_seconds(config.num_steps)
  print(f"| plain PyTorch {torch.__version__} loop (tensors in memory, no logging) | {seconds:.1f} "
        f"| {seconds:.1f} | {accuracy:.4f} |")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--skip_end_to_end", action="store_true")
  args = parser.parse_args()
  print(f"Machine: {machine()}")
  step_table()
  if not args.skip_end_to_end:
    end_to_end()


if __name__ == "__main__":
  main()
