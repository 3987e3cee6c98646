"""Every config file in configs/ builds, validates, and trains 2 steps on tiny data.

Datasets that need a download (MNIST, CIFAR, ImageNet) are replaced by TFDS's mock data: random
examples with the real features (shapes, dtypes, class counts), served through the same
`tfds.data_source` path the real data takes.
"""
import importlib
import pathlib

import jax
import pytest
import tensorflow_datasets as tfds

from configs import default
from ls_jax.trainer import config_checks, errors, train

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[1] / "configs"
CONFIG_FILES = sorted(p.stem for p in CONFIG_DIR.glob("*.py")
                      if not p.stem.startswith("_") and p.stem != "common")
EMBEDDED = {"mnist1d", "sklearn_digits", "pydoc_text"}


def test_every_family_of_the_brief_has_a_config():
  assert set(CONFIG_FILES) >= {"default", "mnist1d", "digits", "mnist", "fashion_mnist", "cifar10",
                               "cifar100", "imagenet"}


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_config_builds_and_validates(name):
  config = importlib.import_module(f"configs.{name}").get_config()
  config_checks.validate(config, reference=default.get_config(), device_count=1)
  assert config.num_steps > 0


# ResNet-50 and PreAct ResNet-18 take minutes to compile on 2 CPU cores: CI trains those config
# files with ResNet-20 (same data path, optimizer and schedule) and the full models under --runslow.
_SMALL_MODEL = {"model.name": "resnet20"}


@pytest.mark.parametrize("name,arg,overrides", [
    ("default", None, {}), ("mnist1d", "cnn,runlocal", {}), ("mnist1d", "mlp,runlocal", {}),
    ("digits", "runlocal", {}), ("mnist", "runlocal", {}), ("fashion_mnist", "runlocal", {}),
    ("cifar10", "resnet20,runlocal", {}),
    ("cifar100", "preact_resnet18,runlocal", _SMALL_MODEL),
    ("imagenet", "runlocal", _SMALL_MODEL), ("lm_pydoc", "runlocal", {}),
    ("lm_tiny_shakespeare", "runlocal", {"lm.num_layers": 1, "lm.embed_dim": 32,
                                         "data.seq_len": 4}),  # Mock texts are short.
    pytest.param("cifar100", "preact_resnet18,runlocal", {}, marks=pytest.mark.slow),
    pytest.param("imagenet", "runlocal", {}, marks=pytest.mark.slow),
])
def test_config_trains_two_steps(name, arg, overrides, tmp_path, monkeypatch):
  module = importlib.import_module(f"configs.{name}")
  config = module.get_config() if arg is None else module.get_config(arg)
  config.update_from_flattened_dict(overrides)
  config.num_steps = 2
  config.optimizer.warmup_steps = min(config.optimizer.warmup_steps, 1)
  config.log_every_steps = 1
  config.checkpoint_every_steps = 2
  config.batch_size = 8
  config.eval_batch_size = 16
  if config.data.name == "imagenet2012":
    config.data.image_size = 32  # The architecture is the point here, not the resolution.
  if config.data.name in EMBEDDED:
    results = train.train_and_evaluate(config, str(tmp_path), devices=jax.devices()[:2])
  else:
    # Mock splits hold 24 examples: the configs' absolute slices (train[:45000]) would be empty.
    config.data.train_split, config.data.validation_split = "train[:75%]", "train[75%:]"
    monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)
    with tfds.testing.mock_data(num_examples=24, policy=tfds.testing.MockPolicy.USE_CODE):
      results = train.train_and_evaluate(config, str(tmp_path), devices=jax.devices()[:2])
  assert results["steps"] == 2
  assert 0.0 <= results["accuracy"] <= 1.0 and results["nll"] > 0


@pytest.mark.parametrize("name,arg,message", [
    ("mnist1d", "resnet", "unknown variant 'resnet'"),
    ("cifar10", "model=vgg", "unknown variant 'vgg'"),
    ("mnist", "colour=1", "unknown config argument 'colour'"),
])
def test_bad_config_arguments_are_rejected(name, arg, message):
  with pytest.raises(ValueError, match=message):
    importlib.import_module(f"configs.{name}").get_config(arg)


@pytest.mark.parametrize("value, ok", [(-1.0, True), (-0.3, True), (0.9, True), (-1.01, False),
                                       (1.0, False)])
def test_label_smoothing_range_allows_negative_smoothing(value, ok):
  config = default.get_config()
  config.loss.label_smoothing = value
  if ok:
    config_checks.validate(config, reference=default.get_config(), device_count=1)
  else:
    message = rf"loss.label_smoothing={value}: must be in \[-1, 1\)"
    with pytest.raises(errors.UserError, match=message):
      config_checks.validate(config, reference=default.get_config(), device_count=1)
