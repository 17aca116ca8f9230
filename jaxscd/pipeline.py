"""distill(): the one entry, for the CLI and the library, stage by stage.

    source ──► domain: enumerable, or beyond enumeration by one rule (``jaxscd.beyond.needs_bounds``)
    enumerable: circuit ──► Problem (truth table) ──► search ──► surrogate per survivor ──► proof
                (surrogate == program) ──► the exhaustive C == P cross-check
    beyond:     the enumerable run on the source's default domain gives the candidates ──► the circuit analysed at
                length (``AtLength``) ──► each candidate proved (circuit == program: orbits or circuit-bounds)

The search needs only the truth table, so it runs first; a surrogate is fitted for the programs that survive (the
cheapest exact method first, see ``jaxscd.surrogates``). A program that matches the circuit on every input is
reported even when no surrogate is found: the verdict is then UNKNOWN (z3 certified nothing), with the reason.
Every stage returns its values into ``_Run``; the frozen ``DistillResult`` is built once, with the verdict.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from jaxscd import progress
from jaxscd.circuits.purity import PurityEvidence
from jaxscd.search.describe import CountDescription, count_description
from jaxscd.domain import Domain, DomainError, approximate
from jaxscd.dsl.batch import composition_family
from jaxscd.dsl.programs import Program, rank_key
from jaxscd.dsl.source import render
from jaxscd.errors import InputError
from jaxscd.kernels.enumerate import precondition_mask, program_decisions
from jaxscd.kernels.evaluate import evaluate_circuit
from jaxscd.search.nearmiss import count_table_pairs, nearest_misses, one_sided_parts, partner_parts
from jaxscd.problem import Problem, compare_with_spec
from jaxscd.search import search
from jaxscd.surrogates import METHODS, IntegerSurrogate, SurrogateConfig, Witness, Witnesses
from jaxscd.search.synth import synthesize
from jaxscd.verify.prove import SURROGATE_STRATEGIES, ProofResult, Verdict, prove_equivalent
from jaxscd.verify.strategy import Goal


SYNTH_BESIDE_LEARNED = 4  # synthesis looks for a smaller machine only beside learned ones up to 4 x synth_states


@dataclass(frozen=True)
class DistillConfig:
    seed: int = 0
    surrogate: SurrogateConfig = SurrogateConfig()
    max_states: int = 3
    probe_size: int = 512
    proof_timeout_s: float = 60.0
    proof_strategy: str = "auto"  # "auto" or a name in jaxscd.verify.prove.SURROGATE_STRATEGIES
    max_proof_attempts: int = 5
    prune: bool = True  # skip families that cannot hold a simpler program than one already found
    synth_states: int = 8  # when no DSL candidate is exact, synthesize a DFA with up to this many states (0: no
                           # state machine beyond the DSL's, learned ones included)
    learn_automaton: bool = True  # and first learn one of any size (AALpy); synthesis then looks only below it
    synth_timeout_s: float = 60.0
    surrogate_methods: tuple = tuple(METHODS)  # names in jaxscd.surrogates.METHODS, tried in order per program
    bounds_deadline_s: float = 300.0  # beyond enumeration: seconds the cube tree may grow

    def __post_init__(self):
        unknown = [m for m in self.surrogate_methods if m not in METHODS]
        if unknown or not self.surrogate_methods:
            raise InputError(f"unknown surrogate methods {unknown or list(self.surrogate_methods)}; use some of "
                             f"{','.join(METHODS)}, e.g. --surrogate lp,compiled")
        if self.proof_strategy != "auto" and self.proof_strategy not in SURROGATE_STRATEGIES:
            raise InputError(f"unknown proof strategy {self.proof_strategy!r}; use one of auto, "
                             f"{', '.join(SURROGATE_STRATEGIES)}")


@dataclass(frozen=True)
class DistillResult:
    """What a distill run found, built once. Beyond enumeration (``domain.exhaustive`` False) ``n_valid`` and
    ``margin`` are None (the proof's record counts orbits or cubes; ``margin_bound`` is the float margin the bounds
    trust), ``tried`` holds each candidate's outcome at length and ``short`` the run on the default domain."""

    verdict: Verdict
    domain: Domain
    class_names: tuple
    n_valid: int | None
    margin: float | None
    margin_bound: float
    generated: int = 0
    survivors: tuple = ()
    per_family: dict = field(default_factory=dict)
    skipped: tuple = ()  # families not searched: they hold no simpler program
    program: Program | None = None
    source: str | None = None
    surrogate: IntegerSurrogate | None = None
    surrogate_method: str | None = None  # how the surrogate was obtained (a name in jaxscd.surrogates.METHODS)
    surrogate_attempts: tuple = ()  # every fitting attempt: method, seconds, found, reason
    proof: ProofResult | None = None
    refuted: tuple = ()  # (program, counterexample) pairs ruled out by a proof
    spec_mismatches: tuple | None = None  # domain inputs (token ids) where the circuit differs from the spec
    spec_mismatch_count: int = 0
    circuit_program_mismatches: int | None = None  # exhaustive C vs P cross-check of the final program
    spec_patterns: tuple = ()  # readable groups of the spec mismatches
    near_misses: tuple = ()  # NearMiss values when no program is exact
    exact_description: CountDescription | None = None  # NO_PROGRAM: the decision as a table over token counts
    tried: tuple = ()  # beyond enumeration: {"program", "outcome", ...} per candidate
    departures: dict | None = None  # beyond enumeration: where the circuit departs from a counting spec
    sampled_departures: dict | None = None  # beyond the bounds: departures from the spec among uniform samples
    short: DistillResult | None = None  # beyond enumeration: the run on the source's default domain
    restriction: bool = False  # the domain's precondition narrows the circuit source's own
    purity: PurityEvidence | None = None  # what the purity check re-ran on the truth table (enumerable domains)
    timings: dict = field(default_factory=dict)
    notes: tuple = ()

    def to_json(self) -> dict:
        """The one JSON view of a result: ``--json``, sweep records and the bundle's run block."""
        d, proof = self.domain, self.proof
        funnel = {"tried": len(self.refuted) + (self.program is not None), "with_surrogate":
                  int(self.surrogate is not None), "proved": int(self.verdict == Verdict.PROVED)}
        return {
            "verdict": self.verdict.value,
            "program": self.source,
            "domain": {"alphabet": list(d.alphabet), "min_len": d.min_len, "max_len": d.max_len, "size": d.size,
                       "precondition": d.precondition_text or (repr(d.precondition) if d.precondition else None),
                       "exhaustive": d.exhaustive, "valid": self.n_valid, "restriction": self.restriction},
            "candidates": {"generated": self.generated, "survivors": len(self.survivors)} | funnel |
                          {"per_family": {k: {"generated": g, "survivors": n} for k, (g, n) in self.per_family.items()},
                           "skipped_families": list(self.skipped)},
            "refuted": [{"program": repr(p), "counterexample": d.format(c)} for p, c in self.refuted],
            "tried": list(self.tried),
            "margin": None if self.margin is None or self.margin == float("inf") else self.margin,
            "margin_bound": self.margin_bound,
            "proof": None if proof is None else {"method": proof.method, "verdict": proof.verdict.value,
                                                 "seconds": round(proof.seconds, 3), "summary": proof.summary,
                                                 "reason": proof.reason or None} | proof.record,
            "surrogate_method": self.surrogate_method,
            "surrogate_neurons": self.surrogate.n_neurons if self.surrogate is not None else None,
            "surrogate_attempts": list(self.surrogate_attempts),
            "circuit_program_mismatches": self.circuit_program_mismatches,
            "spec_mismatches": self.spec_mismatch_count if self.spec_mismatches is not None else None,
            "spec_patterns": list(self.spec_patterns),
            "spec_departures": self.departures,
            "sampled_departures": self.sampled_departures,
            "exact_description": None if self.exact_description is None else self.exact_description.to_json() | {
                "source": self.exact_description.source(d, self.class_names)},
            "near_misses": [{"program": render(m.program, d.alphabet, self.class_names),
                             "agreement": round(m.agreement, 6), "mismatches": m.mismatches,
                             "patterns": list(m.patterns)} for m in self.near_misses],
            "short_domain": None if self.short is None else {"verdict": self.short.verdict.value,
                                                             "program": self.short.source},
            "purity": None if self.purity is None else self.purity.to_json(),
            "timings": dict(self.timings),
            "notes": list(self.notes),
        }


@dataclass
class _Run:
    """What the stages have returned so far; ``result`` builds the DistillResult once, deciding the verdict."""

    domain: Domain
    class_names: tuple
    generated: int = 0
    survivors: list = field(default_factory=list)
    per_family: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)
    refuted: list = field(default_factory=list)
    kept: tuple | None = None  # (program, witness or None, proof or None): the answer so far
    notes: list = field(default_factory=list)

    def keep(self, program: Program, witness: Witness | None, proof: ProofResult | None) -> bool:
        """Keep ``program`` as the answer if it is the first one kept or the first PROVED; True once PROVED."""
        proved = proof is not None and proof.verdict == Verdict.PROVED
        if self.kept is None or proved:
            self.kept = (program, witness, proof)
        return proved

    def verdict(self, exhaustive_mismatches: int | None = None) -> Verdict:
        if self.kept is not None:
            proof = self.kept[2]
            return proof.verdict if proof is not None and not exhaustive_mismatches else Verdict.UNKNOWN
        return Verdict.REFUTED if self.refuted else Verdict.NO_PROGRAM if not self.survivors else Verdict.UNKNOWN

    def result(self, verdict: Verdict | None = None, **fields) -> DistillResult:
        """The result; ``verdict`` overrides the one the stages' values decide (an untrusted truth table)."""
        program, witness, proof = self.kept or (None, None, None)
        mismatches = fields.get("circuit_program_mismatches")
        return DistillResult(
            verdict or self.verdict(mismatches), self.domain, self.class_names, generated=self.generated,
            survivors=tuple(self.survivors), per_family=dict(self.per_family), skipped=tuple(self.skipped),
            program=program, source=None if program is None else render(program, self.domain.alphabet,
                                                                          self.class_names),
            surrogate=witness.surrogate if witness else None, surrogate_method=witness.method if witness else None,
            proof=proof, refuted=tuple(self.refuted), notes=tuple(self.notes), **fields)


class _Stages:
    def __init__(self, log: Callable[[str], None]):
        self.timings: dict[str, float] = {}
        self.log = log

    @contextmanager
    def __call__(self, name: str):
        progress.stage(name)  # a display names the stage that runs now
        start = time.perf_counter()
        yield
        self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - start, 3)
        self.log(f"{name}: {self.timings[name]:.2f} s")


# ------------------------------------------------------------------------------------------------------------
# The entry


def distill(source, domain: Domain | None = None, config: DistillConfig = DistillConfig(),
            spec: Callable | None = None, log: Callable[[str], None] = lambda _: None, *, min_len: int | None = None,
            max_len: int | None = None, alphabet: tuple | None = None,
            time_limit_s: float | None = None, candidate: Program | None = None) -> DistillResult:
    """Distill ``source`` (a task, a ``CircuitSource`` or a bare ``Circuit``) on ``domain``, or on the source's
    domain with the given lengths and alphabet (see ``choose_domain``). ``spec``: the intended behaviour (default:
    the source's own). A domain that is not ``exhaustive`` is proved beyond enumeration. ``candidate``: prove this
    program instead of searching (e.g. an automaton learned elsewhere, ``jaxscd.search.automata.certify``).

    >>> import jaxscd
    >>> jaxscd.distill(jaxscd.get_task("bracket_depth"), max_len=32).verdict.value  # doctest: +SKIP
    'PROVED'
    """
    from jaxscd.circuits.sources import as_source

    source = as_source(source)
    if domain is None:
        domain = choose_domain(source, min_len, max_len, alphabet, time_limit_s, config.max_states)
    spec = source.spec if spec is None else spec
    # a bare Circuit declares no precondition of its own, so a domain cannot restrict it
    restriction = source.ref.get("kind") != "circuit" and domain.precondition != source.precondition
    if not domain.exhaustive:
        if candidate is not None:
            raise InputError(f"a candidate program is proved on an enumerable domain; this one has "
                             f"{approximate(domain.size)} sequences: lower max_len")
        return _beyond(source, domain, config, spec, log, restriction)
    return _exhaustive(source.circuit, domain, config, spec, log, restriction, candidate)


def choose_domain(source, min_len: int | None, max_len: int | None, alphabet: tuple | None,
                  time_limit_s: float | None, max_states: int = 3) -> Domain:
    """The source's domain with the user's lengths and alphabet: beyond enumeration when the circuit's structure is
    known to the bounds, the whole alphabet is used, and the domain is above the size cap or the time and memory
    estimate (``jaxscd.beyond.needs_bounds``); else enumerable, refused with the estimate when too large."""
    from jaxscd.beyond import model_of, needs_bounds
    from jaxscd.budget import check_budget

    wide = source.domain(min_len, max_len, alphabet, exhaustive=False)
    if needs_bounds(wide, time_limit_s, max_states) and (model_of(source.circuit) is not None
                                                         or _enumerable(source, time_limit_s, max_states)):
        return wide  # bounds where they know the circuit on the whole alphabet, else a counterexample search
    domain = source.domain(min_len, max_len, alphabet)
    check_budget(domain, time_limit_s, max_states, source.circuit)
    return domain


def _enumerable(source, time_limit_s: float | None, max_states: int) -> bool:
    """Whether the source's own domain can be enumerated: the short search a counterexample search at length
    starts from."""
    from jaxscd.beyond import needs_bounds

    try:
        return not needs_bounds(source.domain(), time_limit_s, max_states)
    except DomainError:
        return False


# ------------------------------------------------------------------------------------------------------------
# Enumerable domains


def _exhaustive(circuit, domain: Domain, config: DistillConfig, spec: Callable | None, log: Callable[[str], None],
                restriction: bool = False, candidate: Program | None = None) -> DistillResult:
    """Truth table, then the loop: search -> surrogate for each survivor -> prove (counterexamples back into
    the search), then the exhaustive C == P cross-check of the answer."""
    stage = _Stages(log)
    with stage("domain"):
        valid = precondition_mask(domain)
    if not valid.any():
        raise DomainError(f"no sequence of the domain satisfies the precondition {domain.precondition_text!r}")
    with stage("circuit"):
        problem = Problem(domain, evaluate_circuit(circuit, domain, valid), config.seed, config.probe_size,
                          config.max_states)
    run = _Run(domain, circuit.class_names)
    table = problem.table
    fields = {"n_valid": problem.n_valid, "margin": table.min_margin(), "margin_bound": table.margin_bound,
              "timings": stage.timings, "restriction": restriction, "purity": table.purity}
    if spec is not None:
        with stage("spec"):
            count, examples, patterns = compare_with_spec(spec, problem, circuit.class_names)
        fields |= {"spec_mismatch_count": count, "spec_mismatches": tuple(examples), "spec_patterns": tuple(patterns)}
    if fields["margin"] <= fields["margin_bound"]:
        run.notes.append(f"circuit decision margin {fields['margin']:.3g} is not above the float bound "
                         f"{fields['margin_bound']:g}: its truth table is not trusted")
        return run.result(Verdict.UNKNOWN, **fields)
    witnesses = Witnesses(domain, problem.decisions, valid, config.surrogate_methods, config.surrogate, config.seed,
                          log)
    batches = _candidates(problem, run, stage, config) if candidate is None else _given(problem, run, candidate)
    for survivors in batches:  # simplest first, batch by batch
        if _prove_survivors(problem, run, survivors, witnesses, stage, config):
            break
    fields["surrogate_attempts"] = tuple(witnesses.attempts)
    if run.kept is not None:  # the direct cross-check C == P on every input (independent of S and z3)
        differs = int((valid & (program_decisions(run.kept[0], domain) != problem.decisions)).sum())
        fields["circuit_program_mismatches"] = differs
        if differs:
            run.notes.append(f"the program differs from the circuit on {differs} inputs: not proved")
    if not run.survivors and candidate is None:
        with stage("near misses"):
            fields["near_misses"] = tuple(nearest_misses(domain, problem.decisions, valid, problem.scored,
                                                         circuit.class_names))
            fields["exact_description"] = count_description(domain, problem.counts)
    return run.result(**fields)


def _candidates(problem: Problem, run: _Run, stage: _Stages, config: DistillConfig) -> Iterator[list]:
    """Batches of exact programs, simplest first: the DSL families (those the MDL bound skips only while nothing
    is proved), then AND / OR / XOR compositions of one-sided near misses, then a state machine (``_automata``).

    CEGIS: every solver counterexample joins the probe set, so later searches check it first. (Survivors match
    the circuit on every input already, so a refutation means the surrogate and the circuit disagree, which the
    exhaustive check rules out: the loop guards against bugs rather than driving the search.)
    """
    families = problem.families
    while families:
        found = _search(problem, run, stage, families, config.prune)
        families = found.skipped
        yield found.survivors
    if not run.survivors:
        with stage("compose"):  # scores every family once; the near misses read them again
            parts = one_sided_parts(problem.scored)
            parts += [p for p in partner_parts(problem.domain, problem.decisions, problem.valid, problem.scored,
                                               problem.probe, problem.counts) if p not in parts]
            parts += [p for p in count_table_pairs(problem.families, problem.counts) if p not in parts]
        if len(parts) >= 2:
            yield _search(problem, run, stage, [composition_family(parts, problem.domain.n_tokens)],
                          config.prune).survivors
    if not run.survivors and config.synth_states:
        yield from _automata(problem, run, stage, config)


def _automata(problem: Problem, run: _Run, stage: _Stages, config: DistillConfig) -> Iterator[list]:
    """An exact state machine: learned by AALpy (any size, milliseconds; ``jaxscd.search.automata``), then the
    smallest one by SAT synthesis with fewer states than the learned one (up to ``synth_states``; not tried when the
    learned machine, merged, has more than ``SYNTH_BESIDE_LEARNED`` times as many states: a random table's
    119-state machine, where ruling out 8 states took 15 s). The learned machine answers when synthesis finds none:
    no state cap turns an exact answer into NO_PROGRAM."""
    from jaxscd.search.automata import learn

    learned, bound = None, config.synth_states
    if config.learn_automaton:
        with stage("automaton learning"):
            learned = learn(problem.domain, problem.decisions, problem.valid)
        run.notes.append(learned.summary())
        if learned.machine is not None:
            bound = min(bound, learned.machine.n_states - 1)
            if learned.machine.n_states > SYNTH_BESIDE_LEARNED * config.synth_states:
                bound = 0
                run.notes.append(f"state-machine synthesis not tried: the learned machine has "
                                 f"{learned.machine.n_states} states, over {SYNTH_BESIDE_LEARNED} x "
                                 f"{config.synth_states}")
    if bound > 0:
        with stage("synthesis"):
            synthesis = synthesize(problem.domain, problem.decisions, problem.valid, bound, config.synth_timeout_s,
                                   seed=config.seed)
        if synthesis.machine is not None:
            yield _found(run, synthesis.machine, "synthesized_state_machine")
            return
        run.notes.append(f"state-machine synthesis: {synthesis.reason}")
    if learned is not None and learned.machine is not None:
        yield _found(run, learned.machine, "learned_state_machine")


def _found(run: _Run, program: Program, family: str) -> list:
    run.survivors.append(program)
    run.generated += 1
    run.per_family[family] = (1, 1)
    return [program]


def _given(problem: Problem, run: _Run, program: Program) -> Iterator[list]:
    """The caller's program as the one candidate (``distill(candidate=...)``): proved when it equals the circuit on
    every valid input, else REFUTED by the first input (shortest, then lexicographic) where it differs."""
    from jaxscd.dsl.programs import check_program
    from jaxscd.kernels.enumerate import decode_indices

    try:
        check_program(program, problem.domain.n_tokens)
    except (TypeError, ValueError) as err:
        raise InputError(f"the candidate does not fit the domain: {err}") from None
    differs = np.flatnonzero(problem.valid & (program_decisions(program, problem.domain) != problem.decisions))
    if len(differs):
        tokens, lengths = decode_indices(problem.domain, differs[:1])
        run.generated += 1
        run.refuted.append((program, tuple(np.asarray(tokens)[0, :int(lengths[0])].tolist())))
        run.notes.append(f"the candidate differs from the circuit on {len(differs):,} valid inputs")
        return
    yield _found(run, program, "given")


def _search(problem: Problem, run: _Run, stage: _Stages, families: list, prune: bool):
    counterexamples = [problem.domain.index_of(cex) for _, cex in run.refuted]
    must_match = np.union1d(problem.probe, counterexamples).astype(np.int64) if counterexamples else problem.probe
    with stage("search"):
        found = search(problem.domain, problem.decisions, problem.valid, families, must_match, problem.counts,
                       prune=prune)
    run.generated += found.generated
    run.per_family |= found.per_family
    run.skipped = [f.name for f in found.skipped]
    run.survivors += found.survivors
    return found


def _prove_survivors(problem: Problem, run: _Run, survivors: list, witnesses: Witnesses, stage: _Stages,
                     config: DistillConfig) -> bool:
    """Try survivors simplest first. Each is proved with its first exact surrogate; a proof that ends UNKNOWN (the
    budget ran out) is tried again with the next method's surrogate (e.g. the compiled network) before the program
    is kept UNKNOWN, naming the obligation left. PROVED ends (True); REFUTED drops the candidate."""
    for program in survivors[:config.max_proof_attempts]:
        unknown = None  # (witness, proof) of the first UNKNOWN proof
        for witness in _timed(stage, "surrogate", _witness_order(witnesses, program, problem.domain)):
            with stage("prove"):
                proof = prove_equivalent(witness.surrogate, program, problem.domain, config.proof_timeout_s,
                                         config.proof_strategy, problem.valid)
            if proof.verdict == Verdict.REFUTED:
                run.refuted.append((program, proof.counterexample))
                break
            if proof.verdict == Verdict.PROVED:
                run.keep(program, witness, proof)
                return True
            run.notes.append(f"{program!r}: obligation surrogate == program left UNKNOWN with the {witness.method} "
                             f"surrogate ({proof.reason})")
            unknown = unknown or (witness, proof)
        else:
            if unknown is not None:
                run.keep(program, *unknown)
            else:
                run.notes.append(f"{program!r}: no exact surrogate ({'; '.join(witnesses.reasons())}); the program "
                                 f"matches the circuit on every input, but z3 has certified nothing")
                run.keep(program, None, None)
    return False


def _witness_order(witnesses: Witnesses, program: Program, domain: Domain) -> Iterator[Witness]:
    """The surrogates of ``program`` in method order, except that for a program of the token counts the compiled
    network (its weights the same at every position) goes first when it admits the count strategy: an exact proof
    over count vectors before any solver query (parity of a count at length 12: 0.2 s, where the queries of an LP
    surrogate ran out of budget); likewise for a state machine or a saturated depth, whose compiled network (one
    layer per position) admits the automaton strategy (a 60-state machine at length 12: 0.3 s)."""
    from jaxscd.beyond.symmetry import count_invariant
    from jaxscd.dsl.programs import SaturatedDepth, StateMachine
    from jaxscd.verify import automaton, counts

    first = None
    machine = isinstance(program, (StateMachine, SaturatedDepth))
    if (machine or count_invariant(program)) and "compiled" in witnesses.methods:
        first = witnesses.by_method("compiled", program)
        fast = automaton.why_not if machine else counts.why_not
        if first is not None and fast(first.surrogate, program, domain) is None:
            yield first
        else:
            first = None
    yield from (w for w in witnesses.each_for_program(program) if w is not first)


def _timed(stage: _Stages, name: str, items: Iterator):
    """``items``, the time spent producing each counted under stage ``name``."""
    while True:
        with stage(name):
            item = next(items, None)
        if item is None:
            return
        yield item


# ------------------------------------------------------------------------------------------------------------
# Beyond enumeration


def _beyond(source, domain: Domain, config: DistillConfig, spec: Callable | None, log: Callable[[str], None],
            restriction: bool = False) -> DistillResult:
    """Candidates from the enumerable run on the source's default domain, each proved or refuted on ``domain`` by
    the strategy the circuit's structure allows: orbits under a proved symmetry, else the cube tree."""
    from jaxscd.beyond import model_of
    from jaxscd.beyond.attack import Attack
    from jaxscd.beyond.departures import spec_departures
    from jaxscd.beyond.refit import refits
    from jaxscd.beyond.strategies import CIRCUIT_BOUNDS, ORBITS, AtLength
    from jaxscd.beyond.symmetry import orbit_invariant

    circuit = source.circuit
    model = model_of(circuit)
    refusal = "no structure the bounds know" if model is None else model.refusal(domain.max_len)
    if model is not None and not model.accepts(domain.max_len):
        raise DomainError(f"domain of {approximate(domain.size)} sequences (lengths {domain.min_len}.."
                          f"{domain.max_len}) is beyond enumeration, and {source.label}'s circuit does not run at "
                          f"these lengths ({refusal}); lower --max-len")
    if refusal is None and source.alphabet is not None and domain.alphabet != source.alphabet:
        refusal = "the bounds cover the circuit's whole alphabet, not a part of it"
    if refusal is not None:
        return _attacked(source, domain, config, spec, log, restriction, refusal)
    if not model.cubes and not orbit_invariant(domain.precondition):
        raise DomainError(f"{source.label}'s circuit is proved beyond enumeration only by orbits, which need a "
                          f"precondition that is a function of the token counts and the last token; lower --max-len")
    stage = _Stages(log)
    with stage("short search"):
        short = _exhaustive(circuit, source.domain(), config, spec, log)
    with stage("bounds"):
        at = AtLength(circuit, domain, deadline=time.monotonic() + config.bounds_deadline_s)
    run = _Run(domain, circuit.class_names, short.generated, list(short.survivors), dict(short.per_family))
    candidates = sorted(short.survivors, key=rank_key)
    tried, departures, strategy = [], None, CIRCUIT_BOUNDS
    if at.symmetry is not None:
        strategy = ORBITS
        with stage("orbits"):
            classes, valid = at.orbit_classes, at.orbit_valid
        tried += [{"program": repr(p), "outcome": "skipped: not a function of the token counts and the last token"}
                  for p in candidates if not orbit_invariant(p)]
        candidates = [p for p in candidates if orbit_invariant(p)]
        candidates += refits(candidates, at.orbits, classes, valid)
        departures = spec_departures(getattr(spec, "program", None), at.orbits, classes, valid, domain)
    attack = Attack(circuit, domain, enumerated=short.domain.max_len, margin=at.margin)
    for program in candidates:
        if strategy is CIRCUIT_BOUNDS:  # a cheap search first: a circuit past its break refutes before any tree
            with stage("counterexample search"):
                searched = attack.search(program, ATTACK_FIRST_S)
            if searched.found is not None:
                proof = ProofResult(Verdict.REFUTED, searched.seconds, counterexample=tuple(searched.found.tokens),
                                    method="counterexample search")
                tried.append(_outcome(program, proof, at))
                run.refuted.append((program, proof.counterexample))
                continue
        with stage("prove"):
            proof = strategy.prove(Goal(domain, program, circuit=circuit, at_length=at), config.proof_timeout_s)
        tried.append(_outcome(program, proof, at))
        if proof.verdict == Verdict.REFUTED:
            run.refuted.append((program, proof.counterexample))
            continue
        if proof.verdict == Verdict.UNKNOWN:
            run.notes.append(f"{program!r}: {proof.reason}")
            if proof.counterexample is not None:
                continue  # the bounds and the re-run circuit disagree on a sequence: neither kept nor refuted
        if run.keep(program, None, proof):
            break
    return run.result(n_valid=None, margin=None, margin_bound=at.margin, tried=tuple(tried), departures=departures,
                      short=short, restriction=restriction, timings=stage.timings)


ATTACK_FIRST_S = 10.0  # seconds of counterexample search per candidate before its cube tree is built


def _attacked(source, domain: Domain, config: DistillConfig, spec: Callable | None, log: Callable[[str], None],
              restriction: bool, refusal: str) -> DistillResult:
    """Beyond enumeration without bounds (``refusal`` says why): the short search's candidates, each searched for a
    counterexample at length (``jaxscd.beyond.attack``). REFUTED when every candidate is refuted by a sequence the
    re-run circuit decides otherwise; a candidate the search does not refute leaves the verdict UNKNOWN."""
    from jaxscd.beyond.attack import Attack

    circuit = source.circuit
    stage = _Stages(log)
    with stage("short search"):
        short = _exhaustive(circuit, source.domain(), config, spec, log)
    attack = Attack(circuit, domain, enumerated=short.domain.max_len)
    run = _Run(domain, circuit.class_names, short.generated, list(short.survivors), dict(short.per_family))
    run.notes.append(f"{source.label}: the bounds do not cover lengths up to {domain.max_len} ({refusal}); "
                     f"candidates were searched for counterexamples at length, which can refute but not prove")
    deadline = time.monotonic() + config.bounds_deadline_s
    tried, unrefuted = [], 0
    for program in sorted(short.survivors, key=rank_key):
        seconds = min(deadline - time.monotonic(), 90.0)
        if seconds <= 0:
            unrefuted += 1
            tried.append({"program": repr(program), "outcome": "unknown: not searched (time limit)"})
            continue
        with stage("counterexample search"):
            searched = attack.search(program, seconds)
        if searched.found is not None:
            proof = ProofResult(Verdict.REFUTED, searched.seconds, counterexample=tuple(searched.found.tokens),
                                method="counterexample search")
            run.refuted.append((program, proof.counterexample))
        else:
            unrefuted += 1
            proof = ProofResult(Verdict.UNKNOWN, searched.seconds, method="counterexample search",
                                reason=f"no counterexample: {searched.describe()}")
        tried.append(_outcome(program, proof, attack) | {"searched": searched.sequences}
                     | ({"reason": searched.describe()} if searched.found is None else {}))
    if unrefuted:
        first = next(t for t in tried if not t["outcome"].startswith("refuted"))
        run.notes.append(f"{unrefuted} candidate{'s' * (unrefuted > 1)} not refuted (e.g. {first['program']}: "
                         f"{first.get('reason', 'not searched')}); not proved: {refusal}")
    intended, departures = getattr(spec, "program", None) or spec, None
    if intended is not None and time.monotonic() < deadline:
        with stage("spec search"):
            searched = attack.search(intended, min(deadline - time.monotonic(), 60.0))
        if searched.found is not None:
            found = searched.found
            run.notes.append(f"the circuit departs from {source.spec_label} at length {len(found.tokens)} (the "
                             f"shortest found): {domain.format(found.tokens)!r} is "
                             f"{circuit.class_names[found.circuit]} (margin {found.margin:.3g})")
        else:
            run.notes.append(f"no departure from {source.spec_label} found ({searched.describe()})")
        with stage("spec sample"):
            cells = attack.departure_rates(intended, seconds=max(0.0, min(deadline - time.monotonic(), 30.0)))
        if cells:
            departures = {"sampled": True, "spec": source.spec_label, "cells": cells}
            rates = ", ".join(f"{n}: {d}/{v}" for n, v, d, _ in cells if v)
            run.notes.append(f"departures from {source.spec_label} among uniform random sequences per length "
                             f"(an estimate, not a bound): {rates}")
    verdict = Verdict.UNKNOWN if unrefuted else None
    return run.result(verdict, n_valid=None, margin=None, margin_bound=attack.margin, tried=tuple(tried),
                      short=short, restriction=restriction, timings=stage.timings, sampled_departures=departures)


def _outcome(program: Program, proof: ProofResult, at) -> dict:
    """One line of the candidates table: the outcome, and a counterexample with the re-run circuit's class."""
    record = {"program": repr(program), "outcome": proof.verdict.value.lower()}
    if proof.counterexample is not None:
        tokens = list(proof.counterexample)
        decision, gap = at.rerun(tokens)
        from jaxscd.dsl import reference

        record |= {"counterexample": at.domain.format(tokens), "tokens": tokens, "length": len(tokens),
                   "circuit": decision, "circuit_margin": gap, "program_class": reference.run(program, tokens)}
    return record
