"""Experiment 6, label noise: CE, LS (positive and negative, Wei et al. 2022), CP and Mixup.

  python scripts/sweep.py configs/sweeps/noise.py --out runs/noise

MNIST-1D CNN. Noise: none; symmetric at rates 0.2, 0.4, 0.6; pairwise ("asymmetric", class
k -> k+1) at 0.2 and 0.4 (6 settings). Pairwise 0.6 is left out: with most labels of class k
flipped to k+1, the training labels say that k+1 is the right answer, and no method can recover k.
Methods: CE, LS 0.1, LS 0.4, negative LS -0.3 (Wei et al. 2022), CP 0.1, Mixup 0.2 (6).
10 seeds: 360 runs, the largest sweep; `--seeds 0,1,2,3,4` halves it, `--match rate=0.6` runs one
rate. Metrics on the clean test split.

`:finetune,warmup=runs/noise` is the protocol of Wei et al.'s (2022) code: from each CE run of
the sweep above (the warm-up, same noise and seed), 1000 more steps (28 epochs) at Adam 1e-3, a
tenth of the training rate (`learning_rate=` sets it), with LS a in {0, 0.4, -0.3, -1.0}; a = 0
(CE fine-tuned alike) is the paired baseline. 6 settings x 4 x 10 seeds = 240 runs of ~4 s:

  python scripts/sweep.py configs/sweeps/noise.py:finetune,warmup=runs/noise --out runs/noise_finetune
  python scripts/sweep.py configs/sweeps/noise.py:finetune,warmup=runs/noise,learning_rate=1e-4 \
      --out runs/noise_finetune_lr1e-4
"""
import pathlib

from configs.common import parse_arg
from configs.sweeps.common import concat, product, sweep
from ls_jax.experiments import sweeps

METHODS = concat(sweep("loss.label_smoothing", [0.0, 0.1, 0.4, -0.3]),
                 sweep("loss.confidence_penalty", [0.1]),
                 sweep("mixup.alpha", [0.2]))
NOISE = concat(
    [{"data.label_noise.rate": 0.0}],
    product(sweep("data.label_noise.kind", ["symmetric"]), sweep("data.label_noise.rate", [0.2, 0.4, 0.6])),
    product(sweep("data.label_noise.kind", ["asymmetric"]), sweep("data.label_noise.rate", [0.2, 0.4])))


CONFIG = "configs/mnist1d.py"
FINETUNE_LABEL_SMOOTHING = (0.0, 0.4, -0.3, -1.0)
FINETUNE = {"num_steps": 1000, "eval_every_steps": 0, "checkpoint_every_steps": 1000}


def warmup_workdir(warmup: str, noise: dict) -> str:
  """The CE run of the first stage at `noise`, for every seed (`{seed}`, which sweep.py fills)."""
  name = sweeps.workdir_name(CONFIG, {**noise, "loss.label_smoothing": 0.0}, seed=0)
  return str(pathlib.Path(warmup).absolute() / name.removesuffix("seed0")) + "seed{seed}"


def get_sweep(arg: str = "") -> dict:
  options = parse_arg(arg, stage="train", warmup="", learning_rate=1e-3)
  if options.stage == "train":
    return {"config": CONFIG, "points": product(NOISE, METHODS), "seeds": range(10)}
  if options.stage != "finetune":
    raise ValueError(f"noise.py: unknown stage {options.stage!r}; use train or finetune")
  if not options.warmup:
    raise ValueError("noise.py:finetune needs warmup=<the train stage's --out>")
  points = []
  for noise in NOISE:
    for a in FINETUNE_LABEL_SMOOTHING:
      fields = {**noise, "loss.label_smoothing": a}
      name = "_".join(["finetune", *(f"{k}={sweeps.format_value(v)}" for k, v in fields.items())])
      points.append({**fields, **FINETUNE, "optimizer.learning_rate": options.learning_rate,
                     "init_from": warmup_workdir(options.warmup, noise), "name": name})
  return {"config": CONFIG, "points": points, "seeds": range(10)}
