"""Circuits given as Python callables in a file: ``path/to/file.py:fn``.

``fn(tokens)`` takes a numpy int32 array [batch, length] of token ids (all sequences of one length, in one or
more batches) and returns real logits [batch, 2] or decisions [batch] in {0, 1}. It must be a function of each
row alone: after the truth table is built, inputs are re-run one at a time (as int64 tokens) and in shuffled
batches of odd sizes, with a fresh seed, and any difference is refused (``jaxscd.circuits.purity``). The module
may define ``ALPHABET`` (token names), ``LENGTHS`` ((min_len, max_len), integers), ``CLASS_NAMES`` (two different
strings) and ``SPEC(tokens)`` (the intended behaviour on a list of token ids).
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jaxscd.budget import TimeLimitExceeded
from jaxscd.circuits.base import Circuit, CircuitError, exception_line, sha256_bytes


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
    except (KeyboardInterrupt, TimeLimitExceeded):
        raise
    except BaseException as err:  # the user's file failed to import (sys.exit() included): one line
        raise CircuitError(f"could not import {str(path)!r}: {exception_line(err)}; fix the file so it "
                           f"imports without raising or exiting") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise CircuitError(f"{str(path)!r} has no callable named {name!r}; define def {name}(tokens): ...")
    lengths = _setting(module, path, "LENGTHS", _is_int, 2, "LENGTHS = (1, 6)")
    alphabet = _setting(module, path, "ALPHABET", _is_name, None, "ALPHABET = ('a', 'b', 'c')")
    class_names = _setting(module, path, "CLASS_NAMES", _is_name, 2, "CLASS_NAMES = ('no', 'yes')") or ("0", "1")
    if class_names[0] == class_names[1]:  # as graphs refuse their readout classes: the two classes must differ
        raise CircuitError(f"CLASS_NAMES in {str(path)!r} must be unique, repeated: {[class_names[0]]}; name each "
                           f"class once, e.g. CLASS_NAMES = ('no', 'yes')")
    circuit = Circuit(f"{path.name}:{name}", fn, class_names, sha256_bytes(path.read_bytes()))
    spec = getattr(module, "SPEC", None)
    return CallableSource(circuit, alphabet, tuple(int(v) for v in lengths) if lengths else None,
                          None if spec is None else _guarded(spec, f"SPEC in {str(path)!r}"))


def _guarded(fn, what: str):
    """``fn`` with anything its code raises (SystemExit included; KeyboardInterrupt and the time limit pass) as one CircuitError."""
    def call(tokens):
        try:
            return int(fn(tokens))
        except (KeyboardInterrupt, TimeLimitExceeded):
            raise
        except BaseException as err:
            raise CircuitError(f"{what} raised {exception_line(err)} on {tokens!r}; fix it so it returns "
                               f"0 or 1 for every list of token ids") from None
    return call


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_name(value) -> bool:
    return isinstance(value, str)


def _setting(module, path: Path, attribute: str, element_ok, count: int | None, example: str) -> tuple | None:
    """A module-level tuple setting, checked as given (never coerced): None when the module does not define it."""
    if not hasattr(module, attribute):
        return None
    value = getattr(module, attribute)
    what = "integers" if element_ok is _is_int else "strings"
    if (not isinstance(value, (tuple, list)) or not all(element_ok(v) for v in value)
            or (count is not None and len(value) != count)):
        raise CircuitError(f"{attribute} in {str(path)!r} must be a tuple of {count or 'several'} {what}, got "
                           f"{value!r}; write e.g. {example}")
    return tuple(value)
