"""ls_jax: label smoothing, the confidence penalty, focal loss, Mixup/CutMix, label noise and
calibration in JAX.

Three layers, each importing only the ones before it:

* the library: `losses` (by family), `mixing`, `noise`, `calibration`, `statistics`, `models`;
  jax, numpy and scipy only (`pip install ls_jax`);
* `ls_jax.trainer`: configs, the method table, data, the train loop and the command line;
* `ls_jax.experiments`: sweeps, run summaries and the report of each experiment.

Modules are imported explicitly (`from ls_jax import losses`), so that using the losses does not
pull in the training stack (TFDS, Orbax, grain).
"""
import importlib.abc
import sys

__version__ = "0.2.0"

# Modules that moved in 0.2.0: importing one by its old name says where it went, in one line.
_MOVED: dict[str, tuple[str, ...]] = {
    **{name: ("ls_jax.trainer",) for name in (
        "checkpointing", "cli", "config_checks", "default_config", "distillation",
        "embedded_datasets", "errors", "finished_runs", "host", "input_pipeline", "interrupts",
        "metrics_writer", "tokenizer", "train")},
    "sweeps": ("ls_jax.experiments.sweeps",), "study": ("ls_jax.experiments.runs",),
    "reports": ("ls_jax.experiments.reports",),  # The registry; each experiment has its module.
    "analysis": ("ls_jax.experiments.representations",),
    "kd_study": ("ls_jax.experiments.representations", "ls_jax.experiments.distillation"),
}


def _moved(name: str) -> ImportError:
  return ImportError(f"ls_jax.{name} moved in ls_jax 0.2.0: import it from "
                     f"{' or '.join(_MOVED[name])}")


def __getattr__(name: str):  # `from ls_jax import train`, `ls_jax.train`.
  if name in _MOVED:
    raise _moved(name)
  raise AttributeError(f"module 'ls_jax' has no attribute {name!r}")


class _MovedModuleFinder(importlib.abc.MetaPathFinder):
  """`import ls_jax.train`, `from ls_jax.train import ...`: consulted only after the real finders
  found no such module, and only for the names in `_MOVED`."""

  def find_spec(self, fullname, path, target=None):
    del path, target
    package, _, name = fullname.partition(".")
    if package == __name__ and name in _MOVED:
      raise _moved(name)
    return None


sys.meta_path.append(_MovedModuleFinder())
