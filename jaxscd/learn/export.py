"""Files in circuit_sparsity's own layout (see docs/learned_circuits.md).

Model directory: ``beeg_config.json``, ``final_model.pt`` (float32 state dict, their parameter names; written as
``weights.npz`` with the same keys when torch is absent) and ``jaxscd_train.json`` (vocabulary, training mixture
and metrics; their tools ignore it). Circuit directory: ``viz_data.pt`` (``circuit_data``: location -> kept channel
indices, ``importances.beeg_model_config``, ``num_total_nodes``, ``samples``), ``means.pt`` (location -> float64
mean [width], every hook location), ``template.json`` and ``jaxscd_prune.json`` (metrics). Without torch the two
``.pt`` files are ``viz_data.npz`` (keys ``circuit_data/<location>``) and ``means.npz``. Everything loads with
``torch.load(weights_only=True)`` / ``np.load(allow_pickle=False)``: plain tensors, dicts, ints and strings only.

``jaxscd_train.json`` and ``jaxscd_prune.json`` are also the directories' manifests: ``files`` holds the sha256 of
every other file. A directory is written whole and atomically, into a new or empty directory or over one the same
command wrote (its manifest describing exactly what is there); anything else is refused untouched
(``jaxscd.outputs``).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from jaxscd import outputs


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _files_of(manifest: str, key: str):
    """The files table of a manifest ``manifest`` that holds ``key`` (None when it is not that command's)."""
    def files(data) -> dict | None:
        return outputs.files_table(data, manifest) if isinstance(data, dict) and key in data else None
    return files


MODEL_DIR = outputs.Output("--out", "a model directory of `jaxscd train`", "jaxscd_train.json",
                           _files_of("jaxscd_train.json", "vocabulary"),
                           "one `jaxscd train` writes (with the sha256 of every file)")
CIRCUIT_DIR = outputs.Output("--out", "a circuit directory of `jaxscd prune`", "jaxscd_prune.json",
                             _files_of("jaxscd_prune.json", "task"),
                             "one `jaxscd prune` writes (with the sha256 of every file)")


def _json(value) -> bytes:
    return (json.dumps(value, indent=1, sort_keys=True) + "\n").encode()


def _torch(value) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def _npz(arrays: dict) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _write(out, output: outputs.Output, files: dict, info: dict) -> Path:
    """``files`` and the manifest (``info`` plus the sha256 of every file) as the directory ``out``, atomically;
    only a directory the same command wrote is replaced (``jaxscd.outputs``)."""
    manifest = info | {"files": outputs.hashes(files)}
    return outputs.write_output_dir(out, output, files | {output.manifest: _json(manifest)})


def save_model(model_dir, config: dict, state: dict, info: dict, use_torch: bool | None = None) -> Path:
    """Write the model directory; returns the weights file."""
    use_torch = torch_available() if use_torch is None else use_torch
    arrays = {key: np.asarray(value, dtype=np.float32) for key, value in state.items()}
    if use_torch:
        import torch

        weights = {"final_model.pt": _torch({k: torch.from_numpy(a) for k, a in arrays.items()})}
    else:
        weights = {"weights.npz": _npz(arrays)}
    model_dir = _write(model_dir, MODEL_DIR, {"beeg_config.json": _json(config)} | weights, info)
    return model_dir / next(iter(weights))


def save_circuit(circuit_dir, config: dict, kept: dict, means: dict, template: dict, info: dict,
                 use_torch: bool | None = None) -> dict:
    """Write the circuit directory; returns {"viz": path, "means": path, "template": path}."""
    use_torch = torch_available() if use_torch is None else use_torch
    kept = {loc: np.asarray(idx, dtype=np.int64) for loc, idx in kept.items()}
    means = {loc: np.array(mean, dtype=np.float64) for loc, mean in means.items()}
    total = int(info.get("nodes_total", 0))
    if use_torch:
        import torch

        viz = {"circuit_data": {loc: torch.from_numpy(idx) for loc, idx in kept.items()},
               "importances": {"beeg_model_config": config}, "num_total_nodes": total, "samples": {}}
        names = {"viz": "viz_data.pt", "means": "means.pt"}
        files = {names["viz"]: _torch(viz), names["means"]: _torch({loc: torch.from_numpy(m) for loc, m in
                                                                     means.items()})}
    else:
        names = {"viz": "viz_data.npz", "means": "means.npz"}
        files = {names["viz"]: _npz({f"circuit_data/{loc}": idx for loc, idx in kept.items()}),
                 names["means"]: _npz(means)}
    # the template keeps its alphabet in the task's order (the domain's token ids, which the task's spec reads)
    template_json = (json.dumps(template, indent=1) + "\n").encode()
    circuit_dir = _write(circuit_dir, CIRCUIT_DIR, files | {"template.json": template_json}, info)
    return {key: circuit_dir / name for key, name in (names | {"template": "template.json"}).items()}
