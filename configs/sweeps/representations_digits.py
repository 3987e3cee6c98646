"""Representations on a second dataset: the digits CNN with CE and with LS 0.1.

  python scripts/sweep.py configs/sweeps/representations_digits.py --out runs/representations_digits

scikit-learn's 8x8 digits, the small 2-D CNN of configs/digits.py, a in {0, 0.1} (Müller et al.
2019 use 0.1), seeds 0-4: 10 runs. `scripts/report.py projection` projects their penultimate
features onto the plane of three class templates (Müller Fig. 1), beside the MNIST-1D teachers.
"""
from configs.sweeps.common import sweep


def get_sweep(arg: str = "") -> dict:
  del arg
  return {"config": "configs/digits.py", "points": sweep("loss.label_smoothing", [0.0, 0.1]),
          "seeds": range(5)}
