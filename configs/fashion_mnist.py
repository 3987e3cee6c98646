"""Fashion-MNIST (Xiao et al. 2017) with the small 2-D CNN, same recipe as configs/mnist.py.

  tfds build fashion_mnist --file_format=array_record     # once, with network access (README)
  python scripts/train.py --config=configs/fashion_mnist.py --workdir=runs/fashion_mnist

`:runlocal` for a 20-step smoke run.
"""
from configs import _mnist_family


def get_config(arg: str = ""):
  return _mnist_family.get_config("fashion_mnist", arg)
