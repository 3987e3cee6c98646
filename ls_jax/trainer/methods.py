"""The training methods, declared once: every other module reads this table.

A method is switched on by one config field (`Method.field`) holding anything but its `off`
value. The table says how it enters the per-example loss (through a library function), which
values are valid, which other methods a run may use with it, whether a language model's fused
loss accepts it, and how a run using it is labelled (`LS 0.1 + Mixup 0.2`). A run with every
method off is the cross-entropy baseline, `CE`.

Readers: the trainer's objective (`per_example_loss`, `mix_batch`), config validation
(`ls_jax.trainer.config_checks`), run labels (`label`), the grouping of finished runs and their CE
baseline (`ls_jax.experiments.runs`), plots and benchmarks.

Adding a method: its loss in `ls_jax/losses/` (and the namespace `ls_jax/losses/__init__.py`), its
config field in `ls_jax/trainer/default_config.py`, and one `Method` here.
"""
import dataclasses
import re
from typing import Any, Callable, Optional

import jax
import ml_collections

from ls_jax import losses
from ls_jax import mixing

# How a method enters the step. LOSS: it computes the per-example loss from the logits (at most
# one LOSS method besides label smoothing, which is the default loss and a parameter of the
# others). TARGETS: it mixes the inputs and builds soft targets in the step; the loss is then the
# soft-target cross-entropy, and label smoothing is applied once, inside the targets.
LOSS = "loss"
TARGETS = "targets"

Config = ml_collections.ConfigDict | dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Method:
  """One training method; see the module docstring."""
  name: str  # Display name in labels and reports: "LS".
  field: str  # The config field that switches it on: "loss.label_smoothing".
  off: Any  # The field's value when the method is not used.
  role: str  # LOSS or TARGETS.
  library_function: Callable[..., Any]  # What it calls in the library (`ls_jax.losses`, ...).
  reference: str  # The paper it comes from.
  example: Any  # A typical value of `field` (benchmarks, docs); None: needs a finished run.
  # Each (field, is valid, what is required) that config validation checks, the switch first.
  checks: tuple[tuple[str, Callable[[Any], bool], str], ...]
  combines_with: tuple[str, ...] = ()  # Names of the methods a run may use with this one.
  language_models: bool = False  # Whether the next-token loss (`losses.fused`) accepts it.
  # LOSS: (logits, labels, config, teacher_logits) -> per-example loss.
  loss: Optional[Callable[..., jax.Array]] = None
  # Its form for a binary task (one sigmoid output, `num_classes = 1`): (logits [N], labels [N],
  # config) -> per-example loss. None: the method does not apply to binary tasks.
  binary_loss: Optional[Callable[..., jax.Array]] = None
  binary_checks: tuple[tuple[str, Callable[[Any], bool], str], ...] = ()  # Added for binary tasks.
  # TARGETS: (rng, inputs, labels, config) -> (mixed inputs, soft targets).
  mix: Optional[Callable[..., tuple[jax.Array, jax.Array]]] = None
  # The label's value part: the switch field's value unless the method says otherwise.
  describe: Optional[Callable[[Config], str]] = None


def _cutmix(rng, inputs, labels, config):
  signals = inputs.ndim == 2  # (N, L) 1-D signals: paste a segment of a 1-channel signal.
  pasted, targets, _ = mixing.cutmix(rng, inputs[..., None] if signals else inputs, labels,
                                     config.num_classes, config.cutmix.alpha,
                                     label_smoothing=config.loss.label_smoothing)
  return (pasted[..., 0] if signals else pasted), targets


LABEL_SMOOTHING = Method(
    name="LS", field="loss.label_smoothing", off=0.0, role=LOSS,
    reference="Szegedy et al. 2016", example=0.1,
    library_function=losses.smoothed_cross_entropy,
    checks=(("loss.label_smoothing", lambda a: losses.NEGATIVE_SMOOTHING_MIN <= a < 1,
             f"must be in [{losses.NEGATIVE_SMOOTHING_MIN:g}, 1) (negative: Wei et al. 2022)"),),
    combines_with=("CP", "Mixup", "CutMix", "KD"), language_models=True,
    loss=lambda logits, labels, config, teacher_logits: losses.smoothed_cross_entropy(
        logits, labels, config.loss.label_smoothing),
    # Targets y (1 - a) + a / 2: a = 0.2 gives 0.9 / 0.1 (Keras' BinaryCrossentropy).
    binary_loss=lambda logits, labels, config: losses.smoothed_binary_cross_entropy(
        logits, labels, config.loss.label_smoothing),
    binary_checks=(("loss.label_smoothing", lambda a: 0 <= a < 1, "must be in [0, 1) for a binary "
                    "task (num_classes=1): the targets y (1 - a) + a / 2 must be probabilities"),))

METHODS: tuple[Method, ...] = (
    LABEL_SMOOTHING,
    Method(
        name="CP", field="loss.confidence_penalty", off=0.0, role=LOSS,
        reference="Pereyra et al. 2017", example=0.1,
        library_function=losses.confidence_penalty,
        checks=(("loss.confidence_penalty", lambda b: b >= 0, "must be >= 0"),),
        combines_with=("LS",),
        loss=lambda logits, labels, config, teacher_logits: losses.confidence_penalty(
            logits, labels, config.loss.confidence_penalty,
            label_smoothing=config.loss.label_smoothing)),
    Method(
        name="Focal", field="loss.focal_gamma", off=0.0, role=LOSS,
        reference="Lin et al. 2017; Mukhoti et al. 2020", example=3.0,
        library_function=losses.focal_loss,
        checks=(("loss.focal_gamma", lambda g: g >= 0, "must be >= 0"),),
        loss=lambda logits, labels, config, teacher_logits: losses.focal_loss(
            logits, labels, config.loss.focal_gamma),
        binary_loss=lambda logits, labels, config: losses.binary_focal_loss(
            logits, labels, config.loss.focal_gamma)),
    Method(
        name="Mixup", field="mixup.alpha", off=0.0, role=TARGETS, library_function=mixing.mixup,
        reference="Zhang et al. 2018", example=0.2,
        checks=(("mixup.alpha", lambda a: a >= 0, "must be >= 0"),), combines_with=("LS",),
        mix=lambda rng, inputs, labels, config: mixing.mixup(
            rng, inputs, labels, config.num_classes, config.mixup.alpha,
            label_smoothing=config.loss.label_smoothing)[:2]),
    Method(
        name="CutMix", field="cutmix.alpha", off=0.0, role=TARGETS,
        reference="Yun et al. 2019", example=1.0,
        library_function=mixing.cutmix,
        checks=(("cutmix.alpha", lambda a: a >= 0, "must be >= 0"),), combines_with=("LS",),
        mix=_cutmix),
    Method(
        name="KD", field="distill.teacher_workdir", off="", role=LOSS,
        reference="Hinton et al. 2015", example=None,
        library_function=losses.distillation_loss,
        checks=(("distill.temperature", lambda t: t > 0, "must be > 0"),
                ("distill.weight", lambda w: 0 <= w <= 1, "must be in [0, 1]")),
        combines_with=("LS",),
        loss=lambda logits, labels, config, teacher_logits: losses.distillation_loss(
            logits, teacher_logits, labels, temperature=config.distill.temperature,
            weight=config.distill.weight, label_smoothing=config.loss.label_smoothing),
        describe=lambda config: (f"from {start_name(value(config, 'distill.teacher_workdir'))} "
                                 f"T={value(config, 'distill.temperature')} "
                                 f"w={value(config, 'distill.weight')}")),
)
BY_NAME = {method.name: method for method in METHODS}
FIELDS = tuple(method.field for method in METHODS)
BASELINE = "CE"  # The label of a run with every method off.


def value(config: Config, field: str) -> Any:
  """`config`'s value of a dotted field; a finished run's config that predates the field gets the
  field's default (`ls_jax/trainer/default_config.py`).

  Raises:
    KeyError: if `field` is not a config field at all.
  """
  found = _lookup(config, field)
  if found is _MISSING:
    from ls_jax.trainer import default_config  # pylint: disable=g-import-not-at-top
    found = _lookup(default_config.get_config(), field)
  if found is _MISSING:
    raise KeyError(f"unknown config field {field!r}")
  return found


_MISSING = object()


def _lookup(config: Config, field: str) -> Any:
  node = config
  for key in field.split("."):
    if key not in node:
      return _MISSING
    node = node[key]
  return node


def active(config: Config) -> tuple[Method, ...]:
  """The methods `config` switches on, in table order."""
  return tuple(m for m in METHODS if value(config, m.field) != m.off)


def label(config: Config, *, start: bool = True) -> str:
  """`CE`, or what a run adds to it (`LS 0.1 + Mixup 0.2`), prefixed by its label noise; a run
  fine-tuned from a finished run (`init_from`) ends in `(from <that run>)` unless `start` is False
  (a report that states its protocol once).

  The run is named by its workdir's last component without a trailing `_seed<N>`: the runs of one
  group start each from the run of its own seed (`scripts/sweep.py`), and share one label.
  """
  parts = [f"{m.name} {m.describe(config) if m.describe else value(config, m.field)}"
           for m in active(config)]
  name = " + ".join(parts) or BASELINE
  init_from = value(config, "init_from") if start else ""
  if init_from:
    name += f" (from {start_name(init_from)})"
  rate, kind = value(config, "data.label_noise.rate"), value(config, "data.label_noise.kind")
  return f"{rate:.0%} {kind} noise: {name}" if rate else name


# The seed that ends a run's workdir name (`scripts/sweep.py`: `..._seed3`; `{seed}` in a sweep
# file, `*` once grouped): runs of one experiment across seeds start from, or learn from, the run
# of their own seed.
SEED_SUFFIX = re.compile(r"[_-]?seed(\d+|\*|\{seed\})$")


def start_name(workdir: str) -> str:
  """The short name of a finished run's workdir in labels: `runs/noise/ce_sym0.4_seed3` ->
  `ce_sym0.4`."""
  name = str(workdir).rstrip("/").rsplit("/", 1)[-1]
  return SEED_SUFFIX.sub("", name) or name


def loss_method(config: Config) -> Method:
  """The method that computes the per-example loss: label smoothing unless another LOSS method is
  on (config validation allows at most one)."""
  return next((m for m in active(config) if m.role == LOSS and m is not LABEL_SMOOTHING),
              LABEL_SMOOTHING)


def mixing_method(config: Config) -> Optional[Method]:
  """The TARGETS method that is on, if any (config validation allows at most one)."""
  return next((m for m in active(config) if m.role == TARGETS), None)


def per_example_loss(logits: jax.Array, labels: jax.Array, targets: Optional[jax.Array],
                     config: ml_collections.ConfigDict,
                     teacher_logits: Optional[jax.Array] = None) -> jax.Array:
  """The training loss of each example: soft-target CE on mixed targets (already smoothed:
  smoothing again would double it), else the loss of `loss_method`."""
  if targets is not None:
    return losses.soft_cross_entropy(logits, targets)
  return loss_method(config).loss(logits, labels, config, teacher_logits)


def per_example_binary_loss(logits: jax.Array, labels: jax.Array,
                            config: ml_collections.ConfigDict) -> jax.Array:
  """The training loss of each example of a binary task: the `binary_loss` of `loss_method`."""
  return loss_method(config).binary_loss(logits, labels, config)


def mix_batch(rng: jax.Array, inputs: jax.Array, labels: jax.Array,
              config: ml_collections.ConfigDict) -> tuple[jax.Array, Optional[jax.Array]]:
  """Mixup / CutMix inside the step: (inputs, soft targets), or (inputs, None) without mixing."""
  method = mixing_method(config)
  return (inputs, None) if method is None else method.mix(rng, inputs, labels, config)


def check(config: Config, fail: Callable[[str, str], None], *, language_model: bool,
          binary: bool = False) -> None:
  """Calls `fail(field, requirement)` on the first method value, combination, or use by a language
  model or a binary task, that the table does not allow."""
  for method in METHODS:
    for field, valid, requirement in method.checks + (method.binary_checks if binary else ()):
      if not valid(value(config, field)):
        fail(field, requirement)
  on = active(config)
  for i, method in enumerate(on):
    for other in on[i + 1:]:
      if other.name not in method.combines_with or method.name not in other.combines_with:
        fail(other.field, f"{other.name} does not combine with {method.name} "
                          f"({method.field}={value(config, method.field)!r}): turn one off "
                          f"({other.field}={other.off!r})")
    if language_model and not method.language_models:
      fail(method.field, f"must be {method.off!r} for a language model ({method.name} does not "
                         "apply to the next-token loss)")
    if binary and method.binary_loss is None:
      fail(method.field, f"must be {method.off!r} for a binary task (num_classes=1: "
                         f"{method.name} has no binary form here)")
