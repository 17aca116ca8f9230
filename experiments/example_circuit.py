"""An example circuit given as a plain Python callable, for `jaxscd distill --circuit`.

    jaxscd distill --circuit experiments/example_circuit.py:majority

A one-head "circuit" in numpy: uniform attention averages a +1/-1 token feature over the context, and the
readout compares it with zero. Any function from int tokens [batch, length] to logits [batch, 2] (or decisions
[batch]) works the same way.
"""

import numpy as np

ALPHABET = ("a", "b", "c")  # token ids 0, 1, 2
LENGTHS = (1, 7)
CLASS_NAMES = ("b-majority or tie", "a-majority")

FEATURE = np.array([1.0, -1.0, 0.0])  # +1 for 'a', -1 for 'b', 0 for 'c'


def majority(tokens):
    """logits [batch, 2]: class 1 when 'a' outnumbers 'b'."""
    mean = FEATURE[np.asarray(tokens)].mean(axis=1)  # uniform attention over the context
    score = 4.0 * mean - 0.5 / tokens.shape[1]  # bias puts ties on class 0
    return np.stack([np.zeros_like(score), score], axis=1)


def SPEC(tokens):
    """Intended behaviour on token ids: more 'a' than 'b'."""
    return int(tokens.count(0) > tokens.count(1))
