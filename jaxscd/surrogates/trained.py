"""The ``trained`` method: a one-hidden-layer ReLU network trained by gradient descent, then quantized.

Training (flax nnx + optax) is one jitted ``lax.scan`` per round, vmapped over random restarts. The trained
float network is quantized to integers and checked exhaustively in exact int64 arithmetic; neurons whose phase
never changes on the domain are folded away. Widths grow until some restart is exact. The general fallback, found
from the truth table alone; imported only when the method runs (the registry and the verifier load no flax).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import flax.nnx as nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxscd.domain import Domain
from jaxscd.dsl.programs import Program
from jaxscd.errors import JaxscdError
from jaxscd.surrogates.network import IntegerSurrogate, exhaustive_decisions, fold_stable_neurons
from jaxscd.surrogates.registry import FitProblem, SurrogateConfig


class SurrogateError(JaxscdError, RuntimeError):
    """No exact integer surrogate was found within the configured widths and restarts."""


class ReluNet(nnx.Module):
    """score(x) = out(relu(hidden(x))) + skip(x) over flattened one-hot inputs x [N, Lmax * V]."""

    def __init__(self, n_inputs: int, width: int, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(n_inputs, max(width, 1), rngs=rngs)
        self.out = nnx.Linear(max(width, 1), 1, rngs=rngs)
        self.skip = nnx.Linear(n_inputs, 1, use_bias=False, rngs=rngs)
        self.width = width

    def __call__(self, x: jax.Array) -> jax.Array:
        hidden = nnx.relu(self.hidden(x)) * (1.0 if self.width else 0.0)
        return (self.out(hidden) + self.skip(x))[:, 0]


def one_hot(tokens: np.ndarray, n_tokens: int) -> np.ndarray:
    return np.asarray(jax.nn.one_hot(jnp.asarray(tokens), n_tokens, dtype=jnp.float32)).reshape(len(tokens), -1)


@partial(jax.jit, static_argnames=("graphdef", "steps", "learning_rate", "l1"))
def _train(graphdef, states, x, y, *, steps: int, learning_rate: float, l1: float):
    """Train a batch of restarts (leading axis of ``states``) with a hinge loss of margin 1 plus L1."""
    optimizer = optax.adam(learning_rate)

    def loss_fn(state):
        scores = nnx.merge(graphdef, state)(x)
        weights = jax.tree.leaves(state)
        return jnp.mean(jax.nn.relu(1.0 - y * scores)) + l1 * sum(jnp.sum(jnp.abs(w)) for w in weights)

    def train_one(state):
        def step(carry, _):
            state, opt_state = carry
            loss, grads = jax.value_and_grad(loss_fn)(state)
            updates, opt_state = optimizer.update(grads, opt_state, state)
            return (optax.apply_updates(state, updates), opt_state), loss

        (state, _), losses = jax.lax.scan(step, (state, optimizer.init(state)), None, length=steps)
        return state, losses[-1]

    return jax.vmap(train_one)(states)


def _init_states(graphdef_width: tuple, n_inputs: int, seed: int, restarts: int):
    width = graphdef_width

    def init(key):
        return nnx.split(ReluNet(n_inputs, width, nnx.Rngs(params=key)))[1]

    return jax.vmap(init)(jax.random.split(jax.random.key(seed), restarts))


def quantize(state, width: int, max_len: int, n_tokens: int, scale: int) -> IntegerSurrogate:
    """Round a trained float network to integers at ``scale`` after normalising each neuron (ReLU is
    positively homogeneous, so per-neuron rescaling into the output weight keeps the function)."""
    w1 = np.asarray(state["hidden"]["kernel"][...], dtype=np.float64)[:, :width]  # [D, H]
    b1 = np.asarray(state["hidden"]["bias"][...], dtype=np.float64)[:width]
    w2 = np.asarray(state["out"]["kernel"][...], dtype=np.float64)[:width, 0]
    b2 = float(np.asarray(state["out"]["bias"][...])[0])
    skip = np.asarray(state["skip"]["kernel"][...], dtype=np.float64)[:, 0]
    norm = np.maximum(np.abs(np.vstack([w1, b1[None]])).max(axis=0), 1e-12)
    w1, b1, w2 = w1 / norm, b1 / norm, w2 * norm
    out_norm = max(np.abs(np.concatenate([w2, skip, [b2]])).max(), 1e-12)
    w2, skip, b2 = w2 / out_norm, skip / out_norm, b2 / out_norm
    r = lambda a: np.rint(a).astype(np.int64)  # noqa: E731
    return IntegerSurrogate(r(w1 * scale).reshape(max_len, n_tokens, width), r(b1 * scale), r(w2 * scale),
                            r(skip * scale * scale).reshape(max_len, n_tokens), int(r(b2 * scale * scale)))


@dataclass(frozen=True, eq=False)
class FitResult:
    surrogate: IntegerSurrogate
    width_trained: int
    scale: int
    restarts_tried: int
    stable_folded: int
    unfolded: IntegerSurrogate  # the quantized network before stable neurons were folded away


def _exact(surrogate: IntegerSurrogate, domain: Domain, target: np.ndarray, valid: np.ndarray):
    decisions, active = exhaustive_decisions(surrogate, domain)
    wrong = valid & (decisions != target)
    return wrong, active


def train(domain: Domain, target: np.ndarray, valid: np.ndarray, config: SurrogateConfig = SurrogateConfig(),
          seed: int = 0, tokens: np.ndarray | None = None, lengths: np.ndarray | None = None,
          log: Callable[[str], None] = lambda _: None) -> FitResult:
    """Smallest-width integer surrogate whose decisions equal ``target`` on every valid domain input."""
    from jaxscd.kernels.enumerate import all_tokens

    if tokens is None:
        tokens, lengths = all_tokens(domain)
    rng = np.random.default_rng(seed)
    valid_idx = np.flatnonzero(valid)
    train_idx = valid_idx if len(valid_idx) <= config.train_limit else rng.choice(valid_idx, config.train_limit,
                                                                                  replace=False)
    n_inputs = domain.max_len * domain.n_tokens
    tried = 0
    for width in config.widths:
        graphdef = nnx.split(ReluNet(n_inputs, width, nnx.Rngs(0)))[0]
        states = _init_states(width, n_inputs, seed + width, config.restarts)
        idx = train_idx
        for _ in range(config.rounds):
            x = jnp.asarray(one_hot(tokens[idx], domain.n_tokens))
            y = jnp.asarray(np.where(target[idx] == 1, 1.0, -1.0), dtype=jnp.float32)
            states, losses = _train(graphdef, states, x, y, steps=config.steps, learning_rate=config.learning_rate,
                                    l1=config.l1)
            tried += config.restarts
            fits = np.asarray(jax.vmap(lambda s: jnp.all(y * nnx.merge(graphdef, s)(x) > 0))(states))
            if not fits.any():
                log(f"width {width}: no restart fits its training set; widening")
                break
            sample = (jnp.asarray(tokens[idx], dtype=jnp.int32), jnp.asarray(lengths[idx], dtype=jnp.int32))
            best_wrong = None
            for r in np.flatnonzero(fits):
                state = jax.tree.map(lambda a: a[r], states)
                for bits in range(config.max_scale_bits + 1):
                    candidate = quantize(state, width, domain.max_len, domain.n_tokens, 1 << bits)
                    if not np.array_equal(np.asarray(candidate.scores(*sample) > 0), np.asarray(y > 0)):
                        continue  # not exact on the training sample: no need for the exhaustive pass
                    wrong, active = _exact(candidate, domain, target, valid)
                    if not wrong.any():
                        folded = fold_stable_neurons(candidate, active[valid])
                        log(f"surrogate exact: width {width}, scale 2^{bits}, {folded.n_neurons} unstable neurons")
                        return FitResult(folded, width, 1 << bits, tried, candidate.n_neurons - folded.n_neurons,
                                         candidate)
                    if best_wrong is None or wrong.sum() < best_wrong.sum():
                        best_wrong = wrong
                    break
            if best_wrong is None:
                log(f"width {width}: no quantization fits the training set; widening")
                break
            log(f"width {width}: best restart wrong on {int(best_wrong.sum())} inputs outside the sample")
            # inputs it got wrong join the training set, then training resumes from the current weights
            idx = np.union1d(idx, np.flatnonzero(best_wrong)[: 1 << 14])
    raise SurrogateError(f"no exact integer surrogate with widths up to {config.widths[-1]} and "
                         f"{config.restarts} restarts; raise SurrogateConfig.widths or shrink the domain")



def fit(problem: FitProblem, program: Program) -> tuple[IntegerSurrogate | None, str]:
    """The ``trained`` method: ``train`` on the truth table with the problem's training settings."""
    try:
        return train(problem.domain, problem.decisions, problem.valid, problem.training, problem.seed,
                     log=problem.log).surrogate, ""
    except SurrogateError as err:
        return None, str(err)
