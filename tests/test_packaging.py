"""`pip install` of the repository into a fresh venv, used from outside the repository.

The main tests need no network: the fresh venv sees this interpreter's site-packages (jax, numpy,
scipy, setuptools, the training stack; `overlay_venv`), and the package is installed with
`--no-deps --no-build-isolation --no-index`. The `ls_jax` it imports is the installed copy, never
the repository's. The slow test does the full `pip install .[train]` from the package index.
"""
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import overlay_venv

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# The version the source declares: what an install of this tree must report.
SOURCE_VERSION = re.search(r'^__version__ = "(.+)"$', (REPO_ROOT / "ls_jax" / "__init__.py").read_text(),
                           re.M).group(1)
# What the core install promises not to need: importing the library must not load these.
TRAINING_STACK = ("flax", "optax", "orbax", "tensorflow_datasets", "ml_collections", "absl", "grain",
                  "matplotlib", "sklearn", "tensorboard")


def _copy_source(destination: pathlib.Path) -> pathlib.Path:
  """The files a build reads, copied, so the build writes its build/ and egg-info/ outside the repo."""
  destination.mkdir()
  for name in ("pyproject.toml", "README.md", "LICENSE"):
    shutil.copy(REPO_ROOT / name, destination / name)
  shutil.copytree(REPO_ROOT / "ls_jax", destination / "ls_jax",
                  ignore=shutil.ignore_patterns("__pycache__"))
  return destination


def _venv_python(venv: pathlib.Path) -> pathlib.Path:
  return venv / "bin" / "python"


def _run(args, cwd, **kwargs) -> subprocess.CompletedProcess:
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
  env.update(kwargs.pop("env", {}))
  return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                        timeout=kwargs.pop("timeout", 600), check=False, **kwargs)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> pathlib.Path:
  """A fresh venv with `pip install --no-deps --no-build-isolation --no-index <copy of the repo>`."""
  root = tmp_path_factory.mktemp("packaging")
  python = overlay_venv.create(root / "venv")
  source = _copy_source(root / "src")
  result = _run([python, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                 "--no-index", "--disable-pip-version-check", "--quiet", source], cwd=root)
  assert result.returncode == 0, result.stderr
  return root / "venv"


def test_core_library_imports_from_outside_the_repo_and_computes_a_loss(installed, tmp_path):
  script = f"""
import json, sys
import numpy as np
import ls_jax
from ls_jax import calibration, losses, mixing, noise
logits = np.array([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]], np.float32)
loss = losses.smoothed_cross_entropy(logits, np.array([0, 1]), 0.1)
print(json.dumps({{"file": ls_jax.__file__, "version": ls_jax.__version__, "loss": loss.tolist(),
                   "heavy": sorted(m for m in {TRAINING_STACK!r} if m in sys.modules)}}))
"""
  result = _run([_venv_python(installed), "-c", script], cwd=tmp_path)
  assert result.returncode == 0, result.stderr
  out = json.loads(result.stdout)
  assert pathlib.Path(out["file"]).is_relative_to(installed), out["file"]
  assert out["version"] == SOURCE_VERSION
  assert out["heavy"] == [], f"the core library imported {out['heavy']}"
  # Float64 reference: cross-entropy against q = (1 - a)·onehot + a/K.
  logits = np.array([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]])
  log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
  targets = 0.9 * np.eye(3)[[0, 1]] + 0.1 / 3
  np.testing.assert_allclose(out["loss"], -(targets * log_probs).sum(axis=1), rtol=1e-6)


def test_metadata_keeps_the_training_stack_in_the_train_extra(installed, tmp_path):
  script = ("import importlib.metadata as m, json; d = m.distribution('ls_jax'); "
            "print(json.dumps({'version': d.version, 'requires': d.requires}))")
  result = _run([_venv_python(installed), "-c", script], cwd=tmp_path)
  assert result.returncode == 0, result.stderr
  out = json.loads(result.stdout)
  assert out["version"] == SOURCE_VERSION
  core = sorted(r.split(">")[0] for r in out["requires"] if "extra" not in r)
  assert core == ["jax", "numpy", "scipy"]
  train = [r for r in out["requires"] if 'extra == "train"' in r]
  assert any(r.startswith("flax") for r in train) and any(r.startswith("orbax") for r in train)


def test_console_script_is_installed_and_runs(installed, tmp_path):
  script = installed / "bin" / "ls-jax-train"
  assert script.is_file() and os.access(script, os.X_OK)
  result = _run([script, "--helpfull"], cwd=tmp_path)
  assert "ls_jax.trainer.cli:" in result.stdout and "--workdir" in result.stdout, result.stdout[-2000:]


def test_installed_package_trains_from_config_files_outside_it(installed, tmp_path):
  """Two steps of the MNIST-1D config through the installed `ls-jax-train`.

  Only configs/ comes from the repository (config files import each other as `configs.<name>`);
  ls_jax itself is the installed copy.
  """
  results = _train_two_steps(installed, tmp_path)
  assert results["steps"] == 2 and 0 <= results["accuracy"] <= 1


def _train_two_steps(venv: pathlib.Path, tmp_path: pathlib.Path) -> dict:
  """Two MNIST-1D steps by `venv`'s `ls-jax-train`, with only configs/ copied from the repo."""
  shutil.copytree(REPO_ROOT / "configs", tmp_path / "configs",
                  ignore=shutil.ignore_patterns("__pycache__"))
  workdir = tmp_path / "run"
  result = _run([venv / "bin" / "ls-jax-train", "--config=configs/mnist1d.py",
                 "--config.num_steps=2", "--config.batch_size=96", f"--workdir={workdir}"],
                cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads((workdir / "results.json").read_text())


def _print_config(venv: pathlib.Path, config: pathlib.Path, cwd: pathlib.Path):
  cwd.mkdir(parents=True, exist_ok=True)
  return _run([venv / "bin" / "ls-jax-train", f"--config={config}", "--print_config"], cwd=cwd)


def test_installed_console_script_reads_user_config_files_anywhere(installed, tmp_path):
  """A user's config file that imports the shipped configs (`from configs import mnist1d`) works
  inside a clone outside configs/, and outside any clone when run from inside one; a standalone
  config (from `ls_jax.trainer.default_config`) works from anywhere. (The folder two levels above
  the config file used to be put on sys.path: right only for files directly in configs/.)"""
  clone = tmp_path / "clone"
  shutil.copytree(REPO_ROOT / "configs", clone / "configs",
                  ignore=shutil.ignore_patterns("__pycache__"))
  importing = ("from configs import mnist1d\ndef get_config():\n  c = mnist1d.get_config()\n"
               "  c.num_steps = 7\n  return c\n")
  for config in (clone / "mine.py", clone / "studies" / "deep" / "mine.py"):
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(importing)
    result = _print_config(installed, config, tmp_path / "elsewhere")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "num_steps: 7" in result.stdout
  outside = tmp_path / "outside" / "mine.py"
  outside.parent.mkdir()
  outside.write_text(importing)
  result = _print_config(installed, outside, clone / "configs")  # From inside the clone.
  assert result.returncode == 0, result.stderr[-2000:]
  assert "num_steps: 7" in result.stdout
  result = _print_config(installed, outside, tmp_path / "elsewhere")  # No clone in sight.
  assert result.returncode == 2
  assert result.stderr.strip().count("\n") == 0, result.stderr
  assert "No module named 'configs'" in result.stderr and "PYTHONPATH" in result.stderr
  standalone = tmp_path / "standalone" / "mine.py"
  standalone.parent.mkdir()
  standalone.write_text("from ls_jax.trainer import default_config\ndef get_config():\n"
                        "  c = default_config.get_config()\n  c.data.name = 'mnist1d'\n"
                        "  c.num_classes = 10\n  c.num_steps = 7\n  return c\n")
  for cwd in (tmp_path / "elsewhere", clone):
    result = _print_config(installed, standalone, cwd)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "num_steps: 7" in result.stdout


@pytest.mark.slow
def test_pip_install_train_extra_from_the_index_trains(tmp_path):
  """The README's install: `pip install .[train]` into a fresh venv, with the index (network)."""
  venv = tmp_path / "venv"
  subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
  source = _copy_source(tmp_path / "src")
  result = _run([_venv_python(venv), "-m", "pip", "install", "--quiet",
                 "--disable-pip-version-check", f"{source}[train]"], cwd=tmp_path, timeout=1800)
  assert result.returncode == 0, result.stderr[-3000:]
  assert _train_two_steps(venv, tmp_path)["steps"] == 2
