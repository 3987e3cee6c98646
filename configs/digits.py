"""scikit-learn's bundled 8x8 digits: embedded, no download; the smallest end-to-end run.

  python scripts/train.py --config=configs/digits.py --workdir=runs/digits
  python scripts/train.py --config=configs/digits.py:mlp --workdir=runs/digits_mlp

1437 training images (1293 to train, 144 held out for calibration), 360 test images. A few
seconds on 2 CPU cores. Variants: `cnn` (default, the small 2-D CNN) or `mlp`; `,runlocal` for 20 steps.
"""
import ml_collections

from configs import default
from configs.common import parse_arg, pick_variant


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  options = parse_arg(arg, model="cnn", runlocal=False)
  config = default.get_config()
  config.data.name = "sklearn_digits"
  config.model.name = pick_variant(options.model, {"cnn": "cnn2d", "mlp": "mlp"}, "configs/digits.py")
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.batch_size = 64
  config.eval_batch_size = 512
  config.num_steps = 1000  # ~50 epochs of 1293 images.
  config.log_every_steps = 100
  config.eval_every_steps = 100
  config.checkpoint_every_steps = 500
  if options.runlocal:
    config.num_steps = 20
    config.log_every_steps = 10
    config.eval_every_steps = 10
  return config
