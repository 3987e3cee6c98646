"""Test setup: 8 host CPU devices, so sharding and pmap are exercised on a 2-core machine.

XLA_FLAGS must be set before JAX initializes its backend, hence here, before any test imports jax.

JAX's persistent compilation cache is on: every run compiles the same programs, in every pytest
worker and in the subprocesses that the CLI tests start (they inherit these variables). Set
JAX_COMPILATION_CACHE_DIR to use another folder, or to "" to turn the cache off.
"""
import os
import pathlib
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      str(pathlib.Path.home() / ".cache" / "ls_jax" / "jax_cache_tests"))
# JAX caches only programs that took >= 1 s to compile by default; most test programs take less.
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")  # -1: cache every size.

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: takes more than ~30 s; run with --runslow")
  # ml_collections' config_flags loads config files with the deprecated `load_module` (not ours).
  config.addinivalue_line("filterwarnings",
                          "ignore:the load_module\\(\\) method is deprecated:DeprecationWarning")


def pytest_addoption(parser):
  parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
  if config.getoption("--runslow"):
    return
  import pytest
  skip = pytest.mark.skip(reason="slow: pass --runslow")
  for item in items:
    if "slow" in item.keywords:
      item.add_marker(skip)
