"""The ``compiled`` method: an exact integer ReLU network for a DSL program, built motif by motif.

In the spirit of tracr compiling RASP to a transformer, each motif becomes a few integer ReLU units over the one-hot
(position x token) inputs. Values are exact on every token sequence, not only on a sample:

- counts, densities, lengths, the token at a position from the start, most-recent / first-occurrence (position
  weights 2^i) are linear: no unit at all;
- ``at_least(e, k)`` = relu(e - k + 1) - relu(e - k) is the indicator [e >= k] of an integer form e;
- ``both(a, b)`` = relu(a + b - 1) is AND of two 0/1 forms (OR and XOR are linear around it);
- a function of one integer form (parity of a count) is its piecewise-linear interpolation, one unit per kink;
- a state machine keeps a one-hot state per position: state'[q'] = sum_q AND(state[q], token in T(q -> q')),
  and the class is read where the sequence ends (a deep network: units feed later units through ``unit_w``).

Whatever the compiler builds, ``fit`` re-checks it against the circuit on every input, and z3 proves it equal to the
program: compilation is a way to *find* a witness, never a claim by itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from jaxscd.domain import Domain
from jaxscd.dsl.programs import (
    Both,
    Constant,
    CountThreshold,
    DensityThreshold,
    FirstOccurrence,
    LengthThreshold,
    MostRecent,
    Program,
    SaturatedDepth,
    StateMachine,
    Toggle,
    TokenAt,
    WindowCount,
)
from jaxscd.errors import JaxscdError
from jaxscd.surrogates.network import IntegerSurrogate, wrong_inputs
from jaxscd.surrogates.registry import FitProblem

MAX_POSITION_BITS = 40  # recency weights 2^i: longer sequences are left to the other fitting methods
MAX_UNITS = 6000  # unit_w is a dense [units, units] int64 matrix: 288 MB at this size (a ~170-state machine at L 12)


@dataclass
class Form:
    """An integer affine form: const + sum_i inputs[i, t_i] + sum_k units[k] * relu_k (earlier units)."""

    inputs: np.ndarray  # int64 [max_len, n_tokens]
    const: int = 0
    units: dict = field(default_factory=dict)  # unit index -> coefficient

    def __add__(self, other):
        other = self._lift(other)
        units = dict(self.units)
        for k, c in other.units.items():
            units[k] = units.get(k, 0) + c
        return Form(self.inputs + other.inputs, self.const + other.const, {k: c for k, c in units.items() if c})

    __radd__ = __add__

    def __mul__(self, scale: int):
        return Form(self.inputs * int(scale), self.const * int(scale), {k: c * int(scale) for k, c in
                                                                       self.units.items() if c * int(scale)})

    __rmul__ = __mul__

    def __neg__(self):
        return self * -1

    def __sub__(self, other):
        return self + (-self._lift(other))

    def __rsub__(self, other):
        return self._lift(other) - self

    def _lift(self, value):
        return value if isinstance(value, Form) else Form(np.zeros_like(self.inputs), int(value))


class NetworkBuilder:
    """Collects ReLU units (each an affine form of the inputs and of earlier units) and emits the network."""

    def __init__(self, domain: Domain):
        self.domain = domain
        self.units: list[Form] = []

    def constant(self, value: int) -> Form:
        return Form(np.zeros((self.domain.max_len, self.domain.n_tokens), dtype=np.int64), int(value))

    def token(self, position: int, tokens) -> Form:
        """1 iff ``position`` is real and holds a token of ``tokens`` (0 past the end)."""
        form = self.constant(0)
        if 0 <= position < self.domain.max_len:
            form.inputs[position, sorted(tokens)] = 1
        return form

    def real(self, position: int) -> Form:
        return self.token(position, range(self.domain.n_tokens))

    def count(self, tokens, positions=None) -> Form:
        positions = range(self.domain.max_len) if positions is None else positions
        return sum((self.token(i, tokens) for i in positions), self.constant(0))

    def length(self) -> Form:
        return self.count(range(self.domain.n_tokens))

    def ends_at(self, position: int) -> Form:
        """1 iff the sequence's last token is at ``position``."""
        return self.real(position) - self.real(position + 1)

    def relu(self, form: Form) -> Form:
        self.units.append(form)
        return Form(np.zeros_like(form.inputs), 0, {len(self.units) - 1: 1})

    def at_least(self, form: Form, k: int) -> Form:
        """[form >= k] for an integer-valued form."""
        return self.relu(form - (k - 1)) - self.relu(form - k)

    def both(self, a: Form, b: Form) -> Form:
        """AND of two 0/1 forms."""
        return self.relu(a + b - 1)

    def piecewise(self, form: Form, low: int, high: int, values) -> Form:
        """values(e) for the integer form e on low..high, as its piecewise-linear interpolation."""
        slopes = [values(k + 1) - values(k) for k in range(low, high)]
        out = self.constant(values(low)) + (slopes[0] if slopes else 0) * (form - low)
        for k in range(low + 1, high):
            if slopes[k - low] != slopes[k - low - 1]:
                out = out + (slopes[k - low] - slopes[k - low - 1]) * self.relu(form - k)
        return out

    def network(self, score: Form) -> IntegerSurrogate:
        """The integer network whose score is ``score`` (class 1 iff score > 0)."""
        n = len(self.units)
        if n > MAX_UNITS:
            raise CompileError(f"the compiled network needs {n:,} units, above {MAX_UNITS:,} (its dense unit "
                               f"weights would take {n * n * 8 / 2**30:.1f} GiB); a shorter domain needs fewer")
        shape = (self.domain.max_len, self.domain.n_tokens)
        hidden_w = np.zeros(shape + (n,), dtype=np.int64)
        unit_w = np.zeros((n, n), dtype=np.int64)
        for j, unit in enumerate(self.units):
            hidden_w[:, :, j] = unit.inputs
            for k, c in unit.units.items():
                unit_w[k, j] = c
        out_w = np.zeros(n, dtype=np.int64)
        for k, c in score.units.items():
            out_w[k] = c
        hidden_b = np.array([u.const for u in self.units], dtype=np.int64)
        return IntegerSurrogate(hidden_w, hidden_b, out_w, score.inputs, score.const, unit_w=unit_w)


class CompileError(JaxscdError, ValueError):
    """The compiler has no exact network of supported size for this program on this domain."""


# --------------------------------------------------------------------------------------------------------------
# Motifs: a linear score where one exists, else a 0/1 indicator


def _linear_score(b: NetworkBuilder, program: Program) -> Form | None:
    """An affine form of the inputs alone, > 0 exactly on class 1; None when the motif is not linear."""
    n = b.domain.max_len
    match program:
        case CountThreshold(plus, minus, threshold):
            return b.count(plus) - b.count(minus) - (threshold - 1)
        case DensityThreshold(plus, minus, num, den):  # den * (c+ - c-) >= num * len
            return den * (b.count(plus) - b.count(minus)) - num * b.length() + 1
        case LengthThreshold(threshold):
            return b.length() - (threshold - 1)
        case TokenAt(position, tokens, False):
            return 2 * b.token(position, tokens) - 1
        case WindowCount(tokens, window, threshold) if window >= n:
            return b.count(tokens) - (threshold - 1)
        case MostRecent(first, second, default) | FirstOccurrence(first, second, default):
            if n > MAX_POSITION_BITS:
                raise CompileError(f"{type(program).__name__} needs position weights 2^{n - 1}, above "
                                   f"2^{MAX_POSITION_BITS}")
            weight = (lambda i: 1 << i) if isinstance(program, MostRecent) else (lambda i: 1 << (n - 1 - i))
            signed = sum((weight(i) * (b.token(i, second) - b.token(i, first)) for i in range(n)), b.constant(0))
            return 2 * signed + (1 if default else -1)  # the latest (earliest) token outweighs all others
    return None


def _indicator(b: NetworkBuilder, program: Program) -> Form:
    """A form equal to the program's class (0 or 1) on every sequence of the domain."""
    linear = _linear_score(b, program)
    if linear is not None:
        return b.at_least(linear, 1)
    lengths = b.domain.lengths
    match program:
        case Constant(value):
            return b.constant(value)
        case Toggle(tokens, flip):
            return b.piecewise(b.count(tokens), 0, b.domain.max_len, lambda c: (c + flip) % 2)
        case TokenAt(position, tokens, True):
            return sum((b.both(b.ends_at(n - 1), b.token(n - 1 - position, tokens)) for n in lengths
                        if n > position), b.constant(0))
        case WindowCount(tokens, window, threshold):
            # per length n: [count over the last `window` positions >= threshold], silenced unless the sequence
            # ends at n - 1 (the offset window + 1 pushes both units below 0)
            out = b.constant(0)
            for n in lengths:
                silenced = (b.count(tokens, range(max(0, n - window), n)) -
                            (window + 1) * (1 - b.ends_at(n - 1)))
                out = out + b.at_least(silenced, threshold)
            return out
        case SaturatedDepth(open_, close, cap, threshold):
            return _state_machine(b, depth_machine(open_, close, cap, threshold, b.domain.n_tokens))
        case StateMachine():
            return _state_machine(b, program)
        case Both(left, right, op):
            x, y = _indicator(b, left), _indicator(b, right)
            conj = b.both(x, y)
            return {"and": conj, "or": x + y - conj, "xor": x + y - 2 * conj}[op]
    raise CompileError(f"no compiler for {program!r}")


def depth_machine(open_, close, cap: int, threshold: int, n_tokens: int) -> StateMachine:
    """The (cap + 1)-state machine of ``SaturatedDepth(open_, close, cap, threshold)``: state = the depth."""
    def step(depth, t):
        return min(depth + 1, cap) if t in open_ else max(depth - 1, 0) if t in close else depth

    return StateMachine(tuple(tuple(step(d, t) for t in range(n_tokens)) for d in range(cap + 1)),
                        frozenset(range(threshold, cap + 1)))


def _state_machine(b: NetworkBuilder, machine: StateMachine) -> Form:
    """One-hot state after each prefix; the class is the accepting mass where the sequence ends."""
    n_states, n_tokens = machine.n_states, b.domain.n_tokens
    moves = [[[t for t in range(n_tokens) if machine.transitions[q][t] == r] for r in range(n_states)]
             for q in range(n_states)]
    # after position 0 the state is linear in the first token (the start state is fixed)
    state = {r: b.token(0, moves[0][r]) for r in range(n_states) if moves[0][r]}
    out = b.constant(0)
    for i in range(b.domain.max_len):
        if i > 0:
            following: dict = {}
            for q, held in state.items():
                for r in range(n_states):
                    if moves[q][r]:
                        following[r] = following.get(r, b.constant(0)) + b.both(held, b.token(i, moves[q][r]))
            state = following
        if i + 1 in b.domain.lengths:  # the sequence may end here: state mass is 0 on padding positions
            accepted = sum((state[q] for q in machine.accepting if q in state), b.constant(0))
            out = out + (accepted if i + 1 == b.domain.max_len else b.relu(accepted - b.real(i + 1)))
    return out


def compile_program(program: Program, domain: Domain) -> IntegerSurrogate:
    """An integer ReLU network computing ``program`` on every sequence of ``domain`` (CompileError if none)."""
    b = NetworkBuilder(domain)
    linear = _linear_score(b, program)
    score = linear if linear is not None else 2 * _indicator(b, program) - 1
    return b.network(score)


def fit(problem: FitProblem, program: Program) -> tuple[IntegerSurrogate | None, str]:
    """The ``compiled`` method: ``program`` compiled, then checked against the circuit on every valid input."""
    try:
        surrogate = compile_program(program, problem.domain)
    except CompileError as err:
        return None, str(err)
    count, _ = wrong_inputs(surrogate, problem.domain, problem.decisions, problem.valid)
    return (None, f"differs from the circuit on {count} inputs (a compiler bug)") if count else (surrogate, "")
