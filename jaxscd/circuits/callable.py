"""Circuits given as Python callables in a file: ``path/to/file.py:fn``.

``fn(tokens)`` takes an int array [batch, length] and returns logits [batch, 2] or decisions [batch]. The module
may define ``ALPHABET`` (token names), ``LENGTHS`` ((min, max)), ``CLASS_NAMES`` and ``SPEC(tokens)`` (the
intended behaviour on a list of token ids).
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

from jaxscd.circuits.base import Circuit, CircuitError, sha256_bytes


@dataclass(frozen=True, eq=False)
class CallableSource:
    circuit: Circuit
    alphabet: tuple | None
    lengths: tuple | None
    spec: object | None


def load_callable(target: str) -> CallableSource:
    path_text, sep, name = target.rpartition(":")
    if not sep or not path_text or not name:
        raise CircuitError(f"--circuit must look like path/to/file.py:function, got {target!r}")
    path = Path(path_text)
    if not path.is_file():
        raise CircuitError(f"circuit file not found: {str(path)!r}; check the path before ':{name}'")
    module_name = f"jaxscd_user_circuit_{abs(hash(path.resolve()))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # the user's file failed to import: report it in one line
        raise CircuitError(f"could not import {str(path)!r}: {type(err).__name__}: {err}") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise CircuitError(f"{str(path)!r} has no callable named {name!r}; define def {name}(tokens): ...")
    lengths = getattr(module, "LENGTHS", None)
    if lengths is not None and (len(tuple(lengths)) != 2):
        raise CircuitError(f"LENGTHS in {str(path)!r} must be (min_len, max_len), got {lengths!r}")
    alphabet = getattr(module, "ALPHABET", None)
    class_names = tuple(getattr(module, "CLASS_NAMES", ("0", "1")))
    circuit = Circuit(f"{path.name}:{name}", fn, class_names, sha256_bytes(path.read_bytes()))
    return CallableSource(circuit, tuple(alphabet) if alphabet is not None else None,
                          tuple(int(v) for v in lengths) if lengths is not None else None,
                          getattr(module, "SPEC", None))
