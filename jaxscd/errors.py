"""The errors jaxscd raises on purpose, under one base. Only ``jaxscd.cli`` maps them to exit codes; any other
exception is a bug in jaxscd, never reported as bad input or a corrupt bundle.

Three families: ``InputError`` (what the user gave cannot be used), ``CircuitError`` (the circuit cannot be loaded,
run or rebuilt), ``BundleError`` (a bundle cannot be read; its ``kind`` says how). An error under ``JaxscdError`` but
outside them marks a fallback the library catches itself (``CompileError``, ``SurrogateError``) or a failed
internal check (``SynthesisError``): reaching the command line, it is a bug. A leaf module: it imports nothing.
"""

from __future__ import annotations


class JaxscdError(Exception):
    """Base of every error jaxscd raises on purpose; the message says what, the value, and the fix."""


class InputError(JaxscdError, ValueError):
    """Bad user input: options, domains, circuit files, graphs, templates, output directories, sweep specs."""


class CircuitError(JaxscdError, ValueError):
    """A circuit that cannot be loaded, run or rebuilt (bad file or checkpoint, wrong output shape, NaN logits...)."""


class BundleError(JaxscdError):
    """A bundle that cannot be read at all. ``kind``: "missing" (a file or the directory), "corrupt" (malformed
    certificate or files), "schema" (another certificate version) or "input" (an option that does not fit it)."""

    KINDS = ("missing", "corrupt", "schema", "input")

    def __init__(self, message: str, kind: str = "corrupt"):
        if kind not in self.KINDS:
            raise ValueError(f"BundleError kind {kind!r} is not one of {self.KINDS}")
        super().__init__(message)
        self.kind = kind
