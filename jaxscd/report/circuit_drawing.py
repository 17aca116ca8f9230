"""A pruned circuit_sparsity circuit drawn as the weight-sparse transformers paper draws its circuits (Gao et al.
2025): kept nodes in columns by layer and hook location, the non-zero weights between them as edges (blue positive,
red negative, width by magnitude), beside each node the tokens that drive it, and at the right each kept block
output's direct weight on the compared logits.

Nodes and edges are those ``jaxscd prune`` counts (``jaxscd.learn.prune.count_edges``): a node is a kept channel of a
hook location; an edge is a non-zero weight from a kept input channel to a kept output channel (``act_in -> q/k/v``,
``v -> attn.resid_delta`` through its ``y`` channel, ``mlp.act_in -> post_act -> mlp.resid_delta``), or a residual
link from a kept block-output channel to the same kept channel of every later norm output (drawn dashed, weighted by
the norm's gain).

The picture is plain SVG text built here: every name is escaped (``html.escape``), nothing is scripted or linked,
and the layout depends on the circuit alone (fixed order, no ids), so one circuit always gives the same bytes. The
checkpoint is read with the project's loaders (``torch.load(weights_only=True)`` or ``np.load(allow_pickle=False)``).
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from jaxscd.circuits.sparse_gpt.edges import Edge, circuit_edges, kept_channels as _kept

KINDS = {  # location (without its layer) -> (column label, node colour)
    "attn.act_in": ("attn in", "#bee3f8"), "attn.q": ("q", "#90cdf4"), "attn.k": ("k", "#90cdf4"),
    "attn.v": ("v", "#90cdf4"), "attn.resid_delta": ("attn out", "#fbd38d"), "mlp.act_in": ("mlp in", "#c6f6d5"),
    "mlp.post_act": ("neurons", "#9ae6b4"), "mlp.resid_delta": ("mlp out", "#fbd38d")}
POSITIVE, NEGATIVE = "#2b6cb0", "#c53030"
COLUMN_WIDTH, ROW_HEIGHT, RADIUS, TOP, LEFT = 124, 30, 7, 62, 24
SAMPLES = 2048  # domain sequences the token means are taken over (evenly spaced over the domain when it is larger)
MAX_EDGES = 3000  # strongest edges drawn when a circuit has more (the caption says how many)


def readout_edges(params: Mapping, config, kept: Mapping, target: int, alternative: int) -> list:
    """Each kept block-output channel's direct weight on ``logit[target] - logit[alternative]`` (the final norm's
    gain times the unembedding difference; the norm's scale is left out)."""
    direction = np.asarray(params["transformer.ln_f.weight"]) * (np.asarray(params["lm_head.weight"][target])
                                                                 - np.asarray(params["lm_head.weight"][alternative]))
    return [Edge((location, int(c)), ("readout", 0), float(direction[c]), "readout")
            for layer in range(config.n_layer) for location in (f"{layer}.attn.resid_delta", f"{layer}.mlp.resid_delta")
            for c in _kept(kept, location) if direction[c] != 0]


# ---------------------------------------------------------------------------------------------------------------
# The tokens that drive each node: its mean activation (under the circuit) at the positions holding each token.


def domain_prompts(template, domain, samples: int = SAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """(model token ids int64 [N, P], real positions bool [N, P]) of up to ``samples`` domain sequences as prompts
    (prefix + sequence + suffix), padded at the end (causal attention: padding never reaches a real position). A
    name standing for a token set takes its members in turn (by row and position), so every member is seen."""
    count = min(samples, domain.size)
    tokens, lengths = domain.decode(np.unique(np.linspace(0, domain.size - 1, count).round().astype(np.int64)))
    members = template.members
    width = len(template.prefix) + domain.max_len + len(template.suffix)
    pad = template.prefix[0] if template.prefix else members[0][0]
    prompts = np.full((len(tokens), width), pad, dtype=np.int64)
    real = np.zeros((len(tokens), width), dtype=bool)
    for row, (sequence, length) in enumerate(zip(tokens, lengths)):
        middle = [members[a][(row + p) % len(members[a])] for p, a in enumerate(sequence[:length].tolist())]
        ids = [*template.prefix, *middle, *template.suffix]
        prompts[row, :len(ids)], real[row, :len(ids)] = ids, True
    return prompts, real


def token_means(model, circuit, template, domain, batch_size: int = 256) -> dict:
    """(location, channel) -> [(token id, mean activation at its positions)], largest magnitude first, for every
    kept node; activations as they flow on under the circuit, over ``domain_prompts``."""
    from jaxscd.circuits.sparse_gpt import activations

    prompts, real = domain_prompts(template, domain)
    seen = np.unique(prompts[real])
    slot = np.searchsorted(seen, prompts)
    locations = {loc: _kept(circuit.kept, loc) for loc in circuit.kept if len(_kept(circuit.kept, loc))}
    sums = {loc: np.zeros((len(seen), len(channels))) for loc, channels in locations.items()}
    counts = np.zeros(len(seen))
    size = min(batch_size, len(prompts))
    for start in range(0, len(prompts), size):  # fixed-size chunks (the last padded, weight 0): one compilation
        rows = np.arange(start, start + size).clip(max=len(prompts) - 1)
        counted = real[rows] & (np.arange(start, start + size) < len(prompts))[:, None]
        _, acts = activations(model.params, model.config, prompts[rows], circuit)
        np.add.at(counts, slot[rows][counted], 1.0)
        for loc, channels in locations.items():
            np.add.at(sums[loc], slot[rows][counted], np.asarray(acts[loc])[..., channels][counted])
    means = {}
    for loc, channels in locations.items():
        table = sums[loc] / np.maximum(counts, 1)[:, None]
        for j, channel in enumerate(channels):
            order = np.argsort(-np.abs(table[:, j]), kind="stable")
            means[(loc, int(channel))] = [(int(seen[i]), float(table[i, j])) for i in order]
    return means


def token_names(template, vocabulary) -> dict:
    """model token id -> name: the template's alphabet, then the model's vocabulary when it has one."""
    names = {i: str(name) for i, name in enumerate(vocabulary or ())}
    return names | {t: str(name) for name, members in zip(template.alphabet, template.members) for t in members}


def read_vocabulary(model_dir) -> list | None:
    """The token names ``jaxscd train`` records beside a checkpoint (``jaxscd_train.json``), or None."""
    try:
        info = json.loads((Path(model_dir) / "jaxscd_train.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    vocabulary = info.get("vocabulary") if isinstance(info, dict) else None
    return vocabulary if isinstance(vocabulary, list) and all(isinstance(v, str) for v in vocabulary) else None


# ---------------------------------------------------------------------------------------------------------------
# The SVG.


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _short(name: str, width: int = 8) -> str:
    return name if len(name) <= width else name[:width - 1] + "…"


def _kind(location: str) -> tuple:
    return KINDS.get(location.partition(".")[2], (location.partition(".")[2] or location, "#e2e8f0"))


def _channel_label(location: str, channel: int, config) -> str:
    if location.partition(".")[2] in ("attn.q", "attn.k", "attn.v", "attn.y"):
        return f"h{channel // config.d_head}.{channel % config.d_head}"
    return str(channel)


def _drivers(means: list, names: dict, count: int = 2) -> str:
    return " ".join(f"{_short(names.get(t, f'#{t}'))}{'+' if m > 0 else '−'}" for t, m in means[:count]
                    if abs(m) > 1e-9)


QKV = ("attn.q", "attn.k", "attn.v")


def _columns(locations: list) -> list:
    """The kept locations (in hook order) drawn per column: q, k and v of a layer share one (all three read the
    attention input), in that order; every other location has its own."""
    columns = []
    for loc in locations:
        layer, _, name = loc.partition(".")
        previous = columns[-1][-1].partition(".") if columns else ("", "", "")
        if name in QKV and previous[2] in QKV and previous[0] == layer:
            columns[-1] = sorted([*columns[-1], loc], key=lambda x: QKV.index(x.partition(".")[2]))
        else:
            columns.append([loc])
    return columns


def _layout(columns: list, kept: Mapping) -> tuple[dict, dict, float]:
    """(node -> (x, y), group label -> (x, y) for columns of several locations, height in rows of the tallest
    column); columns centred vertically on the tallest."""
    rows = [sum(len(_kept(kept, loc)) for loc in column) + (0.7 * len(column) if len(column) > 1 else 0)
            for column in columns]
    tallest = max(rows + [1.0])
    place, labels = {}, {}
    for i, (column, height) in enumerate(zip(columns, rows)):
        x, y = LEFT + 30 + i * COLUMN_WIDTH, TOP + (tallest - height) * ROW_HEIGHT / 2
        for loc in column:
            if len(column) > 1:
                labels[loc] = (x - RADIUS - 2, y + 0.2 * ROW_HEIGHT)
                y += 0.7 * ROW_HEIGHT
            for c in _kept(kept, loc):
                place[(loc, int(c))] = (x, y)
                y += ROW_HEIGHT
    return place, labels, tallest


def circuit_svg(model, circuit, template, domain, vocabulary=None, title: str = "") -> str:
    """The drawing (an <svg> element, no XML prolog) of ``circuit`` (a NodeCircuit of ``model``) with the tokens that
    drive each node measured on ``domain`` through ``template``."""
    from jaxscd.circuits.sparse_gpt import hook_widths

    config = model.config
    columns = _columns([loc for loc in hook_widths(config) if len(_kept(circuit.kept, loc))])
    nodes = [(loc, int(c)) for column in columns for loc in column for c in _kept(circuit.kept, loc)]
    edges = circuit_edges(model.params, config, circuit.kept)
    readout = readout_edges(model.params, config, circuit.kept, template.target, template.alternative)
    drawn = sorted(edges, key=lambda e: -abs(e.weight))[:MAX_EDGES] if len(edges) > MAX_EDGES else edges
    means = token_means(model, circuit, template, domain)
    names = token_names(template, vocabulary)
    place, labels, tallest = _layout(columns, circuit.kept)
    readout_x = LEFT + 30 + len(columns) * COLUMN_WIDTH + 20
    place[("readout", 0)] = (readout_x, TOP + (tallest - 1) * ROW_HEIGHT / 2)
    width = max(readout_x + 190, 760)
    height = round(TOP + tallest * ROW_HEIGHT + 70)
    alternative, target = template.class_names
    heaviest = max([abs(e.weight) for e in drawn + readout] + [1e-12])
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="sparse-circuit" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="system-ui, sans-serif" font-size="11">',
           f"<title>{_e(title or 'pruned circuit')}: {len(nodes)} nodes, {len(edges)} edges</title>",
           f'<rect width="{width}" height="{height}" fill="#ffffff"/>']
    out += _layer_bands(columns, height)
    out += [f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="end" font-size="9" fill="#4a5568">'
            f'{_e(_kind(loc)[0])}</text>' for loc, (x, y) in labels.items()]
    for edge in drawn + readout:
        out.append(_edge(edge, place, heaviest, config))
    for loc, c in nodes:
        out.append(_node(loc, c, place[(loc, c)], means.get((loc, c), []), names, config))
    x, y = place[("readout", 0)]
    difference = f"logit[{target}] − logit[{alternative}]: class {target} when above 0"
    out.append(f'<g class="readout"><title>{_e(difference)}</title>'
               f'<rect x="{x - 9}" y="{y - 9}" width="18" height="18" fill="#fefcbf" stroke="#4a5568"/>'
               f'<text x="{x + 14}" y="{y - 2}">logit {_e(_short(target, 12))}</text>'
               f'<text x="{x + 14}" y="{y + 11}">− logit {_e(_short(alternative, 12))}</text></g>')
    out.append(_legend(len(nodes), len(edges), len(drawn), height))
    out.append("</svg>")
    return "\n".join(out)


def _layer_bands(columns: list, height: int) -> list:
    """A light band per layer behind its columns, with the layer and each column's name above."""
    out, layers = [], {}
    for i, column in enumerate(columns):
        layers.setdefault(column[0].partition(".")[0], []).append(i)
    for layer, indices in layers.items():
        x0 = LEFT + indices[0] * COLUMN_WIDTH
        x1 = LEFT + (indices[-1] + 1) * COLUMN_WIDTH - 8
        fill = "#f7fafc" if not layer.isdigit() or int(layer) % 2 == 0 else "#edf2f7"
        label = f"layer {layer}" if layer.isdigit() else layer
        out.append(f'<rect x="{x0}" y="8" width="{x1 - x0}" height="{height - 70}" rx="6" fill="{fill}"/>'
                   f'<text x="{x0 + 6}" y="24" font-weight="600">{_e(label)}</text>')
    for i, column in enumerate(columns):
        header = ", ".join(_kind(loc)[0] for loc in column)
        out.append(f'<text x="{LEFT + 30 + i * COLUMN_WIDTH}" y="44" text-anchor="middle" fill="#4a5568">'
                   f'{_e(header)}</text>')
    return out


def _node_name(node: tuple, config) -> str:
    location, channel = node
    return "readout" if location == "readout" else f"{location} {_channel_label(location, channel, config)}"


def _edge(edge: Edge, place: dict, heaviest: float, config) -> str:
    (x1, y1), (x2, y2) = place[edge.source], place[edge.target]
    x1, x2 = x1 + RADIUS, x2 - (9 if edge.kind == "readout" else RADIUS)
    middle = (x1 + x2) / 2
    colour = POSITIVE if edge.weight >= 0 else NEGATIVE
    stroke = 0.6 + 3.4 * abs(edge.weight) / heaviest
    dash = ' stroke-dasharray="5 3"' if edge.kind == "residual" else ""
    kind = "readout-edge" if edge.kind == "readout" else f"edge {edge.kind}"
    what = {"weight": "weight", "residual": "residual stream, norm gain", "readout": "direct weight on the readout"}
    label = (f"{_node_name(edge.source, config)} → {_node_name(edge.target, config)}: {what[edge.kind]} "
             f"{edge.weight:+.4g}")
    return (f'<path class="{kind}" d="M{x1:.1f} {y1:.1f} C{middle:.1f} {y1:.1f} {middle:.1f} {y2:.1f} {x2:.1f} '
            f'{y2:.1f}" fill="none" stroke="{colour}" stroke-width="{stroke:.2f}" stroke-opacity="0.7"{dash}>'
            f"<title>{_e(label)}</title></path>")


def _node(location: str, channel: int, at: tuple, means: list, names: dict, config) -> str:
    x, y = at
    table = ", ".join(f"{names.get(t, f'#{t}')} {m:+.3g}" for t, m in means[:8])
    tip = f"{_node_name((location, channel), config)} (channel {channel}); mean activation by current token: {table}"
    drivers = _drivers(means, names)
    halo = 'paint-order="stroke" stroke="#ffffff" stroke-width="3" stroke-opacity="0.85"'  # legible over edges
    return (f'<g class="node" data-location="{_e(location)}" data-channel="{channel}"><title>{_e(tip)}</title>'
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{RADIUS}" fill="{_kind(location)[1]}" stroke="#4a5568"/>'
            f'<text x="{x + RADIUS + 3:.1f}" y="{y - 1:.1f}" font-size="10" {halo}>'
            f'{_e(_channel_label(location, channel, config))}</text>'
            f'<text x="{x + RADIUS + 3:.1f}" y="{y + 10:.1f}" font-size="9" fill="#2d3748" {halo}>{_e(drivers)}'
            f'</text></g>')


def _legend(nodes: int, edges: int, drawn: int, height: int) -> str:
    shown = f"{edges} edges" if drawn == edges else f"the {drawn} strongest of {edges} edges"
    lines = [f"{nodes} nodes, {shown}: blue positive, red negative, width ∝ |weight|; dashed: the residual stream "
             f"(a block output's channel read again by a later norm, weighted by its gain)",
             "beside each node: its channel (hH.D: head H, dimension D) and the tokens at whose positions its mean "
             "activation is largest (its sign after the name)",
             "right: each kept block output's direct weight on the compared logits; hover a node or an edge for its "
             "numbers"]
    return "".join(f'<text class="legend" x="{LEFT}" y="{height - 46 + 15 * i}" fill="#4a5568">{_e(line)}</text>'
                   for i, line in enumerate(lines))


# ---------------------------------------------------------------------------------------------------------------
# From a circuit source.


def checkpoint_svg(ref: Mapping, fingerprint: str, domain) -> str | None:
    """The drawing of the checkpoint circuit a circuit source describes (``circuit.source`` of a certificate) when
    it names a circuit (``viz`` and ``means``) whose files still make the circuit ``fingerprint``; None for any other
    source, for a whole model, and for a domain beyond enumeration (no sample to measure the tokens on)."""
    from jaxscd.circuits.sparse_gpt import load_circuit, load_model, load_template, sparse_gpt_circuit

    if ref.get("kind") != "circuit_sparsity" or not ref.get("viz") or not domain.exhaustive:
        return None
    model = load_model(ref["model_dir"])
    circuit = load_circuit(model.config, ref["viz"], ref["means"])
    template = load_template(ref["template"])
    if sparse_gpt_circuit(model, circuit, template, max_len=1).fingerprint != fingerprint:
        return None
    return circuit_svg(model, circuit, template, domain, read_vocabulary(ref["model_dir"]),
                       f"circuit_sparsity:{Path(ref['model_dir']).name}")
