"""Small 2-D CNN for MNIST / Fashion-MNIST, plus the two pieces every model in this package shares.

The CNN is the network of the Keras `mnist_cnn.py` example and PyTorch's `examples/mnist`:
conv3x3(32)-ReLU-conv3x3(64)-ReLU-maxpool2-Dense(128)-ReLU-Dense(K), 'VALID' padding, so a 28x28
input flattens to 12*12*64 = 9216 features. Both examples add dropout; it is left out here so every
model applies without a 'dropout' rng.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.typing import Dtype

# He-normal with fan_out, as torchvision initializes its conv nets (He et al. 2015, "Delving Deep
# into Rectifiers"): it keeps the backward-pass variance constant through ReLU layers. Dense layers
# keep Flax's default (LeCun normal), which the shallow heads here train fine with.
CONV_INIT = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def classifier_head(
    module: nn.Module, features: jax.Array, num_classes: int, dtype: Dtype
) -> jax.Array:
  """The final Dense of every model; call it from inside `module`'s compact `__call__`.

  Sows `features` (the penultimate representation) as intermediates/'features', so analyses get it
  with `apply(..., mutable=['intermediates'])`. The logits are cast to float32 whatever the compute
  dtype, because the loss against smoothed targets is computed in float32.
  """
  module.sow('intermediates', 'features', features)
  return nn.Dense(num_classes, dtype=dtype, name='head')(features).astype(jnp.float32)


class CNN2D(nn.Module):
  """Keras/PyTorch MNIST example CNN on NHWC inputs (1,199,882 params for 28x28x1 and K=10)."""

  num_classes: int
  dtype: Dtype = jnp.float32  # Compute dtype; params stay float32 (Flax's default param_dtype).

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train  # No dropout or BatchNorm; kept for the apply signature all models share.
    for features in (32, 64):
      x = nn.Conv(
          features, (3, 3), padding='VALID', dtype=self.dtype, kernel_init=CONV_INIT
      )(x)
      x = nn.relu(x)
    x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(128, dtype=self.dtype)(x))
    return classifier_head(self, x, self.num_classes, self.dtype)
