"""The edges of a pruned circuit_sparsity circuit, as ``jaxscd prune`` counts them and the report draws them: a
non-zero weight from a kept input channel to a kept output channel (``act_in -> q/k/v``, ``v -> attn.resid_delta``
through its ``y`` channel, ``mlp.act_in -> post_act -> mlp.resid_delta``), or a residual link from a kept
block-output channel to the same kept channel of every later norm output (weighted by the norm's gain)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Edge:
    source: tuple  # (location, channel)
    target: tuple  # (location, channel); ("readout", 0) for the logit difference
    weight: float
    kind: str  # "weight": a matrix entry; "residual": the stream, weighted by the norm's gain; "readout"


def kept_channels(kept: Mapping, location: str) -> np.ndarray:
    return np.unique(np.asarray(kept.get(location, ()), dtype=np.int64))


def circuit_edges(params: Mapping, config, kept: Mapping) -> list:
    """Every edge between kept nodes, as ``jaxscd prune`` counts them, in layer order."""
    edges, written = [], []  # written: the block-output locations before the current norm

    def matrix(name: str, target: str, source: str, row_offset: int = 0) -> None:
        rows, cols = kept_channels(kept, target), kept_channels(kept, source)
        block = np.asarray(params[name])[np.ix_(rows + row_offset, cols)] if len(rows) and len(cols) else np.zeros(0)
        for r, c in zip(*np.nonzero(block)):
            edges.append(Edge((source, int(cols[c])), (target, int(rows[r])), float(block[r, c]), "weight"))

    def residual(norm: str, target: str) -> None:
        gain = np.asarray(params[f"{norm}.weight"])
        for source in written:
            for channel in np.intersect1d(kept_channels(kept, source), kept_channels(kept, target)):
                edges.append(Edge((source, int(channel)), (target, int(channel)), float(gain[channel]), "residual"))

    for layer in range(config.n_layer):
        block, at = f"transformer.h.{layer}", f"{layer}."
        residual(f"{block}.ln_1", at + "attn.act_in")
        for part, name in enumerate(("q", "k", "v")):
            matrix(f"{block}.attn.c_attn.weight", at + f"attn.{name}", at + "attn.act_in", part * config.d_attn)
        matrix(f"{block}.attn.c_proj.weight", at + "attn.resid_delta", at + "attn.v")
        written.append(at + "attn.resid_delta")
        residual(f"{block}.ln_2", at + "mlp.act_in")
        matrix(f"{block}.mlp.c_fc.weight", at + "mlp.post_act", at + "mlp.act_in")
        matrix(f"{block}.mlp.c_proj.weight", at + "mlp.resid_delta", at + "mlp.post_act")
        written.append(at + "mlp.resid_delta")
    return edges
