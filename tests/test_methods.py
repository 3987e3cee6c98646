"""Tests for the method table (`ls_jax.trainer.methods`): its consistency with the config
defaults, each method's loss against a hand-written formula (NumPy float64 or library functions),
run labels, config validation of values and combinations, and that one new `Method` entry is all
that labels, activation and validation need.
"""
import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import default, lm_pydoc
from ls_jax import losses
from ls_jax.trainer import config_checks, default_config, errors, methods
from test_focal_loss import np_focal
from test_losses import (np_entropy, np_log_softmax, np_smoothed_targets, np_soft_cross_entropy,
                         np_softmax, random_inputs)

NUM_CLASSES = 10


def config_with(**overrides) -> ml_collections.ConfigDict:
  """The default config with dotted fields set: `config_with(**{"loss.focal_gamma": 2.0})`."""
  config = default_config.get_config()
  config.num_classes = NUM_CLASSES
  config.update_from_flattened_dict(overrides)
  return config


def get(config, field):
  node = config
  for key in field.split("."):
    node = node[key]
  return node


def validate(config, reference=None):
  config_checks.validate(config, reference=reference or default.get_config(), device_count=1)


# --- The table itself. ---

def test_every_field_exists_in_the_defaults_and_the_default_is_off():
  defaults = default_config.get_config()
  for method in methods.METHODS:
    assert get(defaults, method.field) == method.off, method.name
    assert type(get(defaults, method.field)) is type(method.off), method.name
    for field, valid, _ in method.checks:
      get(defaults, field)  # Exists (KeyError otherwise) ...
      assert valid(get(defaults, field)), (method.name, field)  # ... and its default is valid.
  assert methods.active(defaults) == ()
  assert methods.label(defaults) == methods.BASELINE == "CE"


def test_names_and_fields_are_unique_and_indexes_agree():
  names = [m.name for m in methods.METHODS]
  assert len(set(names)) == len(names)
  assert len(set(methods.FIELDS)) == len(methods.FIELDS)
  assert methods.FIELDS == tuple(m.field for m in methods.METHODS)
  assert methods.BY_NAME == {m.name: m for m in methods.METHODS}
  assert methods.BASELINE not in methods.BY_NAME


def test_combinations_are_symmetric_and_name_existing_methods():
  for method in methods.METHODS:
    for other in method.combines_with:
      assert other in methods.BY_NAME, (method.name, other)
      assert other != method.name
      assert method.name in methods.BY_NAME[other].combines_with, (method.name, other)


def test_roles_have_their_callable_and_library_functions_live_in_the_library():
  for method in methods.METHODS:
    assert method.role in (methods.LOSS, methods.TARGETS)
    if method.role == methods.LOSS:
      assert method.loss is not None and method.mix is None, method.name
    else:
      assert method.mix is not None and method.loss is None, method.name
    module = method.library_function.__module__
    assert module.startswith("ls_jax.") and not module.startswith(
        ("ls_jax.trainer", "ls_jax.experiments")), (method.name, module)
  assert methods.LABEL_SMOOTHING.language_models


def _example_config(method):
  """The default config with `method` alone at its typical value (`Method.example`)."""
  if method.example is None:  # KD: a teacher run, at the distill.* defaults.
    assert method.name == "KD"
    return config_with(**{method.field: "runs/teacher"})
  return config_with(**{method.field: method.example})


@pytest.mark.parametrize("name", [m.name for m in methods.METHODS])
def test_each_method_alone_at_its_example_value_validates_and_trains(name):
  method = methods.BY_NAME[name]
  if not hasattr(method, "example"):
    pytest.skip("Method has no `example` field")
  config = _example_config(method)
  assert methods.active(config) == (method,)
  assert method.example is None or method.example != method.off
  validate(config)
  assert methods.label(config).startswith(f"{name} ")
  logits, labels = random_inputs(9, (8,), NUM_CLASSES)
  inputs, targets = methods.mix_batch(jax.random.key(2), jnp.ones((8, 4, 4, 1)),
                                      jnp.asarray(labels), config)
  assert (targets is None) == (method.role == methods.LOSS)
  teacher = logits[::-1] if name == "KD" else None
  loss = methods.per_example_loss(logits, labels, targets, config, teacher)
  assert loss.shape == (8,) and np.all(np.isfinite(loss))


# --- Each method's loss against a hand-written formula. ---

def _loss(config, logits, labels, teacher_logits=None):
  return np.asarray(methods.per_example_loss(logits, labels, None, config, teacher_logits),
                    np.float64)


def _assert_close(actual, expected):
  np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, -0.2])
def test_label_smoothing_loss_is_numpy_smoothed_cross_entropy(label_smoothing):
  logits, labels = random_inputs(1, (16,), NUM_CLASSES)
  config = config_with(**{"loss.label_smoothing": label_smoothing})
  assert methods.loss_method(config) is methods.LABEL_SMOOTHING
  expected = np_soft_cross_entropy(
      logits.astype(np.float64), np_smoothed_targets(labels, NUM_CLASSES, label_smoothing))
  _assert_close(_loss(config, logits, labels), expected)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_confidence_penalty_loss_is_smoothed_cross_entropy_minus_beta_entropy(label_smoothing):
  logits, labels = random_inputs(2, (16,), NUM_CLASSES)
  beta = 0.3
  config = config_with(**{"loss.confidence_penalty": beta, "loss.label_smoothing": label_smoothing})
  assert methods.loss_method(config).name == "CP"
  z = logits.astype(np.float64)
  expected = (np_soft_cross_entropy(z, np_smoothed_targets(labels, NUM_CLASSES, label_smoothing))
              - beta * np_entropy(z))
  _assert_close(_loss(config, logits, labels), expected)
  library = (losses.smoothed_cross_entropy(logits, labels, label_smoothing)
             - beta * losses.entropy(logits))
  _assert_close(_loss(config, logits, labels), library)


def test_focal_loss_is_the_numpy_focal_formula():
  logits, labels = random_inputs(3, (16,), NUM_CLASSES)
  config = config_with(**{"loss.focal_gamma": 2.0})
  assert methods.loss_method(config).name == "Focal"
  _assert_close(_loss(config, logits, labels), np_focal(logits.astype(np.float64), labels, 2.0))


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_distillation_loss_is_hintons_formula(label_smoothing):
  logits, labels = random_inputs(4, (16,), NUM_CLASSES)
  teacher, _ = random_inputs(5, (16,), NUM_CLASSES, scale=5.0)
  temperature, weight = 4.0, 0.7
  config = config_with(**{"distill.teacher_workdir": "runs/teacher",
                          "distill.temperature": temperature, "distill.weight": weight,
                          "loss.label_smoothing": label_smoothing})
  assert methods.loss_method(config).name == "KD"
  s, t = logits.astype(np.float64), teacher.astype(np.float64)
  hard = np_soft_cross_entropy(s, np_smoothed_targets(labels, NUM_CLASSES, label_smoothing))
  p_teacher = np_softmax(t / temperature)
  kl = (p_teacher * (np_log_softmax(t / temperature) - np_log_softmax(s / temperature))).sum(-1)
  expected = (1 - weight) * hard + weight * temperature**2 * kl
  _assert_close(_loss(config, logits, labels, teacher), expected)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_mixup_loss_is_soft_cross_entropy_on_mixed_targets(label_smoothing):
  # Inputs e_i (row i of the identity): the mixed inputs are lam e_i + (1 - lam) e_pi(i), which
  # reveal lam and the partner, so the targets must be mixed_inputs @ smoothed_one_hot(labels).
  batch = 16
  inputs = jnp.eye(batch, dtype=jnp.float32)
  logits, labels = random_inputs(6, (batch,), NUM_CLASSES)
  config = config_with(**{"mixup.alpha": 0.2, "loss.label_smoothing": label_smoothing})
  assert methods.mixing_method(config).name == "Mixup"
  mixed, targets = methods.mix_batch(jax.random.key(0), inputs, jnp.asarray(labels), config)
  mixed = np.asarray(mixed, np.float64)
  assert mixed.shape == inputs.shape
  expected_targets = mixed @ np_smoothed_targets(labels, NUM_CLASSES, label_smoothing)
  np.testing.assert_allclose(targets, expected_targets, rtol=1e-6, atol=1e-7)
  loss = methods.per_example_loss(logits, labels, targets, config)
  # Smoothed once, inside the targets: the loss is plain soft-target CE on them.
  _assert_close(np.asarray(loss), np_soft_cross_entropy(logits.astype(np.float64),
                                                        expected_targets))


@pytest.mark.parametrize("shape", ["signals", "images"])
def test_cutmix_targets_follow_the_pasted_fraction(shape):
  batch, length = 8, 32
  labels = jnp.asarray(random_inputs(7, (batch,), NUM_CLASSES)[1])
  config = config_with(**{"cutmix.alpha": 1.0, "loss.label_smoothing": 0.1})
  if shape == "signals":  # (N, L): row i holds the value i everywhere.
    inputs = jnp.broadcast_to(jnp.arange(batch, dtype=jnp.float32)[:, None], (batch, length))
  else:  # (N, H, W, C=N): every pixel of image i is the one-hot e_i.
    inputs = jnp.broadcast_to(jnp.eye(batch)[:, None, None, :], (batch, 8, 8, batch))
  mixed, targets = methods.mix_batch(jax.random.key(1), inputs, labels, config)
  assert mixed.shape == inputs.shape and mixed.dtype == inputs.dtype
  mixed = np.asarray(mixed)
  if shape == "signals":  # The share of each example's values in row i.
    shares = (mixed[:, :, None] == np.arange(batch)).mean(axis=1)
  else:
    shares = mixed.mean(axis=(1, 2))
  assert 0 < shares.max(axis=1).min() and np.all((shares > 0).sum(axis=1) <= 2)
  expected = shares @ np_smoothed_targets(labels, NUM_CLASSES, 0.1)
  np.testing.assert_allclose(targets, expected, rtol=1e-6, atol=1e-7)


def test_without_mixing_the_batch_is_unchanged_and_targets_are_none():
  inputs = jnp.ones((4, 3))
  out, targets = methods.mix_batch(jax.random.key(0), inputs, jnp.zeros(4, jnp.int32),
                                   config_with(**{"loss.label_smoothing": 0.1}))
  assert out is inputs and targets is None


# --- Labels and old configs. ---

@pytest.mark.parametrize("overrides, expected", [
    ({}, "CE"),
    ({"loss.label_smoothing": 0.1, "mixup.alpha": 0.2}, "LS 0.1 + Mixup 0.2"),
    ({"loss.focal_gamma": 2.0}, "Focal 2.0"),
    ({"loss.confidence_penalty": 0.5, "loss.label_smoothing": 0.1}, "LS 0.1 + CP 0.5"),
    ({"data.label_noise.rate": 0.2}, "20% symmetric noise: CE"),
    ({"data.label_noise.rate": 0.4, "data.label_noise.kind": "asymmetric",
      "loss.label_smoothing": 0.1}, "40% asymmetric noise: LS 0.1"),
    ({"distill.teacher_workdir": "runs/t", "distill.temperature": 4.0, "distill.weight": 0.9},
     "KD from t T=4.0 w=0.9"),
    ({"distill.teacher_workdir": "runs/teachers/ls0.1_seed3/", "loss.label_smoothing": 0.1},
     "LS 0.1 + KD from ls0.1 T=1.0 w=0.5"),
])
def test_label(overrides, expected):
  assert methods.label(config_with(**overrides)) == expected


def test_value_resolves_fields_missing_from_an_old_runs_config_to_their_defaults():
  old = config_with(**{"loss.label_smoothing": 0.1}).to_dict()  # A finished run's config.json.
  del old["loss"]["focal_gamma"]
  del old["distill"]
  assert methods.value(old, "loss.focal_gamma") == 0.0
  assert methods.value(old, "distill.teacher_workdir") == ""
  assert methods.value(old, "distill.temperature") == 1.0
  assert methods.value(old, "loss.label_smoothing") == 0.1
  assert [m.name for m in methods.active(old)] == ["LS"]
  assert methods.label(old) == "LS 0.1"


def test_value_of_a_field_unknown_to_the_defaults_raises_a_lookup_error():
  with pytest.raises((LookupError, ValueError), match="no_such_field"):
    methods.value(default_config.get_config(), "loss.no_such_field")


# --- Config validation: values and combinations. ---

def _rejected(config, field):
  with pytest.raises(errors.UserError) as raised:
    validate(config)
  message = str(raised.value)
  assert "\n" not in message
  assert errors.one_line(raised.value) == message
  assert message.startswith(f"config.{field}="), message
  return message


@pytest.mark.parametrize("overrides, field", [
    ({"loss.focal_gamma": -0.5}, "loss.focal_gamma"),
    ({"loss.confidence_penalty": -0.1}, "loss.confidence_penalty"),
    ({"mixup.alpha": -1.0}, "mixup.alpha"),
    ({"cutmix.alpha": -1.0}, "cutmix.alpha"),
    ({"distill.temperature": 0.0}, "distill.temperature"),
    ({"distill.weight": 1.5}, "distill.weight"),
])
def test_bad_method_values_are_rejected(overrides, field):
  _rejected(config_with(**overrides), field)


@pytest.mark.parametrize("overrides, field, names", [
    ({"loss.focal_gamma": 2.0, "loss.label_smoothing": 0.1}, "loss.focal_gamma", ("Focal", "LS")),
    ({"loss.focal_gamma": 2.0, "mixup.alpha": 0.2}, "mixup.alpha", ("Mixup", "Focal")),
    ({"loss.focal_gamma": 2.0, "loss.confidence_penalty": 0.1}, "loss.focal_gamma",
     ("Focal", "CP")),
    ({"loss.confidence_penalty": 0.1, "mixup.alpha": 0.2}, "mixup.alpha", ("Mixup", "CP")),
    ({"mixup.alpha": 0.2, "cutmix.alpha": 1.0}, "cutmix.alpha", ("CutMix", "Mixup")),
    ({"distill.teacher_workdir": "runs/t", "mixup.alpha": 0.2}, "distill.teacher_workdir",
     ("KD", "Mixup")),
    ({"distill.teacher_workdir": "runs/t", "loss.focal_gamma": 2.0}, "distill.teacher_workdir",
     ("KD", "Focal")),
])
def test_incompatible_methods_are_rejected(overrides, field, names):
  message = _rejected(config_with(**overrides), field)
  assert all(name in message for name in names), message


@pytest.mark.parametrize("overrides", [
    {"loss.label_smoothing": 0.1, "mixup.alpha": 0.2},
    {"loss.label_smoothing": 0.1, "cutmix.alpha": 1.0},
    {"loss.label_smoothing": 0.1, "distill.teacher_workdir": "runs/t"},
    {"loss.label_smoothing": 0.1, "loss.confidence_penalty": 0.3},
    {"loss.focal_gamma": 2.0},
    {"loss.focal_gamma": 0.5},
])
def test_compatible_methods_are_accepted(overrides):
  validate(config_with(**overrides))


def _language_model_config(**overrides):
  config = lm_pydoc.get_config()
  config.update_from_flattened_dict(overrides)
  return config


@pytest.mark.parametrize("overrides, field", [
    ({"loss.focal_gamma": 2.0}, "loss.focal_gamma"),
    ({"loss.confidence_penalty": 0.1}, "loss.confidence_penalty"),
    ({"mixup.alpha": 0.2}, "mixup.alpha"),
])
def test_language_models_reject_methods_the_next_token_loss_lacks(overrides, field):
  message = _rejected(_language_model_config(**overrides), field)
  assert "language model" in message


def test_language_models_accept_label_smoothing():
  validate(_language_model_config(**{"loss.label_smoothing": 0.1}))


# --- One new entry in the table is enough. ---

def test_a_new_method_needs_only_its_table_entry(monkeypatch):
  """PolyLoss-1 (Leng et al. 2022): CE + epsilon * (1 - p_y), added as one `Method` plus its
  config field, and picked up by `active`, `label`, `check`, validation and the loss."""
  def poly(logits, labels, epsilon):
    cross_entropy = losses.smoothed_cross_entropy(logits, labels)
    return cross_entropy + epsilon * (1 - jnp.exp(-cross_entropy))

  # From an existing entry, so that fields the dataclass gains later keep a value.
  declared = {f.name for f in dataclasses.fields(methods.Method)}
  documentation = {"reference": "Leng et al. 2022", "example": 1.0}
  new = dataclasses.replace(
      methods.BY_NAME["CP"],
      name="Poly", field="loss.poly_epsilon", off=0.0, role=methods.LOSS,
      library_function=losses.smoothed_cross_entropy,
      checks=(("loss.poly_epsilon", lambda e: e >= -1, "must be >= -1"),),
      combines_with=(), language_models=False, mix=None, describe=None,
      loss=lambda logits, labels, config, teacher_logits: poly(
          logits, labels, config.loss.poly_epsilon),
      **{k: v for k, v in documentation.items() if k in declared})
  table = methods.METHODS + (new,)
  monkeypatch.setattr(methods, "METHODS", table)
  monkeypatch.setattr(methods, "BY_NAME", {m.name: m for m in table})
  monkeypatch.setattr(methods, "FIELDS", tuple(m.field for m in table))
  get_config = default_config.get_config

  def get_config_with_field():
    config = get_config()
    config.loss.poly_epsilon = 0.0
    return config

  monkeypatch.setattr(default_config, "get_config", get_config_with_field)
  reference = get_config_with_field()

  config = get_config_with_field()
  config.loss.poly_epsilon = 1.0
  assert methods.active(config) == (new,)
  assert methods.label(config) == "Poly 1.0"
  assert methods.loss_method(config) is new
  logits, labels = random_inputs(8, (16,), NUM_CLASSES)
  p_y = np.take_along_axis(np_softmax(logits.astype(np.float64)), labels[:, None], -1)[:, 0]
  _assert_close(_loss(config, logits, labels), -np.log(p_y) + (1 - p_y))
  validate(config, reference)

  failures = []
  config.loss.poly_epsilon = -2.0
  methods.check(config, lambda field, requirement: failures.append(field), language_model=False)
  assert failures == ["loss.poly_epsilon"]
  with pytest.raises(errors.UserError, match=r"config.loss.poly_epsilon=-2.0: must be >= -1"):
    validate(config, reference)

  # Not in LS's combines_with (nor LS in its): the combination is rejected, naming it.
  config.loss.poly_epsilon, config.loss.label_smoothing = 1.0, 0.1
  with pytest.raises(errors.UserError, match=r"config.loss.poly_epsilon=1.0: Poly does not "
                                             r"combine with LS"):
    validate(config, reference)
  failures = []
  config.loss.label_smoothing = 0.0
  methods.check(config, lambda field, requirement: failures.append(field), language_model=True)
  assert failures == ["loss.poly_epsilon"]  # language_models=False by default.

  # An old run's config without the field resolves it to the (new) default: off.
  old = config.to_dict()
  del old["loss"]["poly_epsilon"]
  assert methods.active(old) == () and methods.label(old) == "CE"
  # Dataclass sanity: the entry is frozen, so the table cannot be changed behind its back.
  with pytest.raises(dataclasses.FrozenInstanceError):
    new.off = 1.0
