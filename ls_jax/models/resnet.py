"""Residual networks: CIFAR ResNet-20/56, PreAct ResNet-18 and ImageNet ResNet-50 (v1.5).

* ResNet-20/56: He et al. 2016, "Deep Residual Learning for Image Recognition", §4.2: a 3x3 conv
  with 16 channels, then 3 stages (16, 32, 64 channels) of n = (depth - 2) / 6 basic blocks. The
  paper uses zero-padded identity shortcuts on CIFAR (option A); this uses projection shortcuts
  (1x1 conv + BN) where the shape changes (option B, §3.3), which adds 2,752 params (ResNet-20:
  272,474; ResNet-56: 855,770).
* PreAct ResNet-18: the pre-activation blocks of He et al. 2016b, "Identity Mappings in Deep
  Residual Networks", in the CIFAR network of Zhang et al. 2018 (mixup, `facebookresearch/
  mixup-cifar10`, `ResNet18()`): a 3x3 conv-BN-ReLU stem with 64 channels, stages of 2 blocks with
  64/128/256/512 channels and, unlike the paper, no BN-ReLU after the last block (11,171,274
  params for K=10).
* ResNet-50: He et al. 2016, Table 1 and §4.1, in the v1.5 form of torchvision (stride on the
  bottleneck's 3x3 conv): 7x7 stem and max-pool, stages (3, 4, 6, 3) of bottlenecks (25,557,032
  params for K=1000).
  The last BN scale of each block starts at zero (Goyal et al. 2017, "Accurate, Large Minibatch
  SGD", §5.1), so every block starts as the identity, which stabilizes the first steps.

Convs are bias-free, as in the reference implementations, and pad k // 2 on each side like
PyTorch's, so feature maps align with torchvision's at stride 2, where Flax's 'SAME' would pad only
on the far side.
"""
import functools
from collections.abc import Callable, Sequence
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.typing import Dtype

from ls_jax.models.cnn import CONV_INIT, classifier_head

ModuleDef = Callable[..., nn.Module]


def _conv(features: int, kernel: int, strides: int = 1, *, dtype: Dtype) -> nn.Conv:
  """A bias-free kernel x kernel conv with PyTorch-style symmetric padding and He-normal init."""
  return nn.Conv(
      features,
      (kernel, kernel),
      strides,
      padding=kernel // 2,
      use_bias=False,
      dtype=dtype,
      kernel_init=CONV_INIT,
  )


class ResidualBlock(nn.Module):
  """Post-activation residual block, relu(F(x) + shortcut(x)) (He et al. 2016, Figs. 2 and 5).

  Basic: F = conv3x3-BN-ReLU-conv3x3-BN. Bottleneck: F = conv1x1-BN-ReLU-conv3x3-BN-ReLU-conv1x1-BN
  with 4 * filters outputs and the stride on the 3x3 conv (v1.5; v1 strides the first 1x1, which
  discards 3/4 of its input).
  """

  filters: int
  conv: ModuleDef
  norm: ModuleDef
  strides: int = 1
  bottleneck: bool = False
  zero_init_last_bn: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.bottleneck:
      layers = ((self.filters, 1, 1), (self.filters, 3, self.strides), (4 * self.filters, 1, 1))
    else:
      layers = ((self.filters, 3, self.strides), (self.filters, 3, 1))
    y = x
    for features, kernel, strides in layers[:-1]:
      y = nn.relu(self.norm()(self.conv(features, kernel, strides)(y)))
    features, kernel, strides = layers[-1]
    scale_init = nn.initializers.zeros if self.zero_init_last_bn else nn.initializers.ones
    y = self.norm(scale_init=scale_init)(self.conv(features, kernel, strides)(y))
    if x.shape != y.shape:
      # Option B: project only where the shape changes; identity shortcuts everywhere else.
      x = self.norm()(self.conv(y.shape[-1], 1, self.strides)(x))
    return nn.relu(x + y)


class PreActBlock(nn.Module):
  """Pre-activation block, x + F(x) with F = BN-ReLU-conv3x3-BN-ReLU-conv3x3 (He et al. 2016b).

  Where the shape changes, the shortcut is a bias-free 1x1 conv (no BN) that reads the
  pre-activated input, as in the mixup code; elsewhere it is the identity on the raw input.
  """

  filters: int
  conv: ModuleDef
  norm: ModuleDef
  strides: int = 1

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    pre = nn.relu(self.norm()(x))
    y = self.conv(self.filters, 3, self.strides)(pre)
    y = self.conv(self.filters, 3)(nn.relu(self.norm()(y)))
    if x.shape != y.shape:
      x = self.conv(self.filters, 1, self.strides)(pre)
    return x + y


class ResNet(nn.Module):
  """Stem, stages of residual blocks (stride 2 into all but the first), average pool, Dense.

  Takes NHWC float images; `train` selects batch statistics (and their update, with
  `mutable=['batch_stats']`) over the running averages.
  """

  num_classes: int
  stage_sizes: Sequence[int]
  widths: Sequence[int]
  block_cls: ModuleDef = ResidualBlock
  imagenet_stem: bool = False
  dtype: Dtype = jnp.float32  # Compute dtype; params and batch_stats stay float32.
  # Set by data-parallel training under pmap so that BN averages its statistics across devices.
  bn_axis_name: Optional[str] = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    conv = functools.partial(_conv, dtype=self.dtype)
    norm = functools.partial(
        nn.BatchNorm,
        use_running_average=not train,
        momentum=0.9,  # Flax's momentum is the running average's decay: PyTorch's momentum=0.1.
        epsilon=1e-5,
        dtype=self.dtype,
        axis_name=self.bn_axis_name,
    )
    # ImageNet: 7x7/2 conv then 3x3/2 max-pool (224 -> 56). CIFAR: one 3x3 conv at full resolution.
    kernel, strides = (7, 2) if self.imagenet_stem else (3, 1)
    x = nn.relu(norm()(conv(self.widths[0], kernel, strides)(x)))
    if self.imagenet_stem:
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for stage, (num_blocks, width) in enumerate(zip(self.stage_sizes, self.widths)):
      for block in range(num_blocks):
        strides = 2 if stage > 0 and block == 0 else 1
        x = self.block_cls(width, conv=conv, norm=norm, strides=strides)(x)
    x = jnp.mean(x, axis=(1, 2))
    return classifier_head(self, x, self.num_classes, self.dtype)


# CIFAR ResNets: n = (depth - 2) / 6 blocks per stage.
ResNet20 = functools.partial(ResNet, stage_sizes=(3, 3, 3), widths=(16, 32, 64))
ResNet56 = functools.partial(ResNet, stage_sizes=(9, 9, 9), widths=(16, 32, 64))
PreActResNet18 = functools.partial(
    ResNet, stage_sizes=(2, 2, 2, 2), widths=(64, 128, 256, 512), block_cls=PreActBlock
)
ResNet50 = functools.partial(
    ResNet,
    stage_sizes=(3, 4, 6, 3),
    widths=(64, 128, 256, 512),
    block_cls=functools.partial(ResidualBlock, bottleneck=True, zero_init_last_bn=True),
    imagenet_stem=True,
)
