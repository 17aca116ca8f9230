"""jaxscd: JAX-accelerated symbolic circuit distillation."""

import jax

# Circuits are evaluated in float64 so decision margins are meaningful; kernels use explicit integer dtypes.
jax.config.update("jax_enable_x64", True)
# On GPU/TPU the default matmul precision of float32 is TF32/bf16; claims never rest on such products.
jax.config.update("jax_default_matmul_precision", "highest")

__version__ = "0.1.0"
