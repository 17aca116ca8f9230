"""Files in circuit_sparsity's own layout (see docs/learned_circuits.md).

Model directory: ``beeg_config.json``, ``final_model.pt`` (float32 state dict, their parameter names; written as
``weights.npz`` with the same keys when torch is absent) and ``jaxscd_train.json`` (vocabulary, training mixture
and metrics; their tools ignore it). Circuit directory: ``viz_data.pt`` (``circuit_data``: location -> kept channel
indices, ``importances.beeg_model_config``, ``num_total_nodes``, ``samples``), ``means.pt`` (location -> float64
mean [width], every hook location), ``template.json`` and ``jaxscd_prune.json`` (metrics). Without torch the two
``.pt`` files are ``viz_data.npz`` (keys ``circuit_data/<location>``) and ``means.npz``. Everything loads with
``torch.load(weights_only=True)`` / ``np.load(allow_pickle=False)``: plain tensors, dicts, ints and strings only.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from jaxscd.circuits.base import atomic_write
from jaxscd.learn.data import LearnError


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def prepare_dir(path, what: str) -> Path:
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise LearnError(f"{what} {str(path)!r} exists and is not a directory; choose another --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise LearnError(f"cannot create {what} {str(path)!r} ({err.strerror or err}); choose another --out") from None
    return path


def _write_json(path: Path, value) -> None:
    atomic_write(path, (json.dumps(value, indent=1, sort_keys=True) + "\n").encode())


def _write_torch(path: Path, value) -> None:
    import torch

    buffer = io.BytesIO()
    torch.save(value, buffer)
    atomic_write(path, buffer.getvalue())


def _write_npz(path: Path, arrays: dict) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write(path, buffer.getvalue())


def save_model(model_dir, config: dict, state: dict, info: dict, use_torch: bool | None = None) -> Path:
    """Write the model directory; returns the weights file."""
    model_dir = prepare_dir(model_dir, "model directory")
    use_torch = torch_available() if use_torch is None else use_torch
    _write_json(model_dir / "beeg_config.json", config)
    _write_json(model_dir / "jaxscd_train.json", info)
    arrays = {key: np.asarray(value, dtype=np.float32) for key, value in state.items()}
    if use_torch:
        import torch

        stale = model_dir / "weights.npz"
        stale.unlink(missing_ok=True)  # load_model prefers final_model.pt; no second, different copy
        _write_torch(model_dir / "final_model.pt", {k: torch.from_numpy(a) for k, a in arrays.items()})
        return model_dir / "final_model.pt"
    (model_dir / "final_model.pt").unlink(missing_ok=True)
    _write_npz(model_dir / "weights.npz", arrays)
    return model_dir / "weights.npz"


def save_circuit(circuit_dir, config: dict, kept: dict, means: dict, template: dict, info: dict,
                 use_torch: bool | None = None) -> dict:
    """Write the circuit directory; returns {"viz": path, "means": path, "template": path}."""
    circuit_dir = prepare_dir(circuit_dir, "circuit directory")
    use_torch = torch_available() if use_torch is None else use_torch
    kept = {loc: np.asarray(idx, dtype=np.int64) for loc, idx in kept.items()}
    means = {loc: np.array(mean, dtype=np.float64) for loc, mean in means.items()}
    total = int(info.get("nodes_total", 0))
    _write_json(circuit_dir / "template.json", template)
    _write_json(circuit_dir / "jaxscd_prune.json", info)
    if use_torch:
        import torch

        viz = {"circuit_data": {loc: torch.from_numpy(idx) for loc, idx in kept.items()},
               "importances": {"beeg_model_config": config}, "num_total_nodes": total, "samples": {}}
        _write_torch(circuit_dir / "viz_data.pt", viz)
        _write_torch(circuit_dir / "means.pt", {loc: torch.from_numpy(m) for loc, m in means.items()})
        paths = {"viz": circuit_dir / "viz_data.pt", "means": circuit_dir / "means.pt"}
    else:
        _write_npz(circuit_dir / "viz_data.npz", {f"circuit_data/{loc}": idx for loc, idx in kept.items()})
        _write_npz(circuit_dir / "means.npz", means)
        paths = {"viz": circuit_dir / "viz_data.npz", "means": circuit_dir / "means.npz"}
    return paths | {"template": circuit_dir / "template.json"}
