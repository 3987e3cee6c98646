"""The CIFAR recipes, shared by configs/cifar10.py and configs/cifar100.py.

Variants (`--config=configs/cifar100.py:resnet56`):
  resnet20 / resnet56: Müller, Kornblith & Hinton 2019 ("When does label smoothing help?", the
    CIFAR-100 ResNet-56 of their Table 2): batch 128, 64k steps, SGD Nesterov 0.9, lr 0.1 divided
    by 10 at 32k and 48k, weight decay 1e-4, a 45k/5k train/validation split (they used 40k/10k;
    `--config.data.train_split=train[:40000] --config.data.validation_split=train[40000:]`).
  preact_resnet18: Zhang et al. 2018 (mixup, CIFAR): 200 epochs at batch 128 (78k steps), SGD
    momentum 0.9, lr 0.1 divided by 10 at epochs 100 and 150, weight decay 1e-4, crop + flip.
    Add `--config.mixup.alpha=1.0` for their mixup row.
Add `,runlocal` for a 20-step smoke run with a tiny batch.
"""
import ml_collections

from configs import default
from configs.common import parse_arg, pick_variant

_MODELS = ("resnet20", "resnet56", "preact_resnet18")


def get_config(dataset: str, num_classes: int, arg: str) -> ml_collections.ConfigDict:
  options = parse_arg(arg, model="resnet56", runlocal=False)
  config = default.get_config()
  config.num_classes = num_classes
  config.data.name = dataset
  config.data.train_split = "train[:45000]"
  config.data.validation_split = "train[45000:]"
  config.data.augment = "crop_flip"
  config.model.name = pick_variant(options.model, {m: m for m in _MODELS},
                                   f"configs/{dataset}.py")
  config.optimizer.name = "sgd"
  config.optimizer.momentum = 0.9
  config.optimizer.weight_decay = 1e-4
  config.optimizer.learning_rate = 0.1  # For batch 128; scale linearly with batch (Goyal 2017).
  config.optimizer.schedule = "step"
  config.optimizer.decay_factor = 0.1
  config.batch_size = 128
  config.log_every_steps = 200
  config.checkpoint_every_steps = 2000
  config.eval_every_steps = 2000  # ~5 epochs.
  if options.model == "preact_resnet18":
    config.optimizer.nesterov = False
    # 200 epochs of 50k at batch 128, as Zhang et al. (they train on all 50k; we hold 5k out
    # for calibration, so this is ~222 passes over the 45k).
    config.num_steps = 78_200
    config.optimizer.decay_boundaries = (0.5, 0.75)  # Epochs 100 and 150 of 200.
  else:
    config.optimizer.nesterov = True
    config.num_steps = 64_000
    config.optimizer.decay_boundaries = (0.5, 0.75)  # 32k and 48k of 64k.
  if options.runlocal:
    config.num_steps = 20
    config.batch_size = 16
    config.eval_batch_size = 64
    config.log_every_steps = 10
    config.eval_every_steps = 10
  return config
