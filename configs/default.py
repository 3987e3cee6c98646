"""Fields shared by every experiment family; each family's config starts from `get_config()`.

Every field, its default and what it means: ls_jax/trainer/default_config.py (kept in the package, because
the training code validates each config against it). Print a resolved config with
`python scripts/train.py --config=configs/mnist1d.py --print_config`.

The method under study is a config field, so an ablation is a command line:
  --config.loss.label_smoothing=0.1      (Szegedy et al. 2016)
  --config.data.label_noise.rate=0.2     (symmetric label noise; .kind=asymmetric for pair flips)
Every method, its field, its valid values and its paper: the table in ls_jax/trainer/methods.py.
"""
from ls_jax.trainer.default_config import get_config  # pylint: disable=unused-import  # Re-exported.
