"""Weights (``load_model``): ``final_model.pt`` (torch, imported lazily, ``weights_only``) or a ``weights.npz``
mirror of the same state dict (torch ``[out, in]`` layout), cast to float64.

Unlike the original non-strict loader, missing or unexpected keys, wrong shapes and non-finite values are reported,
all in one error. Only ``final_logits_bias`` may be absent (zeros, as the original loader does).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from jaxscd.circuits.base import sha256_bytes
from jaxscd.circuits.sparse_gpt.config import GPTConfig, SparseGPTError, load_config

TORCH_HINT = "pip install jaxscd[circuit-sparsity]"


def state_dict_shapes(config: GPTConfig) -> dict[str, tuple]:
    """Shape of every state-dict entry the forward pass reads (torch Linear layout [out, in])."""
    d, v = config.d_model, config.vocab_size
    shapes = {"final_logits_bias": (v,), "transformer.wte.weight": (v, d),
              "transformer.wpe.weight": (config.block_size, config.d_pos_emb or d)}

    def norm(prefix: str, width: int) -> None:
        shapes[f"{prefix}.weight"] = (width,)
        if not config.rms_norm and config.ln_bias:
            shapes[f"{prefix}.bias"] = (width,)

    def linear(prefix: str, n_out: int, n_in: int) -> None:
        shapes[f"{prefix}.weight"] = (n_out, n_in)
        if config.bias:
            shapes[f"{prefix}.bias"] = (n_out,)

    for layer in range(config.n_layer):
        block = f"transformer.h.{layer}"
        norm(f"{block}.ln_1", d)
        if config.d_pos_emb:
            norm(f"{block}.ln_p1", config.d_pos_emb)
        linear(f"{block}.attn.c_attn", 3 * config.d_attn, config.d_model_in)
        linear(f"{block}.attn.c_proj", d, config.d_attn)
        if config.sink:
            shapes[f"{block}.attn.attn_imp.sink_logit"] = (config.n_head,)
        norm(f"{block}.ln_2", d)
        if config.d_pos_emb:
            norm(f"{block}.ln_p2", config.d_pos_emb)
        linear(f"{block}.mlp.c_fc", config.d_mlp, config.d_model_in)
        linear(f"{block}.mlp.c_proj", d, config.d_mlp)
    norm("transformer.ln_f", d)
    shapes["lm_head.weight"] = (v, d)
    if config.enable_bigram_table:
        shapes["bigram_table"] = (v, v)
    return shapes


def check_size(config: GPTConfig, state: Mapping, weights: Path) -> None:
    """Refuse, before the state dict's key table is built (a loop over n_layer), a config that implies more tensors
    than the state dict holds, or more float64 parameters than this machine's memory."""
    from jaxscd.budget import physical_memory

    tensors = 3 + 6 * config.n_layer  # wte or lm_head (tied), wpe, ln_f; per layer two norms and four matrices
    if tensors > len(state):
        raise SparseGPTError(f"beeg_config.json declares {config.n_layer:,} layers, at least {tensors:,} tensors, but "
                             f"{weights.name} holds {len(state):,}; check n_layer")
    d, d_in = config.d_model, config.d_model_in
    layer = 3 * config.d_attn * d_in + d * config.d_attn + config.d_mlp * d_in + d * config.d_mlp
    parameters = 2 * config.vocab_size * d + config.block_size * (config.d_pos_emb or d) + config.n_layer * layer \
        + (config.vocab_size ** 2 if config.enable_bigram_table else 0)
    available = physical_memory()
    if available and 16 * parameters > available:  # float64, on the host and on the device
        raise SparseGPTError(f"beeg_config.json declares a model of {parameters:,} parameters, about "
                             f"{16 * parameters / 2**30:.0f} GiB as float64, more than the {available / 2**30:.0f} GiB "
                             f"of this machine; check its sizes (n_layer, d_model, d_mlp, vocab_size, block_size)")


@dataclass(frozen=True, eq=False)
class SparseGPT:
    """A loaded checkpoint: its config and float64 weights keyed by state-dict name."""

    name: str
    config: GPTConfig
    params: dict  # state-dict key -> float64 jax array
    fingerprint: str


def _causal_buffer_keys(config: GPTConfig) -> dict[str, tuple]:
    # Models built with flash=False save their causal mask as attn.bias; it carries no weights.
    return {f"transformer.h.{layer}.attn.bias": (1, 1, config.block_size, config.block_size)
            for layer in range(config.n_layer)}


def model_from_state_dict(config: GPTConfig, state: Mapping, name: str = "model") -> SparseGPT:
    """Check a state dict against ``config`` (one error lists every problem) and cast it to float64."""
    expected = state_dict_shapes(config)
    state = {str(k): v for k, v in state.items()}
    problems = []
    if config.tied_unembed:
        embed, unembed = state.get("transformer.wte.weight"), state.get("lm_head.weight")
        if embed is None and unembed is not None:
            state["transformer.wte.weight"] = unembed
        elif unembed is None and embed is not None:
            state["lm_head.weight"] = embed
        elif embed is not None and not _same_values(embed, unembed):
            problems.append("tied_unembed is true but lm_head.weight and transformer.wte.weight differ")
    if "final_logits_bias" not in state:  # the original loader fills it with zeros too
        state["final_logits_bias"] = np.zeros(config.vocab_size)
    optional = _causal_buffer_keys(config)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected and k not in optional]
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    params, wrong_shape, not_finite, not_numeric = {}, [], [], []
    for key, shape in {**expected, **optional}.items():
        if key not in state:
            continue
        try:
            array = to_float64(state[key])
        except (TypeError, ValueError, RuntimeError):
            not_numeric.append(key)
            continue
        if array.shape != shape:
            wrong_shape.append(f"{key} (expected {list(shape)}, got {list(array.shape)})")
        elif not np.isfinite(array).all():
            not_finite.append(key)
        elif key in expected:
            params[key] = array
    if wrong_shape:
        problems.append(f"wrong shapes: {', '.join(wrong_shape)}")
    if not_finite:
        problems.append(f"NaN or inf values in {not_finite}")
    if not_numeric:
        problems.append(f"not numeric arrays: {not_numeric}")
    if problems:
        raise SparseGPTError(f"checkpoint {name!r} cannot be used: {'; '.join(problems)}; the state dict must hold "
                             f"exactly the finite entries its beeg_config.json implies")
    described = json.dumps({f.name: getattr(config, f.name) for f in fields(config) if f.compare}, sort_keys=True)
    digest = sha256_bytes(described.encode() + b"".join(k.encode() + params[k].tobytes() for k in sorted(params)))
    return SparseGPT(name, config, {k: jnp.asarray(a) for k, a in params.items()}, digest)


def _same_values(first, second) -> bool:
    try:
        return np.array_equal(to_float64(first), to_float64(second))
    except (TypeError, ValueError, RuntimeError):  # reported as not numeric below
        return True


def to_float64(value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, possibly sparse or bfloat16
        import torch

        tensor = value.detach().cpu()
        if tensor.layout != torch.strided:
            tensor = tensor.to_dense()
        return tensor.to(torch.float64).numpy()
    return np.asarray(value, dtype=np.float64)


def torch_load(path: Path, what: str):
    try:
        import torch
    except ImportError:
        raise SparseGPTError(f"reading {str(path)!r} ({what}) needs torch; {TORCH_HINT}, or give a .npz "
                             f"instead") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt file, or an object weights_only refuses: report it in one line
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise SparseGPTError(f"could not read {str(path)!r} ({what}): {type(err).__name__}: {first}") from None


def load_npz(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {k: archive[k] for k in archive.files}
    except (OSError, ValueError) as err:
        raise SparseGPTError(f"could not read {str(path)!r} as a .npz state dict: {err}") from None


def load_model(model_dir: str | os.PathLike, weights: str | os.PathLike | None = None) -> SparseGPT:
    """``model_dir/beeg_config.json`` with ``weights`` (a .pt or .npz state dict), by default
    ``model_dir/final_model.pt``, else ``model_dir/weights.npz``."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise SparseGPTError(f"model directory not found: {str(model_dir)!r}; it must hold beeg_config.json and "
                             f"final_model.pt")
    config = load_config(model_dir / "beeg_config.json")
    if weights is None:
        candidates = [model_dir / "final_model.pt", model_dir / "weights.npz"]
        weights = next((p for p in candidates if p.is_file()), None)
        if weights is None:
            raise SparseGPTError(f"no final_model.pt or weights.npz in {str(model_dir)!r}")
    weights = Path(weights)
    if not weights.is_file():
        raise SparseGPTError(f"weights file not found: {str(weights)!r}")
    state = load_npz(weights) if weights.suffix == ".npz" else torch_load(weights, "state dict")
    if not isinstance(state, Mapping):
        raise SparseGPTError(f"{str(weights)!r} holds a {type(state).__name__}, not a state dict "
                             f"(a mapping from parameter name to tensor)")
    check_size(config, state, weights)
    return model_from_state_dict(config, state, model_dir.name)
