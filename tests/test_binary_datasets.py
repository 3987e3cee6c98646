"""The embedded binary datasets: `binary_synthetic` (known P(y = 1 | x)) and `breast_cancer`.

Both are built once per module in a temporary data_dir (not ~/.cache).
"""
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import expit, ndtri

from configs import default
from ls_jax import models
from ls_jax.trainer import embedded_datasets, input_pipeline
from ls_jax.trainer.errors import UserError

SYNTHETIC = embedded_datasets.BinarySynthetic


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def data_config(name, data_dir, **overrides):
  config = default.get_config().data
  config.update(dict(name=name, data_dir=data_dir, train_split="train[:90%]",
                     validation_split="train[90%:]", test_split="test", **overrides))
  return config


@pytest.fixture(scope="module")
def synthetic(data_dir):
  """Every stored feature of the default (amb30) config, train and test."""
  return {split: embedded_datasets.split_features("binary_synthetic", split, data_dir)
          for split in ("train", "test")}


@pytest.fixture(scope="module")
def cancer(data_dir):
  return {split: embedded_datasets.split_features("breast_cancer", split, data_dir)
          for split in ("train", "test")}


def both_splits(features):
  return {key: np.concatenate([features["train"][key], features["test"][key]])
          for key in features["train"]}


# ------------------------------------------------------------------------------------------------
# binary_synthetic.


def test_synthetic_features_sizes_and_dtypes(synthetic):
  assert set(synthetic["train"]) == {"image", "label", "true_prob", "ambiguous", "index"}
  for split, size in (("train", 10_000), ("test", 5_000)):
    features = synthetic[split]
    assert features["image"].shape == (size, 16) and features["image"].dtype == np.float32
    assert features["label"].dtype == np.int64 and set(np.unique(features["label"])) == {0, 1}
    assert features["true_prob"].dtype == np.float32 and features["ambiguous"].dtype == bool
    np.testing.assert_array_equal(features["index"], np.arange(size))  # Generation order.


def test_synthetic_generation_is_deterministic(synthetic):
  """The stored dataset is the generator's output, and the generator repeats itself exactly."""
  for split in ("train", "test"):
    first = embedded_datasets.synthetic_split(split, 0.3)
    second = embedded_datasets.synthetic_split(split, 0.3)
    for key in first:
      np.testing.assert_array_equal(first[key], second[key])
      np.testing.assert_array_equal(synthetic[split][key], first[key])
  # Pinned values: the same data on every machine (NumPy's PCG64 streams are stable).
  train = synthetic["train"]
  assert int(train["label"].sum()) == 2933 and int(train["ambiguous"].sum()) == 2957
  assert int(synthetic["test"]["label"].sum()) == 1502
  np.testing.assert_allclose(train["image"][0, :3], [0.41342637, -0.24292816, -0.14668012],
                             rtol=1e-6)
  np.testing.assert_allclose(train["true_prob"][:3], [0.00776524, 0.44368458, 0.36060396],
                             rtol=1e-5)


def test_synthetic_true_prob_follows_the_documented_formula(synthetic):
  params = embedded_datasets.synthetic_parameters()
  np.testing.assert_allclose(np.linalg.norm(params.u), 1) and np.testing.assert_allclose(
      np.linalg.norm(params.v), 1)
  assert abs(params.u @ params.v) < 1e-12
  data = both_splits(synthetic)
  x = data["image"].astype(np.float64)
  raw = 1.5 * x @ params.u + 5.0 * np.tanh(x @ params.w1 + params.b1) @ params.w2
  gate = x @ params.v > ndtri(0.7)
  expected = expit(np.where(gate, 0.4 * np.tanh(raw), raw - 3.0))
  np.testing.assert_array_equal(data["ambiguous"], gate)
  np.testing.assert_allclose(data["true_prob"], expected, rtol=1e-5, atol=1e-7)


def test_synthetic_positive_rate_and_label_calibration(synthetic):
  """Labels are Bernoulli(true_prob): overall and per bin, within 4 binomial standard errors."""
  data = both_splits(synthetic)
  p, y = data["true_prob"].astype(np.float64), data["label"]
  assert 0.25 < y.mean() < 0.35
  assert abs(y.mean() - p.mean()) < 4 * np.sqrt(np.sum(p * (1 - p))) / len(p)
  bins = np.minimum((p * 10).astype(int), 9)
  checked = 0
  for b in range(10):
    in_bin = bins == b
    if in_bin.sum() < 50:
      continue
    checked += 1
    tolerance = 4 * np.sqrt(np.sum(p[in_bin] * (1 - p[in_bin]))) / in_bin.sum()
    assert abs(y[in_bin].mean() - p[in_bin].mean()) < tolerance, f"bin {b}"
  assert checked >= 8  # The probabilities spread over (0, 1).


def test_synthetic_ambiguous_share_and_range(synthetic):
  data = both_splits(synthetic)
  ambiguous, p = data["ambiguous"], data["true_prob"]
  assert abs(ambiguous.mean() - 0.3) < 4 * np.sqrt(0.3 * 0.7 / len(p))
  assert np.all((p[ambiguous] > 0.4) & (p[ambiguous] < 0.6))
  assert abs(p[ambiguous].mean() - 0.48) < 0.01  # Near 0.5; the raw score leans negative.
  assert abs(data["label"][ambiguous].mean() - p[ambiguous].mean()) < 0.03
  # Outside the region the probabilities are spread out, a minority near 0.5.
  assert np.mean(np.abs(p[~ambiguous] - 0.5) <= 0.1) < 0.12
  assert np.mean(np.abs(p[~ambiguous] - 0.5)) > 0.3


@pytest.mark.parametrize("fraction", [0.0, 0.5])
def test_synthetic_ambiguous_fraction_is_controlled(fraction):
  x = np.random.default_rng(0).normal(size=(20_000, 16))
  p, ambiguous = embedded_datasets.synthetic_probability(x, fraction)
  assert abs(ambiguous.mean() - fraction) < 0.015
  assert np.all(np.abs(p[ambiguous] - 0.5) < 0.1)
  with pytest.raises(ValueError, match="ambiguous_fraction"):
    embedded_datasets.synthetic_probability(x, 1.5)


def test_synthetic_config_variant_loads_by_name(data_dir):
  """`binary_synthetic/amb0`: a builder config through the same pipeline path."""
  dataset = input_pipeline.load_dataset(data_config("binary_synthetic/amb0", data_dir),
                                        num_classes=1, seed=0)
  test = embedded_datasets.split_features("binary_synthetic/amb0", "test", data_dir)
  assert not test["ambiguous"].any() and 0.15 < test["label"].mean() < 0.23
  np.testing.assert_array_equal(dataset.test.labels, test["label"])
  # Same inputs as amb30 (the region changes the probabilities, not x).
  np.testing.assert_array_equal(
      test["image"], embedded_datasets.synthetic_split("test", 0.3)["image"])


# ------------------------------------------------------------------------------------------------
# breast_cancer.


def test_breast_cancer_split_labels_and_standardization(cancer, data_dir):
  from sklearn.datasets import load_breast_cancer
  raw = load_breast_cancer()
  train, test = cancer["train"], cancer["test"]
  assert train["image"].shape == (456, 30) and test["image"].shape == (113, 30)
  assert train["image"].dtype == np.float32
  assert int(train["label"].sum()) == 170 and int(test["label"].sum()) == 42  # Malignant = 1.
  assert (train["label"].sum() + test["label"].sum()) == np.sum(raw.target == 0) == 212
  rows = np.concatenate([train["index"], test["index"]])
  np.testing.assert_array_equal(np.sort(rows), np.arange(569))  # Disjoint, complete.
  np.testing.assert_array_equal(train["label"], 1 - raw.target[train["index"]])
  np.testing.assert_array_equal(test["label"], 1 - raw.target[test["index"]])
  # Standardized with the training split's statistics, the test split with the same ones.
  np.testing.assert_allclose(train["image"].mean(axis=0), 0, atol=1e-5)
  np.testing.assert_allclose(train["image"].std(axis=0), 1, rtol=1e-4)
  mean, std = raw.data[train["index"]].mean(axis=0), raw.data[train["index"]].std(axis=0)
  np.testing.assert_allclose(test["image"], (raw.data[test["index"]] - mean) / std,
                             rtol=1e-5, atol=1e-5)
  # Classes mixed along the stored order: the validation tail train[90%:] has both.
  assert 0.2 < train["label"][-46:].mean() < 0.55


def test_breast_cancer_builds_identically_twice(cancer, tmp_path):
  again = embedded_datasets.split_features("breast_cancer", "train", str(tmp_path))
  for key in again:
    np.testing.assert_array_equal(again[key], cancer["train"][key])


# ------------------------------------------------------------------------------------------------
# The pipeline: loading, class counts, order.


@pytest.mark.parametrize("name,sizes", [("binary_synthetic", (9000, 1000, 5000)),
                                        ("breast_cancer", (410, 46, 113))])
def test_load_dataset_order_matches_split_features(name, sizes, data_dir):
  dataset = input_pipeline.load_dataset(data_config(name, data_dir), num_classes=1, seed=0)
  assert (len(dataset.train), len(dataset.validation), len(dataset.test)) == sizes
  full_train = embedded_datasets.split_features(name, "train", data_dir)
  for split, spec in ((dataset.train, "train[:90%]"), (dataset.validation, "train[90%:]"),
                      (dataset.test, "test")):
    features = embedded_datasets.split_features(name, spec, data_dir)
    np.testing.assert_array_equal(split.images, features["image"])
    np.testing.assert_array_equal(split.labels, features["label"])
  # The validation slice is the tail of the stored training order.
  np.testing.assert_array_equal(dataset.validation.images, full_train["image"][sizes[0]:])
  # eval_batches walks the split in that order (the last batch padded and masked).
  batches = list(input_pipeline.eval_batches(dataset.test, batch_size=64))
  labels = np.concatenate([b["label"][b["mask"]] for b in batches])
  images = np.concatenate([b["image"][b["mask"]] for b in batches])
  test = embedded_datasets.split_features(name, "test", data_dir)
  np.testing.assert_array_equal(labels, test["label"])
  np.testing.assert_array_equal(images, test["image"])


def test_binary_class_counts(data_dir):
  """num_classes=1 (one logit) and 2 (softmax) both load; anything else is a one-line error."""
  one = input_pipeline.load_dataset(data_config("breast_cancer", data_dir), num_classes=1, seed=0)
  two = input_pipeline.load_dataset(data_config("breast_cancer", data_dir), num_classes=2, seed=0)
  np.testing.assert_array_equal(one.test.labels, two.test.labels)
  assert one.train.labels.dtype == np.int32 and one.train.images.dtype == np.float32
  with pytest.raises(UserError, match="num_classes=3 but dataset 'breast_cancer' has 2"):
    input_pipeline.load_dataset(data_config("breast_cancer", data_dir), num_classes=3, seed=0)


def test_label_noise_on_a_binary_task_flips_labels(data_dir):
  config = data_config("breast_cancer", data_dir)
  config.label_noise.rate = 0.2
  noisy = input_pipeline.load_dataset(config, num_classes=1, seed=0)
  clean = input_pipeline.load_dataset(data_config("breast_cancer", data_dir), num_classes=1, seed=0)
  assert set(np.unique(noisy.train.labels)) == {0, 1}
  assert 0.1 < np.mean(noisy.train.labels != clean.train.labels) < 0.3


def test_float_features_pass_normalize_unchanged(synthetic):
  features = jnp.asarray(synthetic["test"]["image"][:8])
  for name in ("binary_synthetic", "breast_cancer"):
    np.testing.assert_array_equal(input_pipeline.normalize(features, name), features)


def test_mlp_with_one_logit():
  model = models.get_model("mlp", num_classes=1)
  x = jnp.ones((4, 30))
  params = model.init(jax.random.key(0), x)
  assert model.apply(params, x).shape == (4, 1)


# ------------------------------------------------------------------------------------------------
# Configs.


@pytest.mark.parametrize("module,arg,name", [
    ("binary_synthetic", "", "binary_synthetic"),
    ("binary_synthetic", "amb50,runlocal", "binary_synthetic/amb50"),
    ("breast_cancer", "", "breast_cancer"),
])
def test_binary_configs(module, arg, name, data_dir):
  config = importlib.import_module(f"configs.{module}").get_config(arg)
  assert config.data.name == name and config.num_classes == 1 and config.model.name == "mlp"
  assert config.optimizer.name == "adam"
  assert config.num_steps == (20 if "runlocal" in arg else config.num_steps) > 0
  if "/" not in name:  # Variants load by name in test_synthetic_config_variant_loads_by_name.
    config.data.data_dir = data_dir
    dataset = input_pipeline.load_dataset(config.data, num_classes=config.num_classes, seed=0)
    assert len(dataset.train) >= config.batch_size


def test_unknown_synthetic_variant_is_rejected():
  module = importlib.import_module("configs.binary_synthetic")
  with pytest.raises(ValueError, match="unknown variant 'amb10'"):
    module.get_config("amb10")
