"""Surrogates: an exact integer ReLU network (``network``) for a found program, by the first method that gives one.

The methods, in registry order (``registry.METHODS``), cheapest first:

- ``lp`` (``lp.py``): a linear threshold of the one-hot inputs by LP with cutting planes; from the truth table
  alone, so it serves every program;
- ``features`` (``features.py``): the same LP with fixed ReLU units on the circuit's count features
  (relu(count - k), relu(count(u) - count(v) - k)): parities and residues of counts, still program-independent;
- ``compiled`` (``compiled.py``): the program compiled into an exact integer ReLU network;
- ``trained`` (``trained.py``): a gradient-trained, quantized network (flax nnx + optax), the general fallback.

``Witnesses`` tries them in order for each program (``witness.py``). Method modules are imported when the method
runs: importing this package loads neither scipy nor flax.
"""

from jaxscd.surrogates.network import IntegerSurrogate, exhaustive_decisions, fold_stable_neurons, wrong_inputs
from jaxscd.surrogates.registry import METHODS, FitProblem, SurrogateConfig, SurrogateMethod
from jaxscd.surrogates.witness import Witness, Witnesses

__all__ = ["METHODS", "FitProblem", "IntegerSurrogate", "SurrogateConfig", "SurrogateMethod", "Witness",
           "Witnesses", "exhaustive_decisions", "fold_stable_neurons", "wrong_inputs"]
