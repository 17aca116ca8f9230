"""The multi-layer built-in tasks: each distills to PROVED, and program, circuit and spec agree everywhere."""

import numpy as np
import pytest

from jaxscd.dsl import CountThreshold, MostRecent, StateMachine, run
from jaxscd.kernels.enumerate import all_tokens, precondition_mask
from jaxscd.kernels.evaluate import evaluate_circuit
from jaxscd.pipeline import distill
from jaxscd.tasks import SEED_TASKS, get_task, task_names
from jaxscd.verify.prove import Verdict

GRAPH_TASKS = [name for name in task_names() if name not in SEED_TASKS]
MAX_LEN = 6  # the defaults (7 or 8) take 13-25 s each on a 2-core CPU; 6 keeps this file under a minute

# The motif each circuit implements on its (reduced) domain.
EXPECTED_MOTIF = {"set_or_string": StateMachine, "if_ternary": StateMachine, "fstring_brace": CountThreshold,
                  "bracket_brace": (CountThreshold, MostRecent), "for_while": MostRecent}

# Hand-picked inputs (token names) and the class the circuit should give, one mechanism each.
EXAMPLES = {
    "set_or_string": [("x set() y '' x", ".add"),  # y's later '' is a distractor: the head matches the variable
                      ("y set() x '' x", "+="), ("x '' x '' x", "+=")],
    "bracket_brace": [("( ) { a", "}"), ("{ } a (", ")")],
    "if_ternary": [("if x", ":"), ("\\n if x", ":"), ("x = x if x", "else"), ("if x \\n x if x", "else"),
                   ("x if x \\n if x", ":")],
    "fstring_brace": [("a { a", "}"), ("{ { } a", "}"), ("{ { } } a", '"')],
    "for_while": [("for i", "in"), ("while i \\n for i", "in"), ("for i while i", "<")],
}


def test_graph_tasks_are_registered_with_small_default_domains():
    assert set(GRAPH_TASKS) == set(EXPECTED_MOTIF) and len(GRAPH_TASKS) >= 4
    for name in GRAPH_TASKS:
        task = get_task(name)
        assert 3 <= len(task.alphabet) <= 5 and task.min_len == 1 and task.max_len in (7, 8)
        assert task.max_len <= task.max_positions and task.precondition is not None and task.spec is not None
        assert len(task.description) > 80  # says what the circuit does, and why the domain is what it is


@pytest.fixture(scope="module", params=GRAPH_TASKS)
def distilled(request):
    task = get_task(request.param)
    domain = task.domain(max_len=MAX_LEN)
    return task, domain, distill(task.circuit, domain, spec=task.spec)


def test_task_distills_to_proved_with_the_expected_motif(distilled):
    task, _, result = distilled
    assert result.verdict == Verdict.PROVED, result.notes
    assert isinstance(result.program, EXPECTED_MOTIF[task.name])
    assert result.margin > 0.5  # the hand-set weights decide every input clearly


def test_program_circuit_and_spec_agree_on_every_domain_input(distilled):
    task, domain, result = distilled
    valid = precondition_mask(domain)
    decisions = evaluate_circuit(task.circuit, domain, valid).decisions
    tokens, lengths = all_tokens(domain)
    for i in np.flatnonzero(valid):
        seq = tokens[i, :lengths[i]].tolist()
        assert run(result.program, seq) == decisions[i] == task.spec(seq), domain.format(seq)
    assert result.spec_mismatch_count == 0


@pytest.mark.parametrize("name", GRAPH_TASKS)
def test_mechanism_examples(name):
    task = get_task(name)
    domain = task.domain()
    for text, expected in EXAMPLES[name]:
        seq = domain.ids(text.split(" "))
        assert run(task.precondition, seq) == 1, text  # the example lies in the domain
        logits = np.asarray(task.circuit.forward(np.array([seq])))[0]
        assert task.circuit.class_names[int(logits[1] > logits[0])] == expected, text
        assert task.circuit.class_names[task.spec(seq)] == expected, text
