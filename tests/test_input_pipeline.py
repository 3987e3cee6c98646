"""The input pipeline: the TFDS path on embedded data, data order, sharding, errors."""
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import default
from ls_jax.trainer import input_pipeline
from ls_jax.trainer.errors import UserError


def data_config(**overrides) -> ml_collections.ConfigDict:
  config = default.get_config().data
  config.update(overrides)
  return config


def sort_rows(x: np.ndarray) -> np.ndarray:
  x = x.reshape(len(x), -1)
  return x[np.lexsort(x.T[::-1])]


def test_mnist1d_through_tfds_equals_the_mnist1d_package():
  """The TFDS-built dataset holds exactly the reference MNIST-1D (TFDS reorders the records)."""
  from mnist1d.data import get_dataset_args, make_dataset
  reference = make_dataset(get_dataset_args())
  dataset = input_pipeline.load_dataset(data_config(), num_classes=10, seed=0)
  assert len(dataset.train) == 3600 and len(dataset.validation) == 400 and len(dataset.test) == 1000
  train_images = np.concatenate([dataset.train.images, dataset.validation.images])
  train_labels = np.concatenate([dataset.train.labels, dataset.validation.labels])
  both = lambda x, y: np.concatenate([x.reshape(len(x), -1), y[:, None]], axis=1)
  np.testing.assert_allclose(sort_rows(both(train_images, train_labels)),
                             sort_rows(both(reference["x"], reference["y"])), rtol=1e-6)
  np.testing.assert_allclose(sort_rows(both(dataset.test.images, dataset.test.labels)),
                             sort_rows(both(reference["x_test"], reference["y_test"])), rtol=1e-6)


def test_digits_through_tfds_equals_sklearn():
  from sklearn.datasets import load_digits
  digits = load_digits()
  dataset = input_pipeline.load_dataset(
      data_config(name="sklearn_digits", train_split="train", validation_split="test"),
      num_classes=10, seed=0)
  assert dataset.train.images.shape[1:] == (8, 8, 1) and dataset.train.images.dtype == np.uint8
  ours = np.concatenate([dataset.train.images, dataset.test.images]).reshape(-1, 64)
  np.testing.assert_array_equal(sort_rows(ours), sort_rows(digits.data.astype(np.uint8)))


def test_a_split_is_decoded_once_per_process_read_only_and_again_when_rebuilt(
    tmp_path, monkeypatch):
  """A sweep worker reloads its data for every run: the second load decodes nothing, returns the
  same values, cannot be written into, and a dataset whose files change is decoded again."""
  import shutil  # pylint: disable=g-import-not-at-top
  config = data_config(name="sklearn_digits", train_split="train[:80%]",
                       validation_split="train[80%:]", data_dir=str(tmp_path))
  input_pipeline.load_dataset(config, num_classes=10, seed=0)  # Builds it in tmp_path.
  decoded = []
  records = input_pipeline._records  # pylint: disable=protected-access
  monkeypatch.setattr(input_pipeline, "_records",
                      lambda source: decoded.append(len(source)) or records(source))
  monkeypatch.setattr(input_pipeline, "_DECODED", {})
  first = input_pipeline.load_dataset(config, num_classes=10, seed=0)
  assert len(decoded) == 3  # Train, validation, test.
  second = input_pipeline.load_dataset(config, num_classes=10, seed=1)
  assert len(decoded) == 3
  np.testing.assert_array_equal(first.train.images, second.train.images)
  np.testing.assert_array_equal(first.train.labels, second.train.labels)
  with pytest.raises(ValueError, match="read-only"):
    second.train.images[0] = 0
  second.train.labels[0] = 0  # The labels are a copy (int32), free to change (label noise).
  assert input_pipeline.load_dataset(config, num_classes=10, seed=0).train.labels[0] == (
      first.train.labels[0])
  # Rebuilt: every file of the dataset gets a new modification time.
  for path in tmp_path.rglob("*array_record*"):
    shutil.copy(path, str(path) + ".tmp")
    pathlib.Path(str(path) + ".tmp").replace(path)
  input_pipeline.load_dataset(config, num_classes=10, seed=0)
  assert len(decoded) == 6


@pytest.mark.parametrize("num_examples,batch_size", [(10, 3), (100, 10), (7, 7)])
def test_each_epoch_visits_every_example_once(num_examples, batch_size):
  steps_per_epoch = num_examples // batch_size
  for epoch in range(3):
    seen = np.concatenate([
        input_pipeline.global_batch_indices(epoch * steps_per_epoch + s, num_examples=num_examples,
                                            batch_size=batch_size, seed=1)
        for s in range(steps_per_epoch)])
    assert len(seen) == len(set(seen.tolist())) == steps_per_epoch * batch_size
    assert seen.min() >= 0 and seen.max() < num_examples


def test_data_order_depends_only_on_seed_and_step():
  indices = lambda step, seed: input_pipeline.global_batch_indices(
      step, num_examples=1000, batch_size=10, seed=seed)
  np.testing.assert_array_equal(indices(123, 0), indices(123, 0))
  assert not np.array_equal(indices(123, 0), indices(123, 1))
  assert not np.array_equal(indices(5, 0), indices(105, 0))  # Same position, next epoch.


@pytest.mark.parametrize("process_count", [1, 2, 4])
def test_process_slices_tile_the_global_batch(process_count):
  split = input_pipeline.Split("train", labels=np.arange(64, dtype=np.int32),
                               images=np.arange(64 * 3, dtype=np.float32).reshape(64, 3))
  per_process = [list(input_pipeline.train_batches(split, start_step=4, num_steps=6, batch_size=16,
                                                   seed=3, process_index=p,
                                                   process_count=process_count))
                 for p in range(process_count)]
  single = list(input_pipeline.train_batches(split, start_step=4, num_steps=6, batch_size=16, seed=3))
  for step in range(2):
    np.testing.assert_array_equal(
        np.concatenate([batches[step]["label"] for batches in per_process]), single[step]["label"])


def test_eval_batches_cover_each_example_once_with_a_mask():
  split = input_pipeline.Split("test", labels=np.arange(23, dtype=np.int32),
                               images=np.zeros((23, 2), np.float32))
  batches = list(input_pipeline.eval_batches(split, batch_size=8))
  labels = np.concatenate([b["label"][b["mask"]] for b in batches])
  np.testing.assert_array_equal(labels, np.arange(23))
  assert all(len(b["label"]) == 8 for b in batches)


def test_missing_dataset_is_one_line_naming_it_and_the_data_dir(tmp_path):
  with pytest.raises(UserError, match=r"dataset 'mnist' is not prepared in data_dir .*tfds build"
                     ) as error:
    input_pipeline.load_dataset(data_config(name="mnist", data_dir=str(tmp_path)), num_classes=10,
                                seed=0)
  assert str(tmp_path) in str(error.value) and "\n" not in str(error.value)


def test_unknown_dataset_and_class_count_mismatch_are_user_errors():
  with pytest.raises(UserError, match="unknown dataset 'no_such_set'"):
    input_pipeline.load_dataset(data_config(name="no_such_set"), num_classes=10, seed=0)
  with pytest.raises(UserError, match="num_classes=100 but dataset 'mnist1d' has 10"):
    input_pipeline.load_dataset(data_config(), num_classes=100, seed=0)


def test_empty_split_is_a_user_error():
  with pytest.raises(UserError, match="empty|cannot open"):
    input_pipeline.load_dataset(data_config(validation_split="train[4000:]"), num_classes=10,
                                seed=0)


def test_label_noise_is_applied_once_with_the_realized_rate():
  clean = input_pipeline.load_dataset(data_config(), num_classes=10, seed=0)
  noisy_config = data_config()
  noisy_config.label_noise.rate = 0.4
  noisy = input_pipeline.load_dataset(noisy_config, num_classes=10, seed=0)
  changed = np.mean(noisy.train.labels != clean.train.labels)
  assert changed == pytest.approx(noisy.noise_report.realized_noise_rate)
  assert 0.35 < changed < 0.45
  np.testing.assert_array_equal(noisy.test.labels, clean.test.labels)  # Test labels stay clean.


def test_random_crop_flip_returns_windows_of_the_padded_image():
  images = jax.random.normal(jax.random.key(0), (16, 8, 8, 3))
  out = np.asarray(input_pipeline.random_crop_flip(jax.random.key(1), images, padding=2))
  padded = np.pad(np.asarray(images), ((0, 0), (2, 2), (2, 2), (0, 0)))
  offsets_seen = set()
  for i in range(16):
    matches = [(dy, dx, flip) for dy in range(5) for dx in range(5) for flip in (False, True)
               if np.array_equal(out[i], (lambda w: w[:, ::-1] if flip else w)(
                   padded[i, dy:dy + 8, dx:dx + 8]))]
    assert matches, f"output {i} is not a (flipped) window of the padded input"
    offsets_seen.add(matches[0])
  assert len(offsets_seen) > 4  # Random, not a fixed crop.


def test_normalize_standardizes_uint8_and_keeps_float():
  images = np.full((2, 4, 4, 3), 255, np.uint8)
  out = input_pipeline.normalize(jnp.asarray(images), "cifar10")
  np.testing.assert_allclose(out[0, 0, 0], (1 - np.array([0.4914, 0.4822, 0.4465]))
                             / np.array([0.2470, 0.2435, 0.2616]), rtol=1e-5)
  signal = jnp.linspace(-1, 1, 40)[None]
  np.testing.assert_array_equal(input_pipeline.normalize(signal, "mnist1d"), signal)


@pytest.mark.parametrize("train", [True, False])
def test_imagenet_preprocessing_gives_fixed_size_crops_reproducibly(train):
  preprocess = input_pipeline._imagenet_preprocess(train=train, image_size=32)  # pylint: disable=protected-access
  rng = np.random.default_rng(0)
  for shape in [(300, 200, 3), (5, 400, 3), (64, 64, 3), (48, 80, 1)]:
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    record = {"image": image if shape[-1] == 3 else image[..., 0]}
    out = preprocess(record, np.random.default_rng(1))
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, preprocess(record, np.random.default_rng(1)))
  if not train:  # A centre crop of a constant image is that constant.
    flat = {"image": np.full((100, 150, 3), 77, np.uint8)}
    assert np.all(preprocess(flat, np.random.default_rng(0)) == 77)
