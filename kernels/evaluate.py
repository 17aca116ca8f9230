"""Exhaustive circuit evaluation: the truth table (decision and margin) of a circuit on every domain input."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jaxscd import devices, progress
from jaxscd.circuits.base import Circuit, CircuitError, exception_line
from jaxscd.budget import TimeLimitExceeded
from jaxscd.circuits.purity import LADDER, PurityEvidence, check_purity
from jaxscd.domain import Domain
from jaxscd.kernels.enumerate import chunk_indices, decode_indices


@dataclass(frozen=True, eq=False)
class TruthTable:
    decisions: np.ndarray  # int8 [size]: the circuit's class on each sequence
    margins: np.ndarray  # float64 [size]: |logit_1 - logit_0|; inf where the circuit returns decisions
    valid: np.ndarray  # bool [size]: the precondition holds
    margin_bound: float = 0.0  # decisions with a margin not above this are not trusted (see float_error_bound)
    purity: PurityEvidence | None = None  # what the purity check re-ran (circuits.purity)

    def min_margin(self) -> float:
        return float(self.margins[self.valid].min()) if self.valid.any() else float("inf")


MIN_BOUND = 1e-9  # floor of the float error bound, for float64 forward passes of small circuits


def float_error_bound(logits: np.ndarray) -> float:
    """A conservative bound on the rounding error of a logit gap computed in the logits' own dtype: 256 units
    in the last place of the largest logit (never below MIN_BOUND). Not derived per circuit: deep or wide float32
    circuits may need more, which is why decisions near it are reported as untrusted rather than guessed."""
    if not np.issubdtype(logits.dtype, np.floating):
        return MIN_BOUND
    scale = 1.0 + float(np.abs(logits).max(initial=0.0))
    return max(MIN_BOUND, 256 * float(np.finfo(logits.dtype).eps) * scale)


def run_circuit(circuit: Circuit, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(decisions int8[B], margins float64[B], float error bound) of ``circuit`` on tokens [B, L]; anything the
    circuit's code raises (SystemExit included; KeyboardInterrupt and the time limit pass) becomes a one-line CircuitError."""
    try:
        output = np.asarray(circuit.forward(tokens))
    except (KeyboardInterrupt, TimeLimitExceeded, CircuitError):
        raise
    except BaseException as err:  # user code: sys.exit() in a circuit must not end the run as a success
        raise CircuitError(f"circuit {circuit.name!r} raised {exception_line(err)} (on {tokens.dtype} "
                           f"tokens of shape {list(tokens.shape)}); fix the circuit so it runs on every sequence of "
                           f"the domain") from None
    return _decide(output, len(tokens), circuit.name)


def _decide(out: np.ndarray, batch: int, name: str) -> tuple[np.ndarray, np.ndarray, float]:
    if out.dtype.kind not in "biuf":
        raise CircuitError(f"circuit {name!r} returned an array of dtype {out.dtype}; return real logits (float or "
                           f"int) [batch, 2] or decisions [batch] in {{0, 1}}")
    if out.shape == (batch,):
        if not ((out == 0) | (out == 1)).all():
            raise CircuitError(f"circuit {name!r} returned decisions outside {{0, 1}}: {np.unique(out)[:5].tolist()}")
        return out.astype(np.int8), np.full(batch, np.inf), 0.0
    if out.shape != (batch, 2):
        raise CircuitError(f"circuit {name!r} returned shape {out.shape} for {batch} sequences; expected logits "
                           f"[{batch}, 2] or decisions [{batch}]")
    wide = out.astype(np.float64)
    if not np.isfinite(wide).all():
        raise CircuitError(f"circuit {name!r} returned non-finite logits (NaN or inf); check its weights")
    return (wide[:, 1] > wide[:, 0]).astype(np.int8), np.abs(wide[:, 1] - wide[:, 0]), float_error_bound(out)


def evaluate_circuit(circuit: Circuit, domain: Domain, valid: np.ndarray, chunk_size: int = 1 << 14) -> TruthTable:
    """Run ``circuit`` on every sequence, one length at a time (the circuit sees unpadded int32 [B, L] arrays),
    then check that it is a function of its input (``circuits.purity``, with a fresh seed): the table carries
    the evidence gathered. Circuits jaxscd runs jitted skip the purity ladder (a compilation per batch shape).

    Ties (equal logits) go to class 0 and have margin 0, so they can never pass a margin check.
    """
    decisions = np.empty(domain.size, dtype=np.int8)
    margins = np.empty(domain.size, dtype=np.float64)
    bound = 0.0
    starts = domain.starts
    on_devices = _jax_circuit(circuit)
    for slot, length in enumerate(domain.lengths):
        begin, end = int(starts[slot]), int(starts[slot + 1])
        for first, idx, real in _circuit_chunks(begin, end, chunk_size, on_devices):
            tokens, _ = decode_indices(domain, idx)
            batch = tokens[:, :length] if on_devices else np.asarray(tokens)[:, :length]
            dec, margin, chunk_bound = run_circuit(circuit, batch)
            bound = max(bound, chunk_bound)
            decisions[first:first + real], margins[first:first + real] = dec[:real], margin[:real]
            progress.advance(first + real, domain.size, "inputs")
    purity = check_purity(lambda batch: run_circuit(circuit, batch), circuit.name, domain, decisions, margins, valid,
                          bound, chunk_size, () if on_devices else LADDER)
    return TruthTable(decisions, margins, valid, bound, purity)


DEVICE_TILE = 1 << 12  # rows per device per call of a JAX circuit, whatever the number of devices


def _circuit_chunks(begin: int, end: int, chunk_size: int, on_devices: bool):
    """Index chunks of one length. A JAX circuit gets full chunks of DEVICE_TILE rows per device (short lengths
    padded): every device then runs the same compiled shape as a single device does, so float logits are
    bit-identical on any device count (XLA's float results may depend on the batch shape)."""
    if not on_devices:
        yield from chunk_indices(begin, end, chunk_size)
        return
    size = DEVICE_TILE * devices.count()
    for first in range(begin, end, size):
        yield first, np.minimum(np.arange(first, first + size, dtype=np.int64), end - 1), min(size, end - first)


def _jax_circuit(circuit: Circuit) -> bool:
    """Circuits written in JAX (built-in and graph circuits) take the device token array as it is, split over every
    device (``jaxscd.devices``); any other callable gets a numpy array, as its author expects."""
    from jaxscd.circuits.graph import CircuitGraph
    from jaxscd.circuits.reference import OneLayerCircuit

    return isinstance(circuit.forward, (OneLayerCircuit, CircuitGraph))
