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

from configs import _binary_family
from configs.common import parse_arg


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  options = parse_arg(arg, runlocal=False)
  return _binary_family.get_config("breast_cancer", batch_size=32, eval_batch_size=128,
                                   runlocal=options.runlocal)
