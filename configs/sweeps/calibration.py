"""Experiment 4, calibration: CE, LS, the confidence penalty, focal loss and Mixup; TS is post hoc.

  python scripts/sweep.py configs/sweeps/calibration.py --out runs/calibration

MNIST-1D CNN, 10 seeds: 50 runs. Temperature scaling (fitted on validation) needs no runs of its
own: results.json has `temperature_scaled`, and predictions.npz the logits. Strengths are the
usual ones (Müller et al. 2019 use a = 0.1; Pereyra et al. 2017 beta = 0.1; Zhang et al. 2018
alpha = 0.2; Mukhoti et al. 2020's FL-3 is focal loss with gamma = 3). Experiment 3 (CE versus
LS from the same init) reads the CE and LS runs of this sweep: the same seed gives the same init
and data order.
"""
from configs.sweeps.common import concat, sweep


def get_sweep(arg: str = "") -> dict:
  del arg
  return {"config": "configs/mnist1d.py",
          "points": concat(sweep("loss.label_smoothing", [0.0, 0.1]),
                           sweep("loss.confidence_penalty", [0.1]),
                           sweep("loss.focal_gamma", [3.0]),
                           sweep("mixup.alpha", [0.2])),
          "seeds": range(10)}
