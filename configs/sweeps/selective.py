"""Experiment 5, selective classification: does LS degrade the ranking of right versus wrong?

  python scripts/sweep.py configs/sweeps/selective.py --out runs/selective

MNIST-1D CNN, CE and LS at a in {0.05, 0.1, 0.3}, 10 seeds: 40 runs. Risk-coverage, AURC and the
misclassification AUROC, with and without the logit normalisation of Xia et al. 2025
(`ls_jax.calibration.max_logit_pnorm`, p fitted on validation), come from predictions.npz.
"""
from configs.sweeps.common import sweep


def get_sweep(arg: str = "") -> dict:
  del arg
  return {"config": "configs/mnist1d.py",
          "points": sweep("loss.label_smoothing", [0.0, 0.05, 0.1, 0.3]),
          "seeds": range(10)}
