"""MNIST (LeCun et al. 1998) with the small 2-D CNN.

  tfds build mnist --file_format=array_record     # once, with network access (README)
  python scripts/train.py --config=configs/mnist.py --workdir=runs/mnist

10 epochs, Adam 1e-3 with cosine decay, batch 128. `:runlocal` for a 20-step smoke run.
"""
from configs import _mnist_family


def get_config(arg: str = ""):
  return _mnist_family.get_config("mnist", arg)
