import jax
import pytest


def pytest_collection_modifyitems(config, items):
    on_accelerator = any(d.platform != "cpu" for d in jax.devices())
    skip_gpu = pytest.mark.skip(reason="needs an accelerator (JAX sees only a CPU)")
    for item in items:
        if "gpu" in item.keywords and not on_accelerator:
            item.add_marker(skip_gpu)
