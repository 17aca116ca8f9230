"""OpenAI circuit_sparsity checkpoints: weight-sparse GPTs and their circuits, run in JAX (float64).

A re-implementation, written from the equations, of the eval forward pass of the GPT in OpenAI's
``circuit_sparsity`` project (``inference/gpt.py``) and of its circuit execution. Modules, in pipeline order:

1. ``config``: ``GPTConfig``, parsed from ``beeg_config.json``, and the hook locations with their widths.
2. ``weights``: ``load_model``, a checked float64 state dict from ``final_model.pt`` or ``weights.npz``.
3. ``ablation``: ``NodeCircuit``, kept channels per hook location and the means that replace the others.
4. ``forward``: ``logits`` and ``activations`` (optionally under a circuit), ``eval_logits`` for token files.
5. ``template``: ``sparse_gpt_circuit``, the model (or its circuit) as a jaxscd ``Circuit`` over a small alphabet.
"""

from jaxscd.circuits.sparse_gpt.ablation import NodeCircuit, load_circuit, make_circuit
from jaxscd.circuits.sparse_gpt.config import (
    AFRAC_LOCTYPES,
    LAYER_HOOKS,
    GPTConfig,
    SparseGPTError,
    hook_widths,
    load_config,
)
from jaxscd.circuits.sparse_gpt.forward import LAYER_NORM_EPS, _forward, activations, eval_logits, logits
from jaxscd.circuits.sparse_gpt.template import (
    PromptTemplate,
    load_sparse_circuit,
    load_template,
    sparse_gpt_circuit,
    template_from_dict,
)
from jaxscd.circuits.sparse_gpt.weights import (
    TORCH_HINT,
    SparseGPT,
    load_model,
    model_from_state_dict,
    state_dict_shapes,
)

__all__ = ["AFRAC_LOCTYPES", "LAYER_HOOKS", "LAYER_NORM_EPS", "TORCH_HINT", "GPTConfig", "NodeCircuit",
           "PromptTemplate", "SparseGPT", "SparseGPTError", "activations", "eval_logits", "hook_widths",
           "load_circuit", "load_config", "load_model", "load_sparse_circuit", "load_template", "logits",
           "make_circuit", "model_from_state_dict", "sparse_gpt_circuit", "state_dict_shapes", "template_from_dict"]
