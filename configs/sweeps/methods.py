"""Experiment 1, methods: CE, LS, CP, Focal, Mixup, CutMix and LS + Mixup, each at its picked
strength.

Two stages, so that choosing a strength and measuring it do not share noise:

  python scripts/sweep.py configs/sweeps/methods.py:select --out runs/methods_select
  python scripts/sweep.py configs/sweeps/methods.py:evaluate,selection=runs/methods_select \
      --out runs/methods

`select` trains every strength of every method on seeds 100-102 (3 models x 17 points x 3 seeds =
153 runs). `evaluate` picks, per model and method, the strength with the highest mean validation
accuracy over those seeds (ties: the weaker strength, listed first) and trains it with CE on seeds
0-9, disjoint from the selection seeds (3 models x 7 methods x 10 seeds = 210 runs). Validation
accuracy, because accuracy is the claim under test; the validation split is the held-out 10% of
train, never test. Focal loss (Lin et al. 2017) takes gamma in {1, 2, 3}, the range Mukhoti et al.
2020 use for calibration.

Models: the MNIST-1D CNN and MLP (configs/mnist1d.py, :mlp) and the digits CNN (configs/digits.py).
"""
import json
import pathlib

import numpy as np

from configs.common import parse_arg
from configs.sweeps.common import product, sweep
from ls_jax.experiments import sweeps

MODELS = ("configs/mnist1d.py", "configs/mnist1d.py:mlp", "configs/digits.py")
CANDIDATES = {
    "LS": sweep("loss.label_smoothing", [0.05, 0.1, 0.2, 0.3]),
    "CP": sweep("loss.confidence_penalty", [0.05, 0.1, 0.3]),
    "Focal": sweep("loss.focal_gamma", [1.0, 2.0, 3.0]),
    "Mixup": sweep("mixup.alpha", [0.1, 0.2, 0.4]),
    "CutMix": sweep("cutmix.alpha", [0.5, 1.0]),
    "LS+Mixup": product(sweep("loss.label_smoothing", [0.05, 0.1]), sweep("mixup.alpha", [0.2])),
}
SELECTION_SEEDS = (100, 101, 102)
EVALUATION_SEEDS = range(10)


def _validation_accuracy(selection: pathlib.Path, config: str, point: dict) -> float:
  accuracies = []
  for seed in SELECTION_SEEDS:
    path = selection / sweeps.workdir_name(config, point, seed) / "results.json"
    if not path.exists():
      raise ValueError(f"selection run missing: {path} (finish the select stage first)")
    accuracies.append(json.loads(path.read_text())["validation"]["accuracy"])
  return float(np.mean(accuracies))


def picked(selection: str) -> list[dict]:
  """CE and, per model and method, the candidate with the best mean validation accuracy."""
  points = []
  for config in MODELS:
    points.append({"config": config})  # CE: nothing to pick.
    for candidates in CANDIDATES.values():
      scores = [_validation_accuracy(pathlib.Path(selection), config, c) for c in candidates]
      points.append({"config": config, **candidates[int(np.argmax(scores))]})
  return points


def get_sweep(arg: str = "") -> dict:
  options = parse_arg(arg, stage="select", selection="")
  if options.stage == "select":
    candidates = [c for family in CANDIDATES.values() for c in family]
    return {"config": MODELS[0], "points": product(sweep("config", MODELS), candidates),
            "seeds": SELECTION_SEEDS}
  if options.stage == "evaluate":
    if not options.selection:
      raise ValueError("methods.py:evaluate needs selection=<the select stage's --out>")
    return {"config": MODELS[0], "points": picked(options.selection), "seeds": EVALUATION_SEEDS}
  raise ValueError(f"methods.py: unknown stage {options.stage!r}; use select or evaluate")
