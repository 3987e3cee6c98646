"""Distillation teachers: MNIST-1D CNNs trained with CE and LS, every 500-step checkpoint kept.

  python scripts/sweep.py configs/sweeps/distillation_teachers.py --out runs/distillation_teachers

The reference CNN (configs/mnist1d.py) with a in {0, 0.1, 0.3}, seeds 0-4: 15 runs. They are the
teachers of configs/sweeps/distillation_students.py (paired by seed), and `scripts/report.py`
reads their checkpoints for the projection (Müller et al. 2019, Fig. 1), the mutual information over training
(§4.1), and the extrapolation and attack probes. `checkpoint_every_steps=500` with
`keep_checkpoints=13` keeps all 12 checkpoints of the 6000-step run (the MI curve's x axis); the
workdir name leaves those bookkeeping fields out: `mnist1d_loss.label_smoothing=0.1_seed3`.
"""
from configs.sweeps.common import sweep

CONFIG = "configs/mnist1d.py"
LABEL_SMOOTHING = (0.0, 0.1, 0.3)
SEEDS = range(5)


def name(label_smoothing: float) -> str:
  return f"loss.label_smoothing={label_smoothing:g}"


def workdir(out: str, label_smoothing: float, seed) -> str:
  """The teacher's run directory under `out` (`seed` may be the sweep placeholder "{seed}")."""
  return f"{out}/mnist1d_{name(label_smoothing)}_seed{seed}"


def get_sweep(arg: str = "") -> dict:
  del arg
  return {"config": CONFIG,
          "points": [{**point, "checkpoint_every_steps": 500, "keep_checkpoints": 13,
                      "name": name(point["loss.label_smoothing"])}
                     for point in sweep("loss.label_smoothing", LABEL_SMOOTHING)],
          "seeds": SEEDS}
