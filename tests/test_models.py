"""Tests of the model registry and the model contract the training loop relies on."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ls_jax import models
from ls_jax.models import resnet

# name -> (per-example input shape, feature width before the classifier). Eager JAX compiles each
# op once per shape, so the tests share batch size 2 and these input shapes to reuse compilations
# (ResNet-56 runs almost free after ResNet-20).
_SPECS = {
    'mlp': ((40,), 100),
    'cnn1d': ((40, 1), 125),
    'cnn2d': ((28, 28, 1), 128),
    'resnet20': ((32, 32, 3), 64),
    'resnet56': ((32, 32, 3), 64),
    'preact_resnet18': ((32, 32, 3), 512),
    'resnet50': ((64, 64, 3), 2048),
}
_BN_MODELS = ('resnet20', 'resnet56', 'preact_resnet18', 'resnet50')


def _conv(k, c_in, c_out):
  return k * k * c_in * c_out  # Bias-free conv.


def _bn(c):
  return 2 * c  # Scale and bias; the running statistics are batch_stats, not params.


def _dense(n_in, n_out):
  return n_in * n_out + n_out


def _cifar_resnet_params(n, k):
  """He et al. 2016 §4.2 ResNet-(6n+2) with option-B projections, counted layer by layer."""
  total = _conv(3, 3, 16) + _bn(16)
  c_in = 16
  for width in (16, 32, 64):
    for _ in range(n):
      total += _conv(3, c_in, width) + _bn(width) + _conv(3, width, width) + _bn(width)
      if c_in != width:
        total += _conv(1, c_in, width) + _bn(width)
      c_in = width
  return total + _dense(64, k)


def _preact_resnet18_params(k):
  """The mixup repository's ResNet18(): conv-BN stem, PreAct blocks with BN-free 1x1 projections."""
  total = _conv(3, 3, 64) + _bn(64)
  c_in = 64
  for width in (64, 128, 256, 512):
    for _ in range(2):
      total += _bn(c_in) + _conv(3, c_in, width) + _bn(width) + _conv(3, width, width)
      if c_in != width:
        total += _conv(1, c_in, width)
      c_in = width
  return total + _dense(512, k)


_EXPECTED_PARAMS = {
    # (num_classes, exact count, (low, high) sanity range from the papers' rounded figures)
    'mlp': (10, _dense(40, 100) + _dense(100, 100) + _dense(100, 10), (15210, 15210)),
    # mnist1d's PyTorch ConvBase: 150 + 1900 + 1900 + 1260.
    'cnn1d': (10, 5210, (5210, 5210)),
    'cnn2d': (10, _conv(3, 1, 32) + 32 + _conv(3, 32, 64) + 64 + _dense(12 * 12 * 64, 128)
              + _dense(128, 10), (1.19e6, 1.21e6)),
    'resnet20': (10, _cifar_resnet_params(3, 10), (0.26e6, 0.28e6)),
    'resnet56': (10, _cifar_resnet_params(9, 10), (0.84e6, 0.87e6)),
    'preact_resnet18': (10, _preact_resnet18_params(10), (11.1e6, 11.3e6)),
    # torchvision.models.resnet50(): 25,557,032 parameters.
    'resnet50': (1000, 25_557_032, (25.5e6, 25.6e6)),
}


def _count(tree):
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def _shapes(model, x):
  return jax.eval_shape(model.init, jax.random.key(0), x)


def _host_variables(model, x, seed=0):
  """Variables of `model.init`'s shapes and dtypes, filled by NumPy with well-scaled random values.

  `jax.random` compiles a kernel per parameter shape, which dominates these tests' CPU time; only
  `test_initializers` needs Flax's own initializers. Biases, BN scales and running statistics are
  random too, so that a layer that ignores them shows up in the comparisons.
  """
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = path[-1].key
    if name == 'kernel':  # He fan-in scale keeps activations O(1) through the depth.
      value = rng.normal(0.0, np.sqrt(2.0 / np.prod(leaf.shape[:-1])), leaf.shape)
    elif name in ('scale', 'var'):
      value = rng.uniform(0.5, 1.5, leaf.shape)
    else:
      value = rng.normal(0.0, 0.1, leaf.shape)
    return jnp.asarray(value, leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, _shapes(model, x))


def _input(name, seed=1):
  return jnp.asarray(np.random.default_rng(seed).normal(size=(2,) + _SPECS[name][0]), jnp.float32)


def test_unknown_name_lists_valid_names():
  assert set(models.MODEL_NAMES) - set(models.LANGUAGE_MODELS) == set(_SPECS)  # LMs: elsewhere.
  with pytest.raises(ValueError, match='nope') as info:
    models.get_model('nope', num_classes=10)
  for name in models.MODEL_NAMES:
    assert name in str(info.value)


@pytest.mark.parametrize('name', sorted(_SPECS))
def test_forward_contract(name):
  num_classes = 7
  model = models.get_model(name, num_classes=num_classes)
  x = _input(name)
  variables = _host_variables(model, x)
  assert ('batch_stats' in variables) == (name in _BN_MODELS)
  logits, state = model.apply(variables, x, train=False, mutable=['intermediates'])
  assert logits.shape == (2, num_classes) and logits.dtype == jnp.float32
  assert np.all(np.isfinite(logits))
  (features,) = state['intermediates']['features']
  assert features.shape == (2, _SPECS[name][1])
  # Without `mutable`, apply returns the logits alone: evaluation needs no collection handling.
  np.testing.assert_array_equal(model.apply(variables, x, train=False), logits)


def test_mnist1d_models_accept_both_signal_layouts():
  x = _input('cnn1d')  # (batch, 40, 1).
  for name in ('mlp', 'cnn1d'):
    model = models.get_model(name, num_classes=10)
    variables = _host_variables(model, x)
    np.testing.assert_array_equal(
        model.apply(variables, x.reshape(2, 40)), model.apply(variables, x))


@pytest.mark.parametrize('name', sorted(_EXPECTED_PARAMS))
def test_param_count(name):
  num_classes, expected, (low, high) = _EXPECTED_PARAMS[name]
  model = models.get_model(name, num_classes=num_classes)
  count = _count(_shapes(model, _input(name))['params'])
  assert count == expected
  assert low <= count <= high


def _np_conv1d(x, kernel, bias):
  """PyTorch's Conv1d(stride=2, padding=1) on one (length, channels) signal; kernel (k, in, out)."""
  x = np.pad(x, ((1, 1), (0, 0)))
  k = kernel.shape[0]
  windows = [x[i:i + k] for i in range(0, x.shape[0] - k + 1, 2)]
  return np.stack([np.einsum('kc,kco->o', w, kernel) for w in windows]) + bias


def test_cnn1d_matches_numpy_reference():
  model = models.get_model('cnn1d', num_classes=10)
  x = _input('cnn1d')
  variables = _host_variables(model, x)
  logits, state = model.apply(variables, x, mutable=['intermediates'])
  p = jax.tree.map(np.asarray, variables['params'])
  for i, signal in enumerate(np.asarray(x)):
    h = signal
    for layer in ('Conv_0', 'Conv_1', 'Conv_2'):
      h = np.maximum(_np_conv1d(h, p[layer]['kernel'], p[layer]['bias']), 0.0)
    assert h.shape == (5, 25)  # 40 -> 19 -> 10 -> 5, as PyTorch computes the lengths.
    features = h.reshape(-1)
    (sown,) = state['intermediates']['features']
    np.testing.assert_allclose(sown[i], features, rtol=1e-5, atol=1e-5)
    expected = features @ p['head']['kernel'] + p['head']['bias']
    np.testing.assert_allclose(logits[i], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('name', ['cnn1d', 'resnet20'])
def test_bfloat16_compute(name):
  x = _input(name)
  model32 = models.get_model(name, num_classes=10)
  model16 = models.get_model(name, num_classes=10, dtype=jnp.bfloat16)
  for leaf in jax.tree.leaves(_shapes(model16, x)):  # params and batch_stats alike.
    assert leaf.dtype == jnp.float32
  variables = _host_variables(model32, x)
  logits32 = model32.apply(variables, x)
  logits16 = model16.apply(variables, x)
  assert logits16.dtype == jnp.float32
  # bf16 keeps ~3 significant digits; the error still must be far below the logits' own spread.
  error = np.abs(logits16 - logits32).max()
  assert 0 < error < 0.05 * np.abs(logits32).max()


def test_batchnorm_train_updates_stats_and_eval_is_pure():
  model = models.get_model('resnet20', num_classes=10)
  x = _input('resnet20')
  variables = _host_variables(model, x)
  _, updates = model.apply(variables, x, train=True, mutable=['batch_stats'])
  old, new = jax.tree.leaves(variables['batch_stats']), jax.tree.leaves(updates['batch_stats'])
  assert len(old) == len(new) and all(not np.allclose(a, b) for a, b in zip(old, new))
  # Training normalizes with batch statistics, so shifting the running averages by 1 shifts their
  # update by exactly the momentum: new = 0.9 * old + 0.1 * batch statistic.
  shifted = {**variables, 'batch_stats': jax.tree.map(lambda a: a + 1.0, variables['batch_stats'])}
  _, shifted_updates = model.apply(shifted, x, train=True, mutable=['batch_stats'])
  for a, b in zip(jax.tree.leaves(shifted_updates), new):
    np.testing.assert_allclose(a - b, 0.9, rtol=1e-4)
  logits = model.apply(variables, x, train=False)
  np.testing.assert_array_equal(model.apply(variables, x, train=False), logits)
  # Evaluation uses the running averages: an example's logits don't depend on the rest of the batch.
  other = model.apply(variables, x.at[1].set(_input('resnet20', seed=2)[1]), train=False)
  np.testing.assert_allclose(other[0], logits[0], rtol=1e-5, atol=1e-5)


def test_bn_axis_name_averages_statistics_across_shards():
  # vmap with an axis name runs BatchNorm's collectives as pmap would, without needing devices; a
  # one-stage ResNet-20 on 8x8 inputs keeps the compile cheap and exercises the same BN code.
  config = dict(num_classes=10, stage_sizes=(1,), widths=(16,))
  x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 8, 8, 3)), jnp.float32)
  model = models.get_model('resnet20', **config)
  variables = _host_variables(model, x)
  logits, updates = model.apply(variables, x, train=True, mutable=['batch_stats'])
  sharded = models.get_model('resnet20', bn_axis_name='shards', **config)
  apply = functools.partial(sharded.apply, train=True, mutable=['batch_stats'])
  shard_logits, shard_updates = jax.vmap(apply, in_axes=(None, 0), axis_name='shards')(
      variables, x.reshape(2, 2, *x.shape[1:]))
  np.testing.assert_allclose(shard_logits.reshape(logits.shape), logits, rtol=1e-4, atol=1e-4)
  for a, b in zip(jax.tree.leaves(updates), jax.tree.leaves(shard_updates)):
    np.testing.assert_allclose(b[0], a, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(b[1], a, rtol=1e-4, atol=1e-5)


def test_initializers():
  """Convs start He-normal with fan_out; only ResNet-50 zero-inits each block's last BN scale."""
  key = jax.random.key(0, impl='rbg')  # Compiles far faster than threefry on CPU.
  x = jnp.zeros((1, 32, 32, 3))
  # The registry's configurations cut to one stage, so that the init stays cheap on CPU.
  bottleneck = resnet.ResNet50(num_classes=10, stage_sizes=(2,), widths=(64,))
  params = jax.jit(bottleneck.init)(key, x)['params']
  scales = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(params)
            if path[-1].key == 'scale']
  zero = [s for s in scales if not np.any(s)]
  assert [s.shape[0] for s in zero] == [256, 256]  # One per block: the 4x-wide last BN.
  assert all(np.all(s == 1.0) for s in scales if np.any(s))
  # The blocks' last 1x1 conv: fan_in 64, fan_out 256, so He-normal's std differs 2x between them.
  kernel = params['ResidualBlock_1']['Conv_2']['kernel']
  assert kernel.shape == (1, 1, 64, 256)
  np.testing.assert_allclose(np.std(kernel), np.sqrt(2.0 / 256), rtol=0.05)

  basic = resnet.ResNet20(num_classes=10, stage_sizes=(1,), widths=(16,))
  params = jax.jit(basic.init)(key, x)['params']
  assert all(np.all(leaf == 1.0) for path, leaf in jax.tree_util.tree_leaves_with_path(params)
             if path[-1].key == 'scale')
