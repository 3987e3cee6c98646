"""The config fields that every experiment shares, their defaults and what each one means.

This is the reference every config is validated against before anything compiles (unknown fields,
wrong types, out-of-range values; `ls_jax/trainer/config_checks.py`). It lives in the package so that an
installed ls_jax needs no `configs/` folder on the path; `configs/default.py` re-exports it, and
each experiment family's config file starts from `default.get_config()`. Changing the method is
a field: see configs/default.py for the command lines.
"""
from typing import Any

import ml_collections

# Fields that change neither the trained model nor its metrics: where the run's files go, how often
# it logs, evaluates or checkpoints, how it batches evaluation and spreads over devices. A resumed
# run may change them, a sweep reuses a finished run across them (`scripts/sweep.py`), and
# summaries group runs across them (`ls_jax.experiments.runs`).
BOOKKEEPING_FIELDS = ("data.data_dir", "log_every_steps", "eval_every_steps",
                      "checkpoint_every_steps", "keep_checkpoints", "parallelism",
                      "eval_batch_size")


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0  # Seeds init, data order, augmentation, mixing and label noise.
  config.num_classes = 10  # For a language model, the vocabulary size.

  config.data = ml_collections.ConfigDict()
  config.data.name = "mnist1d"  # A TFDS name, or an embedded one: mnist1d, sklearn_digits.
  config.data.data_dir = ml_collections.FieldReference(None, field_type=str)  # None: TFDS default.
  # Calibration (temperature scaling) is fitted on validation, never on test: hold out a slice.
  config.data.train_split = "train[:90%]"
  config.data.validation_split = "train[90%:]"
  config.data.test_split = "test"
  config.data.in_memory = True  # False streams records (ImageNet-sized data).
  config.data.augment = "none"  # none | crop_flip (CIFAR, on device) | inception (host).
  config.data.image_size = 224  # Streaming (ImageNet) crop size.
  config.data.label_noise = ml_collections.ConfigDict({"rate": 0.0, "kind": "symmetric"})
  # Language models: tokens per training sequence; windows of the data are cut to seq_len + 1.
  config.data.seq_len = 64

  config.model = ml_collections.ConfigDict({"name": "cnn1d"})
  config.compute_dtype = "float32"  # bfloat16: bf16 activations, fp32 params and loss math.

  # Next-token language models (model.name=transformer_lm, num_classes = vocabulary size): the
  # decoder's size, and the fused output layer + loss (`losses.linear_smoothed_cross_entropy`).
  config.lm = ml_collections.ConfigDict()
  config.lm.num_layers = 2
  config.lm.num_heads = 4
  config.lm.embed_dim = 128
  config.lm.mlp_dim = 512
  config.lm.tie_embedding = True  # Output layer = token embedding transposed (Press & Wolf 2017).
  config.lm.z_loss = 0.0  # Weight of logsumexp(z)^2 per token (PaLM, T5X use 1e-4).
  config.lm.chunk_size = 2048  # Vocabulary columns per chunk of the fused loss (its default).

  config.loss = ml_collections.ConfigDict()
  config.loss.label_smoothing = 0.0
  config.loss.confidence_penalty = 0.0  # beta in CE - beta * H(p).
  config.loss.focal_gamma = 0.0  # gamma in -(1 - p_y)^gamma log p_y (Lin et al. 2017).
  config.mixup = ml_collections.ConfigDict({"alpha": 0.0})
  config.cutmix = ml_collections.ConfigDict({"alpha": 0.0})
  # Fine-tuning: the workdir of a finished run whose final weights (and batch statistics) start
  # this run, with a fresh optimizer and step ("": off). `ls_jax/trainer/finished_runs.py`.
  config.init_from = ""
  # Knowledge distillation (Hinton et al. 2015) from a finished run in `teacher_workdir` ("": off):
  # (1 - weight) * the loss above + weight * temperature^2 * KL(teacher_T || student_T).
  config.distill = ml_collections.ConfigDict()
  config.distill.teacher_workdir = ""
  config.distill.temperature = 1.0
  config.distill.weight = 0.5

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = "adam"  # adam | sgd
  config.optimizer.learning_rate = 1e-3
  config.optimizer.momentum = 0.9  # sgd only.
  config.optimizer.nesterov = False
  config.optimizer.weight_decay = 0.0  # On kernels only (ndim > 1), not on biases or BN scales.
  config.optimizer.grad_clip_norm = 0.0  # 0: no clipping.
  config.optimizer.schedule = "constant"  # constant | cosine | step
  config.optimizer.warmup_steps = 0
  config.optimizer.decay_boundaries = (0.5, 0.75)  # step schedule: fractions of num_steps.
  config.optimizer.decay_factor = 0.1

  config.batch_size = 128  # Global, over all devices and processes.
  config.eval_batch_size = 1000
  config.num_steps = 1000
  config.parallelism = "jit"  # jit (NamedSharding over a data mesh) | pmap
  # Devices on the mesh's `model` axis (jit only): > 1 splits a language model's vocabulary
  # (embedding, output layer, fused loss) over them; the other axis, `data`, splits the batch.
  config.model_axis_size = 1
  config.nonfinite_loss = "stop"  # stop | skip (skip the update and count it)

  config.log_every_steps = 100
  # Validation accuracy, NLL and ECE into metrics.jsonl / TensorBoard (`val/...`) every this many
  # steps, so a long run shows its curves; 0: only at the end.
  config.eval_every_steps = 0
  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 3
  return config


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
  """`{"a": {"b": 1}}` (dicts or ConfigDicts) -> `{"a.b": 1}`; lists become tuples, so that a config
  read back from JSON compares equal to the one it was written from."""
  if isinstance(config, (dict, ml_collections.ConfigDict)):
    flat = {}
    for key in config.keys():
      flat.update(flatten(config[key], f"{prefix}{key}."))
    return flat
  return {prefix[:-1]: tuple(config) if isinstance(config, list) else config}


def resolved(config: Any) -> dict[str, Any]:
  """A (finished run's) config, flat, with the default of every field it lacks: a field added after
  the run did not exist, so it changed nothing in that run."""
  return {**flatten(get_config()), **flatten(config)}
