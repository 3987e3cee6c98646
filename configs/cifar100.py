"""CIFAR100 with the CIFAR ResNets: the recipes of Müller et al. 2019 and Zhang et al. 2018.

  tfds build cifar100 --file_format=array_record     # once, with network access (README)
  python scripts/train.py --config=configs/cifar100.py:resnet56 --workdir=runs/cifar100_resnet56
  python scripts/train.py --config=configs/cifar100.py:resnet56 --config.loss.label_smoothing=0.1 ...
  python scripts/train.py --config=configs/cifar100.py:preact_resnet18 --config.mixup.alpha=1.0 ...

Recipes and their sources: configs/_cifar_family.py. ResNet-56, 64k steps at batch 128: a few
hours on one modern GPU (not measured here: this project's machine has no GPU).
"""
from configs import _cifar_family


def get_config(arg: str = ""):
  return _cifar_family.get_config("cifar100", 100, arg)
