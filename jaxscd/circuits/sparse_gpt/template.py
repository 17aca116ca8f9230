"""Task template (``sparse_gpt_circuit``): the model, optionally restricted to a circuit, as a jaxscd ``Circuit``
over a small abstract alphabet.

A template is a JSON file, read by ``load_template`` (the comments are for illustration only)::

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
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxscd.circuits.base import Circuit, sha256_bytes
from jaxscd.circuits.sparse_gpt.ablation import NodeCircuit, check_circuit_fits, hook_arrays, load_circuit
from jaxscd.circuits.sparse_gpt.config import SparseGPTError, read_json
from jaxscd.circuits.sparse_gpt.forward import _forward, in_batches
from jaxscd.circuits.sparse_gpt.weights import SparseGPT, load_model


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
    return template_from_dict(read_json(path, f"template file not found: {str(path)!r}"), str(path))


def prompt_positions(template: PromptTemplate, block_size: int) -> int:
    """The longest domain sequence whose prompt (prefix + sequence + suffix) fits the model's block size."""
    return block_size - len(template.prefix) - len(template.suffix)


def sparse_gpt_circuit(model: SparseGPT, circuit: NodeCircuit | None, template: PromptTemplate,
                       batch_size: int = 512, max_len: int | None = None) -> Circuit:
    """The model (restricted to ``circuit`` when given) as a jaxscd Circuit over ``template.alphabet``.

    ``max_len``: the longest domain sequence it will run on (None: the template's own), checked against the block
    size here; ``forward.max_positions`` is the longest that fits, and longer sequences are refused when run."""
    config = model.config
    used = [*template.token_ids, *template.prefix, *template.suffix, template.target, template.alternative]
    bad = [t for t in used if t >= config.vocab_size]
    if bad:
        raise SparseGPTError(f"template token id {bad[0]} is outside the model's vocabulary 0..{config.vocab_size - 1}")
    fits = prompt_positions(template, config.block_size)
    longest = template.max_len if max_len is None else max_len
    if longest > fits:
        raise SparseGPTError(f"prefix + max_len + suffix = {len(template.prefix) + longest + len(template.suffix)} "
                             f"positions exceed block_size {config.block_size}; lower max_len to {fits} or less")
    if circuit is not None:
        check_circuit_fits(circuit, config)
    lookup = np.asarray(template.token_ids, dtype=np.int64)
    prefix, suffix = np.asarray(template.prefix, dtype=np.int64), np.asarray(template.suffix, dtype=np.int64)
    columns = (template.alternative, template.target)
    hooks = hook_arrays(circuit)

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
        if domain.shape[1] > fits:
            raise SparseGPTError(f"sequences of length {domain.shape[1]} make prompts longer than block_size "
                                 f"{config.block_size}; the template fits sequences of at most {fits}")
        rows = domain.shape[0]
        prompts = np.concatenate([np.broadcast_to(prefix, (rows, len(prefix))), lookup[domain],
                                  np.broadcast_to(suffix, (rows, len(suffix)))], axis=1)
        if rows == 0:
            return np.zeros((0, 2))
        return in_batches(run, prompts, batch_size)

    forward.max_positions = fits
    forward.checkpoint = (model, circuit, template)  # the structure jaxscd.beyond's orbit bounds read
    spec = json.dumps({f.name: getattr(template, f.name) for f in fields(template)}, sort_keys=True).encode()
    fingerprint = sha256_bytes(model.fingerprint.encode() + (circuit.fingerprint() if circuit else "").encode() + spec)
    label = f"circuit_sparsity:{model.name}" + (":circuit" if circuit is not None else "")
    return Circuit(label, forward, template.class_names, fingerprint)


def load_sparse_circuit(model_dir, template, viz=None, means=None, max_len: int | None = None):
    """A circuit_sparsity model (restricted to the circuit in ``viz`` with ``means`` when given) and its template;
    ``max_len``: see ``sparse_gpt_circuit``."""
    if template is None:
        raise SparseGPTError("--circuit-sparsity needs --template T.json (alphabet -> token ids, prefix, suffix, "
                         "target and alternative ids)")
    model = load_model(model_dir)
    node_circuit = load_circuit(model.config, viz, means)
    prompt = load_template(template)
    return sparse_gpt_circuit(model, node_circuit, prompt, max_len=max_len), prompt
