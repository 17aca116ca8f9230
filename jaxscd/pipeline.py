"""distill(): circuit -> truth table -> integer surrogate -> DSL search -> z3 proof, stage by stage."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from jaxscd.circuits.base import Circuit
from jaxscd.domain import Domain
from jaxscd.dsl.programs import Program
from jaxscd.dsl.source import render
from jaxscd.kernels.enumerate import all_tokens, precondition_mask, program_decisions
from jaxscd.kernels.evaluate import TruthTable, evaluate_circuit
from jaxscd.kernels.filter import count_table
from jaxscd.dsl.batch import composition_family
from jaxscd.nearmiss import disagreement_patterns, nearest_misses, one_sided_parts, one_sided_scores
from jaxscd.search import candidate_families, probe_indices, search
from jaxscd.surrogate import IntegerSurrogate, SurrogateConfig, SurrogateError, fit
from jaxscd.synth import synthesize
from jaxscd.verify.prove import ProofResult, Verdict, prove_equivalent


@dataclass(frozen=True)
class DistillConfig:
    seed: int = 0
    surrogate: SurrogateConfig = SurrogateConfig()
    max_states: int = 3
    probe_size: int = 512
    proof_timeout_s: float = 60.0
    proof_strategy: str = "auto"  # auto | tree | single | cubes (see jaxscd.verify.prove.prove_equivalent)
    max_proof_attempts: int = 5
    prune: bool = True  # skip families that cannot hold a simpler program than one already found
    synth_states: int = 8  # when no DSL candidate is exact, synthesize a DFA with up to this many states (0: off)
    synth_timeout_s: float = 60.0


@dataclass
class DistillResult:
    verdict: Verdict
    domain: Domain
    class_names: tuple
    n_valid: int
    margin: float
    margin_bound: float
    generated: int = 0
    survivors: list = field(default_factory=list)
    per_family: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)  # families not searched: they hold no simpler program
    program: Program | None = None
    source: str | None = None
    surrogate: IntegerSurrogate | None = None
    proof: ProofResult | None = None
    refuted: list = field(default_factory=list)  # (program, counterexample) pairs ruled out by the solver
    spec_mismatches: list | None = None  # domain inputs (token ids) where the circuit differs from the spec
    spec_mismatch_count: int = 0
    circuit_program_mismatches: int | None = None  # exhaustive C vs P cross-check of the final program
    spec_patterns: list = field(default_factory=list)  # readable groups of the spec mismatches
    near_misses: list = field(default_factory=list)  # NearMiss values when no program is exact
    timings: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)


class _Stages:
    def __init__(self, log: Callable[[str], None]):
        self.timings: dict[str, float] = {}
        self.log = log

    @contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        yield
        self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - start, 3)
        self.log(f"{name}: {self.timings[name]:.2f} s")


def compare_with_spec(spec: Callable, domain: Domain, decisions: np.ndarray, valid: np.ndarray,
                      tokens: np.ndarray, lengths: np.ndarray, class_names) -> tuple[int, list, list]:
    """(count, up to 5 examples, readable patterns) of valid inputs where the circuit differs from ``spec``.

    Exhaustive: every valid input is compared, so the count is exact on the domain.
    """
    rows = np.flatnonzero(valid)
    intended = np.array([int(spec(tokens[i, :lengths[i]].tolist())) for i in rows], dtype=np.int8)
    bad = intended != decisions[rows]
    wrong = rows[bad]
    examples = [tokens[i, :lengths[i]].tolist() for i in wrong[:5]]
    patterns = disagreement_patterns(domain, wrong, decisions[wrong], intended[bad], class_names, what="spec")
    return len(wrong), examples, patterns


def distill(circuit: Circuit, domain: Domain, config: DistillConfig = DistillConfig(), spec: Callable | None = None,
            log: Callable[[str], None] = lambda _: None) -> DistillResult:
    stage = _Stages(log)
    with stage("domain"):
        valid = precondition_mask(domain)
        tokens, lengths = all_tokens(domain)
    if not valid.any():
        raise ValueError(f"no sequence of the domain satisfies the precondition {domain.precondition_text!r}")
    with stage("circuit"):
        table: TruthTable = evaluate_circuit(circuit, domain, valid)
    result = DistillResult(Verdict.UNKNOWN, domain, circuit.class_names, int(valid.sum()), table.min_margin(),
                           table.margin_bound, timings=stage.timings)
    if spec is not None:
        with stage("spec"):
            result.spec_mismatch_count, result.spec_mismatches, result.spec_patterns = compare_with_spec(
                spec, domain, table.decisions, valid, tokens, lengths, circuit.class_names)
    if result.margin <= result.margin_bound:
        result.notes.append(f"circuit decision margin {result.margin:.3g} is not above the float bound "
                            f"{result.margin_bound:g}: its truth table is not trusted")
        return result
    with stage("surrogate"):
        try:
            result.surrogate = fit(domain, table.decisions, valid, config.surrogate, config.seed, tokens, lengths,
                                   log).surrogate
        except SurrogateError as err:
            result.notes.append(str(err))
            return result
    families = candidate_families(domain, config.max_states)
    probe = probe_indices(valid, config.probe_size, config.seed)
    counts = count_table(domain, table.decisions, valid)
    search_args = (stage, table.decisions, valid, probe, counts, config)
    _search_and_prove(result, families, *search_args)
    if not result.survivors:  # no single motif: AND / OR / XOR of two one-sided near misses
        with stage("compose"):
            # one scoring pass of every family, read again by near misses if nothing survives
            scored = one_sided_scores(domain, table.decisions, valid, families, probe, counts)
            parts = one_sided_parts(scored)
        if len(parts) >= 2:
            _search_and_prove(result, [composition_family(parts, domain.n_tokens)], *search_args)
    if not result.survivors and config.synth_states:  # the smallest DFA reproducing the truth table (SAT)
        _synthesize_and_prove(result, stage, table.decisions, valid, tokens, lengths, config)
    if result.program is not None:  # the direct cross-check C == P on every input (independent of S and z3)
        differs = int((valid & (program_decisions(result.program, domain) != table.decisions)).sum())
        result.circuit_program_mismatches = differs
        if differs:
            result.notes.append(f"the program differs from the circuit on {differs} inputs: not proved")
            result.verdict = Verdict.UNKNOWN
    if not result.survivors:
        result.verdict = Verdict.NO_PROGRAM
        with stage("near misses"):
            result.near_misses = nearest_misses(domain, table.decisions, valid, scored, circuit.class_names)
    return result


def _synthesize_and_prove(result: DistillResult, stage: _Stages, target: np.ndarray, valid: np.ndarray,
                          tokens: np.ndarray, lengths: np.ndarray, config: DistillConfig) -> None:
    with stage("synthesis"):
        synthesis = synthesize(result.domain, target, valid, config.synth_states, config.synth_timeout_s, tokens,
                               lengths, config.seed)
    if synthesis.machine is None:
        result.notes.append(f"state-machine synthesis: {synthesis.reason}")
        return
    result.survivors.append(synthesis.machine)
    result.generated += 1
    result.per_family["synthesized_state_machine"] = (1, 1)
    with stage("prove"):
        _prove_survivors(result, [synthesis.machine], config, valid)


def _search_and_prove(result: DistillResult, families: list, stage: _Stages, target: np.ndarray, valid: np.ndarray,
                      probe: np.ndarray, counts, config: DistillConfig) -> None:
    """Search families cheapest first and prove survivors; families skipped by the MDL bound are searched
    only while nothing found so far is proved.

    CEGIS: every solver counterexample joins the probe set, so later searches check it first. (Survivors
    already match the circuit on every input, so a refutation means the surrogate and the circuit disagree,
    which the exhaustive check rules out: the loop guards against bugs rather than driving the search.)
    """
    while families and result.verdict != Verdict.PROVED:
        counterexamples = [result.domain.index_of(cex) for _, cex in result.refuted]
        must_match = np.union1d(probe, counterexamples).astype(np.int64) if counterexamples else probe
        with stage("search"):
            found = search(result.domain, target, valid, families, must_match, counts, prune=config.prune)
        result.generated += found.generated
        result.per_family |= found.per_family
        result.skipped = [f.name for f in found.skipped]
        families = found.skipped
        if found.survivors:
            result.survivors += found.survivors
            with stage("prove"):
                _prove_survivors(result, found.survivors, config, valid)


def _prove_survivors(result: DistillResult, survivors: list, config: DistillConfig, valid: np.ndarray) -> None:
    """Try survivors simplest first: PROVED ends; REFUTED drops the candidate; the first UNKNOWN is kept."""
    for program in survivors[:config.max_proof_attempts]:
        proof = prove_equivalent(result.surrogate, program, result.domain, config.proof_timeout_s,
                                 config.proof_strategy, valid)
        if proof.verdict == Verdict.REFUTED:
            result.refuted.append((program, proof.counterexample))
            continue
        if proof.verdict == Verdict.UNKNOWN:
            result.notes.append(f"{program!r}: {proof.reason}")
        if result.proof is None or proof.verdict == Verdict.PROVED:
            result.program, result.proof = program, proof
            result.source = render(program, result.domain.alphabet, result.class_names)
        if proof.verdict == Verdict.PROVED:
            break
    result.verdict = result.proof.verdict if result.proof is not None else Verdict.REFUTED
