"""Experiment 6, label noise: CE, LS (positive and negative, Wei et al. 2022), CP and Mixup.

  python scripts/sweep.py configs/sweeps/noise.py --out runs/noise

MNIST-1D CNN. Noise: none; symmetric at rates 0.2, 0.4, 0.6; pairwise ("asymmetric", class
k -> k+1) at 0.2 and 0.4 (6 settings). Pairwise 0.6 is left out: with most labels of class k
flipped to k+1, the training labels say that k+1 is the right answer, and no method can recover k.
Methods: CE, LS 0.1, LS 0.4, negative LS -0.3 (Wei et al. 2022), CP 0.1, Mixup 0.2 (6).
10 seeds: 360 runs, the largest sweep; `--seeds 0,1,2,3,4` halves it, `--match rate=0.6` runs one
rate. Metrics on the clean test split.
"""
from configs.sweeps.common import concat, product, sweep

METHODS = concat(sweep("loss.label_smoothing", [0.0, 0.1, 0.4, -0.3]),
                 sweep("loss.confidence_penalty", [0.1]),
                 sweep("mixup.alpha", [0.2]))
NOISE = concat(
    [{"data.label_noise.rate": 0.0}],
    product(sweep("data.label_noise.kind", ["symmetric"]), sweep("data.label_noise.rate", [0.2, 0.4, 0.6])),
    product(sweep("data.label_noise.kind", ["asymmetric"]), sweep("data.label_noise.rate", [0.2, 0.4])))


def get_sweep(arg: str = "") -> dict:
  del arg
  return {"config": "configs/mnist1d.py", "points": product(NOISE, METHODS), "seeds": range(10)}
