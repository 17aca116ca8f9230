"""The forward pass (``logits``): token embedding (+ position embedding, or position embeddings concatenated to
every block input when ``d_pos_emb`` is set), ``n_layer`` pre-norm blocks, final norm, unembedding
``+ final_logits_bias (+ bigram_table[current token])`` at every position; hooks at every location
(``ablation``).

Semantics of the flags (as in the original):

- Norms: LayerNorm (eps 1e-5, bias when ``ln_bias``) or, with ``rms_norm``, RMSNorm with weight only and eps the
  dtype's machine epsilon. MLP activation: GELU (exact erf form) or ReLU.
- ``afrac``: at each location type in ``afrac_loctypes`` (attn_in, attn_q, attn_k, attn_v, attn_out, mlp_in,
  mlp_neuron, mlp_out, resid_post_attn, resid_post_mlp) keep the ``int(afrac*width)`` entries of largest absolute
  value over the whole last axis (across heads for q/k/v) and zero the rest, before that location's hook. Ties
  between equal non-zero magnitudes may be broken differently from torch.topk.
- ``residual_activation_type="relu"``: ReLU on the residual stream after each residual addition.
- ``sink``: a per-head logit added to the softmax as an extra slot with zero key and zero value (only enlarges the
  denominator). The original applies it only on its ``flash=True`` attention path, which is how its examples load
  models (``load_model(..., flash=True)``); its ``flash=False`` default would silently drop the sink.
- ``tied_unembed``: the unembedding is the token embedding. Linear layers carry biases when ``bias``.
"""

from __future__ import annotations

import io
import math
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxscd.circuits.base import atomic_write
from jaxscd.circuits.sparse_gpt.ablation import NodeCircuit, check_circuit_fits, hook_arrays, load_circuit
from jaxscd.circuits.sparse_gpt.config import GPTConfig, SparseGPTError
from jaxscd.circuits.sparse_gpt.weights import load_model

LAYER_NORM_EPS = 1e-5


def _linear(params: dict, prefix: str, x: jax.Array) -> jax.Array:
    out = x @ params[f"{prefix}.weight"].T
    bias = params.get(f"{prefix}.bias")
    return out if bias is None else out + bias


def _norm(params: dict, prefix: str, x: jax.Array, config: GPTConfig) -> jax.Array:
    weight = params[f"{prefix}.weight"]
    if config.rms_norm:
        eps = jnp.finfo(x.dtype).eps
        return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + eps) * weight
    centred = x - jnp.mean(x, axis=-1, keepdims=True)
    out = centred * jax.lax.rsqrt(jnp.mean(centred * centred, axis=-1, keepdims=True) + LAYER_NORM_EPS) * weight
    bias = params.get(f"{prefix}.bias")
    return out if bias is None else out + bias


def _abs_top_k(x: jax.Array, k: int) -> jax.Array:
    """Keep exactly the k entries of largest |x| along the last axis (lowest index first among equal
    magnitudes), zero the rest; elementwise apart from finding the k-th magnitude, so no scatter is needed."""
    width = x.shape[-1]
    if k >= width:
        return x
    if k <= 0:
        return jnp.zeros_like(x)
    magnitude = jnp.abs(x)
    threshold = jax.lax.top_k(magnitude, k)[0][..., -1:]
    above, tied = magnitude > threshold, magnitude == threshold
    room = k - jnp.sum(above, axis=-1, keepdims=True)
    keep = above | (tied & (jnp.cumsum(tied, axis=-1) <= room))
    return jnp.where(keep, x, jnp.zeros_like(x))


def _attention(q: jax.Array, k: jax.Array, v: jax.Array, sink: jax.Array | None, config: GPTConfig) -> jax.Array:
    """Causal attention over [B, T, n_head*d_head] inputs; returns y in the same layout."""
    batch, length, _ = q.shape
    split = lambda t: t.reshape(batch, length, config.n_head, config.d_head)  # noqa: E731
    scores = jnp.einsum("bqhd,bkhd->bhqk", split(q), split(k)) / math.sqrt(config.d_head)
    causal = jnp.tril(jnp.ones((length, length), dtype=bool))
    scores = jnp.where(causal, scores, -jnp.inf)
    if sink is not None:  # a zero-key, zero-value slot whose logit is the sink: only adds to the denominator
        sink_column = jnp.broadcast_to(sink[None, :, None, None], (batch, config.n_head, length, 1))
        weights = jax.nn.softmax(jnp.concatenate([sink_column, scores], axis=-1), axis=-1)[..., 1:]
    else:
        weights = jax.nn.softmax(scores, axis=-1)
    y = jnp.einsum("bhqk,bkhd->bqhd", weights, split(v))
    return y.reshape(batch, length, config.d_attn)


@partial(jax.jit, static_argnames=("config", "record", "last_only", "columns"))
def _forward(params: dict, tokens: jax.Array, hooks: dict | None, *, config: GPTConfig, record: bool = False,
             last_only: bool = False, columns: tuple | None = None):
    """(logits [B, T or 1, V or len(columns)], recorded activations {location: [B, T, width]})."""
    acts = {}

    def hook(name: str, x: jax.Array) -> jax.Array:
        if hooks is not None:
            mask, mean = hooks[name]
            x = x * mask + mean * (1.0 - mask)
        if record:
            acts[name] = x
        return x

    def sparsify(x: jax.Array, loctype: str) -> jax.Array:
        if config.afrac is None or loctype not in config.afrac_loctypes:
            return x
        return _abs_top_k(x, int(config.afrac * x.shape[-1]))

    def block_input(x: jax.Array, ln: str, ln_pos: str, block: str) -> jax.Array:
        out = _norm(params, f"{block}.{ln}", x, config)
        if config.d_pos_emb:
            pos = _norm(params, f"{block}.{ln_pos}", pos_emb, config)
            pos = jnp.broadcast_to(pos, (*x.shape[:2], pos.shape[-1]))
            out = jnp.concatenate([out, pos], axis=-1)
        return out

    def residual(x: jax.Array, loctype: str) -> jax.Array:
        if config.residual_activation_type == "relu":
            x = jax.nn.relu(x)
        return sparsify(x, loctype)

    length = tokens.shape[1]
    pos_emb = params["transformer.wpe.weight"][:length]
    x = params["transformer.wte.weight"][tokens]
    if not config.d_pos_emb:
        x = x + pos_emb
    activation = jax.nn.relu if config.activation_type == "relu" else partial(jax.nn.gelu, approximate=False)
    for layer in range(config.n_layer):
        block = f"transformer.h.{layer}"
        x = hook(f"{layer}.resid_in", x)
        a = hook(f"{layer}.attn.act_in", sparsify(block_input(x, "ln_1", "ln_p1", block), "attn_in"))
        q, k, v = jnp.split(_linear(params, f"{block}.attn.c_attn", a), 3, axis=-1)
        k = hook(f"{layer}.attn.k", sparsify(k, "attn_k"))
        q = hook(f"{layer}.attn.q", sparsify(q, "attn_q"))
        v = hook(f"{layer}.attn.v", sparsify(v, "attn_v"))
        y = hook(f"{layer}.attn.y", _attention(q, k, v, params.get(f"{block}.attn.attn_imp.sink_logit"), config))
        delta = sparsify(_linear(params, f"{block}.attn.c_proj", y), "attn_out")
        x = residual(x + hook(f"{layer}.attn.resid_delta", delta), "resid_post_attn")
        x = hook(f"{layer}.resid_mid", x)
        m = hook(f"{layer}.mlp.act_in", sparsify(block_input(x, "ln_2", "ln_p2", block), "mlp_in"))
        h = hook(f"{layer}.mlp.post_act", sparsify(activation(_linear(params, f"{block}.mlp.c_fc", m)), "mlp_neuron"))
        delta = sparsify(_linear(params, f"{block}.mlp.c_proj", h), "mlp_out")
        x = residual(x + hook(f"{layer}.mlp.resid_delta", delta), "resid_post_mlp")
    x = hook("final_resid", x)
    if last_only:
        x, tokens = x[:, -1:], tokens[:, -1:]
    cols = slice(None) if columns is None else jnp.asarray(columns)
    out = _norm(params, "transformer.ln_f", x, config) @ params["lm_head.weight"][cols].T
    out = out + params["final_logits_bias"][cols]
    if config.enable_bigram_table:
        out = out + params["bigram_table"][tokens][..., cols]
    return out, acts


def check_tokens(tokens, config: GPTConfig) -> np.ndarray:
    array = np.asarray(tokens)
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
        raise SparseGPTError(f"tokens must be an integer array [batch, positions], got shape {list(array.shape)}")
    if array.dtype.kind not in "iu":
        raise SparseGPTError(f"tokens must be integers, got dtype {array.dtype}")
    if array.shape[1] > config.block_size:
        raise SparseGPTError(f"{array.shape[1]} positions exceed the model's block_size {config.block_size}; "
                             f"shorten the sequences")
    bad = array[(array < 0) | (array >= config.vocab_size)]
    if bad.size:
        raise SparseGPTError(f"token id {int(bad[0])} is outside the vocabulary 0..{config.vocab_size - 1}")
    return array.astype(np.int64)


def logits(params: dict, config: GPTConfig, tokens, circuit: NodeCircuit | None = None) -> jax.Array:
    """float64 [B, T, vocab] logits at every position of tokens int[B, T], optionally under a circuit."""
    if circuit is not None:
        check_circuit_fits(circuit, config)
    return _forward(params, jnp.asarray(check_tokens(tokens, config)), hook_arrays(circuit), config=config)[0]


def activations(params: dict, config: GPTConfig, tokens, circuit: NodeCircuit | None = None) -> tuple:
    """(logits, {location: activation [B, T, width]}), each activation as it flows on (after any ablation)."""
    if circuit is not None:
        check_circuit_fits(circuit, config)
    tokens = jnp.asarray(check_tokens(tokens, config))
    return _forward(params, tokens, hook_arrays(circuit), config=config, record=True)


def in_batches(run, tokens: np.ndarray, batch_size: int) -> np.ndarray:
    """run(int[b, T]) on fixed-size row chunks (the last one padded) so memory stays flat and shapes repeat."""
    size = min(batch_size, tokens.shape[0])
    outputs = []
    for start in range(0, tokens.shape[0], size):
        chunk = tokens[start:start + size]
        real = chunk.shape[0]
        if real < size:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], size - real, axis=0)])
        outputs.append(np.asarray(run(chunk))[:real])
    return np.concatenate(outputs)


def eval_logits(model_dir, tokens_npy, out_npy, viz=None, means=None, batch_size: int = 256) -> np.ndarray:
    """Write float64 logits [batch, positions, vocab] of the tokens in ``tokens_npy`` to ``out_npy`` atomically;
    with ``viz`` and ``means``, under that circuit. Returns the logits."""
    out_path = Path(out_npy)
    if not out_path.parent.is_dir():
        raise SparseGPTError(f"output folder not found: {str(out_path.parent)!r}; create it first")
    model = load_model(model_dir)
    tokens_path = Path(tokens_npy)
    if not tokens_path.is_file():
        raise SparseGPTError(f"tokens file not found: {str(tokens_path)!r}; save an int array [batch, positions] "
                             f"with numpy.save")
    try:
        raw = np.load(tokens_path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise SparseGPTError(f"could not read {str(tokens_path)!r} as a .npy array: {err}") from None
    if not isinstance(raw, np.ndarray):
        raw.close()
        raise SparseGPTError(f"{str(tokens_path)!r} is an .npz archive; save one int array with numpy.save")
    tokens = check_tokens(raw, model.config)
    circuit = load_circuit(model.config, viz, means)
    hooks = hook_arrays(circuit)
    out = in_batches(lambda chunk: _forward(model.params, jnp.asarray(chunk), hooks, config=model.config)[0],
                      tokens, batch_size).astype(np.float64)
    buffer = io.BytesIO()
    np.save(buffer, out)
    atomic_write(out_path, buffer.getvalue())
    return out
