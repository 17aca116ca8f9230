"""Every local device, one code path: the domain axis of each chunk is split over a 1-D mesh of all local devices.

Kernels stay plain jit functions; only their inputs are placed. ``rows(x)`` puts an array's leading (domain) axis
across the mesh (``NamedSharding(mesh, P("domain"))``) and XLA partitions each kernel to match (GSPMD), with a
cross-device sum where a kernel reduces over inputs. One CPU, one GPU or eight TPU cores run the same code; every
result read back is an integer (decisions, mismatch counts) or a per-row value, so it is the same on any device
count. An array whose length the device count does not divide is replicated instead (small samples).
"""

from __future__ import annotations

import functools

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "domain"


@functools.cache
def mesh() -> Mesh:
    """All devices of this process, in one axis named ``domain``."""
    return Mesh(np.array(jax.local_devices()), (AXIS,))


def count() -> int:
    return mesh().size


def describe() -> dict:
    """{"count", "kind", "platform"} of the devices kernels run on (what --json and sweep records report)."""
    devices = mesh().devices.ravel()
    return {"count": len(devices), "kind": devices[0].device_kind, "platform": devices[0].platform}


def rows(array) -> jax.Array:
    """``array`` on the devices, its leading axis split over the mesh (replicated where it does not divide)."""
    array = np.asarray(array) if not isinstance(array, jax.Array) else array
    split = array.ndim > 0 and array.shape[0] % count() == 0
    spec = PartitionSpec(AXIS, *([None] * (array.ndim - 1))) if split else PartitionSpec()
    return jax.device_put(array, NamedSharding(mesh(), spec))


def replicated(array) -> jax.Array:
    """``array`` on every device whole (parameters every shard reads)."""
    return jax.device_put(np.asarray(array), NamedSharding(mesh(), PartitionSpec()))
