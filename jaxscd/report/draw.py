"""The report's pictures, drawn with matplotlib (no pyplot state): the circuit as a wire diagram, the truth table,
and where the circuit departs from its spec. ``svg`` gives text to inline in HTML, ``png`` bytes for --plots.

Names from circuits and bundles are drawn as plain text: mathtext is off, so a token named ``$x$`` is not parsed.
"""

from __future__ import annotations

import io
from contextlib import contextmanager

import numpy as np

STYLE = {"text.parse_math": False, "svg.fonttype": "path", "svg.hashsalt": "jaxscd", "font.size": 9,
         "axes.titlesize": 10, "figure.dpi": 100}
READ, WRITE = "#2b6cb0", "#c05621"
KIND_COLOURS = {"token": "#e2e8f0", "neuron": "#c6f6d5", "head": "#bee3f8", "readout": "#fefcbf", "code": "#e9d8fd"}


@contextmanager
def _style():
    import matplotlib

    with matplotlib.rc_context(STYLE):
        yield


def new_figure(width: float, height: float):
    from matplotlib.figure import Figure

    with _style():
        return Figure(figsize=(width, height), layout="constrained")


def svg(figure) -> str:
    """The figure as an <svg> element (no XML prolog), for inlining; SVG text (a drawing built as text) as it is."""
    if isinstance(figure, str):
        return figure
    buffer = io.StringIO()
    with _style():
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def png(figure) -> bytes:
    """The figure as PNG bytes, for --plots."""
    buffer = io.BytesIO()
    with _style():
        figure.savefig(buffer, format="png", dpi=150)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------------------------
# The circuit: residual channels as horizontal wires; embeddings, neurons, heads and the readout as columns that
# read (●) and write (▲) them, left to right in layer order.


def _components(graph: dict) -> list:
    """(column label, kind, name, channels read, channels written) in the order the circuit applies them."""
    columns = []
    for index, layer in enumerate(graph.get("layers", []), 1):
        for head in layer.get("heads", []) or []:
            reads = set(head.get("w_q", {})) | set(head.get("w_k", {})) | set(head.get("w_v", {}))
            columns.append((f"layer {index}", "head", head.get("name") or "head", reads, set(head.get("w_o", {}))))
        for neuron in (layer.get("mlp") or {}).get("neurons", []):
            columns.append((f"layer {index}", "neuron", neuron.get("name") or "neuron", set(neuron.get("in", {})),
                            set(neuron.get("out", {}))))
    return columns


def circuit_diagram(graph: dict | None, title: str):
    """A wire diagram of a circuit graph (schema 1 dict), or a single box when the circuit has no graph."""
    if graph is None:
        return _opaque_diagram(title)
    channels = list(graph["channels"])
    row = {name: len(channels) - i for i, name in enumerate(channels)}
    columns = _components(graph)
    readout = graph["readout"]
    width = 2.2 + 0.9 * (len(columns) + 2)
    figure = new_figure(max(6.0, width), 1.2 + 0.45 * len(channels))
    ax = figure.add_subplot()
    ax.set_axis_off()
    x_end = len(columns) + 2.6
    for name, y in row.items():
        ax.plot([0.6, x_end], [y, y], color="#a0aec0", lw=1, zorder=0)
        ax.text(0.55, y, name, ha="right", va="center", fontsize=8)
    tokens = " ".join(graph["vocab"])
    embedded = {c for vector in graph.get("embed", {}).values() for c in vector} | set(graph.get("pos_embed", {}))
    _column(ax, 1, "tokens\n" + (tokens if len(tokens) <= 24 else tokens[:22] + "…"), "token", set(), embedded, row)
    ax.text(1, 0.1, "embed", ha="center", fontsize=7, color="#4a5568")
    for x, (layer, kind, name, reads, writes) in enumerate(columns, 2):
        _column(ax, x, name, kind, reads, writes, row)
        ax.text(x, 0.1, layer, ha="center", fontsize=7, color="#4a5568")
    classes = " / ".join(readout.get("classes", []))
    _column(ax, len(columns) + 2, f"readout\n{classes}", "readout", set(readout.get("weights", {})), set(), row)
    ax.set_xlim(-0.9, x_end + 0.2)
    ax.set_ylim(-0.3, len(channels) + 2.1)
    ax.set_title(title, loc="left")
    return figure


def _column(ax, x, name, kind, reads, writes, row, label=True) -> None:
    touched = [row[c] for c in reads | writes if c in row]
    if not touched:
        return
    ax.plot([x, x], [min(touched), max(touched)], color="#4a5568", lw=1.2, zorder=1)
    for c in reads:
        if c in row:
            ax.plot(x, row[c], "o", color=READ, ms=6, zorder=2)
    for c in writes:
        if c in row:
            ax.plot(x, row[c], "^", color=WRITE, ms=7, zorder=2)
    if label:
        ax.text(x, max(touched) + 0.45, name, ha="center", va="bottom", fontsize=8, rotation=0,
                bbox={"boxstyle": "round,pad=0.25", "fc": KIND_COLOURS[kind], "ec": "#718096"})


def _opaque_diagram(title: str):
    figure = new_figure(6.0, 1.6)
    ax = figure.add_subplot()
    ax.set_axis_off()
    for x, text, kind in ((0.12, "tokens", "token"), (0.5, title, "code"), (0.88, "decision", "readout")):
        ax.text(x, 0.5, text, ha="center", va="center", transform=ax.transAxes,
                bbox={"boxstyle": "round,pad=0.4", "fc": KIND_COLOURS[kind], "ec": "#718096"})
    for start, end in ((0.2, 0.3), (0.7, 0.8)):
        ax.annotate("", (end, 0.5), (start, 0.5), xycoords="axes fraction", arrowprops={"arrowstyle": "->"})
    return figure


# ---------------------------------------------------------------------------------------------------------------
# The truth table.


def _grid(ax, values, counts, text, cmap, vmin, vmax, xlabels, ylabels, xlabel, ylabel):
    image = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", origin="lower",
                      interpolation="nearest")
    ax.set_xticks(range(len(xlabels)), [str(v) for v in xlabels])
    ax.set_yticks(range(len(ylabels)), [str(v) for v in ylabels])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if values.size <= 400:
        for (i, j), n in np.ndenumerate(counts):
            if n:
                red, green, blue, _ = image.cmap(image.norm(values[i, j]))
                dark = 0.3 * red + 0.59 * green + 0.11 * blue < 0.5
                ax.text(j, i, text(i, j), ha="center", va="center", fontsize=6, color="white" if dark else "black")
    return image


def _share(part: np.ndarray, whole: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(whole > 0, part / np.maximum(whole, 1), np.nan)


def truth_table_figure(summary, class_names, source: str):
    """Left: share of class-1 decisions per (length, statistic); right: per (position from the end, token)."""
    import matplotlib

    cmap = matplotlib.colormaps["coolwarm"].with_extremes(bad="#f7fafc")
    d = summary.domain
    figure = new_figure(10.0, 0.9 + 0.32 * max(len(summary.lengths), d.max_len) + 1.0)
    left, right = figure.subplots(1, 2, width_ratios=[max(3, len(summary.values)), max(3, d.n_tokens + 1)])
    rate = _share(summary.ones, summary.total)
    image = _grid(left, rate, summary.total, lambda i, j: f"{summary.ones[i, j]}/{summary.total[i, j]}", cmap, 0, 1,
                  summary.values, summary.lengths, summary.statistic.label, "length")
    left.set_title(f"decision by length and {summary.statistic.label}")
    back = _share(summary.position_ones, summary.position_total)
    _grid(right, back, summary.position_total, lambda i, j: f"{back[i, j]:.0%}", cmap, 0, 1, d.alphabet,
          ["last"] + [f"−{k}" for k in range(1, d.max_len)], "token", "position from the end")
    right.set_title("decision by the token at a position")
    colorbar = figure.colorbar(image, ax=[left, right], fraction=0.04)
    colorbar.set_label(f"share deciding {class_names[1]!s} (else {class_names[0]!s})")
    figure.suptitle(f"truth table: {source}", x=0.01, ha="left", fontsize=9, color="#4a5568")
    return figure


def departure_figure(summary, spec_label: str):
    """Inputs where the circuit departs from its spec per (length, statistic) cell: the dilution map for bracket
    depth (the intended class depends on the depth alone, the circuit's on depth / length)."""
    import matplotlib

    cmap = matplotlib.colormaps["Reds"].with_extremes(bad="#f7fafc")
    figure = new_figure(7.5, 1.4 + 0.32 * len(summary.lengths))
    ax = figure.add_subplot()
    share = _share(summary.departs, summary.total)
    image = _grid(ax, share, summary.total, lambda i, j: f"{summary.departs[i, j]}/{summary.total[i, j]}", cmap, 0, 1,
                  summary.values, summary.lengths, summary.statistic.label, "length")
    wrong, total = int(summary.departs.sum()), int(summary.total.sum())
    ax.set_title(f"where the circuit departs from {spec_label}: {wrong:,} of {total:,} inputs")
    figure.colorbar(image, ax=ax, fraction=0.04).set_label("share of inputs departing")
    return figure


def long_departure_figure(departures: dict, domain_text: str):
    """The dilution map at long contexts: share of sequences departing from the spec per (length, statistic value),
    from ``long_context.spec_departures`` (exact counts, drawn as shares)."""
    import matplotlib

    departing = [c[0] for c in departures["cells"] if c[3]]
    top = max(departing) + max(4, (max(departing) - min(departing)) // 4) if departing else None
    cells = [c for c in departures["cells"] if top is None or c[0] <= top]  # above: no departures, drawn blank
    values = sorted({c[0] for c in cells})
    lengths = sorted({c[1] for c in cells})
    share = np.full((len(values), len(lengths)), np.nan)
    row, col = {v: i for i, v in enumerate(values)}, {n: j for j, n in enumerate(lengths)}
    for value, length, total, wrong, _ in cells:
        share[row[value], col[length]] = wrong / total if total else np.nan
    figure = new_figure(8.5, 5.0)
    ax = figure.add_subplot()
    cmap = matplotlib.colormaps["Reds"].with_extremes(bad="#f7fafc")
    image = ax.imshow(share, cmap=cmap, vmin=0, vmax=1, aspect="auto", origin="lower", interpolation="nearest",
                      extent=(lengths[0] - 0.5, lengths[-1] + 0.5, values[0] - 0.5, values[-1] + 0.5))
    ax.set_xlabel("length")
    ax.set_ylabel(departures["statistic"])
    wrong = sum(c[3] for c in departures["cells"])
    total = sum(c[2] for c in departures["cells"])
    ax.set_title(f"where the circuit departs from its spec {departures['spec']}\n{wrong:.3g} of {total:.3g} inputs, "
                 f"{domain_text}", fontsize=9)
    figure.colorbar(image, ax=ax, fraction=0.04).set_label("share of sequences departing")
    return figure


def sampled_departure_figure(sampled: dict, domain_text: str):
    """Departures from the spec among uniform random sequences per length (``sampled_departures``, where no bounds
    cover the circuit): the share departing with a 95% Wilson interval per length. An estimate, not a bound."""
    cells = [c for c in sampled["cells"] if c[1]]
    lengths = np.array([c[0] for c in cells], dtype=float)
    n = np.array([c[1] for c in cells], dtype=float)
    share = np.array([c[2] for c in cells], dtype=float) / n
    z = 1.96
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    figure = new_figure(8.5, 4.0)
    ax = figure.add_subplot()
    ax.fill_between(lengths, np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1), color="#fbb4ae", alpha=0.6,
                    label="95% interval")
    ax.plot(lengths, share, marker="o", color="#c53030", label="sampled share")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("length")
    ax.set_ylabel("share departing from the spec")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(f"where the circuit departs from {sampled['spec']} (sampled: {int(n.sum()):,} uniform sequences, "
                 f"{domain_text})", fontsize=9)
    return figure
