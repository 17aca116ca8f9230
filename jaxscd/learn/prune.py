"""Prune a trained model to the nodes one task needs (Gao et al. 2025), with mean ablation.

Nodes: per layer, the channels after each norm (``attn.act_in``, ``mlp.act_in``), the q / k / v channels, the MLP
neurons after the activation (``mlp.post_act``) and the block outputs (``attn.resid_delta``, ``mlp.resid_delta``).
Each node has a learnable logit; the forward pass uses its Heaviside step as the mask, the backward pass the
sigmoid's gradient (straight-through). A pruned node is replaced by its mean activation over the training mixture,
exactly as circuit_sparsity executes circuits: ``x -> x*mask + mean*(1-mask)``. Loss: the task's cross-entropy
(target vs alternative token at the answer position, over the learned domain) plus ``penalty`` times the number of
kept nodes (their sigmoids). The logits then rank the nodes, and a bisection on the number kept finds the fewest
nodes whose circuit still reaches ``target_loss``. Last, a greedy shrink (``shrink_nodes``) drops kept nodes one at a
time, least harmful first, while the circuit still reaches the target and takes the model's decision on every input
of the domain; every candidate circuit of a round is scored in one vmapped forward pass. Then masks re-learned inside
the shrunk circuit at a stronger penalty re-rank its nodes for another bisection and shrink (``refine`` rounds).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxscd.circuits.sparse_gpt import GPTConfig, _forward, hook_widths, load_model, make_circuit  # noqa: PLC2701
from jaxscd.learn import data
from jaxscd.learn.export import CIRCUIT_DIR, save_circuit
from jaxscd.learn.train import masked_locations, straight_through, template_decisions
from jaxscd.outputs import check_output_dir


@dataclass(frozen=True)
class PruneConfig:
    steps: int = 400
    learning_rate: float = 0.1
    penalty: float = 1e-3  # per kept node, in nats of task loss; ramped up from 0 over the first half of the steps
    hinge: float = 1.0  # weight of mean(relu(hinge_margin - logit difference in the label's direction))
    hinge_margin: float = 1.0
    target_loss: float = 0.02  # circuit task loss the bisection must reach (raised to the model's own if higher)
    batch_size: int = 256  # domain inputs per mask step (1024: same circuits on bracket_depth seeds 0, 2, 4x the time)
    mean_documents: int = 512  # training-mixture documents the means are taken over
    init_logit: float = 1.0
    min_agreement: float = 1.0  # the circuit's decisions must also agree with the model's on this share of the domain
    attempts: int = 3  # penalties tried: penalty, penalty/4, penalty/16
    shrink: bool = True  # greedy single-node drops after the bisection (``shrink_nodes``)
    refine: int = 2  # rounds of re-learning the masks inside the shrunk circuit at 4x the penalty, then shrinking
    margin: float = 1e-3  # a kept decision needs |logit[target] - logit[alternative]| above this (float32 vs 64)
    candidates_per_batch: int = 4  # candidate circuits scored per vmapped forward pass
    rank_inputs: int = 512  # random domain inputs the shrink ranks nodes on (each drop is checked on all)
    restarts: int = 1  # searches (mean ablation, masks, bisection, shrink) from seeds seed, seed+1, ..; smallest kept
    seed: int = 0


@dataclass(frozen=True)
class PruneResult:
    circuit_dir: str
    files: dict
    nodes_kept: int
    nodes_total: int
    edges_kept: int
    edges_total: int
    task_loss: float  # circuit, over the learned domain
    model_loss: float
    agreement: float  # circuit decision == model decision, over the learned domain
    circuit_accuracy: float  # circuit decision == spec
    model_accuracy: float
    domain_size: int
    seconds: float
    kept: dict = field(default_factory=dict, repr=False)  # location -> kept channel indices, as written
    means: dict = field(default_factory=dict, repr=False)  # location -> float64 mean [width], as written


def read_training_info(model_dir) -> dict:
    path = Path(model_dir) / "jaxscd_train.json"
    if not path.is_file():
        raise data.LearnError(f"{str(path)!r} not found: prune needs the vocabulary and training mixture that "
                              f"`jaxscd train` writes beside the checkpoint")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as err:  # not UTF-8 or JSON, a number past 4300 digits, nested too deeply
        raise data.LearnError(f"{str(path)!r} is not valid JSON: {type(err).__name__}: {err}"[:300]) from None
    if not isinstance(info, dict) or info.get("vocabulary") != list(data.vocabulary()) or \
            not isinstance(info.get("train"), dict):
        raise data.LearnError(f"{str(path)!r} does not describe this jaxscd version's vocabulary; retrain the model")
    return info


def mixture_means(params: dict, config: GPTConfig, info: dict, documents: int, seed: int) -> dict:
    """Mean of every hook location over the real positions of ``documents`` training-mixture documents."""
    train = info["train"]
    names = [info.get("task"), *train.get("extra_tasks", [])]
    languages = [data.task_language(name, int(train["max_len"])) for name in names]
    batch = data.sample_batch(languages, np.random.default_rng(seed), documents,
                              min(config.block_size, data.document_length(int(train["max_len"]))),
                              float(train["filler_fraction"]), data.filler_chain())
    _, acts = _forward(params, jnp.asarray(batch.tokens), None, config=config, record=True)
    valid = jnp.asarray(batch.valid, dtype=jnp.float64)[..., None]
    return {loc: np.asarray(jnp.sum(act * valid, axis=(0, 1)) / jnp.sum(valid)) for loc, act in acts.items()}


def _hooks(gates: dict, means: dict, config: GPTConfig, dtype) -> dict:
    widths = hook_widths(config)
    return {loc: (gates.get(loc, jnp.ones(width, dtype)), jnp.asarray(means[loc], dtype)) for loc, width in
            widths.items()}


def _task_arrays(language: data.TaskLanguage):
    sequences, labels = data.enumerate_domain(language)
    prompts, answer = data.domain_prompts(language, sequences)
    return jnp.asarray(prompts), jnp.asarray(answer), jnp.asarray(labels)


def _make_task_loss(config: GPTConfig, language: data.TaskLanguage):
    columns = (int(language.answer_ids[0]), int(language.answer_ids[1]))

    def task_loss(params, hooks, prompts, answer, labels):
        logits, _ = _forward(params, prompts, hooks, config=config)
        pair = logits[jnp.arange(prompts.shape[0]), answer][:, jnp.asarray(columns)]
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(pair, labels))

    return task_loss


def _make_decisions(config: GPTConfig, language: data.TaskLanguage):
    target, alternative = int(language.answer_ids[1]), int(language.answer_ids[0])

    def decisions(params, hooks, prompts, answer):
        logits, _ = _forward(params, prompts, hooks, config=config)
        at_answer = logits[jnp.arange(prompts.shape[0]), answer]
        return at_answer[:, target] > at_answer[:, alternative]

    return decisions


def learn_gates(params32: dict, means: dict, config: GPTConfig, language, prune: PruneConfig,
                allowed: dict | None = None) -> dict:
    """Node logits after ``prune.steps`` of Adam on task loss + hinge on the logit difference + penalty * kept nodes
    (straight-through masks; the penalty ramped linearly from 0 to ``prune.penalty`` over the first half of the
    steps). With ``allowed`` (location -> kept channel indices), every other node stays ablated (logit -inf)."""
    locations = masked_locations(config)
    prompts, answer, labels = _task_arrays(language)
    columns = jnp.asarray((int(language.answer_ids[0]), int(language.answer_ids[1])))
    sign = jnp.where(labels > 0, 1.0, -1.0)
    allow = {loc: jnp.ones(width, jnp.float32) if allowed is None else
             jnp.zeros(width, jnp.float32).at[jnp.asarray(allowed[loc], jnp.int32)].set(1.0)
             for loc, width in locations.items()}
    logits = {loc: jnp.full(width, prune.init_logit, jnp.float32) for loc, width in locations.items()}
    optimizer = optax.adam(prune.learning_rate)

    def loss_fn(node_logits, rows, penalty):
        gates = {}
        for loc, theta in node_logits.items():
            gates[loc] = allow[loc] * straight_through(theta)
        kept = sum(jnp.sum(allow[loc] * jax.nn.sigmoid(theta)) for loc, theta in node_logits.items())
        logits, _ = _forward(params32, prompts[rows], _hooks(gates, means, config, jnp.float32), config=config)
        pair = logits[jnp.arange(rows.shape[0]), answer[rows]][:, columns]
        task = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(pair, labels[rows]))
        hinge = jnp.mean(jax.nn.relu(prune.hinge_margin - (pair[:, 1] - pair[:, 0]) * sign[rows]))
        return task + prune.hinge * hinge + penalty * kept

    @jax.jit
    def step(node_logits, opt_state, rows, penalty):
        grads = jax.grad(loss_fn)(node_logits, rows, penalty)
        updates, opt_state = optimizer.update(grads, opt_state, node_logits)
        return optax.apply_updates(node_logits, updates), opt_state

    opt_state = optimizer.init(logits)
    rng = np.random.default_rng(prune.seed)
    size = min(prune.batch_size, prompts.shape[0])
    for index in range(prune.steps):
        penalty = prune.penalty * min(1.0, 2 * (index + 1) / prune.steps)
        logits, opt_state = step(logits, opt_state, jnp.asarray(rng.choice(prompts.shape[0], size, replace=False)),
                                 jnp.float32(penalty))
    return {loc: np.where(np.asarray(allow[loc]) > 0, np.asarray(theta), -np.inf) for loc, theta in logits.items()}


def _kept_top(order: list, count: int, locations: dict) -> dict:
    kept = {loc: [] for loc in locations}
    for loc, index in order[:count]:
        kept[loc].append(index)
    return {loc: np.array(sorted(idx), dtype=np.int64) for loc, idx in kept.items()}


def _gates(kept: dict, config: GPTConfig) -> dict:
    """float32 0/1 masks of every masked location from its kept channel indices."""
    return {loc: jnp.zeros(width, jnp.float32).at[jnp.asarray(kept[loc], jnp.int32)].set(1.0)
            for loc, width in masked_locations(config).items()}


def bisect_nodes(params32: dict, means: dict, config: GPTConfig, language, node_logits: dict, target: float,
                 min_agreement: float = 0.0) -> tuple[dict, float, bool]:
    """The fewest top-ranked nodes whose circuit task loss is at most ``target`` and whose decisions agree with the
    model's on at least ``min_agreement`` of the domain: (kept indices, loss, whether the learned set itself reached
    the target, so the search stayed below it)."""
    locations = masked_locations(config)
    order = sorted(((loc, i) for loc, theta in node_logits.items() for i in range(len(theta))),
                   key=lambda node: -node_logits[node[0]][node[1]])
    task_loss = jax.jit(_make_task_loss(config, language))
    prompts, answer, labels = _task_arrays(language)

    decide = jax.jit(_make_decisions(config, language))
    model_decisions = decide(params32, None, prompts, answer)

    def loss_at(count: int) -> float:
        """The circuit's task loss, or inf when its decisions agree with the model's too rarely."""
        hooks = _hooks(_gates(_kept_top(order, count, locations), config), means, config, jnp.float32)
        agreement = float(jnp.mean(decide(params32, hooks, prompts, answer) == model_decisions))
        return float(task_loss(params32, hooks, prompts, answer, labels)) if agreement >= min_agreement else np.inf

    # Nodes were trained off together, so adding some back can hurt: search below the learned set when it reaches
    # the target, above it otherwise (the whole model reaches it: the target is raised to the model's loss).
    learned = sum(int(np.sum(theta > 0)) for theta in node_logits.values())
    within = loss_at(learned) <= target
    candidates = sum(int(np.sum(np.isfinite(theta))) for theta in node_logits.values())  # -inf: not allowed
    low, high = (0, learned) if within else (learned + 1, candidates)
    while low < high:
        middle = (low + high) // 2
        if loss_at(middle) <= target:
            high = middle
        else:
            low = middle + 1
    return _kept_top(order, high, locations), loss_at(high), within


def _make_scorer(params32: dict, means: dict, config: GPTConfig, language, margin: float, rows=None):
    """score(gate vectors float32 [K, nodes]) -> (task loss [K], agreement with the model's decisions [K]) over the
    whole domain; node order: ``masked_locations``, channel by channel. A decision counts as kept only when the
    circuit's logit difference has the model's sign and exceeds ``margin``, so float64 runs decide alike. With
    ``rows``, only those inputs of the domain."""
    locations = masked_locations(config)
    bounds = np.cumsum([0, *locations.values()])
    prompts, answer, labels = _task_arrays(language)
    if rows is not None:
        prompts, answer, labels = prompts[rows], answer[rows], labels[rows]
    columns = jnp.asarray((int(language.answer_ids[0]), int(language.answer_ids[1])))
    fixed = {"params": params32, "means": {loc: jnp.asarray(m, jnp.float32) for loc, m in means.items()},
             "prompts": prompts, "answer": answer, "labels": labels,
             "model_difference": _logit_difference(params32, prompts, answer, columns, config)}

    def one(vector, fixed):  # the weights and domain are arguments, not constants XLA would fold while compiling
        gates = {loc: vector[start:stop] for loc, start, stop in zip(locations, bounds[:-1], bounds[1:])}
        logits, _ = _forward(fixed["params"], fixed["prompts"], _hooks(gates, fixed["means"], config, jnp.float32),
                             config=config)
        pair = logits[jnp.arange(prompts.shape[0]), fixed["answer"]][:, columns]
        loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(pair, fixed["labels"]))
        difference = pair[:, 1] - pair[:, 0]
        # the model's own near-ties (|difference| <= margin) need only the same sign
        need = jnp.minimum(margin, jnp.abs(fixed["model_difference"]) / 2)
        return loss, jnp.mean(jnp.where(fixed["model_difference"] > 0, difference > need, difference < -need))

    batched = jax.jit(jax.vmap(one, in_axes=(0, None)))
    return lambda vectors: batched(vectors, fixed)


def _logit_difference(params32: dict, prompts, answer, columns, config: GPTConfig) -> jax.Array:
    pair = _forward(params32, prompts, None, config=config)[0][jnp.arange(prompts.shape[0]), answer][:, columns]
    return pair[:, 1] - pair[:, 0]


def _score_in_batches(score, vectors: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """score over rows of ``vectors`` in fixed-size chunks (the last padded), so it compiles once."""
    losses, agreements = [], []
    for start in range(0, len(vectors), size):
        chunk = vectors[start:start + size]
        padded = np.concatenate([chunk, np.repeat(chunk[-1:], size - len(chunk), axis=0)])
        loss, agreement = score(jnp.asarray(padded, jnp.float32))
        losses.append(np.asarray(loss)[:len(chunk)])
        agreements.append(np.asarray(agreement)[:len(chunk)])
    return np.concatenate(losses), np.concatenate(agreements)


def _vector(kept: dict, config: GPTConfig) -> np.ndarray:
    """float32 0/1 gates of every masked node, in ``masked_locations`` order, from kept channel indices."""
    locations = masked_locations(config)
    bounds = dict(zip(locations, np.cumsum([0, *locations.values()])))
    vector = np.zeros(sum(locations.values()), np.float32)
    for loc, indices in kept.items():
        vector[bounds[loc] + np.asarray(indices, dtype=np.int64)] = 1.0
    return vector


def _without_each(vector: np.ndarray, nodes) -> np.ndarray:
    candidates = np.repeat(vector[None], len(nodes), axis=0)
    candidates[np.arange(len(nodes)), nodes] = 0.0
    return candidates


def shrink_nodes(params32: dict, means: dict, config: GPTConfig, language, kept: dict, target: float,
                 min_agreement: float = 1.0, margin: float = 1e-3, batch: int = 4, rank_inputs: int = 512,
                 seed: int = 0) -> dict:
    """Greedy node removal from ``kept``: rank the kept nodes by the task loss of the circuit without each, then try
    them in that order, keeping a drop when the loss stays at most ``target`` and the decisions agree with the
    model's on at least ``min_agreement`` of the domain; re-rank and repeat until a whole pass drops nothing.
    Candidates are tried ``batch`` at a time (each without one more node than the current circuit); the first that
    passes is taken and the next batch starts after it. The ranking uses ``rank_inputs`` random inputs of the domain
    (it only orders the tries); every drop is checked on all of them."""
    locations = masked_locations(config)
    bounds = dict(zip(locations, np.cumsum([0, *locations.values()])))
    score = _make_scorer(params32, means, config, language, margin)
    size = len(data.enumerate_domain(language)[1])
    sample = np.sort(np.random.default_rng(seed).choice(size, min(rank_inputs, size), replace=False))
    rank = _make_scorer(params32, means, config, language, margin, sample)
    vector = _vector(kept, config)
    ok = lambda loss, agreement: (loss <= target) & (agreement >= min_agreement)  # noqa: E731
    dropped = True
    while dropped:
        dropped = False
        nodes = np.flatnonzero(vector)
        losses, _ = _score_in_batches(rank, _without_each(vector, nodes), 4 * batch)
        pending = list(nodes[np.argsort(losses, kind="stable")])
        # the longest prefix of the ranking that can go at once, by bisection: few passes when most nodes can go
        low, high = 0, len(pending)
        while low < high:
            middle = (low + high + 1) // 2
            trial = vector.copy()
            trial[pending[:middle]] = 0.0
            if ok(*(value[0] for value in _score_in_batches(score, trial[None], batch))):
                low = middle
            else:
                high = middle - 1
        if low:
            vector[pending[:low]] = 0.0
            pending, dropped = pending[low:], True
        while pending:
            trial, pending = pending[:batch], pending[batch:]
            loss, agreement = _score_in_batches(score, _without_each(vector, trial), batch)
            passing = np.flatnonzero(ok(loss, agreement))
            if len(passing):
                first = int(passing[0])
                vector[trial[first]] = 0.0
                pending = trial[first + 1:] + pending
                dropped = True
    return {loc: np.flatnonzero(vector[bounds[loc]:bounds[loc] + width]).astype(np.int64)
            for loc, width in locations.items()}


def _count(kept: dict) -> int:
    return int(sum(len(indices) for indices in kept.values()))


def count_edges(params: dict, config: GPTConfig, kept: dict) -> tuple[int, int]:
    """(edges between kept nodes, edges of the whole model): non-zero weights from a kept input channel to a kept
    output channel (act_in -> q/k/v, v -> attn.resid_delta through its y channel, mlp.act_in -> post_act ->
    mlp.resid_delta), plus residual links: a block-output channel to the same channel of every later norm output."""
    full = {loc: np.arange(width) for loc, width in masked_locations(config).items()}
    from jaxscd.circuits.sparse_gpt.edges import circuit_edges

    return len(circuit_edges(params, config, kept)), len(circuit_edges(params, config, full))


def _search(params32: dict, means: dict, gpt: GPTConfig, language, target: float,
            config: PruneConfig) -> tuple[int, dict, float]:
    """One search from ``config.seed``: (nodes after the bisection, kept nodes, the circuit's task loss)."""
    tries = []  # (nodes, kept, loss) per penalty; without a learned set within the target, the smallest circuit
    for attempt in range(config.attempts):  # a penalty too strong for the target: retry with a quarter of it
        node_logits = learn_gates(params32, means, gpt, language, replace(config, penalty=config.penalty / 4 ** attempt))
        kept, circuit_loss, within = bisect_nodes(params32, means, gpt, language, node_logits, target,
                                                  config.min_agreement)
        tries.append((_count(kept), kept, circuit_loss))
        if within:
            break
    nodes_bisected, kept, circuit_loss = tries[-1] if within else min(tries, key=lambda t: t[0])
    if config.shrink:
        shrink = lambda start: shrink_nodes(params32, means, gpt, language, start, target,  # noqa: E731
                                            config.min_agreement, config.margin, config.candidates_per_batch,
                                            config.rank_inputs, config.seed)
        kept = shrink(kept)
        score = _make_scorer(params32, means, gpt, language, config.margin)

        def passes(circuit: dict) -> bool:  # the shrink's test: target loss, and the decisions with the margin
            loss, agreement = score(jnp.asarray(_vector(circuit, gpt)[None]))
            return float(loss[0]) <= target and float(agreement[0]) >= config.min_agreement

        # the shrink stops at a local minimum (no single node can go); masks re-learned inside it at a stronger
        # penalty rank its nodes afresh, and the bisection and shrink from that ranking can end lower
        for round_ in range(1, config.refine + 1):
            stronger = replace(config, penalty=config.penalty * 4 ** round_)
            inside = learn_gates(params32, means, gpt, language, stronger, allowed=kept)
            smaller = shrink(bisect_nodes(params32, means, gpt, language, inside, target, config.min_agreement)[0])
            if _count(smaller) >= _count(kept) or not passes(smaller):
                break
            kept = smaller
        hooks = _hooks(_gates(kept, gpt), means, gpt, jnp.float32)
        circuit_loss = float(jax.jit(_make_task_loss(gpt, language))(params32, hooks, *_task_arrays(language)))
    return nodes_bisected, kept, circuit_loss


def prune(model_dir, task: str, circuit_dir, config: PruneConfig = PruneConfig()) -> PruneResult:
    """Prune the model in ``model_dir`` for ``task`` and write ``circuit_dir`` (see jaxscd.learn.export)."""
    started = time.perf_counter()
    check_output_dir(circuit_dir, CIRCUIT_DIR)  # refused before the work, not after
    info = read_training_info(model_dir)
    language = data.learned_language(data.task_language(task, int(info["train"]["max_len"])))
    model = load_model(model_dir)
    gpt, params = model.config, model.params
    params32 = {k: v.astype(jnp.float32) for k, v in params.items()}
    model_loss = float(jax.jit(_make_task_loss(gpt, language))(params32, None, *_task_arrays(language)))
    target = max(config.target_loss, 1.05 * model_loss)
    best = None  # ((nodes, edges, edges in the model), means, nodes bisected, kept, loss): the smallest circuit
    for seed in range(config.seed, config.seed + config.restarts):  # each seed draws its own mean ablation
        means = mixture_means(params, gpt, info, config.mean_documents, seed)
        bisected, found, loss = _search(params32, means, gpt, language, target, replace(config, seed=seed))
        size = (_count(found), *count_edges(params, gpt, found))
        if best is None or size[:2] < best[0][:2]:
            best = (size, means, bisected, found, loss)
    (_, edges_kept, edges_total), means, nodes_bisected, kept, circuit_loss = best
    circuit = make_circuit(gpt, kept, means)
    hooks = {loc: (jnp.asarray(m), jnp.asarray(u)) for loc, (m, u) in circuit.hooks.items()}
    model_decisions = template_decisions(params, gpt, language)
    circuit_decisions = template_decisions(params, gpt, language, hooks)
    _, labels = data.enumerate_domain(language)
    nodes_total = sum(masked_locations(gpt).values())
    metrics = {"nodes_kept": _count(kept), "nodes_bisected": nodes_bisected,
               "nodes_total": nodes_total,
               "edges_kept": edges_kept, "edges_total": edges_total, "task_loss": circuit_loss,
               "model_loss": model_loss, "target_loss": target,
               "agreement": float(np.mean(model_decisions == circuit_decisions)),
               "circuit_accuracy": float(np.mean(circuit_decisions == labels)),
               "model_accuracy": float(np.mean(model_decisions == labels)), "domain_size": int(len(labels))}
    raw_config = json.loads((Path(model_dir) / "beeg_config.json").read_text())
    files = save_circuit(circuit_dir, raw_config, kept, means, language.template(),
                         {"task": task, "prune": vars(config) | {}, **metrics})
    return PruneResult(str(circuit_dir), {k: str(v) for k, v in files.items()}, metrics["nodes_kept"], nodes_total,
                       edges_kept, edges_total, circuit_loss, model_loss, metrics["agreement"],
                       metrics["circuit_accuracy"], metrics["model_accuracy"], len(labels),
                       time.perf_counter() - started, kept, means)
