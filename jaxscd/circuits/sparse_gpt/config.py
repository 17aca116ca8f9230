"""The model config: the forward-relevant part of circuit_sparsity's ``beeg_config.json``, and the hook locations.

Every flag that changes an eval forward pass is a field; keys that do not (dropout, flash, tokenizer name,
``bigram_table_rank``, ``pfrac``, anything unknown) are ignored and listed in ``ignored_keys``; a forward-relevant
value this package cannot run is an error.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from jaxscd.circuits.base import CircuitError

AFRAC_LOCTYPES = ("attn_in", "attn_q", "attn_k", "attn_v", "attn_out", "mlp_in", "mlp_neuron", "mlp_out",
                  "resid_post_attn", "resid_post_mlp")
LAYER_HOOKS = ("resid_in", "attn.act_in", "attn.k", "attn.q", "attn.v", "attn.y", "attn.resid_delta",
               "resid_mid", "mlp.act_in", "mlp.post_act", "mlp.resid_delta")


class SparseGPTError(CircuitError):
    """A circuit_sparsity checkpoint, circuit, template or token file that cannot be used."""


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
        if not 0 < value <= 1:  # checked before float(): a 400-digit integer overflows it
            raise SparseGPTError(f"{source}: afrac must be in (0, 1] or null, got {value!r:.60}")
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


def read_json(path: Path, missing: str):
    """The JSON value in ``path``; ``missing``: the error when there is no such file."""
    if not path.is_file():
        raise SparseGPTError(missing)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise SparseGPTError(f"{str(path)!r} is nested too deeply to be read (over "
                             f"{sys.getrecursionlimit()} levels); a jaxscd JSON file nests a few levels") from None
    except ValueError as err:  # not UTF-8 or JSON, or an integer past Python's 4300 digits
        raise SparseGPTError(f"{str(path)!r} is not valid JSON: {str(err)[:200]}") from None


def load_config(path: str | os.PathLike) -> GPTConfig:
    path = Path(path)
    raw = read_json(path, f"config file not found: {str(path)!r}; a model directory holds beeg_config.json")
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
