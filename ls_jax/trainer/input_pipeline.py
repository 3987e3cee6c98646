"""Input pipeline: TFDS `data_source` in, deterministic step-indexed batches out.

Every dataset, real or embedded, is read with `tfds.data_source` (array_record files, random
access, no TensorFlow). The order of training examples is a pure function of
`(seed, step)` (`global_batch_indices`): epoch `e` is a fresh permutation seeded by `(seed, e)`,
and step `s` takes the next `batch_size` of it. Nothing else carries data-order state, so a run
resumed at step `s` sees exactly the batches an uninterrupted run would have, on any number of
processes, and there is no iterator state to checkpoint.

Two storage modes behind one interface (`Split.local_batch(indices)`):
* in memory (every dataset except ImageNet): the split is decoded once into NumPy arrays and a
  batch is one fancy-index gather (microseconds; MNIST-1D steps take ~1 ms, so a per-record
  loader would dominate). Augmentation (CIFAR crop+flip) then runs on device, inside the step.
* streaming (ImageNet): records are decoded and augmented on the host (inception crop) by a
  grain thread pool that prefetches whole batches ahead of the step.

Language-model data (a `tokens` feature of fixed-length windows, e.g. the embedded `pydoc_text`)
fits the same interface: `images` are the input tokens `window[:seq_len]` and `labels` the
next tokens `window[1:seq_len + 1]`, `[examples, seq_len]` int32 both; id 0 is padding. A
TFDS dataset of raw `text` (e.g. `tiny_shakespeare`) is tokenized at load time by
`ls_jax.trainer.tokenizer`, with a vocabulary of the `num_classes` most frequent words of its
training split, and each split's text is cut into windows of `seq_len + 1` tokens.

Multi-host: every process computes the same global indices and keeps its contiguous slice
(`process_index`), which `jax.make_array_from_process_local_data` reassembles into the global batch.
"""
import contextlib
import dataclasses
import fcntl
import functools
import io
import logging
import pathlib
import sys
from typing import Any, Callable, Iterator, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ls_jax import losses
from ls_jax import noise
from ls_jax.trainer import tokenizer
from ls_jax.trainer import errors
from ls_jax.trainer.errors import UserError

# Per-channel statistics of the training sets, used to standardize inputs on device.
_CIFAR10_MEAN, _CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
_CIFAR100_MEAN, _CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_NORMALIZATION = {
    "cifar10": (_CIFAR10_MEAN, _CIFAR10_STD),
    "cifar100": (_CIFAR100_MEAN, _CIFAR100_STD),
    "imagenet2012": (_IMAGENET_MEAN, _IMAGENET_STD),
}

DEFAULT_EMBEDDED_DATA_DIR = pathlib.Path("~/.cache/ls_jax/tfds").expanduser()


@dataclasses.dataclass
class Split:
  """One split of a dataset, addressable by example index.

  In-memory splits hold `images`/`labels` arrays; streaming splits hold a TFDS data source and
  a host-side `preprocess(record, rng) -> image` function.
  """
  name: str
  labels: Optional[np.ndarray]  # int32; None only for streaming splits (not read up front).
  images: Optional[np.ndarray] = None
  source: Any = None
  preprocess: Optional[Callable[[dict[str, Any], np.random.Generator], np.ndarray]] = None
  seed: int = 0

  def __len__(self) -> int:
    return len(self.images) if self.images is not None else len(self.source)

  def local_batch(self, indices: np.ndarray, step: int = 0) -> dict[str, np.ndarray]:
    if self.images is not None:
      return {"image": self.images[indices], "label": self.labels[indices]}
    records = [self.source[int(i)] for i in indices]
    # One generator per (seed, step): host augmentation reproduces on resume.
    rng = np.random.default_rng([self.seed, step])
    return {"image": np.stack([self.preprocess(r, rng) for r in records]),
            "label": np.asarray([r["label"] for r in records], np.int32)}


@dataclasses.dataclass
class Dataset:
  name: str
  num_classes: int
  train: Split
  validation: Split
  test: Split
  noise_report: Optional[noise.NoisyLabels] = None
  vocabulary: Optional[list[str]] = None  # Language models: the word of each token id.


def global_batch_indices(step: int, *, num_examples: int, batch_size: int, seed: int) -> np.ndarray:
  """Indices of the training examples in the global batch of `step` (drop-remainder epochs)."""
  steps_per_epoch = num_examples // batch_size
  epoch, position = divmod(step, steps_per_epoch)
  start = position * batch_size
  return _epoch_permutation(seed, epoch, num_examples)[start:start + batch_size]


def epoch_order(step: int, *, num_examples: int, batch_size: int, seed: int) -> np.ndarray:
  """The permutation that the batches of `step`'s epoch are cut from (see `take_batch`)."""
  return _epoch_permutation(seed, step // (num_examples // batch_size), num_examples)


def take_batch(data: dict[str, jax.Array], order: jax.Array, step: jax.Array,
               batch_size: int) -> dict[str, jax.Array]:
  """Inside the jitted step: the global batch of `step` from a device-resident split.

  `order` is `epoch_order(step, ...)`, so this selects exactly `global_batch_indices(step, ...)`.
  """
  steps_per_epoch = order.shape[0] // batch_size
  indices = jax.lax.dynamic_slice_in_dim(order, (step % steps_per_epoch) * batch_size, batch_size)
  return jax.tree.map(lambda x: jnp.take(x, indices, axis=0), data)


@functools.lru_cache(maxsize=2)
def _epoch_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  return np.random.default_rng([seed, epoch]).permutation(num_examples)


def process_slice(global_indices: np.ndarray, process_index: int, process_count: int) -> np.ndarray:
  return np.split(global_indices, process_count)[process_index]


def check_batch_fits(split: Split, batch_size: int) -> None:
  if len(split) < batch_size:
    raise UserError(f"the training split has {len(split)} examples, fewer than "
                    f"batch_size={batch_size}")


def train_batches(split: Split, *, start_step: int, num_steps: int, batch_size: int, seed: int,
                  process_index: int = 0, process_count: int = 1,
                  num_threads: int = 8) -> Iterator[dict[str, np.ndarray]]:
  """Process-local training batches for steps `start_step .. num_steps - 1`."""
  check_batch_fits(split, batch_size)

  def batch_at(step: int) -> dict[str, np.ndarray]:
    indices = global_batch_indices(step, num_examples=len(split), batch_size=batch_size, seed=seed)
    return split.local_batch(process_slice(indices, process_index, process_count), step)

  if split.images is not None:
    return (batch_at(step) for step in range(start_step, num_steps))
  import grain  # pylint: disable=g-import-not-at-top
  # Decoding JPEGs is the bottleneck: whole batches are built by a thread pool, ahead of use.
  steps = grain.MapDataset.range(start_step, num_steps).map(batch_at)
  return iter(steps.to_iter_dataset(grain.ReadOptions(num_threads=num_threads,
                                                      prefetch_buffer_size=2 * num_threads)))


def eval_batches(split: Split, *, batch_size: int, process_index: int = 0,
                 process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """Every example once, in order; the last batch is padded and carries a `mask`."""
  for start in range(0, len(split), batch_size):
    indices = np.arange(start, min(start + batch_size, len(split)))
    mask = np.ones(batch_size, bool)
    mask[len(indices):] = False
    indices = np.pad(indices, (0, batch_size - len(indices)))  # Padding repeats example 0.
    local = process_slice(indices, process_index, process_count)
    batch = split.local_batch(local)
    batch["mask"] = process_slice(mask, process_index, process_count)
    yield batch


# ------------------------------------------------------------------------------------------------
# Loading.


def load_dataset(data_config: ml_collections.ConfigDict, *, num_classes: int, seed: int) -> Dataset:
  """Opens the three splits named in `data_config`; errors are one-line `UserError`s."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from ls_jax.trainer import embedded_datasets  # pylint: disable=g-import-not-at-top  # Registers builders.

  name = data_config.name
  embedded = embedded_datasets.is_embedded(name)
  data_dir = data_config.data_dir or (str(DEFAULT_EMBEDDED_DATA_DIR) if embedded else None)
  try:
    builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
  except Exception as e:  # TFDS raises several types for unknown names.
    raise UserError(f"unknown dataset {name!r} ({type(e).__name__}); names are TFDS names such "
                    "as mnist, cifar10, imagenet2012, or the embedded "
                    f"{' / '.join(embedded_datasets.EMBEDDED_BUILDERS)}") from None
  if embedded:
    _prepare_embedded(builder)
  # TFDS logs a warning for a missing version folder before we can say so in one line.
  elif not _quietly(builder.is_prepared):
    raise UserError(
        f"dataset {name!r} is not prepared in data_dir {builder.data_dir_root}; prepare it once "
        f"with network access: `pip install tensorflow && tfds build {name} "
        f"--file_format=array_record --data_dir={builder.data_dir_root}` (or set "
        "--config.data.data_dir to where it is)")
  features = builder.info.features
  language_model = "tokens" in features or "text" in features
  if not language_model and ("image" not in features or "label" not in features):
    raise UserError(f"dataset {name!r} needs 'image' and 'label' features (or 'tokens' or "
                    f"'text'), it has {sorted(features.keys())}")
  vocabulary = None
  if "text" in features and "tokens" not in features:
    dataset_classes = None  # The vocabulary is built from the training text when it is read.
  elif language_model:
    vocabulary = list(builder.info.metadata["vocabulary"])
    dataset_classes = len(vocabulary)
    window = features["tokens"].shape[0]
    if data_config.seq_len + 1 > window:
      raise UserError(f"config.data.seq_len={data_config.seq_len}: dataset {name!r} has windows "
                      f"of {window} tokens, so seq_len must be at most {window - 1}")
  else:
    # A ClassLabel knows its class count; a plain integer label is range-checked when loaded.
    dataset_classes = getattr(features["label"], "num_classes", None)
  # num_classes=1: a binary task with one logit (P(y = 1)); its labels are the classes 0 and 1.
  label_classes = 2 if num_classes == 1 else num_classes
  if dataset_classes is not None and dataset_classes != label_classes:
    raise UserError(f"config.num_classes={num_classes} but dataset {name!r} has "
                    f"{dataset_classes} classes")

  def open_split(split_name: str, purpose: str) -> Split:
    try:
      source = tfds.data_source(name, split=split_name, data_dir=data_dir, download=False,
                                builder_kwargs={"file_format": "array_record"})
    except Exception as e:
      raise UserError(f"cannot open split {split_name!r} of dataset {name!r} for {purpose}: "
                      f"{errors.one_line(e)}") from None
    if len(source) == 0:
      raise UserError(f"split {split_name!r} of dataset {name!r} ({purpose}) is empty")
    if not data_config.in_memory:
      return Split(split_name, labels=None, source=source, seed=seed,
                   preprocess=_imagenet_preprocess(
                       train=purpose == "training" and data_config.augment == "inception",
                       image_size=data_config.image_size))
    if language_model:  # Inputs and next-token targets of each window.
      if "tokens" in features:
        tokens = _decoded_columns(source, builder.data_dir, split_name, ("tokens",))[0]
      else:
        tokens = text_windows(_records(source), purpose)
      images, labels = tokens[:, :data_config.seq_len], tokens[:, 1:data_config.seq_len + 1]
    else:
      images, labels = _decoded_columns(source, builder.data_dir, split_name, ("image", "label"))
    try:
      losses.check_labels(labels, label_classes)
    except ValueError as e:
      raise UserError(f"dataset {name!r}, split {split_name!r}: {e}") from None
    return Split(split_name, labels=labels.astype(np.int32), images=images.astype(
        np.int32) if language_model else images)

  def text_windows(records, purpose: str) -> np.ndarray:
    nonlocal vocabulary
    words = tokenizer.split_words("\n".join(
        r["text"].decode("utf-8") if isinstance(r["text"], bytes) else str(r["text"])
        for r in records))
    if purpose == "training":  # Read first: the vocabulary of the other splits too.
      vocabulary = tokenizer.build_vocabulary(words, num_classes)
    ids = tokenizer.Tokenizer(vocabulary).encode_words(words)
    return tokenizer.token_windows(np.asarray(ids, np.int32), data_config.seq_len + 1)

  train = open_split(data_config.train_split, "training")
  validation = open_split(data_config.validation_split, "validation")
  test = open_split(data_config.test_split, "test")

  noise_report = None
  if data_config.label_noise.rate > 0:
    if train.labels is None:
      raise UserError("data.label_noise needs an in-memory training split "
                      "(data.in_memory=True)")
    inject = (noise.symmetric_label_noise if data_config.label_noise.kind == "symmetric"
              else noise.asymmetric_label_noise)
    noise_report = inject(train.labels, label_classes, data_config.label_noise.rate, seed=seed)
    train.labels = noise_report.labels.astype(np.int32)
  return Dataset(name, num_classes, train, validation, test, noise_report, vocabulary)


def _records(source) -> list[dict[str, Any]]:
  return [source[i] for i in range(len(source))]


# Decoded in-memory splits of this process, by their files (path, size, mtime) and split name.
_DECODED: dict[tuple, tuple[np.ndarray, ...]] = {}


def _decoded_columns(source, dataset_dir: str, split_name: str,
                     names: tuple[str, ...]) -> tuple[np.ndarray, ...]:
  """The features `names` of every record of a split, stacked; decoded once per process.

  A sweep worker (`ls_jax.experiments.sweep_worker`) trains many runs on the same data, and
  decoding MNIST-1D's 5000 records takes about 0.3 s, a fifth of a 2000-step run. The arrays are
  read-only, so no run can change what the next one reads; a dataset rebuilt on disk (other sizes
  or times) is decoded again.
  """
  directory = pathlib.Path(dataset_dir)
  key = None
  if directory.is_dir():  # Else not files of ours to key on (TFDS's mock data): not kept.
    files = tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                         for p in directory.iterdir() if p.is_file()))
    key = (str(directory), files, split_name, names)
  if key in _DECODED:
    return _DECODED[key]
  records = _records(source)
  columns = tuple(np.stack([np.asarray(r[name]) for r in records]) for name in names)
  for column in columns:
    column.setflags(write=False)
  if key is not None:
    _DECODED[key] = columns
  return columns


def _quietly(function):
  """`function()` with absl's warnings silenced."""
  logger = logging.getLogger("absl")
  previous = logger.level
  logger.setLevel(max(logging.ERROR, previous))
  try:
    return function()
  finally:
    logger.setLevel(previous)


def _prepare_embedded(builder) -> None:
  """Generates an embedded dataset once; a file lock keeps concurrent processes from racing."""
  if _quietly(builder.is_prepared):
    return
  root = pathlib.Path(builder.data_dir_root)
  root.mkdir(parents=True, exist_ok=True)
  with open(root / f".{builder.name}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not _quietly(builder.is_prepared):
      # One line of our own instead of TFDS's messages, absl warnings and progress bars (raw
      # escape codes in a log): the build takes seconds and happens once per machine.
      import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
      print(f"ls_jax: building the embedded dataset {builder.name} in {root} (once)",
            file=sys.stderr, flush=True)
      tfds.disable_progress_bar()
      with contextlib.redirect_stdout(io.StringIO()):
        _quietly(builder.download_and_prepare)


# ------------------------------------------------------------------------------------------------
# Preprocessing. Host side only for streaming ImageNet; everything else on device, in the step.


def _imagenet_preprocess(*, train: bool, image_size: int):
  """Inception-style random crop + flip for training; resize + center crop for evaluation."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  def preprocess(record: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    image = record["image"]
    image = Image.open(io.BytesIO(image)) if isinstance(image, bytes) else Image.fromarray(image)
    image = image.convert("RGB")
    width, height = image.size
    if train:
      # Szegedy et al. 2015: area in [8%, 100%], aspect ratio in [3/4, 4/3]; 10 tries, then center.
      for _ in range(10):
        area = width * height * rng.uniform(0.08, 1.0)
        aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        w, h = int(round(np.sqrt(area * aspect))), int(round(np.sqrt(area / aspect)))
        if 0 < w <= width and 0 < h <= height:
          left, top = rng.integers(0, width - w + 1), rng.integers(0, height - h + 1)
          break
      else:
        w = h = min(width, height)
        left, top = (width - w) // 2, (height - h) // 2
      image = image.resize((image_size, image_size), Image.BILINEAR,
                           box=(left, top, left + w, top + h))
      if rng.random() < 0.5:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
    else:
      # Resize the short side to image_size / 0.875 (256 for 224), then center crop.
      scale = image_size / 0.875 / min(width, height)
      image = image.resize((max(1, round(width * scale)), max(1, round(height * scale))),
                           Image.BILINEAR)
      left = (image.size[0] - image_size) // 2
      top = (image.size[1] - image_size) // 2
      image = image.crop((left, top, left + image_size, top + image_size))
    return np.asarray(image, np.uint8)

  return preprocess


def normalize(images: jax.Array, dataset_name: str, dtype=jnp.float32) -> jax.Array:
  """uint8 images -> [0, 1] and per-channel standardization; float inputs pass through."""
  if not jnp.issubdtype(images.dtype, jnp.integer):
    return images.astype(dtype)
  images = images.astype(jnp.float32) / 255.0
  if dataset_name in _NORMALIZATION:
    mean, std = _NORMALIZATION[dataset_name]
    images = (images - jnp.asarray(mean)) / jnp.asarray(std)
  return images.astype(dtype)


def random_crop_flip(rng: jax.Array, images: jax.Array, padding: int = 4) -> jax.Array:
  """CIFAR augmentation (He et al. 2016): zero-pad by 4, random 32x32 crop, random h-flip."""
  batch, height, width, _ = images.shape
  crop_rng, flip_rng = jax.random.split(rng)
  offsets = jax.random.randint(crop_rng, (batch, 2), 0, 2 * padding + 1)
  flips = jax.random.bernoulli(flip_rng, 0.5, (batch,))
  padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))

  def crop_one(image, offset, flip):
    crop = jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (height, width, image.shape[-1]))
    return jnp.where(flip, crop[:, ::-1], crop)

  return jax.vmap(crop_one)(padded, offsets, flips)
