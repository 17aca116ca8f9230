"""On an accelerator: the filter kernels give exactly the CPU answers (run with `pytest -m gpu` on a GPU/TPU)."""

import jax
import numpy as np
import pytest

from jaxscd.domain import Domain
from jaxscd.dsl import DensityThreshold
from jaxscd.dsl.batch import default_families, evaluate_program
from jaxscd.kernels.enumerate import all_tokens
from jaxscd.kernels.filter import mismatches

pytestmark = pytest.mark.gpu


def _counts(family, tokens, lengths, target, valid):
    params = {k: v[:256] for k, v in family.params.items()}
    return np.asarray(mismatches(family.evaluate, params, family.heads, tokens, lengths, target, valid))


def test_mismatch_counts_on_the_accelerator_equal_the_cpu():
    domain = Domain(("a", "b", "c"), 1, 6)
    tokens, lengths = (a.astype(np.int32) for a in all_tokens(domain))
    target = np.asarray(evaluate_program(DensityThreshold({0}, {1}, 1, 3), tokens, lengths, 3), dtype=np.int8)
    valid = np.ones(domain.size, dtype=bool)
    for family in default_families(3, 6):
        on_device = _counts(family, tokens, lengths, target, valid)
        with jax.default_device(jax.devices("cpu")[0]):
            on_cpu = _counts(family, tokens, lengths, target, valid)
        np.testing.assert_array_equal(on_device, on_cpu, err_msg=family.name)
