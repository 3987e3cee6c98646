"""The three layers of ls_jax (`ls_jax/__init__.py`): the library imports neither the trainer nor
the experiments, and the trainer does not import the experiments.

Checked twice: statically, from every import statement in the source (function-level ones and
`importlib.import_module("...")` included), and dynamically, from `sys.modules` in a fresh
interpreter after importing a layer. Also: the old module names of 0.1 fail with a one-line
ImportError that says where the module went.
"""
import ast
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

import ls_jax

PACKAGE_DIR = pathlib.Path(ls_jax.__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
TRAINER, EXPERIMENTS = "ls_jax.trainer", "ls_jax.experiments"
# Heavy training-stack packages that the losses, mixing, noise, calibration and statistics must not
# pull in (they need jax, numpy and scipy only; the models add flax).
TRAINING_STACK = ("flax", "optax", "tensorflow", "tensorflow_datasets", "orbax", "grain",
                  "ml_collections", "clu")
LIBRARY_MODULES = ("ls_jax.losses", "ls_jax.mixing", "ls_jax.noise", "ls_jax.calibration",
                   "ls_jax.statistics")


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(REPO_ROOT).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_package(path: pathlib.Path) -> bool:
  return path.name == "__init__.py"


def imported_modules(source: str, module: str, is_package: bool = False) -> set[str]:
  """Every module that `source` (the module `module`) may import, at any depth of the code.

  `from a import b` yields `a` and `a.b` (b may be a submodule); relative imports are resolved;
  `importlib.import_module` / `__import__` with a constant (or f-string prefix) argument count.
  """
  package = module if is_package else module.rpartition(".")[0]
  found = set()
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      found.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      if node.level:
        base = package.split(".")
        base = base[:len(base) - (node.level - 1)]
        name = ".".join(base + ([node.module] if node.module else []))
      else:
        name = node.module
      found.add(name)
      found.update(f"{name}.{alias.name}" for alias in node.names if alias.name != "*")
    elif isinstance(node, ast.Call) and node.args:
      func = node.func
      called = (func.attr if isinstance(func, ast.Attribute)
                else func.id if isinstance(func, ast.Name) else None)
      if called in ("import_module", "__import__"):
        arg = node.args[0]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
          found.add(arg.value)
        elif isinstance(arg, ast.JoinedStr) and arg.values and isinstance(
            arg.values[0], ast.Constant):
          found.add(arg.values[0].value.rstrip("."))
  return found


def _within(name: str, package: str) -> bool:
  return name == package or name.startswith(package + ".")


def _sources():
  paths = sorted(PACKAGE_DIR.rglob("*.py"))
  assert len(paths) > 10
  return [(path, _module_name(path)) for path in paths]


# --- Static. ---

def test_import_collector_sees_function_level_relative_and_dynamic_imports():
  source = textwrap.dedent("""
      import os
      from ls_jax import losses
      def f():
        from ls_jax import trainer
        from .sibling import thing
        from .. import experiments
        importlib.import_module("ls_jax.experiments.reports")
        importlib.import_module(f"ls_jax.experiments.{name}")
  """)
  found = imported_modules(source, "ls_jax.models.cnn")
  assert {"os", "ls_jax.losses", "ls_jax.trainer", "ls_jax.models.sibling",
          "ls_jax.models.sibling.thing", "ls_jax.experiments", "ls_jax.experiments.reports"} <= found
  assert "ls_jax.trainer" in imported_modules("from . import trainer", "ls_jax", is_package=True)


def test_library_imports_neither_trainer_nor_experiments():
  bad = []
  for path, module in _sources():
    if _within(module, TRAINER) or _within(module, EXPERIMENTS):
      continue
    for name in imported_modules(path.read_text(), module, _is_package(path)):
      if _within(name, TRAINER) or _within(name, EXPERIMENTS):
        bad.append(f"{module} imports {name}")
  assert not bad, "\n".join(bad)


def test_trainer_does_not_import_experiments():
  bad, trainer_modules = [], 0
  for path, module in _sources():
    if not _within(module, TRAINER):
      continue
    trainer_modules += 1
    for name in imported_modules(path.read_text(), module, _is_package(path)):
      if _within(name, EXPERIMENTS):
        bad.append(f"{module} imports {name}")
  assert trainer_modules > 5
  assert not bad, "\n".join(bad)


def test_library_outside_models_imports_only_jax_numpy_scipy_and_the_standard_library():
  allowed = {"jax", "jaxlib", "numpy", "scipy", "ml_dtypes", "ls_jax"}
  bad = []
  for path, module in _sources():
    if any(_within(module, p) for p in (TRAINER, EXPERIMENTS, "ls_jax.models")):
      continue
    for name in imported_modules(path.read_text(), module, _is_package(path)):
      top = name.split(".")[0]
      if top not in allowed and top not in sys.stdlib_module_names:
        bad.append(f"{module} imports {name}")
  assert not bad, "\n".join(bad)


# --- Dynamic: what a fresh interpreter has loaded after importing a layer. ---

def _loaded_after(imports: str) -> list[str]:
  code = (f"import json, sys\n{imports}\n"
          "print(json.dumps(sorted(sys.modules)))")
  env = {**os.environ, "PYTHONPATH": os.pathsep.join(
      [str(REPO_ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


def test_library_loads_no_trainer_experiments_or_training_stack():
  loaded = _loaded_after("import " + ", ".join(LIBRARY_MODULES))
  assert all(m in loaded for m in LIBRARY_MODULES)
  bad = [m for m in loaded if _within(m, TRAINER) or _within(m, EXPERIMENTS)
         or m.split(".")[0] in TRAINING_STACK]
  assert not bad, bad


def test_models_load_no_trainer_or_experiments():
  loaded = _loaded_after("import " + ", ".join(LIBRARY_MODULES + ("ls_jax.models",)))
  assert "ls_jax.models" in loaded and "flax" in loaded
  bad = [m for m in loaded if _within(m, TRAINER) or _within(m, EXPERIMENTS)]
  assert not bad, bad


def test_trainer_loads_no_experiments():
  # Every trainer module, the train loop and the command line included.
  names = sorted(module for _, module in _sources() if _within(module, TRAINER))
  assert "ls_jax.trainer.train" in names
  loaded = _loaded_after("\n".join(f"import {name}" for name in names))
  assert "ls_jax.trainer.train" in loaded
  bad = [m for m in loaded if _within(m, EXPERIMENTS)]
  assert not bad, bad


# --- Old module names. ---

@pytest.mark.parametrize("form", ["from ls_jax import {name}", "import ls_jax.{name}",
                                  "from ls_jax.{name} import anything"])
@pytest.mark.parametrize("name", sorted(ls_jax._MOVED))  # pylint: disable=protected-access
def test_old_module_names_fail_with_one_line_naming_the_new_place(name, form):
  new_places = ls_jax._MOVED[name]  # pylint: disable=protected-access
  with pytest.raises(ImportError) as raised:
    exec(form.format(name=name), {})  # pylint: disable=exec-used
  message = str(raised.value)
  assert "\n" not in message
  assert f"ls_jax.{name}" in message and all(place in message for place in new_places)


def test_old_train_and_study_names_say_where_they_went():
  with pytest.raises(ImportError, match=r"^ls_jax\.train moved .*ls_jax\.trainer$"):
    from ls_jax import train  # pylint: disable=g-import-not-at-top,unused-import,no-name-in-module
  with pytest.raises(ImportError, match=r"^ls_jax\.study moved .*ls_jax\.experiments\.runs$"):
    from ls_jax import study  # pylint: disable=g-import-not-at-top,unused-import,no-name-in-module


def test_new_places_of_moved_modules_exist_inside_the_layers():
  for name, new_place in [(name, place) for name, places in ls_jax._MOVED.items()  # pylint: disable=protected-access
                          for place in places]:
    assert _within(new_place, TRAINER) or _within(new_place, EXPERIMENTS), new_place
    path = REPO_ROOT.joinpath(*new_place.split("."))
    assert path.with_suffix(".py").is_file() or (path / "__init__.py").is_file(), new_place
    if new_place == TRAINER:  # Moved as is: same module name inside the trainer.
      assert (path / f"{name}.py").is_file(), name


def test_unknown_names_are_still_attribute_errors():
  with pytest.raises(AttributeError, match="no attribute 'no_such_module'"):
    ls_jax.no_such_module  # pylint: disable=pointless-statement
