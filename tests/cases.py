"""Named DSL cases shared by the test files: every motif, with edge-case parameters.

Each case is small enough to check exhaustively: every sequence of lengths 1..max_len over ``alphabet``.
"""

from __future__ import annotations

from dataclasses import dataclass

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

ALPHABETS = {2: ("a", "b"), 3: ("(", ")", "x"), 4: ("a", "b", "c", "d")}


@dataclass(frozen=True)
class Case:
    name: str
    program: Program
    n_tokens: int
    max_len: int = 5
    alphabet: tuple = ()

    def __post_init__(self):
        if not self.alphabet:
            object.__setattr__(self, "alphabet", ALPHABETS[self.n_tokens])
        if len(self.alphabet) != self.n_tokens:
            raise ValueError(f"case {self.name!r}: alphabet {self.alphabet} does not have {self.n_tokens} tokens")
        if not 1 <= self.max_len <= 6:
            raise ValueError(f"case {self.name!r}: max_len {self.max_len} outside 1..6 (keep cases exhaustive)")

    @property
    def domain(self) -> Domain:
        return Domain(self.alphabet, 1, self.max_len)


CASES = [
    # Constant
    Case("constant_0", Constant(0), n_tokens=2),
    Case("constant_1", Constant(1), n_tokens=3),
    # CountThreshold: positive, zero and negative thresholds, empty minus, empty plus, multi-token groups
    Case("count_open_minus_close_ge_2", CountThreshold({0}, {1}, 2), n_tokens=3),
    Case("count_open_minus_close_ge_0", CountThreshold({0}, {1}, 0), n_tokens=3),
    Case("count_open_minus_close_ge_minus_1", CountThreshold({0}, {1}, -1), n_tokens=3),
    Case("count_a_ge_3_no_minus", CountThreshold({0}, set(), 3), n_tokens=2, max_len=6),
    Case("count_no_plus_minus_bc_ge_minus_2", CountThreshold(set(), {1, 2}, -2), n_tokens=4),
    Case("count_ab_minus_cd_ge_1", CountThreshold({0, 1}, {2, 3}, 1), n_tokens=4),
    # DensityThreshold: 0, negative, > 1/2 fractions, empty minus
    Case("density_open_minus_close_ge_0", DensityThreshold({0}, {1}, 0, 1), n_tokens=3),
    Case("density_open_minus_close_ge_minus_1_3", DensityThreshold({0}, {1}, -1, 3), n_tokens=3),
    Case("density_a_ge_2_3_no_minus", DensityThreshold({0}, set(), 2, 3), n_tokens=2, max_len=6),
    Case("density_ab_minus_c_ge_3_4", DensityThreshold({0, 1}, {2}, 3, 4), n_tokens=4),
    Case("density_a_minus_bcd_ge_minus_1_2", DensityThreshold({0}, {1, 2, 3}, -1, 2), n_tokens=4),
    # Toggle: both flips, single and multi-token groups
    Case("toggle_a_odd", Toggle({0}, 0), n_tokens=2, max_len=6),
    Case("toggle_open_close_even", Toggle({0, 1}, 1), n_tokens=3),
    Case("toggle_bcd_odd", Toggle({1, 2, 3}, 0), n_tokens=4),
    # MostRecent: both defaults, multi-token groups, tokens in neither group
    Case("most_recent_open_vs_close_default_0", MostRecent({1}, {0}, 0), n_tokens=3),
    Case("most_recent_open_vs_close_default_1", MostRecent({1}, {0}, 1), n_tokens=3),
    Case("most_recent_ab_vs_c_default_1", MostRecent({0, 1}, {2}, 1), n_tokens=4),
    Case("most_recent_a_vs_bc_default_0", MostRecent({0}, {1, 2}, 0), n_tokens=4),
    # StateMachine: 2, 3 and 4 states; one with unreachable states
    Case("state_machine_2_parity_of_b", StateMachine(((0, 1), (1, 0)), {1}), n_tokens=2, max_len=6),
    Case("state_machine_2_seen_close", StateMachine(((0, 1, 0), (1, 1, 1)), {1}), n_tokens=3),
    Case("state_machine_3_depth_mod_3", StateMachine(((1, 2, 0), (2, 0, 1), (0, 1, 2)), {0}), n_tokens=3),
    Case("state_machine_3_ab_substring", StateMachine(((1, 0), (1, 2), (2, 2)), {2}), n_tokens=2, max_len=6),
    Case("state_machine_4_counter_sat_3", StateMachine(((1, 0), (2, 1), (3, 2), (3, 3)), {3}), n_tokens=2,
         max_len=6),
    Case("state_machine_4_unreachable_2_3",
         StateMachine(((1, 0, 0, 1), (0, 1, 1, 0), (3, 3, 2, 0), (2, 1, 0, 3)), {1, 3}), n_tokens=4),
    Case("state_machine_3_unreachable_accepting", StateMachine(((0, 1), (1, 0), (2, 2)), {2}), n_tokens=2),
    # a learned machine's size: the prefix tree of depth 5 over a, b (63 states, each reachable; the batched meaning
    # steps it by a gather, the compiled network is evaluated level by level)
    Case("state_machine_63_prefix_tree", StateMachine(
        tuple((s, s) if s >= 31 else (2 * s + 1, 2 * s + 2) for s in range(63)),
        {s for s in range(63) if s * 7 % 5 < 2}), n_tokens=2),
    # TokenAt: both directions, first / last / inner positions, sequences too short, multi-token groups
    Case("token_at_first_is_open", TokenAt(0, {0}, False), n_tokens=3),
    Case("token_at_last_is_b", TokenAt(0, {1}, True), n_tokens=2, max_len=6),
    Case("token_at_third_is_a_or_b_short_is_0", TokenAt(2, {0, 1}, False), n_tokens=4, max_len=4),
    Case("token_at_second_to_last_is_close_or_x", TokenAt(1, {1, 2}, True), n_tokens=3),
    Case("token_at_fifth_from_end_only_longest", TokenAt(4, {0}, True), n_tokens=2, max_len=5),
    Case("token_at_last_position_from_start", TokenAt(5, {1}, False), n_tokens=2, max_len=6),
    # LengthThreshold: low, middle and the longest length only
    Case("length_ge_2", LengthThreshold(2), n_tokens=4, max_len=4),
    Case("length_ge_3", LengthThreshold(3), n_tokens=2),
    Case("length_ge_max_len", LengthThreshold(5), n_tokens=3, max_len=5),
    # FirstOccurrence: both defaults, multi-token groups, tokens in neither group
    Case("first_occurrence_close_vs_open_default_0", FirstOccurrence({1}, {0}, 0), n_tokens=3),
    Case("first_occurrence_close_vs_open_default_1", FirstOccurrence({1}, {0}, 1), n_tokens=3),
    Case("first_occurrence_ab_vs_c_default_1", FirstOccurrence({0, 1}, {2}, 1), n_tokens=4),
    Case("first_occurrence_a_vs_bc_default_0", FirstOccurrence({0}, {1, 2}, 0), n_tokens=4),
    # WindowCount: window 1, threshold = window, window longer than every sequence, multi-token groups
    Case("window_count_last_is_x", WindowCount({2}, 1, 1), n_tokens=3),
    Case("window_count_a_in_last_2_ge_2", WindowCount({0}, 2, 2), n_tokens=2, max_len=6),
    Case("window_count_open_in_last_3_ge_1", WindowCount({0}, 3, 1), n_tokens=3),
    Case("window_count_window_longer_than_sequences", WindowCount({0, 1}, 6, 3), n_tokens=3, max_len=5),
    Case("window_count_bcd_in_last_4_ge_3", WindowCount({1, 2, 3}, 4, 3), n_tokens=4),
    # SaturatedDepth: cap 1 (most recent), saturation at cap 2 and 3, empty close group, multi-token groups
    Case("saturated_depth_cap_1", SaturatedDepth({0}, {1}, 1, 1), n_tokens=3),
    Case("saturated_depth_cap_2_at_cap", SaturatedDepth({0}, {1}, 2, 2), n_tokens=3, max_len=6),
    Case("saturated_depth_cap_3_ge_1", SaturatedDepth({0}, {1}, 3, 1), n_tokens=2, max_len=6),
    Case("saturated_depth_cap_3_at_cap_multi_token", SaturatedDepth({0, 1}, {2}, 3, 3), n_tokens=4),
    Case("saturated_depth_no_close", SaturatedDepth({1}, set(), 2, 2), n_tokens=3),
    # Both: every op, parts of different motifs, negation by xor with a constant
    Case("both_first_open_and_last_close", Both(TokenAt(0, {0}, False), TokenAt(0, {1}, True), "and"), n_tokens=3),
    Case("both_long_or_recent_open", Both(LengthThreshold(4), MostRecent({1}, {0}, 0), "or"), n_tokens=3),
    Case("both_odd_a_xor_two_b", Both(Toggle({0}, 0), CountThreshold({1}, set(), 2), "xor"), n_tokens=2, max_len=6),
    Case("both_not_window", Both(WindowCount({0}, 2, 1), Constant(1), "xor"), n_tokens=3),
    Case("both_dfa_and_depth", Both(StateMachine(((0, 1, 0), (1, 1, 1)), {1}), SaturatedDepth({0}, {1}, 2, 1), "and"),
         n_tokens=3),
    Case("both_first_or_density", Both(FirstOccurrence({0}, {1}, 0), DensityThreshold({0}, {1}, 1, 2), "or"),
         n_tokens=4),
    Case("both_same_part_twice", Both(TokenAt(1, {1}, True), TokenAt(1, {1}, True), "or"), n_tokens=2),
]
