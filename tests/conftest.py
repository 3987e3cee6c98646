"""Test setup: 8 host CPU devices, so sharding and pmap are exercised on a 2-core machine.

XLA_FLAGS must be set before JAX initializes its backend, hence here, before any test imports jax.
"""
import os
import pathlib
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: takes more than ~30 s; run with --runslow")


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
