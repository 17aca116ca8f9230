"""Task template (``sparse_gpt_circuit``): the model, optionally restricted to a circuit, as a jaxscd ``Circuit``
over a small abstract alphabet.

A template is a JSON file, read by ``load_template`` (the comments are for illustration only)::

    {"alphabet": {"a": 11, "b": [12, 13], "\\"": 4},  # name -> model token id or a token set, in domain order
     "prefix": [0, 7], "suffix": [9],             # model token ids placed before / after the sequence
     "target": 5, "alternative": 6,               # compared model token ids at the last position
     "class_names": ["'", "\\""], "min_len": 1, "max_len": 6}

The resulting ``Circuit`` maps domain tokens ``int[B, L]`` (ids ``0..len(alphabet)-1``) to
``prefix + [model ids] + suffix``, runs the model, and returns ``[logit[alternative], logit[target]]`` at the last
position: class 1 means the model prefers ``target``. ``class_names`` defaults to ``("alternative", "target")``.

Token sets. A name mapped to a list stands for every one of its model tokens: a domain sequence stands for every
prompt with a member of its letter's set at each position. The circuit over names is defined only where all of them
make the same decision: ``forward`` runs every member combination of each row (at most MAX_MEMBER_COMBINATIONS),
refuses a row whose combinations decide differently (CircuitError naming two of them: split the set), and returns
for each row logits with that decision, the smallest logit gap of its combinations and the largest logit magnitude
(which the float error bound is read from), so a margin trusted by the truth table holds for every member.
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
    token_ids: tuple  # model token id of each name (the first member of its set)
    prefix: tuple = ()
    suffix: tuple = ()
    target: int = 0  # class 1
    alternative: int = 1  # class 0
    class_names: tuple = ("alternative", "target")
    min_len: int = 1
    max_len: int = 8
    members: tuple = ()  # the model token ids each name stands for (a tuple per name); () means (token_ids[i],)

    def __post_init__(self):
        if not self.members:
            object.__setattr__(self, "members", tuple((t,) for t in self.token_ids))
        if tuple(m[:1] for m in self.members) != tuple((t,) for t in self.token_ids):
            raise SparseGPTError(f"template token_ids {list(self.token_ids)} must be the first member of each set "
                                 f"{[list(m) for m in self.members]}; build templates with template_from_dict")

    @property
    def has_sets(self) -> bool:
        """Whether some name stands for more than one model token."""
        return any(len(m) > 1 for m in self.members)


MAX_MEMBER_COMBINATIONS = 4096  # member sequences one domain row may stand for (each one forward pass)
EXPANDED_PROMPTS = 1 << 16  # member sequences built at once, so memory stays flat whatever the set sizes


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
    members = [_members(v, k, source) for k, v in alphabet.items()]
    owner = {}
    for name, ids in zip(alphabet, members):
        for t in ids:
            if t in owner:
                raise SparseGPTError(f"{source}: alphabet maps two names to the same model token id {t} "
                                     f"({owner[t]!r} and {name!r}): {dict(alphabet)}; a token stands for one name")
            owner[t] = name
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
    return PromptTemplate(tuple(str(k) for k in alphabet), tuple(m[0] for m in members), seqs["prefix"],
                          seqs["suffix"], target, alternative, class_names, min_len, max_len, tuple(members))


def _members(value, name, source: str) -> tuple:
    """The model token ids an alphabet entry stands for: one id, or a non-empty list of distinct ids."""
    if not isinstance(value, list):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SparseGPTError(f"{source}: alphabet[{name!r}] must be a model token id (a non-negative integer) or "
                                 f"a list of them (a token set), e.g. 11 or [11, 12]; got {value!r}")
        return (value,)
    if not value:
        raise SparseGPTError(f"{source}: alphabet[{name!r}] is an empty token set; list at least one model token id, "
                             f"e.g. [11, 12]")
    ids = tuple(_token_id(t, f"alphabet[{name!r}][{i}]", source) for i, t in enumerate(value))
    if len(set(ids)) != len(ids):
        raise SparseGPTError(f"{source}: alphabet[{name!r}] lists a token id twice: {value!r}; list each member once")
    return ids


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
    used = [*(t for m in template.members for t in m), *template.prefix, *template.suffix, template.target,
            template.alternative]
    bad = [t for t in used if t >= config.vocab_size]
    if bad:
        raise SparseGPTError(f"template token id {bad[0]} is outside the model's vocabulary 0..{config.vocab_size - 1}")
    fits = prompt_positions(template, config.block_size)
    longest = template.max_len if max_len is None else max_len
    if longest > fits:
        raise SparseGPTError(f"prefix + max_len + suffix = {len(template.prefix) + longest + len(template.suffix)} "
                             f"positions exceed block_size {config.block_size}; lower max_len to {fits} or less")
    check_combinations(template, longest)
    if circuit is not None:
        check_circuit_fits(circuit, config)
    sizes = np.asarray([len(m) for m in template.members], dtype=np.int64)
    choices = np.asarray([m + m[:1] * int(sizes.max() - len(m)) for m in template.members], dtype=np.int64)
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
        if domain.size and (domain.min() < 0 or domain.max() >= len(sizes)):
            raise SparseGPTError(f"domain token ids must be in 0..{len(sizes) - 1}, got "
                                 f"{domain.min()}..{domain.max()}")
        if domain.shape[1] > fits:
            raise SparseGPTError(f"sequences of length {domain.shape[1]} make prompts longer than block_size "
                                 f"{config.block_size}; the template fits sequences of at most {fits}")
        if domain.shape[0] == 0:
            return np.zeros((0, 2))
        check_combinations(template, domain.shape[1])
        return np.concatenate([answer(domain[rows]) for rows in _row_groups(np.prod(sizes[domain], axis=1))])

    def answer(domain: np.ndarray) -> np.ndarray:
        middle, row, per_row = expand_members(domain, choices, sizes)
        count = len(middle)
        prompts = np.concatenate([np.broadcast_to(prefix, (count, len(prefix))), middle,
                                  np.broadcast_to(suffix, (count, len(suffix)))], axis=1)
        return worst_member(in_batches(run, prompts, batch_size), middle, row, per_row, domain, template)

    forward.max_positions = fits
    forward.checkpoint = (model, circuit, template)  # the structure jaxscd.beyond's orbit bounds read
    # members only when a set has several: a template without sets keeps the fingerprint it had before sets
    spec = json.dumps({f.name: getattr(template, f.name) for f in fields(template)
                       if f.name != "members" or template.has_sets}, sort_keys=True).encode()
    fingerprint = sha256_bytes(model.fingerprint.encode() + (circuit.fingerprint() if circuit else "").encode() + spec)
    label = f"circuit_sparsity:{model.name}" + (":circuit" if circuit is not None else "")
    return Circuit(label, forward, template.class_names, fingerprint)


# ------------------------------------------------------------------------------------------------------------
# Token sets: every member combination of a row, and the row's answer from theirs


def check_combinations(template: PromptTemplate, length: int) -> None:
    """Refuse, before running anything, lengths at which a row may stand for more than MAX_MEMBER_COMBINATIONS
    member sequences."""
    largest = max(len(m) for m in template.members)
    if largest == 1 or largest ** length <= MAX_MEMBER_COMBINATIONS:
        return
    name = template.alphabet[[len(m) for m in template.members].index(largest)]
    fits = next(n for n in range(length, -1, -1) if largest ** n <= MAX_MEMBER_COMBINATIONS)
    fix = f"lower --max-len to {fits} or use smaller sets" if fits else "use smaller sets"
    raise SparseGPTError(f"the token set of {name!r} has {largest} members: a sequence of {length} such letters "
                         f"stands for {largest ** length:,} member sequences, above the {MAX_MEMBER_COMBINATIONS:,} "
                         f"jaxscd runs per sequence; {fix}")


def _row_groups(per_row: np.ndarray):
    """Slices of consecutive rows standing for at most EXPANDED_PROMPTS member sequences together (or one row)."""
    ends = np.cumsum(per_row)
    start = 0
    while start < len(per_row):
        before = ends[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(ends, before + EXPANDED_PROMPTS, side="right")))
        yield slice(start, stop)
        start = stop


def expand_members(domain: np.ndarray, choices: np.ndarray, sizes: np.ndarray):
    """Every member sequence of each domain row: (model ids int64 [N, L], their row int64 [N], combinations per row
    int64 [B]), rows in order, the last position varying fastest. ``choices[a]``: the members of letter a (padded),
    ``sizes[a]``: how many."""
    counts = sizes[domain]  # [B, L]
    per_row = np.prod(counts, axis=1)
    row = np.repeat(np.arange(len(domain)), per_row)
    index = np.arange(len(row)) - np.repeat(np.cumsum(per_row) - per_row, per_row)  # combination within its row
    stride = np.cumprod(counts[:, ::-1], axis=1)[:, ::-1] // counts  # product of the counts after each position
    digits = index[:, None] // stride[row] % counts[row]
    return choices[domain[row], digits], row, per_row


def worst_member(logits: np.ndarray, middle: np.ndarray, row: np.ndarray, per_row: np.ndarray, domain: np.ndarray,
                 template: PromptTemplate) -> np.ndarray:
    """Per row, logits [B, 2] with the decision all its combinations make, their smallest gap, and one logit as
    large as the largest of theirs; raises when two combinations decide differently, each with a gap above the
    float error bound (a disagreement within it: the row keeps the smallest gap, which no margin check trusts)."""
    from jaxscd.kernels.evaluate import float_error_bound

    decision = logits[:, 1] > logits[:, 0]
    gap = np.abs(logits[:, 1].astype(np.float64) - logits[:, 0])
    starts = np.cumsum(per_row) - per_row
    smallest = np.lexsort((gap, row))[starts]  # sorted by row, then gap: each row's first is its smallest gap
    mixed = np.maximum.reduceat(decision, starts) != np.minimum.reduceat(decision, starts)
    for r in np.flatnonzero(mixed):
        combos = np.arange(starts[r], starts[r] + per_row[r])
        clear = combos[gap[combos] > float_error_bound(logits[combos])]
        if decision[clear].any() and not decision[clear].all():
            raise SparseGPTError(_depends_message(clear, decision, gap, middle, domain[r], template))
    scale = np.maximum.reduceat(np.abs(logits).max(axis=1), starts)
    return _with_scale(logits[smallest], scale)


def _depends_message(clear, decision, gap, middle, letters, template) -> str:
    one = clear[decision[clear]][np.argmax(gap[clear][decision[clear]])]
    zero = clear[~decision[clear]][np.argmax(gap[clear][~decision[clear]])]
    names = [template.alphabet[a] for a in letters]
    differ = sorted({names[p] for p in np.flatnonzero(middle[one] != middle[zero])}, key=template.alphabet.index)
    alt, target = template.class_names
    return (f"the circuit's decision depends on which member of {', '.join(map(repr, differ))} appears: the letters "
            f"{names} as tokens {middle[one].tolist()} give class 1 ({target!r}, logit gap +{gap[one]:.4g}) but as "
            f"{middle[zero].tolist()} class 0 ({alt!r}, logit gap -{gap[zero]:.4g}); split the set so that tokens "
            f"the model treats differently are different letters")


def _with_scale(chosen: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``chosen`` [B, 2], moved where needed so that one logit has magnitude ``scale`` (the float error bound is
    read from the largest logit), the decision kept and the gap (as float64 computes it) never larger; where
    rounding finds no such pair the gap becomes one unit in the last place of ``scale``, below any error bound."""
    need = np.abs(chosen).max(axis=1) < scale
    if not need.any():
        return chosen
    high = chosen[:, 1] > chosen[:, 0]  # the decided class's column is 1 (class 0 on a tie)
    gap = np.abs(chosen[:, 1].astype(np.float64) - chosen[:, 0])
    low = (-scale).astype(chosen.dtype)
    top = (low + gap).astype(chosen.dtype)
    for _ in range(4):  # rounding may have widened the gap by an ulp or two
        top = np.where(top.astype(np.float64) - low > gap, np.nextafter(top, low), top)
    wrong = (top.astype(np.float64) - low > gap) | (high & (top <= low))
    top = np.where(wrong, np.nextafter(low, np.asarray(np.inf, dtype=chosen.dtype)), top)
    moved = np.where(high[:, None], np.stack([low, top], axis=1), np.stack([top, low], axis=1))
    return np.where(need[:, None], moved, chosen)


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
