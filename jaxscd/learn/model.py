"""A weight-sparse GPT as a flax nnx module whose parameters are circuit_sparsity's state dict.

The parameters are one ``nnx.Param`` per state-dict entry, named as circuit_sparsity names them, and the forward
pass is jaxscd's own re-implementation (``jaxscd.circuits.sparse_gpt``): what is trained here is exactly what
``jaxscd eval`` / ``distill --circuit-sparsity`` later run, with no conversion in between.

Weight sparsity (Gao et al. 2025): after every optimizer step each matrix keeps only its largest-magnitude entries
(``keep_largest``), a fraction annealed from 1 to the target; every row (one output neuron, or one token's
embedding) keeps at least ``min_per_neuron`` entries.
"""

from __future__ import annotations

import flax.nnx as nnx
import jax
import jax.numpy as jnp
import numpy as np

from jaxscd.circuits.sparse_gpt import GPTConfig, _forward, state_dict_shapes  # noqa: PLC2701 (same forward)


def beeg_config(vocab_size: int, block_size: int, n_layer: int = 1, d_model: int = 32, n_head: int = 2,
                d_head: int = 16, d_mlp: int = 64, afrac: float | None = 0.5, bigram: bool = False,
                sink: bool = False, activation: str = "relu") -> dict:
    """A beeg_config.json object (circuit_sparsity's keys) for a small weight-sparse GPT: RMSNorm, no biases,
    untied unembedding, AbsTopK activation sparsity at the block inputs and outputs."""
    return {"block_size": block_size, "vocab_size": vocab_size, "n_layer": n_layer, "n_head": n_head,
            "d_model": d_model, "d_head": d_head, "d_mlp": d_mlp, "bias": False, "ln_bias": False, "rms_norm": True,
            "residual_activation_type": "identity", "activation_type": activation, "afrac": afrac,
            "afrac_loctypes": "attn_in,attn_out,mlp_in,mlp_out", "tied_unembed": False,
            "enable_bigram_table": bigram, "learnable_bigram_table": bigram, "d_pos_emb": None, "sink": sink,
            "dropout": 0.0, "flash": True, "tokenizer_name": "jaxscd_learned"}


def sparsified(key: str, config: GPTConfig) -> bool:
    """Whether a state-dict entry is a weight matrix under the L0 constraint (not norms, biases or sinks)."""
    shape = state_dict_shapes(config)[key]
    return len(shape) == 2 and key != "transformer.wpe.weight"


class SparseGPTModule(nnx.Module):
    """circuit_sparsity's GPT; ``weights`` maps each state-dict key to its Param (torch [out, in] layout)."""

    def __init__(self, config: GPTConfig, rngs: nnx.Rngs, positional: bool = False):
        self.config = config
        weights = {}
        for key, shape in state_dict_shapes(config).items():
            weights[key] = nnx.Param(_initial(key, shape, rngs.params(), positional))
        self.weights = nnx.Dict(weights)

    def params(self) -> dict:
        return {key: value[...] for key, value in self.weights.items()}

    def __call__(self, tokens: jax.Array, hooks: dict | None = None, record: bool = False):
        """(logits [B, T, vocab], {location: activation} when ``record``)."""
        return _forward(self.params(), tokens, hooks, config=self.config, record=record)


def _initial(key: str, shape: tuple, rng: jax.Array, positional: bool) -> jax.Array:
    if key.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
        return jnp.ones(shape)
    if key in ("final_logits_bias", "bigram_table") or key.endswith("sink_logit"):
        return jnp.zeros(shape)
    if key == "transformer.wpe.weight":  # no positional embeddings unless asked: kept at zero
        return 0.1 * jax.random.normal(rng, shape) if positional else jnp.zeros(shape)
    scale = 1.0 if key == "transformer.wte.weight" else 1.0 / np.sqrt(shape[1])
    return scale * jax.random.normal(rng, shape)


def keep_largest(weight: jax.Array, fraction: jax.Array, min_per_neuron: int) -> jax.Array:
    """``weight`` with only its ``round(fraction * size)`` largest-magnitude entries (at least ``min_per_neuron``
    per row) left non-zero; ``fraction`` may be traced."""
    magnitude = jnp.abs(weight)
    ordered = jnp.sort(magnitude.ravel())[::-1]
    count = jnp.clip(jnp.round(fraction * weight.size).astype(jnp.int32), 1, weight.size)
    keep = magnitude >= ordered[count - 1]
    per_row = min(min_per_neuron, weight.shape[1])
    row_threshold = jax.lax.top_k(magnitude, per_row)[0][:, -1:]
    return jnp.where(keep | (magnitude >= row_threshold), weight, 0.0)


def weight_density(params: dict, config: GPTConfig) -> float:
    """Fraction of non-zero entries over the sparsified matrices."""
    keys = [k for k in params if sparsified(k, config)]
    return float(sum(int(np.count_nonzero(np.asarray(params[k]))) for k in keys) /
                 sum(int(np.asarray(params[k]).size) for k in keys))
