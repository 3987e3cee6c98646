"""The decision experiment: binary CE, binary LS and binary focal loss, thresholded at a cost.

  python scripts/sweep.py configs/sweeps/decisions.py --out runs/decisions
  python scripts/report.py decisions --runs runs/decisions --out docs/results/decisions

Two binary tasks (one sigmoid output, `num_classes = 1`): `binary_synthetic`, whose true
P(y = 1 | x) is known for every example, and scikit-learn's breast-cancer set. On each: binary CE
(a = 0), binary LS at a in {0.05, 0.1, 0.2, 0.3} (targets y (1 - a) + a / 2: a = 0.2 gives the
0.9 / 0.1 targets) and binary focal loss with gamma = 2 (Lin et al. 2017), 10 seeds: 120 runs.
Temperature scaling needs no runs of its own: the report applies each run's fitted T (results.json,
fitted on validation) to its logits (predictions.npz).
"""
from configs.sweeps.common import concat, product, sweep

CONFIGS = ("configs/binary_synthetic.py", "configs/breast_cancer.py")
LABEL_SMOOTHING = (0.0, 0.05, 0.1, 0.2, 0.3)  # 0: binary CE.
FOCAL_GAMMA = (2.0,)


def get_sweep(arg: str = "") -> dict:
  del arg
  return {"config": CONFIGS[0],
          "points": product(sweep("config", CONFIGS),
                            concat(sweep("loss.label_smoothing", LABEL_SMOOTHING),
                                   sweep("loss.focal_gamma", FOCAL_GAMMA))),
          "seeds": range(10)}
