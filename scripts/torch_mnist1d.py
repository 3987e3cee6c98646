#!/usr/bin/env python
"""The MNIST-1D quick-start in plain PyTorch: the baseline that `bench_train.py` times ls_jax against.

  python scripts/torch_mnist1d.py --data /tmp/mnist1d.npz     # written by bench_train.py

The same model and recipe as `configs/mnist1d.py`: the reference CNN (three Conv1d layers of 25
channels, kernels 5/3/3, stride 2, padding 1, ReLU, then Dense(10) over the 125 flattened
features), Adam 1e-2, batch 100, 6000 steps, the same 3,600 training signals in epoch
permutations, then the test accuracy. The data comes from an .npz cache, as ls_jax's comes from its
TFDS cache, so neither process generates data while timed.
"""
import argparse
import time

import numpy as np
import torch


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data", required=True, help=".npz with x_train, y_train, x_test, y_test")
  parser.add_argument("--num_steps", type=int, default=6000)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  data = np.load(args.data)
  x_train = torch.tensor(data["x_train"], dtype=torch.float32)[:, None]
  y_train = torch.tensor(data["y_train"], dtype=torch.int64)
  x_test = torch.tensor(data["x_test"], dtype=torch.float32)[:, None]
  torch.manual_seed(args.seed)
  net = torch.nn.Sequential(
      torch.nn.Conv1d(1, 25, 5, stride=2, padding=1), torch.nn.ReLU(),
      torch.nn.Conv1d(25, 25, 3, stride=2, padding=1), torch.nn.ReLU(),
      torch.nn.Conv1d(25, 25, 3, stride=2, padding=1), torch.nn.ReLU(),
      torch.nn.Flatten(), torch.nn.Linear(125, 10))
  optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
  batch_size = 100
  steps_per_epoch = len(x_train) // batch_size
  rng = np.random.default_rng(args.seed)
  start = time.perf_counter()
  for step in range(args.num_steps):
    if step % steps_per_epoch == 0:
      order = torch.from_numpy(rng.permutation(len(x_train)))
    indices = order[(step % steps_per_epoch) * batch_size:][:batch_size]
    loss = torch.nn.functional.cross_entropy(net(x_train[indices]), y_train[indices])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
  train_seconds = time.perf_counter() - start
  with torch.no_grad():
    accuracy = (net(x_test).argmax(1).numpy() == data["y_test"]).mean()
  print(f"torch {torch.__version__}: test accuracy {accuracy:.4f}, train loop {train_seconds:.1f} s")


if __name__ == "__main__":
  main()
