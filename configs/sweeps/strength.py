"""Experiment 2, strength: where does label smoothing start to hurt accuracy?

  python scripts/sweep.py configs/sweeps/strength.py --out runs/strength

MNIST-1D CNN (configs/mnist1d.py), a in {0, 0.05, ..., 0.95}, 10 seeds: 100 runs. Plot accuracy,
NLL, ECE and mean confidence against a, with the training-confidence ceiling 1 - a + a/K.
"""
from configs.sweeps.common import sweep

STRENGTHS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95)


def get_sweep(arg: str = "") -> dict:
  del arg
  return {"config": "configs/mnist1d.py",
          "points": sweep("loss.label_smoothing", STRENGTHS),
          "seeds": range(10)}
