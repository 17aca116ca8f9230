"""OpenAI circuit_sparsity checkpoints: weight-sparse GPTs and their circuits, run in JAX (float64).

A re-implementation, written from the equations, of the eval forward pass of the GPT in OpenAI's
``circuit_sparsity`` project (``inference/gpt.py``) and of its circuit execution. Sections, in pipeline order:

1. **Config** (``GPTConfig``): parsed from ``beeg_config.json``. Every flag that changes an eval forward pass is a
   field; keys that do not (dropout, flash, tokenizer name, ``bigram_table_rank``, ``pfrac``, anything unknown) are
   ignored and listed in ``ignored_keys``; a forward-relevant value this module cannot run is an error.
2. **Weights** (``load_model``): ``final_model.pt`` (torch, imported lazily) or a ``weights.npz`` mirror of the
   same state dict (torch ``[out, in]`` layout), cast to float64. Unlike the original non-strict loader, missing or
   unexpected keys, wrong shapes and non-finite values are reported, all in one error. Only ``final_logits_bias``
   may be absent (zeros, as the original loader does).
3. **Forward** (``logits``): token embedding (+ position embedding, or position embeddings concatenated to every
   block input when ``d_pos_emb`` is set), ``n_layer`` pre-norm blocks, final norm, unembedding
   ``+ final_logits_bias (+ bigram_table[current token])`` at every position.
4. **Circuits** (``NodeCircuit``): kept channels per hook location (``viz_data.pt``'s ``circuit_data``) and a mean
   per location (``means.pt``). At each hooked location ``x -> x*mask + mean*(1-mask)``; the replaced value flows
   downstream. Hook locations, per layer L, in emission order::

       L.resid_in, L.attn.act_in, L.attn.k, L.attn.q, L.attn.v, L.attn.y, L.attn.resid_delta,
       L.resid_mid, L.mlp.act_in, L.mlp.post_act, L.mlp.resid_delta        then  final_resid

   q/k/v/y channels are ``head*d_head + dim`` (before the 1/sqrt(d_head) scaling).
5. **Task template** (``sparse_gpt_circuit``): turns the model (optionally restricted to a circuit) into a jaxscd
   ``Circuit`` over a small abstract alphabet.

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

Task template (a JSON file, read by ``load_template``; the comments are for illustration only)::

    {"alphabet": {"a": 11, "b": 12, "\\"": 4},   # abstract token name -> model token id, in domain order
     "prefix": [0, 7], "suffix": [9],             # model token ids placed before / after the sequence
     "target": 5, "alternative": 6,               # compared model token ids at the last position
     "class_names": ["'", "\\""], "min_len": 1, "max_len": 6}

The resulting ``Circuit`` maps domain tokens ``int[B, L]`` (ids ``0..len(alphabet)-1``) to
``prefix + [model ids] + suffix``, runs the model, and returns ``[logit[alternative], logit[target]]`` at the last
position: class 1 means the model prefers ``target``. ``class_names`` defaults to ``("alternative", "target")``.
"""

from __future__ import annotations

import json
import math
import os
import io
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxscd.circuits.base import Circuit, CircuitError, atomic_write, sha256_bytes

TORCH_HINT = "pip install jaxscd[circuit-sparsity]"
AFRAC_LOCTYPES = ("attn_in", "attn_q", "attn_k", "attn_v", "attn_out", "mlp_in", "mlp_neuron", "mlp_out",
                  "resid_post_attn", "resid_post_mlp")
LAYER_HOOKS = ("resid_in", "attn.act_in", "attn.k", "attn.q", "attn.v", "attn.y", "attn.resid_delta",
               "resid_mid", "mlp.act_in", "mlp.post_act", "mlp.resid_delta")
LAYER_NORM_EPS = 1e-5


class SparseGPTError(CircuitError):
    """A circuit_sparsity checkpoint, circuit, template or token file that cannot be used."""


# --------------------------------------------------------------------------------------------------- config

@dataclass(frozen=True)
class GPTConfig:
    """The forward-relevant part of circuit_sparsity's GPTConfig; defaults are the original's."""

    block_size: int = 1024
    vocab_size: int = 50304
    n_layer: int = 12
    n_head: int = 12
    d_model: int = 768
    d_head: int | None = None  # None: d_model // n_head
    d_mlp: int | None = None  # None: 4 * d_model
    bias: bool = True
    ln_bias: bool = True
    rms_norm: bool = False
    residual_activation_type: str = "identity"
    activation_type: str = "gelu"
    afrac: float | None = None
    afrac_loctypes: tuple = ("attn_in", "attn_out", "mlp_in", "mlp_out")
    tied_unembed: bool = True
    enable_bigram_table: bool = False
    d_pos_emb: int | None = None
    sink: bool = False
    ignored_keys: tuple = field(default=(), compare=False)  # keys of the source JSON that eval does not use

    def __post_init__(self):
        if isinstance(self.afrac_loctypes, str):  # the JSON form, "attn_in,mlp_in"
            object.__setattr__(self, "afrac_loctypes", tuple(t for t in self.afrac_loctypes.split(",") if t))
        object.__setattr__(self, "afrac_loctypes", tuple(self.afrac_loctypes))
        if self.d_head is None:
            object.__setattr__(self, "d_head", self.d_model // self.n_head)
        if self.d_mlp is None:
            object.__setattr__(self, "d_mlp", 4 * self.d_model)
        _check_config(self)

    @property
    def d_attn(self) -> int:
        """Width of q, k, v and y: n_head * d_head."""
        return self.n_head * self.d_head

    @property
    def d_model_in(self) -> int:
        """Width of a block's attention/MLP input (the residual, plus position embeddings when concatenated)."""
        return self.d_model + (self.d_pos_emb or 0)

    @classmethod
    def from_dict(cls, raw: Mapping, source: str = "config") -> GPTConfig:
        """Parse a beeg_config.json object; ``source`` names it in errors.

        Keys that are not fields are ignored: in the original they do not change an eval forward pass (dropout,
        flash, grad_checkpointing, tokenizer_name, enable_sparse_kernels, learnable_bigram_table: the table is
        read from the state dict either way; bigram_table_rank: the original loader drops it and stores the table
        in full; sinusoidal_cat_pos_emb: the sinusoids are saved as transformer.wpe.weight).
        """
        if not isinstance(raw, Mapping):
            raise SparseGPTError(f"{source} must be a JSON object, got {type(raw).__name__}")
        raw = dict(raw)
        if "n_mlp" in raw:  # older name of d_mlp, renamed as the original loader does
            raw["d_mlp"] = raw.pop("n_mlp")
        if raw.pop("use_tied_aux_matrix", False):
            raise SparseGPTError(f"{source}: use_tied_aux_matrix=true is not supported (the original loader "
                                 f"rejects it too); use a checkpoint with the aux matrix baked in")
        names = {f.name for f in fields(cls)} - {"ignored_keys"}
        values = {k: _parse_field(k, v, source) for k, v in raw.items() if k in names}
        ignored = tuple(sorted(k for k in raw if k not in names))
        try:
            return cls(**values, ignored_keys=ignored)
        except SparseGPTError as err:
            raise SparseGPTError(f"{source}: {err}") from None


def _parse_field(name: str, value, source: str):
    ints = ("block_size", "vocab_size", "n_layer", "n_head", "d_model", "d_head", "d_mlp", "d_pos_emb")
    bools = ("bias", "ln_bias", "rms_norm", "tied_unembed", "enable_bigram_table", "sink")
    optional = ("d_head", "d_mlp", "d_pos_emb", "afrac")
    if value is None and name in optional:
        return None
    if name in ints and (isinstance(value, bool) or not isinstance(value, int)):
        raise SparseGPTError(f"{source}: {name} must be an integer, got {value!r}")
    if name in bools and not isinstance(value, bool):
        raise SparseGPTError(f"{source}: {name} must be true or false, got {value!r}")
    if name == "afrac":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SparseGPTError(f"{source}: afrac must be a number in (0, 1] or null, got {value!r}")
        return float(value)
    if name == "afrac_loctypes" and not isinstance(value, str):
        raise SparseGPTError(f"{source}: afrac_loctypes must be a comma-separated string, got {value!r}")
    if name in ("activation_type", "residual_activation_type") and not isinstance(value, str):
        raise SparseGPTError(f"{source}: {name} must be a string, got {value!r}")
    return value


def _check_config(config: GPTConfig) -> None:
    for name in ("block_size", "vocab_size", "n_layer", "n_head", "d_model", "d_head", "d_mlp"):
        if getattr(config, name) < 1:
            raise SparseGPTError(f"{name} must be at least 1, got {getattr(config, name)}")
    if config.d_pos_emb is not None and config.d_pos_emb < 1:
        raise SparseGPTError(f"d_pos_emb must be at least 1 or null, got {config.d_pos_emb}")
    if config.activation_type not in ("gelu", "relu"):
        raise SparseGPTError(f"activation_type {config.activation_type!r} is not supported; use 'gelu' or 'relu'")
    if config.residual_activation_type not in ("identity", "relu"):
        raise SparseGPTError(f"residual_activation_type {config.residual_activation_type!r} is not supported; "
                             f"use 'identity' or 'relu'")
    if config.afrac is not None and not 0.0 < config.afrac <= 1.0:
        raise SparseGPTError(f"afrac must be in (0, 1] or null, got {config.afrac}")
    unknown = [t for t in config.afrac_loctypes if t not in AFRAC_LOCTYPES]
    if unknown:
        raise SparseGPTError(f"unknown afrac_loctypes {unknown}; known location types: {', '.join(AFRAC_LOCTYPES)}")


def load_config(path: str | os.PathLike) -> GPTConfig:
    path = Path(path)
    if not path.is_file():
        raise SparseGPTError(f"config file not found: {str(path)!r}; a model directory holds beeg_config.json")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SparseGPTError(f"{str(path)!r} is not valid JSON: {err}") from None
    return GPTConfig.from_dict(raw, str(path))


def hook_widths(config: GPTConfig) -> dict[str, int]:
    """Every hook location, in emission order, with its channel count."""
    widths = {"resid_in": config.d_model, "attn.act_in": config.d_model_in, "attn.k": config.d_attn,
              "attn.q": config.d_attn, "attn.v": config.d_attn, "attn.y": config.d_attn,
              "attn.resid_delta": config.d_model, "resid_mid": config.d_model, "mlp.act_in": config.d_model_in,
              "mlp.post_act": config.d_mlp, "mlp.resid_delta": config.d_model}
    out = {f"{layer}.{name}": widths[name] for layer in range(config.n_layer) for name in LAYER_HOOKS}
    out["final_resid"] = config.d_model
    return out


# -------------------------------------------------------------------------------------------------- weights

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
            array = _to_float64(state[key])
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
        return np.array_equal(_to_float64(first), _to_float64(second))
    except (TypeError, ValueError, RuntimeError):  # reported as not numeric below
        return True


def _to_float64(value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, possibly sparse or bfloat16
        import torch

        tensor = value.detach().cpu()
        if tensor.layout != torch.strided:
            tensor = tensor.to_dense()
        return tensor.to(torch.float64).numpy()
    return np.asarray(value, dtype=np.float64)


def _torch_load(path: Path, what: str):
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


def _load_npz(path: Path) -> dict:
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
    state = _load_npz(weights) if weights.suffix == ".npz" else _torch_load(weights, "state dict")
    if not isinstance(state, Mapping):
        raise SparseGPTError(f"{str(weights)!r} holds a {type(state).__name__}, not a state dict "
                             f"(a mapping from parameter name to tensor)")
    return model_from_state_dict(config, state, model_dir.name)


# ------------------------------------------------------------------------------------------------- circuits

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
                mean = _to_float64(means[loc])
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
    arrays = _load_npz(path)
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
    viz = _load_viz_npz(viz_path) if viz_path.suffix == ".npz" else _torch_load(viz_path, "viz_data")
    if not isinstance(viz, Mapping) or not isinstance(viz.get("circuit_data"), Mapping):
        raise SparseGPTError(f"{str(viz_path)!r} has no 'circuit_data' mapping (location -> kept channel indices)")
    importances = viz.get("importances")
    model_config = importances.get("beeg_model_config") if isinstance(importances, Mapping) else None
    if isinstance(model_config, Mapping) and GPTConfig.from_dict(model_config, str(viz_path)) != config:
        raise SparseGPTError(f"{str(viz_path)!r} was made for a different model config; use the viz data of "
                             f"this checkpoint")
    means = _load_npz(means_path) if means_path.suffix == ".npz" else _torch_load(means_path, "means")
    if not isinstance(means, Mapping):
        raise SparseGPTError(f"{str(means_path)!r} must hold a mapping location -> mean [width], got "
                             f"{type(means).__name__}")
    return make_circuit(config, viz["circuit_data"], means)


# -------------------------------------------------------------------------------------------------- forward

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


def _check_tokens(tokens, config: GPTConfig) -> np.ndarray:
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


def _check_circuit_fits(circuit: NodeCircuit, config: GPTConfig) -> None:
    widths = {loc: mask.shape[0] for loc, (mask, _) in circuit.hooks.items()}
    if widths != hook_widths(config):
        raise SparseGPTError("the circuit was built for a different model config (its hook locations or widths "
                             "differ); build it with make_circuit/load_circuit for this model")


def _hooks(circuit: NodeCircuit | None) -> dict | None:
    return None if circuit is None else {k: (jnp.asarray(m), jnp.asarray(u)) for k, (m, u) in circuit.hooks.items()}


def logits(params: dict, config: GPTConfig, tokens, circuit: NodeCircuit | None = None) -> jax.Array:
    """float64 [B, T, vocab] logits at every position of tokens int[B, T], optionally under a circuit."""
    if circuit is not None:
        _check_circuit_fits(circuit, config)
    return _forward(params, jnp.asarray(_check_tokens(tokens, config)), _hooks(circuit), config=config)[0]


def activations(params: dict, config: GPTConfig, tokens, circuit: NodeCircuit | None = None) -> tuple:
    """(logits, {location: activation [B, T, width]}), each activation as it flows on (after any ablation)."""
    if circuit is not None:
        _check_circuit_fits(circuit, config)
    return _forward(params, jnp.asarray(_check_tokens(tokens, config)), _hooks(circuit), config=config, record=True)


def _in_batches(run, tokens: np.ndarray, batch_size: int) -> np.ndarray:
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


# -------------------------------------------------------------------------------------------- task template

@dataclass(frozen=True)
class PromptTemplate:
    """How an abstract domain sequence becomes a prompt, and which two next tokens are compared."""

    alphabet: tuple  # abstract token names, in domain id order
    token_ids: tuple  # model token id of each name
    prefix: tuple = ()
    suffix: tuple = ()
    target: int = 0  # class 1
    alternative: int = 1  # class 0
    class_names: tuple = ("alternative", "target")
    min_len: int = 1
    max_len: int = 8


def template_from_dict(raw, source: str = "template") -> PromptTemplate:
    if not isinstance(raw, Mapping):
        raise SparseGPTError(f"{source} must be a JSON object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - {"alphabet", "prefix", "suffix", "target", "alternative", "class_names", "min_len",
                                 "max_len"})
    if unknown:
        raise SparseGPTError(f"{source}: unknown keys {unknown}; allowed: alphabet, prefix, suffix, target, "
                             f"alternative, class_names, min_len, max_len")
    missing = [k for k in ("alphabet", "target", "alternative", "max_len") if k not in raw]
    if missing:
        raise SparseGPTError(f"{source}: missing keys {missing}")
    alphabet = raw["alphabet"]
    if not isinstance(alphabet, Mapping) or len(alphabet) < 2:
        raise SparseGPTError(f"{source}: alphabet must map at least 2 token names to model token ids, e.g. "
                             f'{{"a": 11, "b": 12}}; got {alphabet!r}')
    ids = [_token_id(v, f"alphabet[{k!r}]", source) for k, v in alphabet.items()]
    if len(set(ids)) != len(ids):
        raise SparseGPTError(f"{source}: alphabet maps two names to the same model token id: {dict(alphabet)}")
    seqs = {k: tuple(_token_id(t, f"{k}[{i}]", source) for i, t in enumerate(_as_list(raw.get(k, []), k, source)))
            for k in ("prefix", "suffix")}
    target, alternative = _token_id(raw["target"], "target", source), _token_id(raw["alternative"], "alternative",
                                                                                  source)
    if target == alternative:
        raise SparseGPTError(f"{source}: target and alternative are both token {target}; compare two tokens")
    class_names = tuple(str(c) for c in _as_list(raw.get("class_names", ["alternative", "target"]), "class_names",
                                                 source))
    if len(class_names) != 2:
        raise SparseGPTError(f"{source}: class_names must list 2 names [alternative, target], got {list(class_names)}")
    min_len, max_len = raw.get("min_len", 1), raw["max_len"]
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in (min_len, max_len)) or not \
            1 <= min_len <= max_len:
        raise SparseGPTError(f"{source}: lengths must satisfy 1 <= min_len <= max_len, got min_len={min_len!r}, "
                             f"max_len={max_len!r}")
    return PromptTemplate(tuple(str(k) for k in alphabet), tuple(ids), seqs["prefix"], seqs["suffix"], target,
                          alternative, class_names, min_len, max_len)


def _token_id(value, what: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SparseGPTError(f"{source}: {what} must be a model token id (a non-negative integer), got {value!r}")
    return value


def _as_list(value, what: str, source: str) -> list:
    if not isinstance(value, list):
        raise SparseGPTError(f"{source}: {what} must be a JSON list, got {value!r}")
    return value


def load_template(path: str | os.PathLike) -> PromptTemplate:
    path = Path(path)
    if not path.is_file():
        raise SparseGPTError(f"template file not found: {str(path)!r}")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SparseGPTError(f"{str(path)!r} is not valid JSON: {err}") from None
    return template_from_dict(raw, str(path))


def sparse_gpt_circuit(model: SparseGPT, circuit: NodeCircuit | None, template: PromptTemplate,
                       batch_size: int = 512) -> Circuit:
    """The model (restricted to ``circuit`` when given) as a jaxscd Circuit over ``template.alphabet``."""
    config = model.config
    used = [*template.token_ids, *template.prefix, *template.suffix, template.target, template.alternative]
    bad = [t for t in used if t >= config.vocab_size]
    if bad:
        raise SparseGPTError(f"template token id {bad[0]} is outside the model's vocabulary 0..{config.vocab_size - 1}")
    longest = len(template.prefix) + template.max_len + len(template.suffix)
    if longest > config.block_size:
        raise SparseGPTError(f"prefix + max_len + suffix = {longest} positions exceed block_size "
                             f"{config.block_size}; lower max_len")
    if circuit is not None:
        _check_circuit_fits(circuit, config)
    lookup = np.asarray(template.token_ids, dtype=np.int64)
    prefix, suffix = np.asarray(template.prefix, dtype=np.int64), np.asarray(template.suffix, dtype=np.int64)
    columns = (template.alternative, template.target)
    hooks = _hooks(circuit)

    def run(chunk: np.ndarray) -> jax.Array:
        out, _ = _forward(model.params, jnp.asarray(chunk), hooks, config=config, last_only=True, columns=columns)
        return out[:, 0]

    def forward(tokens) -> np.ndarray:
        """logits [B, 2] = [alternative, target] at the last prompt position."""
        domain = np.asarray(tokens)
        if domain.ndim != 2 or domain.dtype.kind not in "iu":
            raise SparseGPTError(f"expected int tokens [batch, length], got {domain.dtype} {list(domain.shape)}")
        if domain.size and (domain.min() < 0 or domain.max() >= len(lookup)):
            raise SparseGPTError(f"domain token ids must be in 0..{len(lookup) - 1}, got "
                                 f"{domain.min()}..{domain.max()}")
        rows = domain.shape[0]
        prompts = np.concatenate([np.broadcast_to(prefix, (rows, len(prefix))), lookup[domain],
                                  np.broadcast_to(suffix, (rows, len(suffix)))], axis=1)
        if rows == 0:
            return np.zeros((0, 2))
        return _in_batches(run, prompts, batch_size)

    spec = json.dumps({f.name: getattr(template, f.name) for f in fields(template)}, sort_keys=True).encode()
    fingerprint = sha256_bytes(model.fingerprint.encode() + (circuit.fingerprint() if circuit else "").encode() + spec)
    label = f"circuit_sparsity:{model.name}" + (":circuit" if circuit is not None else "")
    return Circuit(label, forward, template.class_names, fingerprint)


# ------------------------------------------------------------------------------------------------------ eval

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
    tokens = _check_tokens(raw, model.config)
    circuit = load_circuit(model.config, viz, means)
    hooks = _hooks(circuit)
    out = _in_batches(lambda chunk: _forward(model.params, jnp.asarray(chunk), hooks, config=model.config)[0],
                      tokens, batch_size).astype(np.float64)
    buffer = io.BytesIO()
    np.save(buffer, out)
    atomic_write(out_path, buffer.getvalue())
    return out


def load_sparse_circuit(model_dir, template, viz=None, means=None):
    """A circuit_sparsity model (restricted to the circuit in ``viz`` with ``means`` when given) and its template."""
    if template is None:
        raise ValueError("--circuit-sparsity needs --template T.json (alphabet -> token ids, prefix, suffix, "
                         "target and alternative ids)")
    model = load_model(model_dir)
    node_circuit = load_circuit(model.config, viz, means)
    prompt = load_template(template)
    return sparse_gpt_circuit(model, node_circuit, prompt), prompt
