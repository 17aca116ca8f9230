"""Learned circuits: train weight-sparse GPTs (flax nnx + optax), prune them to a node circuit with mean ablation,
and write both in OpenAI circuit_sparsity's file layout, so ``jaxscd distill --circuit-sparsity`` distills them."""

from jaxscd.learn.data import LearnError
from jaxscd.learn.train import TrainConfig, TrainResult, train

__all__ = ["LearnError", "TrainConfig", "TrainResult", "train"]
