"""Test setup: 8 host CPU devices, so sharding and pmap are exercised on a 2-core machine.

XLA_FLAGS must be set before JAX initializes its backend, hence here, before any test imports jax.
"""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
