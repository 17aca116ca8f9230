"""The Circuit value: an executable map from token ids [batch, length] to logits or decisions."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass


class CircuitError(ValueError):
    """A circuit that cannot be loaded or run (bad file, wrong output shape, NaN logits...)."""


@dataclass(frozen=True, eq=False)
class Circuit:
    """``forward(tokens int[B, L]) -> logits float[B, 2]`` or decisions ``int[B]`` in {0, 1}.

    ``fingerprint`` identifies the circuit's weights or source in certificates.
    """

    name: str
    forward: Callable
    class_names: tuple = ("0", "1")
    fingerprint: str = ""

    def __post_init__(self):
        if len(self.class_names) != 2:
            raise CircuitError(f"circuit {self.name!r} must have 2 classes, got {list(self.class_names)}")


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
