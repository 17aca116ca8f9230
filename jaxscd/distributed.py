"""One domain across hosts with JAX's multi-controller runtime (``jax.distributed``).

Every process runs the same program: ``initialize`` joins the job, then ``evaluate_circuit_across_processes``
evaluates this process's contiguous share of the domain on its local devices (the same tiled path as
``kernels.evaluate``, so logits are bit-identical to one process) and all processes exchange their shares with one
all-gather; each ends with the whole truth table. On CPU the exchange goes through gloo collectives.

    python -c "from jaxscd import distributed; distributed.initialize('host0:1234', 2, RANK); ..."
"""

from __future__ import annotations

import jax
import numpy as np

from jaxscd.circuits.base import Circuit
from jaxscd.circuits.purity import LADDER, check_purity, fresh_seed
from jaxscd.domain import Domain
from jaxscd.kernels import evaluate
from jaxscd.kernels.enumerate import decode_indices


def initialize(coordinator: str, num_processes: int, process_id: int) -> None:
    """Join a job of ``num_processes`` (call before anything else touches JAX devices)."""
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # cross-process collectives on CPU devices
    jax.distributed.initialize(coordinator, num_processes, process_id)


def share(size: int, process: int, processes: int) -> tuple[int, int]:
    """[begin, end) of the domain indices a process evaluates: contiguous, sizes differ by at most one."""
    per, extra = divmod(size, processes)
    begin = process * per + min(process, extra)
    return begin, begin + per + (process < extra)


def evaluate_range(circuit: Circuit, domain: Domain, begin: int, end: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(decisions int8, margins float64, float bound) of the circuit on domain indices [begin, end), one length at
    a time, in the chunks ``kernels.evaluate`` uses."""
    decisions = np.empty(end - begin, dtype=np.int8)
    margins = np.empty(end - begin, dtype=np.float64)
    bound, on_devices, starts = 0.0, evaluate._jax_circuit(circuit), domain.starts
    for slot, length in enumerate(domain.lengths):
        low, high = max(begin, int(starts[slot])), min(end, int(starts[slot + 1]))
        for first, idx, real in evaluate._circuit_chunks(low, high, 1 << 14, on_devices):
            tokens, _ = decode_indices(domain, idx)
            batch = tokens[:, :length] if on_devices else np.asarray(tokens)[:, :length]
            dec, margin, chunk_bound = evaluate.run_circuit(circuit, batch)
            bound = max(bound, chunk_bound)
            span = slice(first - begin, first - begin + real)
            decisions[span], margins[span] = dec[:real], margin[:real]
    return decisions, margins, bound


def evaluate_circuit_across_processes(circuit: Circuit, domain: Domain, valid: np.ndarray) -> evaluate.TruthTable:
    """The truth table of the whole domain, each process evaluating its share; every process returns all of it."""
    from jax.experimental import multihost_utils

    processes, process = jax.process_count(), jax.process_index()
    begin, end = share(domain.size, process, processes)
    decisions, margins, bound = evaluate_range(circuit, domain, begin, end)
    width = -(-domain.size // processes)  # equal shapes for the all-gather
    pad = width - (end - begin)
    local = {"decisions": np.pad(decisions, (0, pad)), "margins": np.pad(margins, (0, pad)),
             "bound": np.array([bound])}
    gathered = multihost_utils.process_allgather(local)  # each leaf gains a leading [processes] axis
    keep = [np.arange(*share(domain.size, p, processes)) - share(domain.size, p, processes)[0]
            for p in range(processes)]
    decisions = np.concatenate([np.asarray(gathered["decisions"][p])[keep[p]] for p in range(processes)])
    margins = np.concatenate([np.asarray(gathered["margins"][p])[keep[p]] for p in range(processes)])
    bound = float(np.max(gathered["bound"]))
    purity = check_purity(lambda batch: evaluate.run_circuit(circuit, batch), circuit.name, domain, decisions,
                          margins, valid, bound, 1 << 14, () if evaluate._jax_circuit(circuit) else LADDER,
                          _shared_seed())  # the same fresh seed, so the same re-runs, in every process
    return evaluate.TruthTable(decisions.astype(np.int8), margins, valid, bound, purity)


def _shared_seed() -> int:
    """Process 0's fresh purity seed, in every process (128 bits sent as 16-bit words: int32 survives any jax
    dtype setting)."""
    from jax.experimental import multihost_utils

    words = np.frombuffer(fresh_seed().to_bytes(16, "little"), dtype=np.uint16).astype(np.int32)
    shared = np.asarray(multihost_utils.broadcast_one_to_all(words)).astype(np.uint16)
    return int.from_bytes(shared.tobytes(), "little")
