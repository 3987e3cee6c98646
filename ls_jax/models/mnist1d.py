"""The reference MLP and 1-D CNN of MNIST-1D (Greydanus, 2020, "Scaling Down Deep Learning").

Both mirror the PyTorch models of the `mnist1d` package (`MLP` and `ConvBase`) layer for layer, so
parameter counts and the conv padding/stride arithmetic match: 15,210 and 5,210 params for K=10.
Inputs are (batch, 40) or (batch, 40, 1) float signals.
"""
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.typing import Dtype

from ls_jax.models.cnn import CONV_INIT, classifier_head


class MLP(nn.Module):
  """Dense(100)-ReLU-Dense(100)-ReLU-Dense(K) on the flattened signal."""

  num_classes: int
  hidden_sizes: Sequence[int] = (100, 100)
  dtype: Dtype = jnp.float32  # Compute dtype; params stay float32 (Flax's default param_dtype).

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train  # No dropout or BatchNorm; kept for the apply signature all models share.
    x = x.reshape((x.shape[0], -1))
    for width in self.hidden_sizes:
      x = nn.relu(nn.Dense(width, dtype=self.dtype)(x))
    return classifier_head(self, x, self.num_classes, self.dtype)


class CNN1D(nn.Module):
  """Three stride-2 Conv1d layers with ReLU, flatten, Dense(K): lengths 40 -> 19 -> 10 -> 5.

  The flattened features are length-major (Flax's NLC layout) where PyTorch's are channel-major, so
  porting PyTorch weights needs the Dense kernel's rows permuted.
  """

  num_classes: int
  channels: int = 25
  kernel_sizes: Sequence[int] = (5, 3, 3)
  dtype: Dtype = jnp.float32  # Compute dtype; params stay float32 (Flax's default param_dtype).

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train  # No dropout or BatchNorm; kept for the apply signature all models share.
    x = x.reshape((x.shape[0], -1, 1))
    for kernel_size in self.kernel_sizes:
      # Explicit symmetric padding reproduces PyTorch's `padding=1`; Flax's 'SAME' would pad
      # asymmetrically at stride 2 and change the output length (40 -> 20 instead of 19).
      x = nn.Conv(
          self.channels,
          (kernel_size,),
          strides=2,
          padding=((1, 1),),
          dtype=self.dtype,
          kernel_init=CONV_INIT,
      )(x)
      x = nn.relu(x)
    x = x.reshape((x.shape[0], -1))
    return classifier_head(self, x, self.num_classes, self.dtype)
