"""Built-in reference circuits: one-layer transformer circuits with explicit, hand-set weights.

Each is a residual stream of named channels, an MLP (layer 0) that writes feature channels, one attention head
read from the final position (softmax over the whole causal context), and a readout of two logits. Weights are
set so that each component does one legible thing, after the circuits of Gao et al. (2025), "Weight-sparse
transformers have interpretable circuits": Fig. 4 (closing quotes) and Fig. 5 (bracket depth).

The second half writes multi-layer circuits for more of the paper's Python tasks (set_or_string, bracket_brace,
if_ternary, fstring_brace, for_while) as circuit-graph dicts, loaded by ``jaxscd.circuits.graph.read_graph``;
each carries its default domain (lengths and a precondition DFA) in the graph's "domain" block.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from jaxscd.circuits.base import Circuit, sha256_bytes
from jaxscd.circuits.graph import SCHEMA, VERSION
from jaxscd.dsl.programs import StateMachine, to_json


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


def quote_close_circuit(max_positions: int = 128, key_gain: float = 8.0, recency: float = 4.0) -> OneLayerCircuit:
    """Alphabet a b " ' ; decides which quote closes the string: 0 = '"', 1 = "'".

    MLP: neuron 0 fires on either quote (quote detector), neurons 1/2 on '"' / "'" write the quote type (+1/-1).
    Head: constant query; key = detector (gain ``key_gain * max_positions``) + position (``recency``), so it
    attends to the most recent quote; value = quote type. Readout: logit['"'] = +head, logit["'"] = -head.
    The detector gain exceeds the largest recency gap ``recency * (max_positions - 1)`` (here by a factor of 2),
    so a quote outscores every later non-quote at any length the circuit accepts.
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


# Between the densities 27/100 and 10/37, the nearest with at most 128 tokens: no input up to 128 positions ties (a
# threshold of exactly 0.27 makes the logit gap 0 at density 27/100, a decision the weights do not fix).
BRACKET_THRESHOLD = 0.27013


def bracket_depth_circuit(max_positions: int = 128, threshold: float = BRACKET_THRESHOLD,
                          gain: float = 20.0) -> OneLayerCircuit:
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


# Names of the residual channels and MLP neurons above (for export to circuit graphs).
QUOTE_CHANNELS = ("one", "is_dq", "is_sq", "quote", "quote_type", "position", "head_out")
QUOTE_NEURONS = ("quote_detector", "double_quote_type", "single_quote_type")
BRACKET_CHANNELS = ("one", "is_open", "is_close", "depth_signal", "mean_depth")
BRACKET_NEURONS = ("open_detector", "close_detector")


# --------------------------------------------------------------------------------------------------------------
# Multi-layer circuits, written as circuit-graph dicts (schema: jaxscd.circuits.graph; load with read_graph)
#
# Shared parts: positional channels ``pos`` (i), ``pos_sq`` (i^2) and ``first`` (i == 0); a previous-token head
# whose score q_i . k_j = gain * (2 (i-1) j - j^2) = -gain (j - (i-1))^2 + const(i) peaks at j = i-1 with a
# gap of ``gain`` (position 0 can only attend to itself); a most-recent head whose score is key_gain * key_j +
# recency * j, so it attends to the latest position where the key channel is on.

PREV_GAIN = 20.0  # previous-token head: off-target weight <= 2 exp(-20) ~ 4e-9
MATCH_GAIN = 100.0  # most-recent / matching heads: key gap 100 - recency * (max_positions - 1) >= 40
RECENCY = 4.0  # a match outweighs one a position earlier by exp(4) ~ 55
GRAPH_POSITIONS = 16


def _positions(max_positions: int) -> dict:
    return {"pos": [float(i) for i in range(max_positions)], "pos_sq": [float(i * i) for i in range(max_positions)],
            "first": [1.0] + [0.0] * (max_positions - 1)}


def _previous_token_head(name: str, reads: dict, writes: dict, gain: float = PREV_GAIN) -> dict:
    """Every position copies channels of the token before it: ``reads[k]`` -> ``writes[k]`` (value dim k)."""
    d = len(reads)
    unit = lambda j: [1.0 if i == j else 0.0 for i in range(d)]  # noqa: E731
    return {"name": name, "query": "all", "d_head": 2, "d_value": d,
            "w_q": {"pos": [2 * gain, 0.0], "one": [-2 * gain, -gain]},
            "w_k": {"pos": [1.0, 0.0], "pos_sq": [0.0, 1.0]},
            "w_v": {reads[k]: unit(j) for j, k in enumerate(reads)},
            "w_o": {writes[k]: unit(j) for j, k in enumerate(writes)}}


def _most_recent_head(name: str, key: str, value: str, out: str, gain: float = MATCH_GAIN) -> dict:
    """The final position attends to the latest position where ``key`` is on and copies ``value`` to ``out``."""
    return {"name": name, "query": "last", "d_head": 2, "d_value": 1, "w_q": {"one": [gain, RECENCY]},
            "w_k": {key: [1.0, 0.0], "pos": [0.0, 1.0]}, "w_v": {value: [1.0]}, "w_o": {out: [1.0]}}


def _state_machine(n_tokens: int, start, step, accepting):
    """A precondition DFA from a step function over readable states; ``step`` returns None to reject.

    States are numbered in breadth-first order from ``start``; None (rejected) is absorbing.
    """
    states, index, table = [start], {start: 0}, []
    for state in states:  # grows while it is read
        row = []
        for token in range(n_tokens):
            nxt = None if state is None else step(state, token)
            if nxt not in index:
                index[nxt] = len(states)
                states.append(nxt)
            row.append(index[nxt])
        table.append(row)
    return StateMachine(table, {index[s] for s in states if s is not None and accepting(s)})


def _neuron(name: str, reads: dict, writes: dict, bias: float = 0.0) -> dict:
    return {"name": name, "in": reads, "bias": bias, "out": writes}


def _graph(name: str, description: str, vocab: tuple, channels: tuple, embed: dict, layers: list, classes: tuple,
           readout: dict, lengths: tuple, precondition=None, precondition_text: str = "",
           positional: bool = True) -> dict:
    graph = {"schema": SCHEMA, "version": VERSION, "name": name, "description": description,
             "vocab": list(vocab), "channels": list(channels), "max_positions": GRAPH_POSITIONS,
             "embed": {tok: {"one": 1.0} | embed.get(tok, {}) for tok in vocab}}
    if positional:
        graph["pos_embed"] = _positions(GRAPH_POSITIONS)
    graph |= {"layers": layers, "readout": {"classes": list(classes), "weights": readout},
              "domain": {"min_len": lengths[0], "max_len": lengths[1]}}
    if precondition is not None:
        graph["domain"] |= {"precondition": to_json(precondition), "precondition_text": precondition_text}
    return graph


def set_or_string_graph() -> dict:
    """Variable type tracking: is the final variable a set ('.add') or a string ('+=')?

    Tokens x y set() '' ; ``x set()`` reads ``x = set()``. Layer 0: a previous-token head copies the variable
    identity (is_x, is_y) into the next position (prev_x, prev_y); the MLP detects initialisers and writes their
    type (+1 set(), -1 ''). Layer 1: a head from the final position matches variables, q = [is_x, is_y, 1] .
    k = [prev_x, prev_y, init] (+ recency), so it attends to the latest initialiser of the final token's
    variable, and copies its type. Readout: logit['.add'] = +type, logit['+='] = -type.
    """
    vocab = ("x", "y", "set()", "''")
    channels = ("one", "is_x", "is_y", "is_set", "is_str", "pos", "pos_sq", "first", "prev_x", "prev_y", "init",
                "init_type", "read_type")
    embed = {"x": {"is_x": 1.0}, "y": {"is_y": 1.0}, "set()": {"is_set": 1.0}, "''": {"is_str": 1.0}}
    g, r = MATCH_GAIN, RECENCY
    layers = [
        {"heads": [_previous_token_head("prev_variable", {"x": "is_x", "y": "is_y"}, {"x": "prev_x", "y": "prev_y"})],
         "mlp": {"activation": "relu", "neurons": [
             _neuron("set_initialiser", {"is_set": 1.0}, {"init": 1.0, "init_type": 1.0}),
             _neuron("str_initialiser", {"is_str": 1.0}, {"init": 1.0, "init_type": -1.0})]}},
        {"heads": [{"name": "match_variable", "query": "last", "d_head": 4, "d_value": 1,
                    "w_q": {"is_x": [g, 0.0, 0.0, 0.0], "is_y": [0.0, g, 0.0, 0.0], "one": [0.0, 0.0, g, r]},
                    "w_k": {"prev_x": [1.0, 0.0, 0.0, 0.0], "prev_y": [0.0, 1.0, 0.0, 0.0],
                            "init": [0.0, 0.0, 1.0, 0.0], "pos": [0.0, 0.0, 0.0, 1.0]},
                    "w_v": {"init_type": [1.0]}, "w_o": {"read_type": [1.0]}}]}]

    def step(state, token):  # state: (type of x: None / "set()" / "''", the previous token was x)
        kind, after_x = state
        if after_x:  # an x that is not last must be initialised, always to the same type
            return (vocab[token], False) if token >= 2 and kind in (None, vocab[token]) else None
        return (kind, token == 0)

    precondition = _state_machine(4, (None, False), step, lambda s: s[1] and s[0] is not None)
    text = ("ends with the query x; every earlier x is initialised (x set() or x ''), always to the same type; "
            "y is free")
    return _graph("set_or_string", "set() or string, two hops: a previous-token head copies the variable into its "
                  "initialiser; a head from the final token matches the variable and reads the type", vocab, channels,
                  embed, layers, (".add", "+="), {"read_type": [1.0, -1.0]}, (1, 8), precondition, text)


def bracket_brace_graph() -> dict:
    """Which closer for the most recent opener: ')' or '}'.

    Tokens ( { ) } a. Layer 0 (MLP): an opener detector on '(' and '{' writes ``opener`` and the opener type
    (+1 '(', -1 '{'); closers are not detected. Layer 1: a head from the final position attends to the most
    recent opener (key = opener, + recency) and copies its type. Readout: logit[')'] = +type, logit['}'] = -type.
    """
    vocab = ("(", "{", ")", "}", "a")
    channels = ("one", "is_lparen", "is_lbrace", "is_rparen", "is_rbrace", "pos", "pos_sq", "first", "opener",
                "opener_type", "read_type")
    embed = {"(": {"is_lparen": 1.0}, "{": {"is_lbrace": 1.0}, ")": {"is_rparen": 1.0}, "}": {"is_rbrace": 1.0}}
    layers = [
        {"mlp": {"activation": "relu", "neurons": [
            _neuron("paren_opener", {"is_lparen": 1.0}, {"opener": 1.0, "opener_type": 1.0}),
            _neuron("brace_opener", {"is_lbrace": 1.0}, {"opener": 1.0, "opener_type": -1.0})]}},
        {"heads": [_most_recent_head("last_opener", "opener", "opener_type", "read_type")]}]

    def step(open_bracket, token):  # state: the open opener ("" when none); no nesting, closers must match
        if token == 4:
            return open_bracket
        if token < 2:
            return vocab[token] if not open_bracket else None
        return "" if open_bracket == vocab[token - 2] else None

    precondition = _state_machine(5, "", step, bool)
    return _graph("bracket_brace", "which closer for the most recent opener: an MLP opener detector, then a head "
                  "that attends to the most recent opener and reads its type", vocab, channels, embed, layers,
                  (")", "}"), {"read_type": [1.0, -1.0]}, (1, 7), precondition,
                  "brackets are not nested, every closer matches, and one bracket is open at the end")


def if_ternary_graph() -> dict:
    """Statement or ternary: after 'if <cond>', predict ':' (an if statement) or 'else' (a conditional expression).

    Tokens \\n if x =. Layer 0: a previous-token head copies ``is_nl`` into ``after_nl``; the MLP classifies each
    'if': ``statement_if`` = relu(2 is_if + after_nl + first - 2) fires on an 'if' at the start of a line,
    ``ternary_if`` = relu(is_if - after_nl - first) on an 'if' inside an expression; they write if_kind = +1 / -1.
    Layer 1: a head from the final position attends to the most recent 'if' and copies its kind. Readout:
    logit[':'] = +kind, logit['else'] = -kind.
    """
    vocab = ("\\n", "if", "x", "=")
    channels = ("one", "is_nl", "is_if", "is_x", "is_eq", "pos", "pos_sq", "first", "after_nl", "if_kind",
                "read_kind")
    embed = {"\\n": {"is_nl": 1.0}, "if": {"is_if": 1.0}, "x": {"is_x": 1.0}, "=": {"is_eq": 1.0}}
    layers = [
        {"heads": [_previous_token_head("prev_newline", {"nl": "is_nl"}, {"nl": "after_nl"})],
         "mlp": {"activation": "relu", "neurons": [
             _neuron("statement_if", {"is_if": 2.0, "after_nl": 1.0, "first": 1.0}, {"if_kind": 1.0}, bias=-2.0),
             _neuron("ternary_if", {"is_if": 1.0, "after_nl": -1.0, "first": -1.0}, {"if_kind": -1.0})]}},
        {"heads": [_most_recent_head("last_if", "is_if", "if_kind", "read_kind")]}]

    def step(state, token):  # state: (number of 'if' so far, at most 2; phase: 0 other, 1 after 'if', 2 condition)
        n_ifs, phase = state
        if token == 1:
            return (n_ifs + 1, 1) if n_ifs < 2 else None
        return (n_ifs, 2 if token == 2 and phase > 0 else 0)

    precondition = _state_machine(4, (0, 0), step, lambda s: s[1] == 2)
    return _graph("if_ternary", "':' or 'else' after 'if <cond>': a previous-token head and an MLP tell a "
                  "line-start 'if' from an inline one; a head reads the kind of the last 'if'", vocab, channels,
                  embed, layers,
                  ("else", ":"), {"read_kind": [-1.0, 1.0]}, (1, 8), precondition,
                  "at most two 'if'; ends with 'if' followed by one or more 'x' (the condition)")


def fstring_brace_graph(threshold: float = 1 / 32, gain: float = 32.0) -> dict:
    """Inside an f-string: close an open replacement field with '}' or close the string with '\"'.

    Tokens { } a (the text of one f-string; format specs may nest one more field, as in f"{x:{w}}"). Layer 0
    (MLP): +1 for '{', -1 for '}'. Layer 1: a head with zero query and key attends uniformly, writing the density
    (#'{' - #'}') / length. Readout: logit['}'] - logit['\"'] = gain * (density - threshold); the threshold
    1/32 sits below every positive density on 16 positions, so unlike bracket_depth no length dilutes the
    decision: it is 'some field is open'.
    """
    vocab = ("{", "}", "a")
    channels = ("one", "is_open", "is_close", "brace_signal", "mean_signal")
    embed = {"{": {"is_open": 1.0}, "}": {"is_close": 1.0}}
    layers = [
        {"mlp": {"activation": "relu", "neurons": [
            _neuron("field_open", {"is_open": 1.0}, {"brace_signal": 1.0}),
            _neuron("field_close", {"is_close": 1.0}, {"brace_signal": -1.0})]}},
        {"heads": [{"name": "uniform_mean", "query": "last", "d_head": 1, "d_value": 1, "w_q": {}, "w_k": {},
                    "w_v": {"brace_signal": [1.0]}, "w_o": {"mean_signal": [1.0]}}]}]

    def step(depth, token):  # state: how many fields are open (0..2)
        depth += {0: 1, 1: -1, 2: 0}[token]
        return depth if 0 <= depth <= 2 else None

    precondition = _state_machine(3, 0, step, lambda depth: True)
    return _graph("fstring_brace", "close the f-string field '}' or the string '\"': an MLP brace counter "
                  "averaged by uniform attention, read with a threshold just above zero", vocab, channels, embed,
                  layers,
                  ('"', "}"), {"mean_signal": [0.0, gain], "one": [0.0, -gain * threshold]}, (1, 8), precondition,
                  "fields never close more than they open and nest at most 2 deep", positional=False)


def for_while_graph() -> dict:
    """Loop header: after 'for i' predict 'in', after 'while i' predict a comparison '<'.

    Tokens for while i \\n. Layer 0: a previous-token head copies the loop keyword into the next position
    (prev_for, prev_while); the MLP fires ``for_header`` = relu(prev_for + is_i - 1) or ``while_header`` =
    relu(prev_while + is_i - 1) on a variable right after a keyword, writing next_in = +1 / -1. Readout:
    logit['in'] = +next_in, logit['<'] = -next_in, at the final position.
    """
    vocab = ("for", "while", "i", "\\n")
    channels = ("one", "is_for", "is_while", "is_i", "is_nl", "pos", "pos_sq", "first", "prev_for", "prev_while",
                "next_in")
    embed = {"for": {"is_for": 1.0}, "while": {"is_while": 1.0}, "i": {"is_i": 1.0}, "\\n": {"is_nl": 1.0}}
    layers = [
        {"heads": [_previous_token_head("prev_keyword", {"for": "is_for", "while": "is_while"},
                                        {"for": "prev_for", "while": "prev_while"})],
         "mlp": {"activation": "relu", "neurons": [
             _neuron("for_header", {"prev_for": 1.0, "is_i": 1.0}, {"next_in": 1.0}, bias=-1.0),
             _neuron("while_header", {"prev_while": 1.0, "is_i": 1.0}, {"next_in": -1.0}, bias=-1.0)]}}]

    def step(state, token):  # state: (loop keywords so far, at most 2; phase: 0 other, 1 after keyword, 2 then 'i')
        n_keywords, phase = state
        if token < 2:
            return (n_keywords + 1, 1) if n_keywords < 2 else None
        return (n_keywords, 2 if token == 2 and phase == 1 else 0)

    precondition = _state_machine(4, (0, 0), step, lambda s: s[1] == 2)
    return _graph("for_while", "'in' after 'for i', '<' after 'while i': a previous-token head copies the "
                  "keyword; an MLP fires on keyword + variable", vocab, channels, embed, layers,
                  ("<", "in"), {"next_in": [-1.0, 1.0]}, (1, 8), precondition,
                  "at most two loop keywords; ends with a loop keyword followed by the variable i")
