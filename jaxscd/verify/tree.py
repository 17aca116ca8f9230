"""Proofs of surrogate == program through a decision tree found by exact interval bounds (``--proof tree``;
"smt-tree" in certificates).

One proof, two steps:

1. **surrogate == tree.** For each length, the cube of all sequences is split on one position at a time (its
   allowed tokens into two groups) until, on every leaf cube, exact integer interval bounds show the surrogate's
   score is > 0 everywhere (leaf 1) or <= 0 everywhere (leaf 0). The bounds are exact sums of per-position
   minima/maxima, with each ReLU bounded by its pre-activation interval (for deep nets, intervals propagate
   through the units in order), so a decided leaf is a proof, not a sample. A cube the domain's precondition
   rules out (abstract meaning of the precondition) becomes a *void* leaf: it claims that no valid input lies in
   it.
2. **tree == program.** One z3 query, satisfiable iff some valid input lands in a void leaf or in a leaf whose
   class the program does not output. Splits follow the surrogate's weights (recency neurons split late
   positions first), so the tree is small where the network is simple, and the query is a case split z3 walks
   quickly, where the plain query must discover it.

The tree is part of the certificate: ``jaxscd verify`` re-checks that it partitions the domain and re-derives
every leaf bound in plain Python integers (``leaf_class``), then re-runs the query through z3 (and cvc5).
A tree that would exceed its node budget is abandoned (the caller falls back to other strategies).
"""

from __future__ import annotations

import json
import time

import numpy as np
import z3

from jaxscd.domain import Domain
from jaxscd.dsl import smt
from jaxscd.dsl.abstract import outputs
from jaxscd.dsl.programs import CountThreshold, DensityThreshold, Program
from jaxscd.errors import BundleError
from jaxscd.surrogates import IntegerSurrogate
from jaxscd.verify.encode import boolean_sequence, one_query_text
from jaxscd.verify.solver import query_encodes, recheck_query, smt2_text, solve_text
from jaxscd.verify.strategy import Goal, ProofResult, ProofStrategy, Verdict, solver_verdict

VOID = None  # leaf: the precondition excludes every sequence of the cube
MAX_TREE_NODES = 20_000
_CHUNK = 256  # cubes bounded per numpy batch (memory: chunk x len x tokens x neurons)
_BIG = 1 << 62


def _padded(surrogate: IntegerSurrogate) -> tuple[np.ndarray, np.ndarray]:
    """(hidden_w, skip_w) with one extra token column of zeros: the padding token. A cube of length n allows only
    padding at positions >= n, so cubes of every length share one array shape and one batch."""
    hidden_w = np.concatenate([surrogate.hidden_w, np.zeros_like(surrogate.hidden_w[:, :1])], axis=1)
    skip_w = np.concatenate([surrogate.skip_w, np.zeros_like(surrogate.skip_w[:, :1])], axis=1)
    return hidden_w, skip_w


def _cube_bounds(surrogate: IntegerSurrogate, w: np.ndarray, skip: np.ndarray, allowed: np.ndarray):
    """Batched exact bounds over cubes ``allowed`` (bool [K, L, V + 1]) given padded weights ``w`` [L, V + 1, H]
    and ``skip`` [L, V + 1]: (score min [K], score max [K], split spread [K, L] (-1 where a position is fixed),
    split key [K, L, V + 1]). One hidden layer: always-active neurons are linear in the tokens, so their
    contributions are bounded together with the skip weights, position by position (tighter than intervals)."""
    if surrogate.deep:
        return _deep_cube_bounds(surrogate, w, skip, allowed)
    pick = allowed[..., None]
    pre_low = surrogate.hidden_b + np.where(pick, w, _BIG).min(axis=2).sum(axis=1)  # [K, H]
    pre_high = surrogate.hidden_b + np.where(pick, w, -_BIG).max(axis=2).sum(axis=1)
    active = pre_low > 0
    unstable = ~active & (pre_high > 0)
    gain = surrogate.out_w * active  # [K, H]: always-active neurons are linear
    eff = skip + np.einsum("nvh,kh->knv", w, gain)  # [K, L, V + 1]
    const = surrogate.out_b + (gain * surrogate.hidden_b).sum(axis=1)
    eff_low = np.where(allowed, eff, _BIG).min(axis=2)
    eff_high = np.where(allowed, eff, -_BIG).max(axis=2)
    relu_w = surrogate.out_w * unstable * pre_high  # an unstable ReLU ranges over [0, pre_high]
    score_low = const + eff_low.sum(axis=1) + np.minimum(relu_w, 0).sum(axis=1)
    score_high = const + eff_high.sum(axis=1) + np.maximum(relu_w, 0).sum(axis=1)
    weight = np.abs(surrogate.out_w) * unstable  # [K, H]
    w_range = np.where(pick, w, -_BIG).max(axis=2) - np.where(pick, w, _BIG).min(axis=2)  # [K, L, H]
    spread = (eff_high - eff_low) + np.einsum("knh,kh->kn", w_range, weight)
    spread = np.where(allowed.sum(axis=2) > 1, spread, -1)
    key = eff + np.einsum("nvh,kh->knv", w, weight) / 2
    return score_low, score_high, spread, key


def _interval_product(low: np.ndarray, high: np.ndarray, weights: np.ndarray):
    """Exact bounds of x @ weights over the box low <= x <= high (int [K, H] each; weights int [H, M])."""
    plus, minus = np.maximum(weights, 0), np.minimum(weights, 0)
    return low @ plus + high @ minus, high @ plus + low @ minus


def _unit_bounds(surrogate: IntegerSurrogate, base_low: np.ndarray, base_high: np.ndarray):
    """Pre-activation bounds [K, H] of every unit from the bounds of its token terms: a unit's ReLU ranges over
    [max(low, 0), max(high, 0)]. Passes over all units as in the exact evaluator: after pass p the units of depth
    <= p + 1 are final."""
    low, high = base_low, base_high
    for _ in range(surrogate.depth - 1):
        add_low, add_high = _interval_product(np.maximum(low, 0), np.maximum(high, 0), surrogate.unit_w)
        low, high = base_low + add_low, base_high + add_high
    return low, high


def _unit_gains(surrogate: IntegerSurrogate, alive: np.ndarray):
    """float [K, H] (signed, absolute) weight of each live unit's pre-activation on the score through the units it
    feeds (a split heuristic only, never a bound)."""
    out, units = surrogate.out_w.astype(float), surrogate.unit_w.astype(float)
    signed, absolute = alive * out, alive * np.abs(out)
    for _ in range(surrogate.depth - 1):
        signed = alive * (out + signed @ units.T)
        absolute = alive * (np.abs(out) + absolute @ np.abs(units).T)
    return signed, absolute


def _deep_cube_bounds(surrogate: IntegerSurrogate, w: np.ndarray, skip: np.ndarray, allowed: np.ndarray):
    """``_cube_bounds`` for deep nets: plain interval propagation through the units; splits weigh each token by
    the gains of the live units it feeds."""
    pick = allowed[..., None]
    w_low, w_high = np.where(pick, w, _BIG).min(axis=2), np.where(pick, w, -_BIG).max(axis=2)  # [K, L, H]
    low, high = _unit_bounds(surrogate, surrogate.hidden_b + w_low.sum(axis=1),
                             surrogate.hidden_b + w_high.sum(axis=1))
    out_low, out_high = _interval_product(np.maximum(low, 0), np.maximum(high, 0), surrogate.out_w[:, None])
    skip_low, skip_high = np.where(allowed, skip, _BIG).min(axis=2), np.where(allowed, skip, -_BIG).max(axis=2)
    score_low = surrogate.out_b + skip_low.sum(axis=1) + out_low[:, 0]
    score_high = surrogate.out_b + skip_high.sum(axis=1) + out_high[:, 0]
    signed, absolute = _unit_gains(surrogate, high > 0)
    spread = (skip_high - skip_low) + np.einsum("knh,kh->kn", (w_high - w_low).astype(float), absolute)
    spread = np.where(allowed.sum(axis=2) > 1, spread, -1)
    key = skip + np.einsum("nvh,kh->knv", w.astype(float), signed)
    return score_low, score_high, spread, key


def _safe_magnitudes(surrogate: IntegerSurrogate, max_len: int) -> bool:
    """int64 bound sums cannot overflow (else the builder declines and other strategies run). Deep nets: every
    interval end and partial sum stays within the surrogate's magnitude bound."""
    if surrogate.deep:
        return surrogate.magnitude < (1 << 58)
    arrays = [surrogate.hidden_w, surrogate.hidden_b, surrogate.skip_w, surrogate.out_w]
    biggest = max([max(-int(a.min()), int(a.max())) if a.size else 0 for a in arrays] + [abs(int(surrogate.out_b))])
    return (biggest + 1) ** 2 * (max_len + 2) * (surrogate.n_neurons + 2) < (1 << 58)


def _void(precondition, cubes: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """bool [K]: the precondition outputs only 0 on the cube (vectorised for counters, else per cube).
    ``cubes`` carry the padding column last."""
    if precondition is None:
        return np.zeros(len(cubes), dtype=bool)
    n_tokens = cubes.shape[2] - 1
    if isinstance(precondition, (CountThreshold, DensityThreshold)):
        weights = np.array([(v in precondition.plus) - (v in precondition.minus) for v in range(n_tokens)] + [0])
        high = np.where(cubes, weights, -_BIG).max(axis=2).sum(axis=1)  # largest signed count on each cube
        if isinstance(precondition, CountThreshold):
            return high < precondition.threshold
        return precondition.den * high < precondition.num * lengths
    return np.array([outputs(precondition, cube[:n, :n_tokens]) == {0} for cube, n in zip(cubes, lengths)],
                    dtype=bool)


def build_tree(surrogate: IntegerSurrogate, domain: Domain, max_nodes: int = MAX_TREE_NODES) -> dict | None:
    """{length: node} or None when the tree would exceed ``max_nodes``. A node is a leaf (0, 1 or None for void)
    or ``[position, group, then, else]``: sequences whose token at ``position`` is in ``group`` go to ``then``.

    Level by level, every open cube (of every length) is bounded at once; decided and void cubes close, the
    rest split at the position with the widest bound contribution, its tokens cut at the widest gap of a key
    (the token's linear weight plus half its unstable-neuron weight)."""
    if not _safe_magnitudes(surrogate, domain.max_len):
        return None
    w, skip = _padded(surrogate)
    n_tokens, max_len = domain.n_tokens, domain.max_len
    lengths = np.array(domain.lengths)
    frontier = np.zeros((len(lengths), max_len, n_tokens + 1), dtype=bool)
    for r, n in enumerate(lengths):
        frontier[r, :n, :n_tokens] = True
        frontier[r, n:, n_tokens] = True
    ids, count = np.arange(len(lengths)), len(lengths)
    leaf_of, split_of = {}, {}  # node id -> leaf value | (position, group, then id, else id)
    while len(ids):
        next_frontier, next_ids, next_lengths = [], [], []
        for start in range(0, len(ids), _CHUNK):
            cubes, node, size = (a[start:start + _CHUNK] for a in (frontier, ids, lengths))
            low, high, spread, key = _cube_bounds(surrogate, w, skip, cubes)
            decided = (low > 0) | (high <= 0)
            for k in np.flatnonzero(decided):
                leaf_of[int(node[k])] = int(low[k] > 0)
            open_ = np.flatnonzero(~decided)
            void = _void(domain.precondition, cubes[open_], size[open_])
            for k in open_[void]:
                leaf_of[int(node[k])] = VOID
            rows = open_[~void]
            if not len(rows):
                continue
            position = spread[rows].argmax(axis=1)
            if (spread[rows, position] < 0).any():
                raise AssertionError("exact bounds left a single sequence undecided")
            allowed = cubes[rows, position]  # [R, V + 1]
            keys = np.where(allowed, key[rows, position], np.inf)
            order = np.argsort(keys, axis=1, kind="stable")  # allowed tokens first, by key
            with np.errstate(invalid="ignore"):  # inf - inf between two excluded tokens
                gaps = np.diff(np.take_along_axis(keys, order, axis=1), axis=1)
            gaps = np.where(np.isfinite(gaps), gaps, -np.inf)  # only gaps between two allowed tokens
            cut = gaps.argmax(axis=1) + 1
            rank = np.empty_like(order)
            np.put_along_axis(rank, order, np.broadcast_to(np.arange(order.shape[1]), order.shape), axis=1)
            group = allowed & (rank < cut[:, None])
            then, other = cubes[rows].copy(), cubes[rows].copy()
            then[np.arange(len(rows)), position] = group
            other[np.arange(len(rows)), position] = allowed & ~group
            child = count + 2 * np.arange(len(rows))
            for r, k in enumerate(rows):
                split_of[int(node[k])] = (int(position[r]), np.flatnonzero(group[r]).tolist(),
                                          int(child[r]), int(child[r]) + 1)
            count += 2 * len(rows)
            next_frontier.append(np.stack([then, other], axis=1).reshape(-1, max_len, n_tokens + 1))
            next_ids.append(np.stack([child, child + 1], axis=1).reshape(-1))
            next_lengths.append(np.repeat(size[rows], 2))
        if count > max_nodes:
            return None
        if not next_ids:
            break
        frontier, ids, lengths = (np.concatenate(a) for a in (next_frontier, next_ids, next_lengths))

    def nested(node_id):
        if node_id in leaf_of:
            return leaf_of[node_id]
        i, group, then_id, else_id = split_of[node_id]
        return [i, group, nested(then_id), nested(else_id)]

    return {int(n): nested(r) for r, n in enumerate(domain.lengths)}


def tree_stats(trees: dict) -> dict:
    """Leaf, void-leaf and split counts and the depth of a tree (keyed by length, int or str)."""
    counts = {"leaves": 0, "void": 0, "splits": 0, "depth": 0}

    def walk(node, depth):
        if isinstance(node, list):
            counts["splits"] += 1
            walk(node[2], depth + 1)
            walk(node[3], depth + 1)
        else:
            counts["leaves"] += 1
            counts["void"] += node is VOID
            counts["depth"] = max(counts["depth"], depth)

    for node in trees.values():
        walk(node, 0)
    return counts


# ------------------------------------------------------------------------------------------------------------
# Checking a tree without numpy (used by jaxscd verify)


def leaf_class(surrogate: IntegerSurrogate, n: int, allowed: list[set]) -> int | None:
    """1 / 0 if exact interval bounds (plain Python integers) show the score is > 0 / <= 0 on every sequence of
    the cube (``allowed[i]``: tokens allowed at position i < n), else None. The same bounds as ``build_tree``."""
    low, high = (_deep_leaf_bounds if surrogate.deep else _layer_leaf_bounds)(surrogate, n, allowed)
    if low > 0:
        return 1
    if high <= 0:
        return 0
    return None


def _layer_leaf_bounds(surrogate: IntegerSurrogate, n: int, allowed: list[set]) -> tuple[int, int]:
    """Score bounds of a one-hidden-layer net, always-active neurons merged into the linear part."""
    hidden_w = surrogate.hidden_w.tolist()
    skip_w = surrogate.skip_w.tolist()
    active, low, high = [], int(surrogate.out_b), int(surrogate.out_b)
    for j in range(surrogate.n_neurons):
        pre_low, pre_high = _token_range(hidden_w, j, n, allowed, int(surrogate.hidden_b[j]))
        out = int(surrogate.out_w[j])
        if pre_low > 0:  # always active: the neuron adds out * pre, linear in the tokens
            active.append(j)
            low += out * int(surrogate.hidden_b[j])
            high += out * int(surrogate.hidden_b[j])
        elif pre_high > 0:  # unstable: out * relu(pre) lies between 0 and out * pre_high
            low += min(0, out * pre_high)
            high += max(0, out * pre_high)
    for i in range(n):  # the linear part, position by position: its exact minimum and maximum
        terms = [skip_w[i][v] + sum(int(surrogate.out_w[j]) * hidden_w[i][v][j] for j in active) for v in allowed[i]]
        low, high = low + min(terms), high + max(terms)
    return low, high


def _deep_leaf_bounds(surrogate: IntegerSurrogate, n: int, allowed: list[set]) -> tuple[int, int]:
    """Score bounds of a deep net: intervals through the units in order (``_deep_cube_bounds`` in numpy)."""
    hidden_w, units = surrogate.hidden_w.tolist(), surrogate.unit_w.tolist()
    relu_low, relu_high = [], []
    for j in range(surrogate.n_neurons):
        low, high = _token_range(hidden_w, j, n, allowed, int(surrogate.hidden_b[j]))
        for k in range(j):
            low, high = _add_scaled(low, high, units[k][j], relu_low[k], relu_high[k])
        relu_low.append(max(low, 0))
        relu_high.append(max(high, 0))
    skip_w = [[[v] for v in row] for row in surrogate.skip_w.tolist()]
    low, high = _token_range(skip_w, 0, n, allowed, int(surrogate.out_b))
    for j, out in enumerate(surrogate.out_w.tolist()):
        low, high = _add_scaled(low, high, out, relu_low[j], relu_high[j])
    return low, high


def _token_range(weights: list, j: int, n: int, allowed: list[set], bias: int) -> tuple[int, int]:
    """Exact range of bias + sum_{i < n} weights[i][t_i][j] over the cube."""
    low = bias + sum(min(weights[i][v][j] for v in allowed[i]) for i in range(n))
    high = bias + sum(max(weights[i][v][j] for v in allowed[i]) for i in range(n))
    return low, high


def _add_scaled(low: int, high: int, weight: int, x_low: int, x_high: int) -> tuple[int, int]:
    """[low, high] + weight * [x_low, x_high]."""
    ends = (weight * x_low, weight * x_high)
    return low + min(ends), high + max(ends)


def check_tree(trees: dict, surrogate: IntegerSurrogate, domain: Domain) -> tuple[list[str], list[str]]:
    """``check_partition`` with the surrogate's plain-integer leaf bounds (``leaf_class``)."""
    return check_partition(trees, domain, lambda n, allowed: leaf_class(surrogate, n, allowed))


def check_partition(trees: dict, domain: Domain, leaf_class_of) -> tuple[list[str], list[str]]:
    """(structure problems, leaves whose class ``leaf_class_of(n, allowed)`` does not prove). The tree must have one
    root per domain length and split each cube's allowed tokens at a position into a proper non-empty group and
    the rest, so its leaves partition the domain. Also used for the circuit's cube trees (``long_bundle``)."""
    problems, unproved = [], []
    if sorted(trees) != list(domain.lengths):
        problems.append(f"tree lengths {sorted(trees)[:8]} != domain lengths {domain.min_len}..{domain.max_len}")
        return problems, unproved
    everything = set(range(domain.n_tokens))

    def walk(node, n, allowed, path):
        if isinstance(node, list):
            ok = len(node) == 4 and isinstance(node[0], int) and isinstance(node[1], list) and \
                all(isinstance(t, int) for t in node[1])
            group = set(node[1]) if ok else set()
            if not (ok and 0 <= node[0] < n and group and group < allowed[node[0]]):
                problems.append(f"len={n} {path}: {str(node)[:60]} is not a proper split of the cube")
                return
            i = node[0]
            walk(node[2], n, allowed[:i] + [group] + allowed[i + 1:], path + "T")
            walk(node[3], n, allowed[:i] + [allowed[i] - group] + allowed[i + 1:], path + "F")
        elif node is VOID:
            return  # void leaves are claims the tree query checks
        elif node in (0, 1) and not isinstance(node, bool):
            if leaf_class_of(n, allowed) != node:
                unproved.append(f"len={n} leaf {path or 'root'}")
        else:
            problems.append(f"len={n} {path}: unknown leaf {node!r}")

    for n, root in trees.items():
        walk(root, n, [set(everything) for _ in range(n)], "")
    return problems, unproved


# ------------------------------------------------------------------------------------------------------------
# The tree == program query


def _tree_text(trees: dict, leaf) -> str:
    """SMT-LIB2 term: the Bool ``leaf(value)`` of the leaf a sequence falls in (over ``b{i}_{v}`` and ``len``)."""
    def term(node):
        if not isinstance(node, list):
            return "true" if leaf(node) else "false"
        i, group, then, other = node
        test = f"b{i}_{group[0]}" if len(group) == 1 else "(or " + " ".join(f"b{i}_{t}" for t in group) + ")"
        return f"(ite {test} {term(then)} {term(other)})"

    text = "false"
    for n in sorted(trees):
        text = f"(ite (= len {n}) {term(trees[n])} {text})"
    return text


TREE_LOGIC = "QF_FD"  # tree queries are finite-domain: z3's SAT core solves them (see solve_text)


def tree_query(trees: dict, program: Program, domain: Domain) -> str:
    """SMT-LIB2 text (QF_LIA, Boolean tokens): satisfiable iff some domain input lies in a void leaf, or in a
    leaf whose class the program does not output."""
    seq = boolean_sequence(domain)
    solver = z3.Solver()
    solver.add(*seq.constraints)
    solver.add(z3.Bool("program") == smt.encode(program, seq.tokens, seq.length))
    void = _tree_text(trees, lambda node: node is VOID)
    one = _tree_text(trees, lambda node: node == 1)
    # the text ends with (check-sat); the tree assertion goes before it
    base = smt2_text(solver).rstrip()
    assert base.endswith("(check-sat)")
    return base[:-len("(check-sat)")] + f"(assert (or {void} (not (= program {one}))))\n(check-sat)\n"


def json_trees(trees: dict) -> dict:
    return {str(n): node for n, node in sorted(trees.items())}


def trees_from_json(data: dict) -> dict:
    return {int(n): node for n, node in data.items()}


def tree_text(tree: dict) -> str:
    """tree.json: one line per length, so a tree of thousands of nodes stays diffable."""
    lines = [f"  {json.dumps(str(n))}: {json.dumps(node, separators=(',', ':'))}" for n, node in tree.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def read_trees(path) -> dict:
    """{length: node} from a bundle's tree.json (``check_partition`` judges the nodes); BundleError (corrupt) when
    it is not a JSON object of trees by length."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(raw, dict):
            return trees_from_json(raw)
        problem = f"it holds {json.dumps(raw)[:40]}"
    except (ValueError, RecursionError) as err:  # not JSON or not UTF-8, nested too deep, a length not an integer
        problem = f"{type(err).__name__}: {err}"
    raise BundleError(f"{path.name} is not a JSON object of trees by length ({problem}); the bundle is corrupt")


# ------------------------------------------------------------------------------------------------------------
# The strategy: prove, the files it adds, recheck


def prove(goal: Goal, timeout_s: float, max_nodes: int = MAX_TREE_NODES) -> ProofResult:
    """A tree of at most ``max_nodes`` nodes, then one tree == program query (UNKNOWN when no tree fits)."""
    surrogate, program, domain = goal.surrogate, goal.program, goal.domain
    start = time.perf_counter()
    trees = build_tree(surrogate, domain, max_nodes)
    if trees is None:
        return ProofResult(Verdict.UNKNOWN, time.perf_counter() - start,
                           reason="no interval-bounded tree within its node budget", method=STRATEGY.method)
    text = tree_query(trees, program, domain)
    answer, tokens, _ = solve_text(text, timeout_s, TREE_LOGIC)
    stats = tree_stats(trees)
    return solver_verdict(answer, tokens, time.perf_counter() - start, surrogate, program, domain,
                          f"tree query: solver gave up ({answer})",
                          "the solver's input lies in a void leaf of the tree, or the tree's interval bounds do "
                          "not hold on it", method=STRATEGY.method,
                          record={"tree": {"file": "tree.json", "bounds": "exact integer interval bounds per leaf"}
                                  | stats, "file": "tree_query.smt2"},
                          files={"tree.json": tree_text(json_trees(trees)), "tree_query.smt2": text},
                          summary=f"tree of {stats['leaves']} leaves")


def files(obligation: dict) -> list:
    return [obligation["tree"]["file"], obligation["file"], "query.smt2"]


def recheck(report, bundle, obligation, goal: Goal, timeout_s: float) -> None:
    """The tree partitions the domain, plain-integer interval bounds prove every decided leaf, the query file is
    the tree == program query, and z3 (and cvc5) find it unsat; query.smt2 is the one query."""
    surrogate, program, domain = goal.surrogate, goal.program, goal.domain
    trees = read_trees(bundle / obligation["tree"]["file"])
    problems, unproved = check_tree(trees, surrogate, domain)
    report.add("tree partitions the domain", not problems, "; ".join(problems[:3]))
    if not problems:
        report.add("interval bounds prove every decided leaf of the tree", not unproved,
                   f"{len(unproved)} leaves not proved, e.g. {', '.join(unproved[:3])}" if unproved else "")
        recheck_query(report, bundle, obligation["file"], tree_query(trees, program, domain), "tree", timeout_s,
                      TREE_LOGIC)
    query_encodes(report, bundle, "query.smt2", one_query_text(surrogate, program, domain), "surrogate")


STRATEGY = ProofStrategy("tree", "smt-tree", prove, files, recheck,
                         summary="an interval-bounded decision tree + one tree == program query")
