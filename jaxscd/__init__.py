"""jaxscd: JAX-accelerated symbolic circuit distillation."""

import jax

# Circuits are evaluated in float64 so decision margins are meaningful; kernels use explicit integer dtypes.
jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"
