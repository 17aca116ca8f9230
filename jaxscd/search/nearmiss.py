"""Honest answers when no program is exact: the nearest candidates, and where a circuit departs from its spec.

Disagreements are summarised as readable patterns: grouped by direction (expected class -> given class) and by
runs of consecutive lengths, each with a count and examples.
"""

from __future__ import annotations

import hashlib

from collections.abc import Sequence
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from jaxscd.domain import Domain
from jaxscd.dsl.programs import Program, description_length
from jaxscd.kernels.enumerate import decode_indices, program_decisions
from jaxscd.kernels.filter import CountTable, family_decisions, score_rows


@dataclass(frozen=True)
class NearMiss:
    program: Program
    mismatches: int
    agreement: float  # fraction of valid inputs where program and circuit agree
    patterns: tuple  # readable groups of the disagreeing inputs


def disagreement_patterns(domain: Domain, indices: np.ndarray, expected: np.ndarray, got: np.ndarray,
                          class_names: Sequence[str], what: str = "program", examples: int = 3,
                          limit: int = 6) -> list[str]:
    """Group disagreeing inputs (domain indices, with the circuit's and the other side's classes). Lengths come
    from the indices alone; only the shown examples are decoded (millions of disagreements stay cheap)."""
    if len(indices) == 0:
        return []
    indices = np.asarray(indices)
    lengths = domain.min_len + np.searchsorted(domain.starts, indices, side="right") - 1
    pair = np.asarray(expected, dtype=np.int64) * 2 + np.asarray(got, dtype=np.int64)
    lines = []
    for code in np.unique(pair).tolist():
        e, g = divmod(code, 2)
        sel = np.flatnonzero(pair == code)
        for low, high in _runs(np.unique(lengths[sel]).tolist()):
            rows = sel[(lengths[sel] >= low) & (lengths[sel] <= high)]
            tokens, counts = (np.asarray(a) for a in decode_indices(domain, indices[rows[:examples]]))
            shown = ", ".join(repr(domain.format(t[:n])) for t, n in zip(tokens, counts))
            span = f"length {low}" if low == high else f"lengths {low}-{high}"
            lines.append(f"circuit {class_names[e]!r}, {what} {class_names[g]!r}: {len(rows):,} inputs of {span}, "
                         f"e.g. {shown}")
    return lines[:limit] + ([f"... and {len(lines) - limit} more groups"] if len(lines) > limit else [])


def _runs(values: list[int]) -> list[tuple[int, int]]:
    runs = []
    for v in values:
        if runs and v == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    return runs


def _probe_inputs(domain: Domain, target: np.ndarray, valid: np.ndarray, probe: np.ndarray) -> tuple:
    """(tokens, lengths, target, weight of class-1 inputs, weight of class-0 inputs) of the probe sample."""
    tokens, lengths = decode_indices(domain, probe)
    on = (valid[probe] & (target[probe] == 1)).astype(np.int32)
    off = (valid[probe] & (target[probe] != 1)).astype(np.int32)
    return tokens, lengths, jnp.asarray(target[probe]), jnp.asarray(on), jnp.asarray(off)


def _scoring_inputs(family, counts: CountTable | None, probe_inputs: tuple) -> tuple:
    """Where to score a family: its count table when decisions depend only on token counts (exact over the
    whole domain), else the probe sample (an estimate)."""
    if counts is not None and family.count_invariant:
        return (counts.tokens, counts.lengths, counts.target, counts.weight * (counts.target == 1),
                counts.weight * (counts.target != 1))
    return probe_inputs


def one_sided_scores(domain: Domain, target: np.ndarray, valid: np.ndarray, families, probe: np.ndarray,
                     counts: CountTable | None) -> list[tuple]:
    """Per family, (family, false 0s [P, K], false 1s [P, K]) of every candidate: on its count table when its
    decisions depend only on token counts (exact over the whole domain), else on the probe sample (an estimate).
    Both the composition parts and the nearest misses are read from these."""
    probe_inputs = _probe_inputs(domain, target, valid, probe)
    scored = []
    for family in families:
        rows = np.arange(family.n_params)
        tokens, lengths, labels, on, off = _scoring_inputs(family, counts, probe_inputs)
        scored.append((family, score_rows(family, rows, tokens, lengths, labels, on),
                       score_rows(family, rows, tokens, lengths, labels, off)))
    return scored


def nearest_misses(domain: Domain, target: np.ndarray, valid: np.ndarray, scored: list[tuple],
                   class_names: Sequence[str], per_family: int = 2, keep: int = 3) -> list[NearMiss]:
    """The ``keep`` candidates closest to the circuit: each family's best few by ``one_sided_scores`` (false 0s
    plus false 1s) are scored exactly on the whole domain."""
    shortlist = []
    for family, false_0, false_1 in scored:
        scores = false_0 + false_1
        for flat in np.argsort(scores, axis=None, kind="stable")[:per_family]:
            p, k = np.unravel_index(flat, scores.shape)
            shortlist.append(family.program(int(p), int(k)))
    n_valid = int(valid.sum())
    misses, seen = [], set()
    for program in shortlist:  # one pass each; only a count and a digest are kept (memory flat in the domain)
        decisions = program_decisions(program, domain)
        behaviour = hashlib.sha256(np.where(valid, decisions, -1).astype(np.int8).tobytes()).digest()
        if behaviour in seen:  # observationally equivalent to a candidate already listed
            continue
        seen.add(behaviour)
        count = int((valid & (decisions != target)).sum())
        misses.append((count, description_length(program), repr(program), program))
    misses.sort(key=lambda m: m[:3])  # fewest mismatches, then simplest
    return [_near_miss(domain, target, valid, program, count, n_valid, class_names)
            for count, _, _, program in misses[:keep]]


def _near_miss(domain: Domain, target: np.ndarray, valid: np.ndarray, program: Program, count: int, n_valid: int,
               class_names: Sequence[str]) -> NearMiss:
    decisions = program_decisions(program, domain)
    wrong = np.flatnonzero(valid & (decisions != target))
    return NearMiss(program, count, 1 - count / n_valid,
                    tuple(disagreement_patterns(domain, wrong, target[wrong], decisions[wrong], class_names)))


def one_sided_parts(scored: list[tuple], per_family: int = 2) -> list[Program]:
    """Parts for compositions: per family, the candidates never 0 where the circuit says 1 (AND parts) and those
    never 1 where it says 0 (OR parts), fewest errors on the other side first, from ``one_sided_scores`` (an
    estimate on the probe: the composition is filtered and proved on the whole domain afterwards, so a bad
    estimate costs recall, never soundness)."""
    parts = []
    for family, false_0, false_1 in scored:
        for never, fewest in ((false_0, false_1), (false_1, false_0)):
            score = np.where(never == 0, fewest, np.iinfo(np.int32).max)
            for flat in np.argsort(score, axis=None, kind="stable")[:per_family]:
                p, k = np.unravel_index(flat, score.shape)
                if never[p, k] == 0 and fewest[p, k] > 0:  # exact ones are survivors, not parts
                    parts.append(family.program(int(p), int(k)))
    return list(dict.fromkeys(parts))


def partner_parts(domain: Domain, target: np.ndarray, valid: np.ndarray, scored: list[tuple], probe: np.ndarray,
                  counts: CountTable | None, anchors: int = 2) -> list[Program]:
    """Parts that complete a one-sided part into an exact composition: for the best ``anchors`` AND parts A (never 0
    where the circuit says 1), every candidate that is also never 0 there and is 0 wherever A is a false 1; for the
    best OR parts (never 1 where the circuit says 0), every candidate also never 1 there and 1 wherever A is a false
    0. Scored like ``one_sided_scores`` (the count table where decisions depend only on counts, else the probe), so
    "A and B" is exact there; the composition search then checks it on the whole domain. Finds compositions whose
    second part is not among the best one-sided parts (a band 2 <= #a <= 7: "#a <= 7" is a poor part alone)."""
    from jaxscd.dsl.batch import evaluate_program

    probe_inputs = _probe_inputs(domain, target, valid, probe)
    found = []
    for ones_side in (True, False):  # AND: never 0 on class 1; OR: never 1 on class 0
        best = []
        for family, false_0, false_1 in scored:
            never, fewest = (false_0, false_1) if ones_side else (false_1, false_0)
            # errors as a fraction of what was scored: count-table families count the whole domain, the others
            # the probe, so raw counts would always rank the probe-scored families first
            _, _, _, on, off = _scoring_inputs(family, counts, probe_inputs)
            scale = max(1, int(np.asarray(off if ones_side else on).sum()))
            score = np.where(never == 0, fewest, np.iinfo(np.int32).max)
            for flat in np.argsort(score, axis=None, kind="stable")[:anchors]:
                p, k = np.unravel_index(flat, score.shape)
                if never[p, k] == 0 and fewest[p, k] > 0:
                    best.append((int(fewest[p, k]) / scale, family.program(int(p), int(k))))
        for _, anchor in sorted(best, key=lambda b: b[0])[:anchors]:
            for family, _, _ in scored:
                tokens, lengths, labels, on, off = _scoring_inputs(family, counts, probe_inputs)
                said = np.asarray(evaluate_program(anchor, tokens, lengths, domain.n_tokens))
                keep, cover = (on, off * said) if ones_side else (off, on * ~said)  # the anchor's errors to cover
                rows = np.arange(family.n_params)
                exact = (score_rows(family, rows, tokens, lengths, labels, keep) == 0) & \
                    (score_rows(family, rows, tokens, lengths, labels, jnp.asarray(cover)) == 0)
                for p, k in np.argwhere(exact)[:4].tolist():
                    found += [anchor, family.program(p, k)]
    return list(dict.fromkeys(found))


def count_table_pairs(families, counts: CountTable | None, max_behaviours: int = 2048, limit: int = 6) -> list[Program]:
    """Parts of exact AND / OR compositions of two count-invariant candidates, found on the count table: every
    candidate's decision on every (token counts, class) group, then every pair at once (a product of their error
    sets). A composition of count-invariant programs is count-invariant, so a pair exact on the count table is
    exact on the whole domain (the composition search checks it there again). Finds compositions whose parts are
    not among the best one-sided parts (count(a) >= 2 and count(b) <= 3: the best AND parts of the count family
    are its near-exact ones, neither of these). The ``limit`` simplest pairs, as a flat list of parts."""
    if counts is None or not np.asarray(counts.weight).any():
        return []
    weight, target = np.asarray(counts.weight) > 0, np.asarray(counts.target) == 1
    tokens = np.asarray(counts.tokens)[weight]
    vectors = np.stack([(tokens == v).sum(axis=1) for v in range(int(tokens.max()) + 1)], axis=1)
    if len(np.unique(vectors, axis=0)) < len(vectors):  # a count vector of both classes: no pair can be exact
        return []
    ones, zeros = weight & target, weight & ~target
    sides = {"and": ([], []), "or": ([], [])}  # (programs, error rows) per side, one per distinct behaviour
    seen = {"and": set(), "or": set()}
    for family in families:
        if not family.count_invariant:
            continue
        said = family_decisions(family, counts.tokens, counts.lengths)  # bool [P, K, C]
        for side, never, errors in (("and", said[:, :, ones].all(-1), said[:, :, zeros]),
                                    ("or", ~said[:, :, zeros].any(-1), ~said[:, :, ones])):
            programs, rows = sides[side]
            for p, k in np.argwhere(never & errors.any(-1)).tolist():  # one-sided, not exact alone
                key = errors[p, k].tobytes()
                if key not in seen[side] and len(rows) < max_behaviours:
                    seen[side].add(key)
                    programs.append(family.program(p, k))
                    rows.append(errors[p, k])
    pairs = []
    for programs, rows in sides.values():
        if len(rows) < 2:
            continue
        errors = np.asarray(rows, dtype=np.float32)
        overlap = errors @ errors.T  # errors both parts make: 0 iff the pair is exact
        for i, j in np.argwhere(np.triu(overlap == 0, k=1))[:512].tolist():
            pairs.append((description_length(programs[i]) + description_length(programs[j]),
                          repr(programs[i]), programs[i], programs[j]))
    pairs.sort(key=lambda pair: pair[:2])
    return list(dict.fromkeys(part for pair in pairs[:limit] for part in pair[2:]))
