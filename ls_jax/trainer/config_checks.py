"""Validation of a resolved config before anything compiles: one `UserError` naming the field.

The methods' values and combinations come from the method table (`ls_jax.trainer.methods`)."""
import ml_collections

from ls_jax.trainer import default_config
from ls_jax.trainer import language_model
from ls_jax.trainer import methods
from ls_jax.trainer.errors import UserError

_CHOICES = {
    "data.augment": ("none", "crop_flip", "inception"),
    "data.label_noise.kind": ("symmetric", "asymmetric"),
    "compute_dtype": ("float32", "bfloat16"),
    "optimizer.name": ("adam", "sgd"),
    "optimizer.schedule": ("constant", "cosine", "step"),
    "parallelism": ("jit", "pmap"),
    "nonfinite_loss": ("stop", "skip"),
}


def validate(config: ml_collections.ConfigDict, *, reference: ml_collections.ConfigDict,
             device_count: int) -> None:
  """Checks keys against `reference` (ls_jax/trainer/default_config.py), types, ranges and choices."""
  fields, known = default_config.flatten(config), default_config.flatten(reference)
  unknown = sorted(set(fields) - set(known))
  if unknown:
    raise UserError(f"unknown config field {unknown[0]!r} (not in configs/default.py)")
  missing = sorted(set(known) - set(fields))
  if missing:
    raise UserError(f"config is missing field {missing[0]!r} (start from configs/default.py)")
  for name, value in fields.items():
    expected = known[name]
    if expected is None or value is None:
      continue
    numeric = isinstance(expected, (int, float)) and not isinstance(expected, bool)
    if numeric and (isinstance(value, bool) or not isinstance(value, (int, float))):
      raise UserError(f"config.{name}={value!r}: expected a number")
    if isinstance(expected, bool) and not isinstance(value, bool):
      raise UserError(f"config.{name}={value!r}: expected true or false")
    if isinstance(expected, str) and not isinstance(value, str):
      raise UserError(f"config.{name}={value!r}: expected a string")
    if isinstance(expected, tuple) and not (isinstance(value, (tuple, list)) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
      raise UserError(f"config.{name}={value!r}: expected a tuple of numbers, e.g. (0.5, 0.75)")
  from ls_jax import models  # pylint: disable=g-import-not-at-top
  for name, choices in {**_CHOICES, "model.name": models.MODEL_NAMES}.items():
    if fields[name] not in choices:
      raise UserError(f"config.{name}={fields[name]!r}: expected one of {', '.join(choices)}")

  def check(name: str, ok: bool, requirement: str) -> None:
    if not ok:
      raise UserError(f"config.{name}={fields[name]!r}: {requirement}")

  methods.check(config, lambda name, requirement: check(name, False, requirement),
                language_model=fields["model.name"] in models.LANGUAGE_MODELS,
                binary=fields["num_classes"] == 1)
  check("data.label_noise.rate", 0 <= fields["data.label_noise.rate"] <= 1, "must be in [0, 1]")
  check("num_classes", fields["num_classes"] >= 1 and isinstance(fields["num_classes"], int),
        "must be an integer >= 2, or 1 for a binary task (one sigmoid output)")
  if fields["num_classes"] == 1:
    check("model.name", fields["model.name"] not in models.LANGUAGE_MODELS,
          "a language model predicts a vocabulary: num_classes=1 (binary) does not apply")

  for name in ("batch_size", "eval_batch_size", "num_steps", "log_every_steps",
               "checkpoint_every_steps", "keep_checkpoints"):
    check(name, isinstance(fields[name], int) and fields[name] > 0, "must be a positive integer")
  check("eval_every_steps", isinstance(fields["eval_every_steps"], int)
        and fields["eval_every_steps"] >= 0, "must be an integer >= 0 (0: only at the end)")
  check("batch_size", fields["batch_size"] % device_count == 0,
        f"must be divisible by the {device_count} devices")
  check("optimizer.learning_rate", fields["optimizer.learning_rate"] > 0, "must be > 0")
  check("optimizer.weight_decay", fields["optimizer.weight_decay"] >= 0, "must be >= 0")
  check("optimizer.grad_clip_norm", fields["optimizer.grad_clip_norm"] >= 0, "must be >= 0")
  check("optimizer.warmup_steps", 0 <= fields["optimizer.warmup_steps"] < fields["num_steps"],
        "must be in [0, num_steps)")
  check("optimizer.decay_boundaries",
        all(0 < b < 1 for b in fields["optimizer.decay_boundaries"]),
        "fractions of num_steps, each in (0, 1)")
  check("data.augment", fields["data.augment"] != "inception" or not fields["data.in_memory"],
        "inception crops are host-side: set data.in_memory=False")
  for name in ("data.seq_len", "lm.num_layers", "lm.num_heads", "lm.embed_dim", "lm.mlp_dim",
               "lm.chunk_size"):
    check(name, isinstance(fields[name], int) and fields[name] > 0, "must be a positive integer")
  check("lm.embed_dim", fields["lm.embed_dim"] % fields["lm.num_heads"] == 0,
        f"must be divisible by lm.num_heads={fields['lm.num_heads']}")
  check("lm.z_loss", fields["lm.z_loss"] >= 0, "must be >= 0")
  check("model_axis_size", isinstance(fields["model_axis_size"], int)
        and fields["model_axis_size"] > 0 and device_count % fields["model_axis_size"] == 0,
        f"must be a positive integer that divides the {device_count} devices")
  if fields["model_axis_size"] > 1:
    check("model_axis_size", fields["model.name"] in models.LANGUAGE_MODELS,
          "a model axis splits a language model's vocabulary; classifiers use 1")
    check("model_axis_size", fields["num_classes"] % fields["model_axis_size"] == 0,
          f"must divide the vocabulary, num_classes={fields['num_classes']}")
  if fields["model.name"] in models.LANGUAGE_MODELS:
    language_model.check_config(fields, check)
