"""Circuit sources: built-in reference transformer circuits and Python callables."""

from jaxscd.circuits.base import Circuit, CircuitError

__all__ = ["Circuit", "CircuitError"]
