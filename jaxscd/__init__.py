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
