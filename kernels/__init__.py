"""Pure jit/vmap kernels over arrays: enumerate the domain, evaluate circuits, filter candidate programs."""
