"""The Circuit value: an executable map from token ids [batch, length] to logits or decisions."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from jaxscd.errors import CircuitError  # re-exported: the circuit loaders import it from here


def exception_line(err: BaseException) -> str:
    """'Type: first line of the message', for reporting an exception raised by user code on one line."""
    return f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}"


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


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write via a temporary file in the same directory and rename it into place (no half-written file)."""
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data.encode() if isinstance(data, str) else data)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
