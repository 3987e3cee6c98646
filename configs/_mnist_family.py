"""The MNIST / Fashion-MNIST recipe, shared by configs/mnist.py and configs/fashion_mnist.py."""
import ml_collections

from configs import default
from configs.common import parse_arg


def get_config(dataset: str, arg: str) -> ml_collections.ConfigDict:
  options = parse_arg(arg, runlocal=False)
  config = default.get_config()
  config.data.name = dataset
  # 60k training images: the last 5k (8%) are held out for calibration, as Keras' MNIST example.
  config.data.train_split = "train[:55000]"
  config.data.validation_split = "train[55000:]"
  config.model.name = "cnn2d"
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.optimizer.schedule = "cosine"
  config.batch_size = 128
  config.num_steps = 4300  # 10 epochs of 55k at batch 128.
  config.log_every_steps = 100
  config.eval_every_steps = 430  # Every epoch.
  config.checkpoint_every_steps = 1000
  if options.runlocal:
    config.num_steps = 20
    config.batch_size = 32
    config.log_every_steps = 10
    config.eval_every_steps = 10
  return config
