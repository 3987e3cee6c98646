"""Model registry: `get_model(name, num_classes=..., dtype=...)` builds any model of the package.

Every model is a Flax Linen module with `__call__(x, train=False)` returning float32 logits of shape
(batch, num_classes), sowing its penultimate features as intermediates/'features'; models with
BatchNorm keep running statistics in the 'batch_stats' collection and take `bn_axis_name`.

The exception are the language models (`LANGUAGE_MODELS`): `__call__(tokens, where, train)` returns
hidden states, and `output_kernel()` the output layer that the fused loss applies; their
`num_classes` is the vocabulary size.
"""
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from flax.typing import Dtype

from ls_jax.models import cnn, mnist1d, resnet, transformer

_MODELS: dict[str, Callable[..., nn.Module]] = {
    'mlp': mnist1d.MLP,
    'cnn1d': mnist1d.CNN1D,
    'cnn2d': cnn.CNN2D,
    'resnet20': resnet.ResNet20,
    'resnet56': resnet.ResNet56,
    'preact_resnet18': resnet.PreActResNet18,
    'resnet50': resnet.ResNet50,
    'transformer_lm': lambda num_classes, **kwargs: transformer.DecoderOnlyTransformer(
        vocab_size=num_classes, **kwargs),
}
MODEL_NAMES: tuple[str, ...] = tuple(_MODELS)
LANGUAGE_MODELS: tuple[str, ...] = ('transformer_lm',)


def get_model(
    name: str, *, num_classes: int, dtype: Dtype = jnp.float32, **kwargs: Any
) -> nn.Module:
  """Returns the model registered as `name`; `kwargs` set further attributes (e.g. `bn_axis_name`).

  Raises:
    ValueError: if `name` is not one of `MODEL_NAMES`.
  """
  if name not in _MODELS:
    raise ValueError(f"Unknown model {name!r}; valid names are: {', '.join(MODEL_NAMES)}.")
  return _MODELS[name](num_classes=num_classes, dtype=dtype, **kwargs)
