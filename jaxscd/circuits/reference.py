"""Built-in reference circuits: one-layer transformer circuits with explicit, hand-set weights.

Each is a residual stream of named channels, an MLP (layer 0) that writes feature channels, one attention head
read from the final position (softmax over the whole causal context), and a readout of two logits. Weights are
set so that each component does one legible thing, after the circuits of Gao et al. (2025), "Weight-sparse
transformers have interpretable circuits": Fig. 4 (closing quotes) and Fig. 5 (bracket depth).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from jaxscd.circuits.base import Circuit, sha256_bytes


@dataclass(frozen=True, eq=False)
class OneLayerCircuit:
    """x = embed[t] + pos[i]; x += relu(x W_in + b_in) W_out; the last position attends with one head; logits."""

    embed: np.ndarray  # [V, D]
    pos: np.ndarray  # [max_positions, D]
    w_in: np.ndarray  # [D, H]
    b_in: np.ndarray  # [H]
    w_out: np.ndarray  # [H, D]
    w_q: np.ndarray  # [D, d_head]
    w_k: np.ndarray  # [D, d_head]
    w_v: np.ndarray  # [D, d_v]
    w_o: np.ndarray  # [d_v, D]
    readout: np.ndarray  # [D, 2]

    def arrays(self) -> dict:
        return {name: np.asarray(getattr(self, name), dtype=np.float64) for name in self.__dataclass_fields__}

    def fingerprint(self) -> str:
        return sha256_bytes(b"".join(a.tobytes() for a in self.arrays().values()))

    def __call__(self, tokens: jax.Array) -> jax.Array:
        return _forward(self.arrays(), jnp.asarray(tokens))


@jax.jit
def _forward(w: dict, tokens: jax.Array) -> jax.Array:
    """logits float64 [B, 2] at the last position of tokens int[B, L]."""
    length = tokens.shape[1]
    x = w["embed"][tokens] + w["pos"][None, :length]  # [B, L, D]
    x = x + jax.nn.relu(x @ w["w_in"] + w["b_in"]) @ w["w_out"]
    query = x[:, -1] @ w["w_q"]  # [B, d_head]
    keys = x @ w["w_k"]  # [B, L, d_head]
    scores = jnp.einsum("bd,bld->bl", query, keys)  # scale folded into the weights
    attn = jax.nn.softmax(scores, axis=-1)
    head = jnp.einsum("bl,blv->bv", attn, x @ w["w_v"]) @ w["w_o"]
    return (x[:, -1] + head) @ w["readout"]


def _zeros(*shape) -> np.ndarray:
    return np.zeros(shape, dtype=np.float64)


# Channels of the quote circuit's residual stream.
ONE, IS_DQ, IS_SQ, QUOTE, QUOTE_TYPE, POSITION, HEAD_OUT = range(7)


def quote_close_circuit(max_positions: int = 16, key_gain: float = 8.0, recency: float = 4.0) -> OneLayerCircuit:
    """Alphabet a b " ' ; decides which quote closes the string: 0 = '"', 1 = "'".

    MLP: neuron 0 fires on either quote (quote detector), neurons 1/2 on '"' / "'" write the quote type (+1/-1).
    Head: constant query; key = detector (gain ``key_gain * max_positions``) + position (``recency``), so it
    attends to the most recent quote; value = quote type. Readout: logit['"'] = +head, logit["'"] = -head.
    """
    d = 7
    embed = _zeros(4, d)
    embed[:, ONE] = 1.0
    embed[2, IS_DQ] = 1.0
    embed[3, IS_SQ] = 1.0
    pos = _zeros(max_positions, d)
    pos[:, POSITION] = np.arange(max_positions)
    w_in, w_out = _zeros(d, 3), _zeros(3, d)
    w_in[IS_DQ, 0] = w_in[IS_SQ, 0] = 1.0  # quote detector
    w_in[IS_DQ, 1] = 1.0
    w_in[IS_SQ, 2] = 1.0
    w_out[0, QUOTE] = 1.0
    w_out[1, QUOTE_TYPE], w_out[2, QUOTE_TYPE] = 1.0, -1.0
    w_q, w_k = _zeros(d, 2), _zeros(d, 2)
    w_q[ONE, 0], w_q[ONE, 1] = key_gain * max_positions, recency
    w_k[QUOTE, 0], w_k[POSITION, 1] = 1.0, 1.0
    w_v, w_o = _zeros(d, 1), _zeros(1, d)
    w_v[QUOTE_TYPE, 0], w_o[0, HEAD_OUT] = 1.0, 1.0
    readout = _zeros(d, 2)
    readout[HEAD_OUT, 0], readout[HEAD_OUT, 1] = 1.0, -1.0
    return OneLayerCircuit(embed, pos, w_in, _zeros(3), w_out, w_q, w_k, w_v, w_o, readout)


# Channels of the bracket circuit's residual stream.
B_ONE, IS_OPEN, IS_CLOSE, DEPTH_SIGNAL, MEAN_DEPTH = range(5)


def bracket_depth_circuit(max_positions: int = 16, threshold: float = 0.27, gain: float = 20.0) -> OneLayerCircuit:
    """Alphabet [ ] a ; decides how many brackets close the context: 0 = ']', 1 = ']]'.

    MLP: +1 for '[' and -1 for ']' (open-bracket detector). Head: constant query and key, so attention is uniform
    over the context and the head writes the *density* (#'[' - #']') / length. Readout: logit[']]'] - logit[']']
    = gain * (density - threshold): nesting depth is carried as a density, diluted by longer contexts.
    """
    d = 5
    embed = _zeros(3, d)
    embed[:, B_ONE] = 1.0
    embed[0, IS_OPEN] = 1.0
    embed[1, IS_CLOSE] = 1.0
    w_in, w_out = _zeros(d, 2), _zeros(2, d)
    w_in[IS_OPEN, 0], w_in[IS_CLOSE, 1] = 1.0, 1.0
    w_out[0, DEPTH_SIGNAL], w_out[1, DEPTH_SIGNAL] = 1.0, -1.0
    w_q, w_k = _zeros(d, 1), _zeros(d, 1)  # all scores 0: uniform attention
    w_v, w_o = _zeros(d, 1), _zeros(1, d)
    w_v[DEPTH_SIGNAL, 0], w_o[0, MEAN_DEPTH] = 1.0, 1.0
    readout = _zeros(d, 2)
    readout[MEAN_DEPTH, 1] = gain
    readout[B_ONE, 1] = -gain * threshold
    return OneLayerCircuit(embed, _zeros(max_positions, d), w_in, _zeros(2), w_out, w_q, w_k, w_v, w_o, readout)


def as_circuit(name: str, model: OneLayerCircuit, class_names: tuple) -> Circuit:
    return Circuit(name, model, class_names, model.fingerprint())
