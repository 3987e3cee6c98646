"""scripts/test.sh passes paths through to pytest; scripts/plot_calibration.py lays out its figure."""
import os
import pathlib
import shutil
import subprocess

import pytest

import overlay_venv

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def test_sh_env(tmp_path_factory) -> dict[str, str]:
  """The environment of an activated venv that already has requirements.txt, as test.sh expects.

  The venv sees this interpreter's packages, and its requirements stamp matches, so test.sh
  installs nothing.
  """
  venv = tmp_path_factory.mktemp("test_sh") / "venv"
  overlay_venv.create(venv)
  shutil.copy(REPO_ROOT / "requirements.txt", venv / ".ls_jax_requirements")
  return {**os.environ, "VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}


def _collected(env: dict[str, str], cwd: pathlib.Path, *args: str) -> list[str]:
  """The test ids that `scripts/test.sh --collect-only ARGS` would run (-n 0: no workers)."""
  done = subprocess.run([str(REPO_ROOT / "scripts" / "test.sh"), "-n", "0", "--collect-only",
                         *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                        check=False)
  assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
  return [line for line in done.stdout.splitlines() if "::" in line]


def _files(test_ids: list[str]) -> set[str]:
  return {test_id.split("::")[0] for test_id in test_ids}


def test_test_sh_runs_only_the_paths_it_is_given(test_sh_env):
  assert _files(_collected(test_sh_env, REPO_ROOT, "tests/test_noise.py")) == {"tests/test_noise.py"}
  # Relative to where it is run from; a node id keeps its test name.
  test_ids = _collected(test_sh_env, REPO_ROOT / "tests", "test_noise.py",
                        "test_mixing.py::test_soft_targets_formula")
  assert _files(test_ids) == {"tests/test_noise.py", "tests/test_mixing.py"}
  assert [t for t in test_ids if "test_mixing" in t] == ["tests/test_mixing.py::test_soft_targets_formula"]


def test_test_sh_without_a_path_runs_the_whole_suite(test_sh_env):
  every_file = {f"tests/{p.name}" for p in (REPO_ROOT / "tests").glob("test_*.py")}
  assert _files(_collected(test_sh_env, REPO_ROOT, "-p", "no:cacheprovider")) == every_file
