"""jaxscd: JAX-accelerated symbolic circuit distillation."""

import jax

# Circuits are evaluated in float64 so decision margins are meaningful; kernels use explicit integer dtypes.
jax.config.update("jax_enable_x64", True)
# On GPU/TPU the default matmul precision of float32 is TF32/bf16; claims never rest on such products.
jax.config.update("jax_default_matmul_precision", "highest")


def _compilation_cache() -> None:
    """JAX's persistent compilation cache in a user cache folder, so a second run of a task skips compiling.
    JAXSCD_CACHE_DIR moves it; JAXSCD_CACHE_DIR=off turns it off."""
    import os
    from pathlib import Path

    where = os.environ.get("JAXSCD_CACHE_DIR")
    if where is not None and where.strip().lower() in ("", "0", "off", "none", "false"):
        return
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    jax.config.update("jax_compilation_cache_dir", str(Path(where) if where else base / "jaxscd" / "jax"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


_compilation_cache()

__version__ = "0.1.0"

# The library API, imported on first use (``jaxscd.distill`` pulls in z3, flax and scipy; ``import jaxscd`` and the
# console script stay cheap). Name -> module that defines it.
_API = {
    "distill": "jaxscd.pipeline", "DistillConfig": "jaxscd.pipeline", "DistillResult": "jaxscd.pipeline",
    "choose_domain": "jaxscd.pipeline", "Problem": "jaxscd.problem", "CircuitSource": "jaxscd.circuits.sources",
    "JaxscdError": "jaxscd.errors", "InputError": "jaxscd.errors", "CircuitError": "jaxscd.errors",
    "BundleError": "jaxscd.errors",
    "Domain": "jaxscd.domain", "DomainError": "jaxscd.domain",
    "Task": "jaxscd.tasks", "get_task": "jaxscd.tasks", "task_names": "jaxscd.tasks", "task_graph": "jaxscd.tasks",
    "Circuit": "jaxscd.circuits.base",
    "load_callable": "jaxscd.circuits.callable", "load_graph": "jaxscd.circuits.graph",
    "read_graph": "jaxscd.circuits.graph", "export_graph": "jaxscd.circuits.graph",
    "Verdict": "jaxscd.verify.prove", "STRATEGIES": "jaxscd.verify.prove", "write_bundle": "jaxscd.verify.certificate",
    "Certificate": "jaxscd.verify.certificate", "Obligation": "jaxscd.verify.certificate",
    "read_certificate": "jaxscd.verify.certificate",
    "recheck": "jaxscd.verify.recheck",
    "render_report": "jaxscd.report", "write_figures": "jaxscd.report",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'jaxscd' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_API))
