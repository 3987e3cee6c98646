"""ImageNet (ILSVRC-2012) with ResNet-50: the recipe of Goyal et al. 2017, label smoothing 0.1 as
in Szegedy et al. 2016 when asked for.

  # once: download ILSVRC2012_img_{train,val}.tar by hand into <manual_dir> (README), then
  tfds build imagenet2012 --file_format=array_record --manual_dir=<manual_dir>
  python scripts/train.py --config=configs/imagenet.py --workdir=gs://.../imagenet_r50 \
      --config.loss.label_smoothing=0.1

90 epochs at batch 1024, SGD momentum 0.9 (Nesterov), lr 0.1 x batch/256 (linear scaling rule,
Goyal et al. 2017) with 5 warm-up epochs and cosine decay, weight decay 1e-4 on
kernels. Records are decoded and inception-cropped on the host (data.in_memory=False). Zhang et
al. 2018 use mixup alpha 0.2 on ImageNet: `--config.mixup.alpha=0.2`. Not run here (no GPU).
`:runlocal` for a 20-step smoke run at 64x64 with a tiny batch.
"""
import ml_collections

from configs import default
from configs.common import parse_arg

_TRAIN_EXAMPLES = 1_281_167


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  options = parse_arg(arg, runlocal=False)
  config = default.get_config()
  config.num_classes = 1000
  config.data.name = "imagenet2012"
  # Calibration is fitted on held-out training images; the official validation set is the test.
  config.data.train_split = "train[:99%]"
  config.data.validation_split = "train[99%:]"
  config.data.test_split = "validation"
  config.data.in_memory = False
  config.data.augment = "inception"
  config.data.image_size = 224
  config.model.name = "resnet50"
  config.compute_dtype = "bfloat16"
  config.batch_size = 1024
  config.eval_batch_size = 1000
  epochs = 90
  config.num_steps = epochs * _TRAIN_EXAMPLES // config.batch_size
  config.optimizer.name = "sgd"
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = True
  config.optimizer.learning_rate = 0.1 * config.batch_size / 256  # Linear scaling rule.
  config.optimizer.warmup_steps = 5 * _TRAIN_EXAMPLES // config.batch_size  # Gradual warm-up.
  config.optimizer.schedule = "cosine"
  config.optimizer.weight_decay = 1e-4
  config.log_every_steps = 100
  config.checkpoint_every_steps = 2000
  config.eval_every_steps = _TRAIN_EXAMPLES // config.batch_size  # Every epoch.
  if options.runlocal:
    config.data.image_size = 64
    config.batch_size = 8
    config.eval_batch_size = 16
    config.num_steps = 20
    config.optimizer.warmup_steps = 5
    config.log_every_steps = 10
    config.eval_every_steps = 10
  return config
