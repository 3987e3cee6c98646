"""Fields shared by every experiment family; each family's config starts from `get_config()`.

Every field, its default and what it means: ls_jax/default_config.py (kept in the package, because
the training code validates each config against it). Print a resolved config with
`python scripts/train.py --config=configs/mnist1d.py --print_config`.

The method under study is a config field, so CE / LS / CP / Mixup are four command lines:
  --config.loss.label_smoothing=0.1      (Szegedy et al. 2016)
  --config.loss.confidence_penalty=0.1   (Pereyra et al. 2017)
  --config.mixup.alpha=0.2               (Zhang et al. 2018), --config.cutmix.alpha=1.0 (Yun et al. 2019)
  --config.data.label_noise.rate=0.2     (symmetric label noise; .kind=asymmetric for pair flips)
"""
from ls_jax.trainer.default_config import get_config  # pylint: disable=unused-import  # Re-exported.
