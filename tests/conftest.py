import os

# The suite runs without the persistent compilation cache (its subprocesses inherit this): a fresh-clone CI run
# crashed once inside jax's cache write (compilation_cache.put_executable_and_time, SIGSEGV); JAXSCD_CACHE_DIR given
# by the caller still wins.
os.environ.setdefault("JAXSCD_CACHE_DIR", "off")

import jax
import pytest


def pytest_collection_modifyitems(config, items):
    on_accelerator = any(d.platform != "cpu" for d in jax.devices())
    skip_gpu = pytest.mark.skip(reason="needs an accelerator (JAX sees only a CPU)")
    for item in items:
        if "gpu" in item.keywords and not on_accelerator:
            item.add_marker(skip_gpu)
