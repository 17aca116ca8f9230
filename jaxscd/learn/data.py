"""The training mixture: one shared vocabulary, one small token language per built-in task, and filler text.

Every built-in task (``jaxscd.tasks``) becomes a language over the model's vocabulary: a document is
``<bos> x_1 .. x_n`` with ``x`` drawn uniformly from the task's alphabet (length uniform in ``min_len..max_len``),
and the token to predict after ``x_n`` is the task's class token (its ``class_names``, which are tokens too, e.g. a
closing quote), labelled by the task's spec. quote_close and bracket_depth are labelled on every sequence (their
specs are defined everywhere: no quote closes with '"', a depth below 2 with ']'), so the learned circuit's domain
is the whole of ``alphabet^(min_len..max_len)``; the other tasks are sampled inside their precondition.

Filler documents are a fixed sparse Markov chain over every non-special token (so task tokens also appear outside
their tasks, as quotes do in prose), trained with next-token loss at every position.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from jaxscd.errors import InputError
from jaxscd.tasks import SPEC_EVERYWHERE

BOS = "<bos>"
FILLER_TOKENS = tuple(f"w{i}" for i in range(6))
UNCONSTRAINED = SPEC_EVERYWHERE  # specs defined on every sequence: no precondition when learned


class LearnError(InputError):
    """Bad input to train / prune: the message says what and how to fix it."""


@lru_cache(maxsize=None)
def vocabulary() -> tuple:
    """Token names, id = position: <bos>, filler words, then every task's alphabet and class tokens (shared names
    share an id), in task registry order, so ids are stable."""
    from jaxscd.tasks import get_task, task_names

    names = [BOS, *FILLER_TOKENS]
    for task_name in task_names():
        task = get_task(task_name)
        for token in (*task.alphabet, *task.circuit.class_names):
            if token not in names:
                names.append(token)
    return tuple(names)


@dataclass(frozen=True)
class TaskLanguage:
    """A task as token ids of the shared vocabulary."""

    name: str
    alphabet: tuple  # task token names, in the task's domain order
    token_ids: np.ndarray  # model id of each alphabet entry
    answer_ids: np.ndarray  # model id of class 0 and class 1
    class_names: tuple
    min_len: int
    max_len: int
    spec: object  # callable on task token ids -> class
    precondition: object  # a DSL program or None

    def template(self) -> dict:
        """The task template of jaxscd.circuits.sparse_gpt for this language."""
        return {"alphabet": {name: int(i) for name, i in zip(self.alphabet, self.token_ids)},
                "prefix": [vocabulary().index(BOS)], "suffix": [], "target": int(self.answer_ids[1]),
                "alternative": int(self.answer_ids[0]), "class_names": list(self.class_names),
                "min_len": self.min_len, "max_len": self.max_len}


def task_language(name: str, max_len: int) -> TaskLanguage:
    from jaxscd.tasks import get_task, task_names

    if name not in task_names():
        raise LearnError(f"unknown task {name!r}; known tasks: {', '.join(task_names())}")
    task = get_task(name)
    vocab = vocabulary()
    ids = np.array([vocab.index(t) for t in task.alphabet])
    answers = np.array([vocab.index(t) for t in task.circuit.class_names])
    precondition = None if name in UNCONSTRAINED else task.precondition
    longest = max_len if name in UNCONSTRAINED else min(max_len, task.max_len)  # others: sampled in their domain
    return TaskLanguage(name, task.alphabet, ids, answers, task.circuit.class_names, task.min_len,
                        max(task.min_len, longest), task.spec, precondition)


def learned_language(language: TaskLanguage) -> TaskLanguage:
    """The learned domain: the training lengths up to ``LEARNED_DOMAIN_MAX`` (train's accuracy, prune and the
    template enumerate it; longer lengths are asked of distill beyond enumeration)."""
    return replace(language, max_len=max(language.min_len, min(language.max_len, LEARNED_DOMAIN_MAX)))


def sample_task(language: TaskLanguage, rng: np.random.Generator) -> tuple[list, int]:
    """(task token ids, class) of one random document; rejection-sampled inside the precondition."""
    from jaxscd.dsl import reference as dsl

    for _ in range(10_000):
        length = int(rng.integers(language.min_len, language.max_len + 1))
        seq = [int(t) for t in rng.integers(0, len(language.alphabet), size=length)]
        if language.precondition is None or dsl.run(language.precondition, seq):
            return seq, int(language.spec(seq))
    raise LearnError(f"could not sample a {language.name} sequence inside its precondition; raise --max-len")


def filler_chain(seed: int = 1234) -> np.ndarray:
    """A fixed sparse transition matrix [V, V] over non-special tokens (3 successors per token)."""
    vocab = vocabulary()
    rng = np.random.default_rng(seed)
    chain = np.zeros((len(vocab), len(vocab)))
    for token in range(len(vocab)):
        successors = rng.choice(np.arange(1, len(vocab)), size=3, replace=False)
        chain[token, successors] = rng.dirichlet(np.ones(3))
    return chain


@dataclass(frozen=True)
class Batch:
    tokens: np.ndarray  # int32 [B, T]
    targets: np.ndarray  # int32 [B, T]: the token expected after each position
    weights: np.ndarray  # float32 [B, T]: 1 where the loss counts
    is_task: np.ndarray  # bool [B, T]: answer positions of task documents
    valid: np.ndarray  # bool [B, T]: real (non-padding) positions


LEARNED_DOMAIN_MAX = 8  # the learned domain stops here, whatever the training lengths
CONTEXT = 128  # sequence positions (after <bos>) every trained model accepts, whatever lengths it was trained on


def document_length(max_len: int) -> int:
    """Tokens per training document: a task prompt of up to ``max_len`` (+ <bos>), at least 16 for the filler."""
    return max(16, 1 + max_len)


def sample_batch(languages: list, rng: np.random.Generator, batch_size: int, block_size: int,
                 filler_fraction: float, chain: np.ndarray) -> Batch:
    """A batch of the mixture: task documents (loss at the answer) and filler (loss at every position); documents
    are padded on the right with <bos> (weight 0; the model is causal, so padding changes nothing before it)."""
    tokens = np.zeros((batch_size, block_size), np.int32)
    targets = np.zeros_like(tokens)
    weights = np.zeros((batch_size, block_size), np.float32)
    is_task = np.zeros((batch_size, block_size), bool)
    valid = np.zeros((batch_size, block_size), bool)
    filler = rng.random(batch_size) < filler_fraction if languages else np.ones(batch_size, bool)
    docs = _filler_documents(chain, rng, int(filler.sum()), block_size + 1)
    tokens[filler], targets[filler], weights[filler], valid[filler] = docs[:, :-1], docs[:, 1:], 1.0, True
    for row in np.flatnonzero(~filler):
        language = languages[int(rng.integers(len(languages)))]
        seq, label = sample_task(language, rng)
        answer = len(seq)  # position of the last task token (after <bos>)
        tokens[row, 1:answer + 1] = language.token_ids[seq]
        targets[row, answer] = language.answer_ids[label]
        weights[row, answer] = 1.0
        is_task[row, answer] = True
        valid[row, :answer + 1] = True
    return Batch(tokens, targets, weights, is_task, valid)


def _filler_documents(chain: np.ndarray, rng: np.random.Generator, rows: int, length: int) -> np.ndarray:
    """``rows`` walks of the Markov chain from <bos>, all rows one step at a time."""
    cumulative = np.cumsum(chain, axis=1)
    docs = np.zeros((rows, length), np.int32)
    for position in range(1, length):
        draws = rng.random((rows, 1))
        docs[:, position] = np.minimum((cumulative[docs[:, position - 1]] < draws).sum(axis=1), chain.shape[0] - 1)
    return docs


def enumerate_domain(language: TaskLanguage) -> tuple[np.ndarray, np.ndarray]:
    """Every sequence of the learned domain (as jaxscd distill enumerates it from the template: no precondition),
    as task token ids padded with -1 [N, max_len], and its spec label [N]."""
    rows, labels = [], []
    size = len(language.alphabet)
    for length in range(language.min_len, language.max_len + 1):
        grid = np.indices((size,) * length).reshape(length, -1).T
        for seq in grid:
            rows.append(np.pad(seq, (0, language.max_len - length), constant_values=-1))
            labels.append(int(language.spec([int(t) for t in seq])))
    return np.array(rows), np.array(labels)


def domain_prompts(language: TaskLanguage, sequences: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Model prompts <bos> + ids [N, 1 + max_len] (right-padded with <bos>) and the answer position of each."""
    lengths = (sequences >= 0).sum(axis=1)
    prompts = np.zeros((len(sequences), 1 + language.max_len), np.int32)
    prompts[:, 1:] = np.where(sequences >= 0, language.token_ids[np.maximum(sequences, 0)], 0)
    return prompts, lengths
