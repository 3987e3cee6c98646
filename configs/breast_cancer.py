"""scikit-learn's breast-cancer set (WDBC), malignant = 1: a real binary task, embedded, no download.

  python scripts/train.py --config=configs/breast_cancer.py --workdir=runs/breast_cancer
  python scripts/train.py --config=configs/breast_cancer.py --config.loss.label_smoothing=0.2 ...

569 tumours, 30 features standardized with training statistics, 37% malignant; stratified split
(`BreastCancer` in ls_jax/trainer/embedded_datasets.py): 456 training examples (410 to train, the
last 46 held out for calibration and threshold tuning), 113 test.

One logit (`num_classes = 1`), the MLP (30-100-100-1), Adam 1e-3, batch 32, 1000 steps (~78
epochs): seconds on 2 CPU cores. Add `:runlocal` for a 20-step smoke run.
"""
import ml_collections

from configs import default
from configs.common import parse_arg


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  options = parse_arg(arg, runlocal=False)
  config = default.get_config()
  config.data.name = "breast_cancer"
  config.data.train_split = "train[:90%]"
  config.data.validation_split = "train[90%:]"
  config.num_classes = 1  # One logit: P(malignant) = sigmoid(logit).
  config.model.name = "mlp"
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.batch_size = 32
  config.eval_batch_size = 128
  config.num_steps = 1000
  config.log_every_steps = 100
  config.eval_every_steps = 250
  config.checkpoint_every_steps = 500
  if options.runlocal:
    config.num_steps = 20
    config.log_every_steps = 10
    config.eval_every_steps = 10
  return config
