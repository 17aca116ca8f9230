"""Circuits (``NodeCircuit``): kept channels per hook location (``viz_data.pt``'s ``circuit_data``) and a mean per
location (``means.pt``). At each hooked location ``x -> x*mask + mean*(1-mask)``; the replaced value flows
downstream. Hook locations, per layer L, in emission order::

    L.resid_in, L.attn.act_in, L.attn.k, L.attn.q, L.attn.v, L.attn.y, L.attn.resid_delta,
    L.resid_mid, L.mlp.act_in, L.mlp.post_act, L.mlp.resid_delta        then  final_resid

q/k/v/y channels are ``head*d_head + dim`` (before the 1/sqrt(d_head) scaling).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from jaxscd.circuits.base import sha256_bytes
from jaxscd.circuits.sparse_gpt.config import GPTConfig, SparseGPTError, hook_widths
from jaxscd.circuits.sparse_gpt.weights import load_npz, to_float64, torch_load

@dataclass(frozen=True, eq=False)
class NodeCircuit:
    """Kept channels per hook location; every other channel of those locations is replaced by its mean."""

    kept: dict  # location -> int64 [n_kept] channel indices
    hooks: dict  # every location -> (mask float64 [width], mean float64 [width]); mask all ones off the circuit

    def fingerprint(self) -> str:
        return sha256_bytes(b"".join(k.encode() + m.tobytes() + u.tobytes()
                                     for k, (m, u) in sorted(self.hooks.items())))


def make_circuit(config: GPTConfig, kept: Mapping, means: Mapping) -> NodeCircuit:
    """Validate kept indices and means against the model's hook locations; locations absent from ``kept`` are
    left intact. ``means`` must hold every location of ``kept`` and may hold others."""
    widths = hook_widths(config)
    unknown = [str(loc) for loc in [*kept, *means] if loc not in widths]
    if unknown:
        raise SparseGPTError(f"unknown hook locations {sorted(set(unknown))}; valid locations: {', '.join(widths)}")
    hooks, kept_out = {}, {}
    for loc, width in widths.items():
        mask, mean = np.ones(width), np.zeros(width)
        if loc in means:
            try:
                mean = to_float64(means[loc])
            except (TypeError, ValueError, RuntimeError):
                raise SparseGPTError(f"mean for {loc!r} is not a numeric array: {means[loc]!r:.80}") from None
            if mean.shape != (width,):
                raise SparseGPTError(f"mean for {loc!r} has shape {list(mean.shape)}; expected [{width}]")
            if not np.isfinite(mean).all():
                raise SparseGPTError(f"mean for {loc!r} has NaN or inf values")
        if loc in kept:
            if loc not in means:
                raise SparseGPTError(f"no mean for circuit location {loc!r}; means.pt must cover every location "
                                     f"of the circuit")
            indices = _indices(kept[loc], loc)
            bad = indices[(indices < 0) | (indices >= width)]
            if bad.size:
                raise SparseGPTError(f"channel index {int(bad[0])} out of range at {loc!r} (width {width}); "
                                     f"indices must be in 0..{width - 1}")
            mask = np.zeros(width)
            mask[indices] = 1.0
            kept_out[loc] = indices
        hooks[loc] = (mask, mean)
    return NodeCircuit(kept_out, hooks)


def _indices(value, loc: str) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise SparseGPTError(f"kept channels at {loc!r} must be a 1-D list of integers, got dtype {array.dtype} "
                             f"shape {list(array.shape)}")
    return array.astype(np.int64)


def _load_viz_npz(path: Path) -> dict:
    """viz_data.npz, the torch-free mirror of viz_data.pt: one int array per location, named circuit_data/<loc>."""
    arrays = load_npz(path)
    return {"circuit_data": {k.removeprefix("circuit_data/"): v for k, v in arrays.items()
                             if k.startswith("circuit_data/")}}


def load_circuit(config: GPTConfig, viz_path: str | os.PathLike | None,
                 means_path: str | os.PathLike | None) -> NodeCircuit | None:
    """A circuit from ``viz_data.pt`` (``circuit_data``: location -> kept indices) and ``means.pt``, or their
    ``.npz`` mirrors (``circuit_data/<location>`` arrays; location -> mean); None (the whole model) when neither is
    given. One without the other is an error."""
    if (viz_path is None) != (means_path is None):
        raise SparseGPTError("give both --viz (viz_data.pt) and --means (means.pt) to run a circuit, or neither")
    if viz_path is None:
        return None
    viz_path, means_path = Path(viz_path), Path(means_path)
    for path, what in ((viz_path, "viz_data.pt"), (means_path, "means.pt")):
        if not path.is_file():
            raise SparseGPTError(f"{what} not found: {str(path)!r}")
    viz = _load_viz_npz(viz_path) if viz_path.suffix == ".npz" else torch_load(viz_path, "viz_data")
    if not isinstance(viz, Mapping) or not isinstance(viz.get("circuit_data"), Mapping):
        raise SparseGPTError(f"{str(viz_path)!r} has no 'circuit_data' mapping (location -> kept channel indices)")
    importances = viz.get("importances")
    model_config = importances.get("beeg_model_config") if isinstance(importances, Mapping) else None
    if isinstance(model_config, Mapping) and GPTConfig.from_dict(model_config, str(viz_path)) != config:
        raise SparseGPTError(f"{str(viz_path)!r} was made for a different model config; use the viz data of "
                             f"this checkpoint")
    means = load_npz(means_path) if means_path.suffix == ".npz" else torch_load(means_path, "means")
    if not isinstance(means, Mapping):
        raise SparseGPTError(f"{str(means_path)!r} must hold a mapping location -> mean [width], got "
                             f"{type(means).__name__}")
    return make_circuit(config, viz["circuit_data"], means)


def check_circuit_fits(circuit: NodeCircuit, config: GPTConfig) -> None:
    widths = {loc: mask.shape[0] for loc, (mask, _) in circuit.hooks.items()}
    if widths != hook_widths(config):
        raise SparseGPTError("the circuit was built for a different model config (its hook locations or widths "
                             "differ); build it with make_circuit/load_circuit for this model")


def hook_arrays(circuit: NodeCircuit | None) -> dict | None:
    return None if circuit is None else {k: (jnp.asarray(m), jnp.asarray(u)) for k, (m, u) in circuit.hooks.items()}
