"""MNIST-1D (Greydanus 2020): the embedded default; generated locally, no download.

  python scripts/train.py --config=configs/mnist1d.py --workdir=runs/mnist1d_cnn
  python scripts/train.py --config=configs/mnist1d.py:mlp --workdir=runs/mnist1d_mlp
  python scripts/train.py --config=configs/mnist1d.py --config.loss.label_smoothing=0.1 ...

Recipe of the MNIST-1D quick-start (Adam 1e-2, batch 100, 6000 steps); the paper reports 94% test
accuracy for this CNN and 68% for the MLP. About 10 s per run on 2 CPU cores (see README).
Variants: `cnn` (default) or `mlp`; add `,runlocal` for a 50-step smoke run.
"""
import ml_collections

from configs import default
from configs.common import parse_arg, pick_variant


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  options = parse_arg(arg, model="cnn", runlocal=False)
  config = default.get_config()
  config.data.name = "mnist1d"
  # 4000 training signals: 3600 to train, 400 held out to fit the temperature on.
  config.data.train_split = "train[:90%]"
  config.data.validation_split = "train[90%:]"
  config.model.name = pick_variant(options.model, {"cnn": "cnn1d", "mlp": "mlp"}, "configs/mnist1d.py")
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-2
  config.batch_size = 100
  config.num_steps = 6000
  config.log_every_steps = 500
  config.eval_every_steps = 1000
  config.checkpoint_every_steps = 2000
  if options.runlocal:
    config.num_steps = 50
    config.log_every_steps = 10
    config.eval_every_steps = 25
  return config
