"""Circuit graphs: small transformer circuits written as JSON, validated, and run in JAX (float64).

A circuit graph names everything a reader needs to follow the computation: the tokens, the residual channels,
and the neurons and heads that read and write them. Weights are inline; sparse dicts name only the non-zero
entries. ``load_graph`` validates a file (or dict) and returns a ``Circuit``; ``read_graph`` returns the
validated ``CircuitGraph`` (dense arrays plus names and domain hints); ``export_graph`` writes a built-in
``OneLayerCircuit`` in this format. Also documented in ``docs/circuit_graph.md``.

Schema version 1::

    {"schema": "jaxscd.circuit_graph", "version": 1,          # required, exactly these values
     "name": "quote_close", "description": "...",             # optional
     "vocab": ["a", "b", "\\"", "'"],                         # token names; token id = index (>= 2 names)
     "channels": ["one", "is_dq", ...],                       # residual channel names (D of them)
     "max_positions": 16,                                     # optional: longest input (null = unbounded)
     "embed": {"a": {"one": 1.0}, ...},                       # every token: a channel vector
     "pos_embed": {"position": [0, 1, 2, ...]},               # optional: channel matrix of width max_positions
     "layers": [                                              # applied in order
        {"heads": [                                           # optional; all heads read the same stream
            {"name": "h0", "query": "last",                   # "all" or "last" (see below)
             "d_head": 2, "d_value": 1,
             "w_q": {"one": [128.0, 4.0]},                    # channel matrix, width d_head
             "w_k": {"quote": [1, 0], "position": [0, 1]},    # channel matrix, width d_head
             "w_v": {"quote_type": [1]},                      # channel matrix, width d_value
             "w_o": {"head_out": [1]}}],                      # channel matrix, width d_value
         "mlp": {"activation": "relu",                        # optional; "relu" is the only activation
                 "neurons": [{"name": "quote", "in": {"is_dq": 1, "is_sq": 1}, "bias": 0.0,
                              "out": {"quote": 1}}]}}],
     "readout": {"classes": ["\\"", "'"],                     # exactly 2 class names
                 "weights": {"head_out": [1, -1]}},           # channel matrix, width 2
     "domain": {"min_len": 1, "max_len": 8,                   # optional hints for a default domain
                "precondition": {"motif": "CountThreshold", ...}, "precondition_text": "..."}}

Value forms: a *channel vector* is ``{channel: number}`` (absent channels are 0) or a list of D numbers; a
*channel matrix* of width k is ``{channel: [k numbers]}`` (absent channels are zero rows) or a list of D rows of
k numbers. ``w_o[c][j]`` is what value dimension j writes to channel c. Numbers must be finite.

Forward pass, for tokens ``t[0..L-1]`` (positions ``i``), all in float64::

    x[i] = embed[t[i]] + pos_embed[i]
    for each layer:
        x = x + sum over heads of head(x)            # heads read the same x, in parallel
        x = x + relu(x W_in + b_in) W_out             # the layer's neurons: W_in from "in", W_out from "out"
    logits = x[L-1] W_readout                         # class 1 iff logits[1] > logits[0]

A head computes ``q = x W_q``, ``k = x W_k``, ``v = x W_v``, scores ``q[i] . k[j]`` with no 1/sqrt(d) scaling
(fold any scale into the weights) and no bias (use a constant channel). ``"all"``: every position i attends
to positions j <= i (causal softmax) and writes ``softmax(scores) v W_o`` at i. ``"last"``: only the final
position attends (to every position) and writes there; other positions get nothing. A head with all-zero
``w_q`` or ``w_k`` attends uniformly. Within a layer heads come before the MLP (a standard block); a
one-layer "MLP then head" circuit is two layers: ``[{"mlp": ...}, {"heads": [...]}]``.

Errors: every problem is one line, ``PATH: what is wrong, got VALUE; how to fix it``, where PATH is a JSON path
such as ``layers[1].heads[0].w_q["is_x"]``; ``GraphError.problems`` holds them all.
"""

from __future__ import annotations

import difflib
import json
import math
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxscd.circuits.base import Circuit, CircuitError, sha256_text
from jaxscd.dsl.programs import check_program, from_json, to_json

SCHEMA = "jaxscd.circuit_graph"
VERSION = 1
QUERY_MODES = ("all", "last")
UNBOUNDED_POSITIONS = 1024  # rows of the one-layer form of a graph without a positional embedding (``one_layer``)
ACTIVATIONS = ("relu",)

_TOP_REQUIRED = ("schema", "version", "vocab", "channels", "embed", "layers", "readout")
_TOP_OPTIONAL = ("name", "description", "max_positions", "pos_embed", "domain")
_HEAD_REQUIRED = ("query", "d_head", "d_value", "w_q", "w_k", "w_v", "w_o")
_NEURON_REQUIRED = ("in", "out")


class GraphError(CircuitError):
    """A circuit graph that cannot be used; ``problems`` lists every one-line problem found."""

    def __init__(self, problems: Sequence[str]):
        self.problems = tuple(problems)
        head = "" if len(self.problems) == 1 else f"{len(self.problems)} problems in the circuit graph:\n"
        super().__init__(head + "\n".join(self.problems))

    @property
    def summary(self) -> str:
        """One line: the first problem, and how many more."""
        more = len(self.problems) - 1
        return self.problems[0] + (f" (+{more} more)" if more else "")


# --------------------------------------------------------------------------------------------------------------
# The validated graph: dense float64 arrays plus names


@dataclass(frozen=True, eq=False)
class Head:
    name: str
    query: str  # "all" | "last"
    w_q: np.ndarray  # [D, d_head]
    w_k: np.ndarray  # [D, d_head]
    w_v: np.ndarray  # [D, d_value]
    w_o: np.ndarray  # [d_value, D]


@dataclass(frozen=True, eq=False)
class Mlp:
    neurons: tuple  # neuron names
    w_in: np.ndarray  # [D, H]
    b_in: np.ndarray  # [H]
    w_out: np.ndarray  # [H, D]


@dataclass(frozen=True, eq=False)
class Layer:
    heads: tuple  # of Head
    mlp: Mlp | None


@dataclass(frozen=True, eq=False)
class CircuitGraph:
    name: str
    description: str
    vocab: tuple
    channels: tuple
    class_names: tuple
    embed: np.ndarray  # [V, D]
    pos_embed: np.ndarray | None  # [max_positions, D]
    max_positions: int | None
    layers: tuple  # of Layer
    readout: np.ndarray  # [D, 2]
    min_len: int | None = None
    max_len: int | None = None
    precondition: object = None  # a DSL program (class 1 = valid input) or None
    precondition_text: str = ""

    @cached_property
    def params(self) -> dict:
        """The weights as a pytree of jnp arrays (what the jitted forward takes)."""
        layers = [{"heads": [{k: jnp.asarray(getattr(h, k)) for k in ("w_q", "w_k", "w_v", "w_o")}
                             for h in layer.heads],
                   "mlp": None if layer.mlp is None else {k: jnp.asarray(getattr(layer.mlp, k))
                                                         for k in ("w_in", "b_in", "w_out")}}
                  for layer in self.layers]
        pos = self.pos_embed if self.pos_embed is not None else np.zeros((0, len(self.channels)))
        return {"embed": jnp.asarray(self.embed), "pos": jnp.asarray(pos), "layers": layers,
                "readout": jnp.asarray(self.readout)}

    @property
    def query_modes(self) -> tuple:
        return tuple(tuple(h.query for h in layer.heads) for layer in self.layers)

    def __call__(self, tokens) -> jax.Array:
        """logits float64 [B, 2] at the last position of tokens int[B, L]."""
        tokens = jnp.asarray(tokens)
        if self.max_positions is not None and tokens.shape[1] > self.max_positions:
            raise CircuitError(f"circuit {self.name!r} accepts at most {self.max_positions} positions, got "
                               f"sequences of length {tokens.shape[1]}; lower --max-len")
        return _forward(self.params, tokens, modes=self.query_modes, positional=self.pos_embed is not None)

    def to_json(self) -> dict:
        """The graph as a schema-1 dict (sparse weights); ``read_graph`` of it gives the same logits."""
        return _graph_dict(self)

    def fingerprint(self) -> str:
        return sha256_text(json.dumps(self.to_json(), sort_keys=True))

    def circuit(self) -> Circuit:
        return Circuit(self.name, self, self.class_names, self.fingerprint())

    @cached_property
    def cost(self) -> GraphCost:
        """What running it costs (``jaxscd.budget`` adds it to a distill run's estimate)."""
        heads = [(f"layers[{i}].heads[{h}]", head.w_q.shape[1], head.w_v.shape[1])
                 for i, layer in enumerate(self.layers) for h, head in enumerate(layer.heads)]
        mlps = [(f"layers[{i}].mlp", len(layer.mlp.neurons)) for i, layer in enumerate(self.layers)
                if layer.mlp is not None]
        rows = 0 if self.pos_embed is None else self.pos_embed.shape[0]
        return graph_cost(len(self.vocab), len(self.channels), rows, heads, mlps)

    def one_layer(self, positions: int = UNBOUNDED_POSITIONS):
        """The same circuit as a ``reference.OneLayerCircuit`` (the structure the beyond-enumeration bounds know),
        or None: an optional MLP layer, then one layer of one head with query "last" and no MLP. Its arrays are
        this graph's, unchanged; ``pos`` is the positional embedding, zero rows without one (at most ``positions``
        rows)."""
        from jaxscd.circuits.reference import OneLayerCircuit

        layers = list(self.layers)
        mlp = layers.pop(0).mlp if len(layers) == 2 and not layers[0].heads else None
        if len(layers) != 1 or layers[0].mlp is not None or len(layers[0].heads) != 1 or \
                layers[0].heads[0].query != "last" or (len(self.layers) == 2 and mlp is None):
            return None
        head, width = layers[0].heads[0], len(self.channels)
        # the positional embedding's rows; without one, zero rows up to ``positions`` (a huge max_positions is no
        # reason to build a huge array of zeros)
        rows = self.max_positions if self.pos_embed is not None else min(self.max_positions or positions, positions)
        pos = np.zeros((rows, width))
        if self.pos_embed is not None:
            pos[:len(self.pos_embed)] = self.pos_embed[:rows]
        w_in, b_in, w_out = (mlp.w_in, mlp.b_in, mlp.w_out) if mlp is not None else \
            (np.zeros((width, 1)), np.zeros(1), np.zeros((1, width)))
        return OneLayerCircuit(self.embed, pos, w_in, b_in, w_out, head.w_q, head.w_k, head.w_v, head.w_o,
                               self.readout)


# --------------------------------------------------------------------------------------------------------------
# Forward pass


def _attend(head: dict, x: jax.Array, mode: str) -> jax.Array:
    """The head's write to the residual stream, [B, L, D]."""
    keys, values = x @ head["w_k"], x @ head["w_v"]  # [B, L, d_head], [B, L, d_value]
    if mode == "last":
        scores = jnp.einsum("bd,bld->bl", x[:, -1] @ head["w_q"], keys)
        out = jnp.einsum("bl,blv->bv", jax.nn.softmax(scores, axis=-1), values) @ head["w_o"]  # [B, D]
        return jnp.zeros_like(x).at[:, -1].set(out)
    scores = jnp.einsum("bid,bjd->bij", x @ head["w_q"], keys)
    length = x.shape[1]
    causal = jnp.arange(length)[None, :] <= jnp.arange(length)[:, None]  # [i, j]: j <= i
    attn = jax.nn.softmax(jnp.where(causal[None], scores, -jnp.inf), axis=-1)
    return jnp.einsum("bij,bjv->biv", attn, values) @ head["w_o"]


@partial(jax.jit, static_argnames=("modes", "positional"))
def _forward(params: dict, tokens: jax.Array, *, modes: tuple, positional: bool) -> jax.Array:
    x = params["embed"][tokens]  # [B, L, D]
    if positional:
        x = x + params["pos"][None, :tokens.shape[1]]
    for layer, layer_modes in zip(params["layers"], modes):
        if layer["heads"]:
            x = x + sum(_attend(head, x, mode) for head, mode in zip(layer["heads"], layer_modes))
        if layer["mlp"] is not None:
            mlp = layer["mlp"]
            x = x + jax.nn.relu(x @ mlp["w_in"] + mlp["b_in"]) @ mlp["w_out"]
    return x[:, -1] @ params["readout"]


# --------------------------------------------------------------------------------------------------------------
# Cost: from the sizes a graph declares, before any array is built. A few bytes of JSON can declare a huge dense
# array ("d_head": 100000000 reached 12 GB) or hundreds of layers (jit compiles every layer into one program, once per
# batch shape: measured on 2 CPU cores, about 0.06-0.08 s a head and 0.02 s an MLP; 800 layers took 100 s a shape).

MAX_WEIGHTS = 50_000_000  # dense float64 weights a graph may declare (400 MB, twice that with the device copy)
COMPILE_S_PER_HEAD = 0.08
COMPILE_S_PER_MLP = 0.02
FLOPS_PER_SECOND = 1e10  # float64 on 2 CPU cores, measured 4e10-5e10: the estimate errs long


@dataclass(frozen=True)
class GraphCost:
    """Sizes that set what a graph costs: ``weights`` (dense float64 numbers), ``heads`` and ``mlps`` (jit compile
    time), ``flops_per_position`` (2 x the multiply-adds of every layer at one position, attention scores apart),
    ``head_width`` (sum of d_head + d_value: the scores' cost per attended position), ``widest`` (the widest
    activation row), ``largest`` (the part with the most weights, for messages)."""

    weights: int
    heads: int
    mlps: int
    flops_per_position: int
    head_width: int
    widest: int
    largest: str

    @property
    def compile_seconds(self) -> float:
        """Estimated jit compile time for one batch shape."""
        return COMPILE_S_PER_HEAD * self.heads + COMPILE_S_PER_MLP * self.mlps

    def seconds_per_input(self, length: int) -> float:
        return length * (self.flops_per_position + 2 * length * self.head_width) / FLOPS_PER_SECOND

    def bytes(self, rows: int, length: int) -> int:
        """Memory to run a batch of ``rows`` sequences of ``length``: the weights twice (numpy and the device), the
        residual stream and a few temporaries of the widest row."""
        return 16 * self.weights + 32 * rows * length * self.widest

    def describe(self) -> str:
        return f"{self.weights:,} dense weights, {self.heads:,} heads and {self.mlps:,} MLP layers"


def graph_cost(n_vocab: int, n_channels: int, pos_rows: int, heads: Sequence, mlps: Sequence) -> GraphCost:
    """The cost of a graph of these sizes: ``heads`` (path, d_head, d_value), ``mlps`` (path, neurons)."""
    d = n_channels
    parts = [("embed", n_vocab * d), ("pos_embed", pos_rows * d), ("readout", 2 * d)]
    parts += [(path, 2 * d * (d_head + d_value)) for path, d_head, d_value in heads]
    parts += [(path, 2 * d * neurons + neurons) for path, neurons in mlps]
    largest = max(parts, key=lambda part: part[1])
    per_position = sum(w for path, w in parts if path.startswith("layers"))
    widest = max([d, *(w for _, dh, dv in heads for w in (dh, dv)), *(n for _, n in mlps)])
    return GraphCost(sum(w for _, w in parts), len(heads), len(mlps), 2 * per_position,
                     sum(dh + dv for _, dh, dv in heads), widest, f"{largest[0]}: {largest[1]:,}")


def _declared_cost(data: Mapping, n_vocab: int, n_channels: int) -> GraphCost:
    """The cost of the sizes a graph dict declares (well-typed ones; the reader reports the others)."""
    def size(value) -> int:
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0

    heads, mlps = [], []
    for i, layer in enumerate(data.get("layers") if isinstance(data.get("layers"), list) else []):
        layer = layer if isinstance(layer, Mapping) else {}
        for h, head in enumerate(layer.get("heads") if isinstance(layer.get("heads"), list) else []):
            if isinstance(head, Mapping):
                heads.append((f"layers[{i}].heads[{h}]", size(head.get("d_head")), size(head.get("d_value"))))
        neurons = layer.get("mlp", {}).get("neurons") if isinstance(layer.get("mlp"), Mapping) else None
        if isinstance(neurons, list):
            mlps.append((f"layers[{i}].mlp", len(neurons)))
    rows = size(data.get("max_positions")) if data.get("pos_embed") is not None else 0
    return graph_cost(n_vocab, n_channels, rows, heads, mlps)


def _check_cost(cost: GraphCost) -> None:
    if cost.weights > MAX_WEIGHTS:
        raise GraphError([f"$: the graph declares {cost.weights:,} dense weights ({16 * cost.weights / 2**30:.1f} GiB "
                          f"to run; the largest part, {cost.largest}), above the {MAX_WEIGHTS:,} jaxscd runs; shrink "
                          f"the sizes it declares (vocab x channels, d_head, d_value, neurons, max_positions with a "
                          f"pos_embed): a circuit graph writes out a small circuit"])


# --------------------------------------------------------------------------------------------------------------
# Validation: one pass that checks the JSON and builds the dense arrays


def _show(value, limit: int = 60) -> str:
    try:
        text = repr(value)
    except (RecursionError, ValueError):  # nested too deeply; an integer past Python's 4300 digits
        return f"a {type(value).__name__} too large to show"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _first(names, limit: int = 8) -> str:
    """Names for a message: all of a short list, the first ``limit`` of a long one."""
    shown = ", ".join(str(n) for n in names[:limit])  # a slice of a tuple or list: no copy of the whole
    return shown + (f", ... ({len(names):,} in all)" if len(names) > limit else "")


def _key(name) -> str:
    return f"[{json.dumps(name)}]"


HINT_PROBLEMS, HINT_NAMES = 20, 2000  # "did you mean" for the first problems only, among at most this many names


def _close(name, names, problems_so_far: int) -> list:
    """A close match for a "did you mean" hint; none past the first problems or among many names (each search is
    linear in the names: a hint per problem would make a long list of problems quadratic)."""
    if problems_so_far >= HINT_PROBLEMS or len(names) > HINT_NAMES:
        return []
    return difflib.get_close_matches(str(name), names, n=1)


class _Reader:
    """Reads one graph dict, collecting one-line problems; returns None for parts that could not be read."""

    def __init__(self):
        self.problems: list[str] = []
        self.channels: tuple = ()
        self.index: dict = {}

    def fail(self, path: str, what: str, fix: str, value=None, show: bool = True) -> None:
        got = f", got {_show(value)}" if show else ""
        self.problems.append(f"{path}: {what}{got}; {fix}")

    def fields(self, obj, path: str, required: Sequence[str], optional: Sequence[str], what: str) -> bool:
        if not isinstance(obj, Mapping):
            self.fail(path, f"{what} must be a JSON object", f"write {{{', '.join(map(json.dumps, required))}: ...}}",
                      obj)
            return False
        ok = True
        for name in required:
            if name not in obj:
                ok = False
                self.fail(path, f"missing field {json.dumps(name)}",
                          f"every {what} needs {', '.join(map(json.dumps, required))}", show=False)
        for name in obj:
            if name not in required and name not in optional:
                close = _close(name, list(required) + list(optional), len(self.problems))
                hint = f"did you mean {json.dumps(close[0])}?" if close else \
                    f"allowed fields: {', '.join(map(json.dumps, list(required) + list(optional)))}"
                self.fail(f"{path}.{name}", f"unknown field {json.dumps(name)} in a {what}", hint, show=False)
                ok = False
        return ok

    def number(self, value, path: str) -> float | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(path, "weight must be a number", "write a JSON number such as 0.5", value)
            return None
        try:
            value = float(value)
        except OverflowError:  # an integer of hundreds of digits
            self.fail(path, "weight must be a float64 number (at most about 1.8e308 in size)",
                      "write a smaller number", value)
            return None
        if not math.isfinite(value):
            self.fail(path, "weight must be finite (not NaN or inf)", "replace it with a finite number", value)
            return None
        return float(value)

    def integer(self, value, path: str, low: int, what: str) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            self.fail(path, f"{what} must be an integer >= {low}", f"write e.g. {max(low, 1)}", value)
            return None
        return value

    def names(self, value, path: str, what: str, minimum: int, exact: int | None = None) -> tuple | None:
        count = f"exactly {exact}" if exact else f"at least {minimum}"
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value) or \
                len(value) < minimum or (exact is not None and len(value) != exact):
            self.fail(path, f"{what} must be a list of {count} non-empty strings", f"write e.g. {['a', 'b']}",
                      value)
            return None
        repeated = sorted(name for name, count in Counter(value).items() if count > 1)
        if repeated:
            self.fail(path, f"{what} must be unique, repeated: {repeated[:8]}", "list each name once", value)
            return None
        return tuple(value)

    def channel(self, name, path: str) -> int | None:
        if name not in self.index:
            close = _close(name, self.channels, len(self.problems))
            guess = f"did you mean {json.dumps(close[0])}? " if close else ""
            hint = guess + "add it to \"channels\" or fix the name"
            self.fail(path, f"unknown channel {json.dumps(name)} (channels: {_first(self.channels)})", hint,
                      show=False)
            return None
        return self.index[name]

    def vector(self, value, path: str) -> np.ndarray | None:
        """A channel vector: {channel: number} or a list of D numbers -> float64 [D]."""
        out, ok = np.zeros(len(self.channels)), True
        if isinstance(value, Mapping):
            for name, weight in value.items():
                c, w = self.channel(name, f"{path}{_key(name)}"), self.number(weight, f"{path}{_key(name)}")
                ok &= c is not None and w is not None
                if c is not None and w is not None:
                    out[c] = w
        elif isinstance(value, list) and len(value) == len(self.channels):
            for c, weight in enumerate(value):
                w = self.number(weight, f"{path}[{c}]")
                ok &= w is not None
                out[c] = 0.0 if w is None else w
        else:
            self.fail(path, f"expected a channel vector ({{channel: number}} or a list of {len(self.channels)} "
                      f"numbers)", "write e.g. {\"" + (self.channels[0] if self.channels else "one") + "\": 1.0}",
                      value)
            return None
        return out if ok else None

    def matrix(self, value, path: str, width: int, unit: str, size: str) -> np.ndarray | None:
        """A channel matrix: {channel: [width numbers]} or a list of D such rows -> float64 [D, width]."""
        out, ok = np.zeros((len(self.channels), width)), True
        if isinstance(value, Mapping):
            rows = [(self.channel(name, f"{path}{_key(name)}"), row, f"{path}{_key(name)}")
                    for name, row in value.items()]
        elif isinstance(value, list) and len(value) == len(self.channels):
            rows = [(c, row, f"{path}[{c}]") for c, row in enumerate(value)]
        else:
            self.fail(path, f"expected a channel matrix ({{channel: [{width} numbers]}} or a list of "
                      f"{len(self.channels)} rows)", f"write one row of {width} numbers (one per {unit}) per channel",
                      value)
            return None
        for c, row, row_path in rows:
            if not isinstance(row, list) or len(row) != width:
                self.fail(row_path, f"row must be a list of {width} numbers ({size} = {width})",
                          f"give exactly one number per {unit}", row)
                ok = False
                continue
            weights = [self.number(w, f"{row_path}[{j}]") for j, w in enumerate(row)]
            if c is None or any(w is None for w in weights):
                ok = False
                continue
            out[c] = weights
        return out if ok else None


def _read_head(r: _Reader, head, path: str, layer: int, h: int) -> Head | None:
    if not r.fields(head, path, _HEAD_REQUIRED, ("name",), "head"):
        return None
    query = head["query"]
    if query not in QUERY_MODES:
        r.fail(f"{path}.query", "query must be \"all\" (every position, causal) or \"last\" (final position only)",
               "write \"query\": \"last\" or \"all\"", query)
    d_head = r.integer(head["d_head"], f"{path}.d_head", 1, "d_head")
    d_value = r.integer(head["d_value"], f"{path}.d_value", 1, "d_value")
    name = head.get("name", f"L{layer}.H{h}")
    if d_head is None or d_value is None or query not in QUERY_MODES or not isinstance(name, str):
        if not isinstance(name, str):
            r.fail(f"{path}.name", "name must be a string", "write e.g. \"prev_token\"", name)
        return None
    mats = {k: r.matrix(head[k], f"{path}.{k}", width, unit, size)
            for k, width, unit, size in (("w_q", d_head, "head dim", "d_head"), ("w_k", d_head, "head dim", "d_head"),
                                         ("w_v", d_value, "value dim", "d_value"),
                                         ("w_o", d_value, "value dim", "d_value"))}
    if any(m is None for m in mats.values()):
        return None
    return Head(name, query, mats["w_q"], mats["w_k"], mats["w_v"], mats["w_o"].T.copy())


def _read_mlp(r: _Reader, mlp, path: str, layer: int) -> Mlp | None:
    if not r.fields(mlp, path, ("neurons",), ("activation",), "mlp"):
        return None
    activation = mlp.get("activation", "relu")
    if activation not in ACTIVATIONS:
        r.fail(f"{path}.activation", f"unsupported activation (supported: {', '.join(ACTIVATIONS)})",
               "write \"activation\": \"relu\"", activation)
    neurons = mlp["neurons"]
    if not isinstance(neurons, list):
        r.fail(f"{path}.neurons", "neurons must be a list", "write [{\"in\": {...}, \"out\": {...}}, ...]", neurons)
        return None
    names, w_in, b_in, w_out, ok = [], [], [], [], activation in ACTIVATIONS
    for n, neuron in enumerate(neurons):
        p = f"{path}.neurons[{n}]"
        if not r.fields(neuron, p, _NEURON_REQUIRED, ("name", "bias"), "neuron"):
            ok = False
            continue
        name = neuron.get("name", f"L{layer}.N{n}")
        if not isinstance(name, str):
            r.fail(f"{p}.name", "name must be a string", "write e.g. \"quote_detector\"", name)
        vin, vout = r.vector(neuron["in"], f"{p}.in"), r.vector(neuron["out"], f"{p}.out")
        bias = r.number(neuron.get("bias", 0.0), f"{p}.bias")
        if vin is None or vout is None or bias is None or not isinstance(name, str):
            ok = False
            continue
        names.append(name), w_in.append(vin), b_in.append(bias), w_out.append(vout)
    if not ok:
        return None
    d = len(r.channels)
    return Mlp(tuple(names), np.array(w_in).reshape(-1, d).T.copy(), np.array(b_in, dtype=np.float64),
               np.array(w_out).reshape(-1, d))


def _read_layer(r: _Reader, layer, path: str, index: int) -> Layer | None:
    if not r.fields(layer, path, (), ("heads", "mlp"), "layer"):
        return None
    heads_json = layer.get("heads", [])
    if not isinstance(heads_json, list):
        r.fail(f"{path}.heads", "heads must be a list", "write [] or a list of head objects", heads_json)
        return None
    heads = [_read_head(r, head, f"{path}.heads[{h}]", index, h) for h, head in enumerate(heads_json)]
    mlp = _read_mlp(r, layer["mlp"], f"{path}.mlp", index) if layer.get("mlp") is not None else None
    if any(h is None for h in heads) or (layer.get("mlp") is not None and mlp is None):
        return None
    return Layer(tuple(heads), mlp)


def _read_domain(r: _Reader, domain, n_tokens: int) -> dict:
    if not r.fields(domain, "domain", (), ("min_len", "max_len", "precondition", "precondition_text"), "domain"):
        return {}
    out = {}
    for key in ("min_len", "max_len"):
        if domain.get(key) is not None:
            out[key] = r.integer(domain[key], f"domain.{key}", 1, key)
    if out.get("min_len") and out.get("max_len") and out["min_len"] > out["max_len"]:
        r.fail("domain", "min_len must not exceed max_len", "swap or fix them", [out["min_len"], out["max_len"]])
    if domain.get("precondition") is not None:
        try:
            out["precondition"] = from_json(domain["precondition"])
            check_program(out["precondition"], n_tokens)
        except (ValueError, TypeError, RecursionError) as err:
            r.fail("domain.precondition", f"not a DSL program over the vocab: {str(err)[:200]}",
                   "write a program as jaxscd.dsl.programs.to_json gives it", show=False)
    text = domain.get("precondition_text", "")
    if not isinstance(text, str):
        r.fail("domain.precondition_text", "must be a string", "describe the precondition in words", text)
    out["precondition_text"] = text if isinstance(text, str) else ""
    return out


def _read(data) -> CircuitGraph:
    r = _Reader()
    if not isinstance(data, Mapping):
        raise GraphError([f"$: a circuit graph must be a JSON object, got {_show(data)}; see docs/circuit_graph.md"])
    if data.get("schema") != SCHEMA:
        raise GraphError([f"schema: not a circuit graph, got {_show(data.get('schema'))}; write "
                          f"\"schema\": \"{SCHEMA}\", \"version\": {VERSION}"])
    if data.get("version") != VERSION:
        raise GraphError([f"version: unsupported circuit graph schema version, got {_show(data.get('version'))}; "
                          f"this jaxscd reads version {VERSION}: write \"version\": {VERSION}"])
    if not r.fields(data, "$", _TOP_REQUIRED, _TOP_OPTIONAL, "circuit graph"):
        raise GraphError(r.problems)
    vocab = r.names(data["vocab"], "vocab", "vocab", 2)
    channels = r.names(data["channels"], "channels", "channels", 1)
    name, description = data.get("name", "graph"), data.get("description", "")
    for key, value in (("name", name), ("description", description)):
        if not isinstance(value, str):
            r.fail(key, f"{key} must be a string", f"write e.g. \"{key}\": \"...\"", value)
    if vocab is None or channels is None:
        raise GraphError(r.problems)
    r.channels, r.index = channels, {c: i for i, c in enumerate(channels)}
    _check_cost(_declared_cost(data, len(vocab), len(channels)))  # before any array is built

    embed = np.zeros((len(vocab), len(channels)))
    if not isinstance(data["embed"], Mapping):
        r.fail("embed", "embed must map every token to a channel vector", "write {\"token\": {\"channel\": 1.0}}",
               data["embed"])
    else:
        known, shown = set(vocab), list(vocab) if len(vocab) <= 8 else f"[{_first(vocab)}]"
        for token in data["embed"]:
            if token not in known:
                r.fail(f"embed{_key(token)}", f"unknown token {json.dumps(token)} (vocab: {shown})",
                       "add it to \"vocab\" or fix the name", show=False)
        for t, token in enumerate(vocab):
            if token not in data["embed"]:
                r.fail("embed", f"missing token {json.dumps(token)}", "give every vocab token a channel vector "
                       "({} for a zero embedding)", show=False)
                continue
            row = r.vector(data["embed"][token], f"embed{_key(token)}")
            if row is not None:
                embed[t] = row

    max_positions = data.get("max_positions")
    if max_positions is not None:
        max_positions = r.integer(max_positions, "max_positions", 1, "max_positions")
    pos_embed = None
    if data.get("pos_embed") is not None:
        if max_positions is None:
            r.fail("pos_embed", "a positional embedding needs \"max_positions\"",
                   "add \"max_positions\": N with one pos_embed value per position", show=False)
        else:
            mat = r.matrix(data["pos_embed"], "pos_embed", max_positions, "position", "max_positions")
            pos_embed = None if mat is None else mat.T.copy()  # [max_positions, D]

    layers = []
    if not isinstance(data["layers"], list):
        r.fail("layers", "layers must be a list", "write [] or a list of layer objects", data["layers"])
    else:
        layers = [_read_layer(r, layer, f"layers[{i}]", i) for i, layer in enumerate(data["layers"])]

    readout, class_names = None, None
    if r.fields(data["readout"], "readout", ("classes", "weights"), (), "readout"):
        class_names = r.names(data["readout"]["classes"], "readout.classes", "classes", 2, exact=2)
        readout = r.matrix(data["readout"]["weights"], "readout.weights", 2, "class", "number of classes")

    domain = _read_domain(r, data["domain"], len(vocab)) if data.get("domain") is not None else {}
    if domain.get("max_len") and max_positions and domain["max_len"] > max_positions:
        r.fail("domain.max_len", f"longer than the {max_positions} positions the circuit accepts",
               f"use at most {max_positions} or raise \"max_positions\"", domain["max_len"])
    if r.problems:
        raise GraphError(r.problems)
    return CircuitGraph(name, description, vocab, channels, class_names, embed, pos_embed, max_positions,
                        tuple(layers), readout, domain.get("min_len"), domain.get("max_len"),
                        domain.get("precondition"), domain.get("precondition_text", ""))


def read_graph(source) -> CircuitGraph:
    """A validated ``CircuitGraph`` from a path to a JSON file, JSON text, or an already parsed dict."""
    if isinstance(source, Mapping):
        return _read(source)
    text = str(source)
    if isinstance(source, Path) or not text.lstrip().startswith("{"):
        path = Path(source)
        if not path.is_file():
            raise GraphError([f"$: circuit graph file not found, got {str(path)!r}; check the path"])
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise GraphError([f"$: {str(path)!r} is not UTF-8 text (byte {err.start}); a circuit graph is a JSON "
                              f"file"]) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise GraphError([f"$: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}); "
                          f"fix the JSON syntax"]) from None
    except RecursionError:
        raise GraphError([f"$: nested too deeply to be read (over {sys.getrecursionlimit()} levels); a circuit graph "
                          f"nests a few levels (see docs/circuit_graph.md)"]) from None
    except ValueError as err:  # an integer past Python's 4300 digits
        raise GraphError([f"$: not usable JSON ({str(err).split(';')[0]}); write weights as float64 numbers"]) \
            from None
    return _read(data)


def load_graph(source) -> Circuit:
    """The ``Circuit`` of a circuit graph (path, JSON text or dict); raises ``GraphError`` with every problem."""
    return read_graph(source).circuit()


# --------------------------------------------------------------------------------------------------------------
# Writing graphs: sparse JSON from dense arrays, and export of the built-in OneLayerCircuit


def _sparse_vector(row: np.ndarray, channels: Sequence[str]) -> dict:
    return {channels[c]: float(row[c]) for c in np.flatnonzero(row)}


def _sparse_matrix(mat: np.ndarray, channels: Sequence[str]) -> dict:
    """[D, k] -> {channel: [k numbers]} for the non-zero rows."""
    return {channels[c]: [float(v) for v in mat[c]] for c in range(mat.shape[0]) if np.any(mat[c])}


def _graph_dict(g: CircuitGraph) -> dict:
    ch = g.channels
    out = {"schema": SCHEMA, "version": VERSION, "name": g.name}
    if g.description:
        out["description"] = g.description
    out |= {"vocab": list(g.vocab), "channels": list(ch), "max_positions": g.max_positions,
            "embed": {tok: _sparse_vector(g.embed[t], ch) for t, tok in enumerate(g.vocab)}}
    if g.pos_embed is not None:
        out["pos_embed"] = _sparse_matrix(g.pos_embed.T, ch)
    out["layers"] = []
    for layer in g.layers:
        entry = {}
        if layer.heads:
            entry["heads"] = [{"name": h.name, "query": h.query, "d_head": h.w_q.shape[1], "d_value": h.w_v.shape[1],
                               "w_q": _sparse_matrix(h.w_q, ch), "w_k": _sparse_matrix(h.w_k, ch),
                               "w_v": _sparse_matrix(h.w_v, ch), "w_o": _sparse_matrix(h.w_o.T, ch)}
                              for h in layer.heads]
        if layer.mlp is not None:
            m = layer.mlp
            entry["mlp"] = {"activation": "relu", "neurons": [
                {"name": m.neurons[j], "in": _sparse_vector(m.w_in[:, j], ch), "bias": float(m.b_in[j]),
                 "out": _sparse_vector(m.w_out[j], ch)} for j in range(len(m.neurons))]}
        out["layers"].append(entry)
    out["readout"] = {"classes": list(g.class_names), "weights": _sparse_matrix(g.readout, ch)}
    if g.min_len is not None or g.max_len is not None or g.precondition is not None:
        domain = {k: v for k, v in (("min_len", g.min_len), ("max_len", g.max_len)) if v is not None}
        if g.precondition is not None:
            domain |= {"precondition": to_json(g.precondition), "precondition_text": g.precondition_text}
        out["domain"] = domain
    return out


def export_graph(model, vocab: Sequence[str], class_names: Sequence[str], *, name: str = "graph",
                 description: str = "", channels: Sequence[str] | None = None,
                 neurons: Sequence[str] | None = None, head_name: str = "head", lengths: tuple | None = None,
                 precondition=None, precondition_text: str = "") -> dict:
    """A schema-1 dict for a ``reference.OneLayerCircuit``: layer 0 = its MLP, layer 1 = its head (query "last").

    ``channels`` and ``neurons`` name the residual channels and MLP neurons (default ``c0..``, ``n0..``);
    ``lengths`` (min_len, max_len) and ``precondition`` (a DSL program) fill the optional "domain" block.
    """
    w = model.arrays()
    d, n_hidden = w["embed"].shape[1], w["w_in"].shape[1]
    channels = tuple(channels) if channels is not None else tuple(f"c{i}" for i in range(d))
    neurons = tuple(neurons) if neurons is not None else tuple(f"n{j}" for j in range(n_hidden))
    if len(channels) != d or len(neurons) != n_hidden or len(vocab) != w["embed"].shape[0]:
        raise ValueError(f"export_graph needs {w['embed'].shape[0]} token names, {d} channel names and {n_hidden} "
                         f"neuron names, got {len(vocab)}, {len(channels)} and {len(neurons)}")
    mlp = Layer((), Mlp(neurons, w["w_in"], w["b_in"], w["w_out"]))
    head = Layer((Head(head_name, "last", w["w_q"], w["w_k"], w["w_v"], w["w_o"]),), None)
    pos = w["pos"] if np.any(w["pos"]) else None
    min_len, max_len = lengths if lengths is not None else (None, None)
    graph = CircuitGraph(name, description, tuple(vocab), channels, tuple(class_names), w["embed"], pos,
                         w["pos"].shape[0], (mlp, head), w["readout"], min_len, max_len, precondition,
                         precondition_text)
    return graph.to_json()
