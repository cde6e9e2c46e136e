"""Pictures of traced graphs: `render` (tk.render) and `graph_to_dot`.

`render` draws the graph linking parameters to outputs: parameters are green boxes,
traced calls blue ellipses, constants and inputs grey, exception nodes red octagons,
outputs have a double border, and nodes not on a parameter-to-output path are faded.
It uses Graphviz's `dot` program when it is on the PATH (Debian package `graphviz`;
the Python `graphviz` package is not needed) and a matplotlib + networkx drawing
otherwise. The file format follows the path's suffix: `.svg` or `.png` (`dot` also
writes `.pdf`, and matplotlib `.pdf` too).

Pictures of training runs are in `tracekit.pictures.run_plot`. matplotlib and networkx
are imported only when a picture is drawn.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["render", "graph_to_dot", "mpl_escape", "MORE_NODE"]

MORE_NODE = "__more__"  # key of the "+N more" marker vertex in a capped graph

# type -> (dot shape, fill colour, border colour)
_STYLE: dict[str, tuple[str, str, str]] = {
    "parameter": ("box", "#d9f2d9", "#2e7d32"),
    "call": ("ellipse", "#dce8fb", "#1f4e9e"),
    "constant": ("note", "#f2f2f2", "#7a7a7a"),
    "exception": ("octagon", "#ffd9d6", "#c62828"),
    "more": ("box", "#ffffff", "#9e9e9e"),
}
_FADED = ("#fafafa", "#bdbdbd")
_LEGEND = [("parameter", "parameter"), ("call", "traced call"), ("constant", "constant / input"),
           ("exception", "exception")]


# --------------------------------------------------------------------------------------
# graph preparation
# --------------------------------------------------------------------------------------
def _as_nx(graph_or_output: Any) -> Any:
    """A networkx DiGraph from a node, a list of nodes, a Subgraph or a DiGraph."""
    import networkx as nx

    if isinstance(graph_or_output, nx.DiGraph):
        return graph_or_output
    from tracekit.graph import to_networkx

    return to_networkx(graph_or_output)


def _cap(g: Any, max_nodes: int) -> Any:
    """Keep at most `max_nodes` vertices and collapse the rest into one "+N more" marker.

    Outputs, exceptions and parameters are kept first; the remaining room goes to the
    vertices nearest the parameters (the start of the topological order) and nearest the
    outputs (its end), alternately, so a long chain shows its head, "+N more", its tail.
    """
    if max_nodes <= 0 or g.number_of_nodes() <= max_nodes:
        return g
    order = list(g)  # tk.to_networkx adds vertices in topological order
    rank = {n: i for i, n in enumerate(order)}
    budget = max(1, max_nodes - 1)  # one place for the marker
    attrs = g.nodes
    seeds = ([n for n in order if attrs[n].get("is_output")]
             + [n for n in order if attrs[n].get("type") == "exception"]
             + [n for n in order if attrs[n].get("type") == "parameter"])
    keep: dict[Any, None] = {}
    for n in seeds:
        if len(keep) >= budget:
            break
        keep.setdefault(n, None)
    head, tail = 0, len(order) - 1
    take_head = True
    while len(keep) < budget and head <= tail:
        if take_head:
            keep.setdefault(order[head], None)
            head += 1
        else:
            keep.setdefault(order[tail], None)
            tail -= 1
        take_head = not take_head
    hidden = [n for n in order if n not in keep]
    if not hidden:
        return g
    h = g.subgraph(keep).copy()
    for n in h:
        h.nodes[n]["rank"] = rank[n]
    h.add_node(MORE_NODE, type="more", value="", on_path=True, is_output=False,
               hidden=len(hidden), rank=rank[hidden[0]] - 0.5)
    hidden_set = set(hidden)
    for u, v in g.edges():
        if u in hidden_set and v in keep:
            h.add_edge(MORE_NODE, v, args=[])
        elif u in keep and v in hidden_set:
            h.add_edge(u, MORE_NODE, args=[])
    return h


def _ranks(g: Any) -> dict[Any, float]:
    """Position of each vertex in the original topological order."""
    return {n: a.get("rank", i) for i, (n, a) in enumerate(g.nodes(data=True))}


def _clip(text: str, limit: int) -> str:
    text = str(text).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _label_lines(key: Any, a: Mapping[str, Any], value_chars: int) -> list[str]:
    kind = a.get("type", "constant")
    if kind == "more":
        return [f"+{a.get('hidden', 0)} more nodes"]
    lines = [_clip(str(key), 32)]
    if kind == "parameter":
        lines[0] += f"  [{a.get('kind', '?')}]"
    elif kind in ("call", "exception") and a.get("op") and a.get("op") != str(key).rstrip("0123456789_"):
        lines.append(_clip(f"op: {a['op']}", 32))
    value = a.get("value", "")
    if value_chars and value != "":
        lines.append(_clip(str(value), value_chars))
    return lines


def _layers(g: Any) -> dict[Any, int]:
    """Longest-path depth of each vertex (sources at 0), counting only the edges that go
    forward in topological order (edges through a "+N more" marker may not)."""
    rank = _ranks(g)
    depth: dict[Any, int] = {}
    for n in sorted(g, key=rank.__getitem__):
        depth[n] = max((depth[p] + 1 for p in g.predecessors(n) if rank[p] < rank[n]), default=0)
    return depth


# --------------------------------------------------------------------------------------
# Graphviz backend
# --------------------------------------------------------------------------------------
def _dot_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def graph_to_dot(graph_or_output: Any, max_nodes: int = 40, value_chars: int = 40,
                 title: str | None = None, rankdir: str = "LR") -> str:
    """The Graphviz DOT source of a traced graph (as drawn by `render`)."""
    g = _cap(_as_nx(graph_or_output), max_nodes)
    ids = {n: f"n{i}" for i, n in enumerate(g)}
    out = ["digraph tracekit {",
           f"  rankdir={rankdir}; bgcolor=white; nodesep=0.3; ranksep=0.45;",
           '  node [fontname="Helvetica", fontsize=11, style="filled", penwidth=1.4];',
           '  edge [fontname="Helvetica", fontsize=9, color="#555555", fontcolor="#555555", arrowsize=0.7];']
    if title:
        out.append(f"  labelloc=t; fontname=\"Helvetica\"; fontsize=14; label={_dot_str(title)};")
    for n, a in g.nodes(data=True):
        kind = a.get("type", "constant")
        shape, fill, border = _STYLE.get(kind, _STYLE["constant"])
        if not a.get("on_path", True) and kind not in ("exception", "more"):
            fill, border = _FADED
        label = "\\n".join(_dot_str(line)[1:-1] for line in _label_lines(n, a, value_chars))
        extra = ""
        if a.get("is_output"):
            extra += ", peripheries=2"
        if kind == "more":
            extra += ', style="dashed"'
        tooltip = a.get("code") or a.get("value", "")
        out.append(f'  {ids[n]} [label="{label}", shape={shape}, fillcolor="{fill}", '
                   f'color="{border}"{extra}, tooltip={_dot_str(_clip(str(tooltip), 200))}];')
    rank = _ranks(g)
    for u, v, a in g.edges(data=True):
        opts = []
        args = ", ".join(a.get("args") or [])
        if args:
            opts.append(f"label={_dot_str(_clip(args, 24))}")
        if rank[u] > rank[v]:  # an edge through the "+N more" marker that points back
            opts.append("constraint=false")
        lab = f" [{', '.join(opts)}]" if opts else ""
        out.append(f"  {ids[u]} -> {ids[v]}{lab};")
    out.append("}")
    return "\n".join(out) + "\n"


def _render_dot(dot_source: str, path: Path, fmt: str, dpi: int, dot: str) -> None:
    args = [dot, f"-T{fmt}", "-o", str(path)]
    if fmt == "png":
        args.insert(1, f"-Gdpi={dpi}")
    proc = subprocess.run(args, input=dot_source.encode(), capture_output=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"dot failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[:500]}")


# --------------------------------------------------------------------------------------
# matplotlib backend
# --------------------------------------------------------------------------------------
_BOXSTYLE = {"parameter": "square,pad=0.45", "call": "round4,pad=0.45", "constant": "square,pad=0.4",
             "exception": "sawtooth,pad=0.6", "more": "round,pad=0.4"}


def mpl_escape(text: str) -> str:
    """Keep `$` literal (matplotlib would read `$...$` as math)."""
    return text.replace("$", r"\$")


def _render_matplotlib(g: Any, path: Path, fmt: str, dpi: int, value_chars: int,
                       title: str | None) -> None:
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    depth = _layers(g)
    columns: dict[int, list[Any]] = {}
    for n in g:  # keep graph order (topological for traced graphs) inside each column
        columns.setdefault(depth[n], []).append(n)
    # order each column by the mean row of its parents (fewer crossings)
    row: dict[Any, float] = {}
    for d in sorted(columns):
        col = columns[d]
        if d > 0:
            col.sort(key=lambda n: (sum(row.get(p, 0.0) for p in g.predecessors(n)) / max(1, g.in_degree(n))))
        for i, n in enumerate(col):
            row[n] = i - (len(col) - 1) / 2
    labels = {n: mpl_escape("\n".join(_label_lines(n, a, value_chars))) for n, a in g.nodes(data=True)}
    widest = max((max(len(s) for s in lab.split("\n")) for lab in labels.values()), default=10)
    col_w = max(1.6, 0.066 * widest + 0.75)  # inches per column (text ~0.066 in per char)
    row_h = 0.85  # inches per row
    n_cols = max(columns) + 1 if columns else 1
    n_rows = max((len(c) for c in columns.values()), default=1)
    top = 0.55 if title else 0.15
    bottom = 0.45  # legend
    fig_w = min(60.0, max(5.0, n_cols * col_w))
    fig_h = min(60.0, n_rows * row_h + top + bottom)
    x0 = (fig_w - n_cols * col_w) / 2
    mid = bottom + (fig_h - top - bottom) / 2
    # data coordinates are inches: x to the right, y up
    pos = {n: (x0 + depth[n] * col_w + col_w / 2, mid - row[n] * row_h) for n in g}

    with matplotlib.rc_context({"svg.fonttype": "none", "font.family": "DejaVu Sans"}):
        fig = Figure(figsize=(fig_w, fig_h))
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_axis_off()
        ax.set_xlim(0, fig_w)
        ax.set_ylim(0, fig_h)
        texts = {}
        for n, a in g.nodes(data=True):
            kind = a.get("type", "constant")
            _, fill, border = _STYLE.get(kind, _STYLE["constant"])
            faded = not a.get("on_path", True) and kind not in ("exception", "more")
            if faded:
                fill, border = _FADED
            texts[n] = ax.text(
                pos[n][0], pos[n][1], labels[n], ha="center", va="center", fontsize=8, zorder=3,
                color="#8a8a8a" if faded else "#212121",
                bbox={"boxstyle": _BOXSTYLE.get(kind, "square,pad=0.4"), "facecolor": fill,
                      "edgecolor": border, "linewidth": 2.6 if a.get("is_output") else 1.2,
                      "linestyle": "--" if kind == "more" else "-"})
        # measure the boxes, then draw edges from the right side of one to the left of the next
        fig.draw_without_rendering()
        to_data = ax.transData.inverted()
        extent = {}
        for n, t in texts.items():
            box = t.get_bbox_patch()  # every label here was drawn with a bbox
            (x_lo, y_lo), (x_hi, y_hi) = to_data.transform(box.get_window_extent())  # type: ignore[union-attr]
            extent[n] = (x_lo, x_hi)
        for u, v, a in g.edges(data=True):
            start = (extent[u][1], pos[u][1])
            end = (extent[v][0], pos[v][1])
            if end[0] <= start[0]:  # same column (should not happen): go centre to centre
                start, end = pos[u], pos[v]
            ax.annotate("", xy=end, xytext=start, zorder=2,
                        arrowprops={"arrowstyle": "-|>,head_length=0.5,head_width=0.25",
                                    "color": "#616161", "lw": 1.0, "shrinkA": 1, "shrinkB": 1})
            args = ", ".join(a.get("args") or [])
            if args:
                mx = start[0] + 0.5 * (end[0] - start[0])
                my = start[1] + 0.5 * (end[1] - start[1])
                ax.text(mx, my, mpl_escape(_clip(args, 20)), fontsize=6.5, color="#424242", ha="center",
                        va="center", zorder=4,
                        bbox={"boxstyle": "round,pad=0.12", "facecolor": "white", "edgecolor": "none",
                              "alpha": 0.9})
        handles = []
        for kind, text in _LEGEND:
            _, fill, border = _STYLE[kind]
            handles.append(Patch(facecolor=fill, edgecolor=border, label=text))
        handles.append(Patch(facecolor="white", edgecolor="#212121", linewidth=2.6, label="output"))
        ax.legend(handles=handles, loc="lower center", fontsize=7, frameon=False, ncol=5,
                  bbox_to_anchor=(0.5, 0.0), handlelength=1.4, columnspacing=1.2)
        if title:
            ax.text(fig_w / 2, fig_h - 0.12, mpl_escape(title), ha="center", va="top", fontsize=11)
        fig.savefig(path, format=fmt, dpi=dpi, facecolor="white")


# --------------------------------------------------------------------------------------
# public: render
# --------------------------------------------------------------------------------------
def render(graph_or_output: Any, path: str | os.PathLike, *, engine: str = "auto",
           max_nodes: int = 40, value_chars: int = 40, title: str | None = None,
           dpi: int = 150, rankdir: str = "LR") -> Path:
    """Draw a traced graph to `path` (`.svg` or `.png`, also `.pdf`) and return the path.

    `graph_or_output`: an output node, a list of outputs, a `tk.Subgraph`, or a networkx
    DiGraph made by `tk.to_networkx`. `engine`: "auto" (Graphviz `dot` when installed,
    else matplotlib), "dot" or "matplotlib". Graphs with more than `max_nodes` vertices
    keep the outputs, parameters, exceptions and their nearest neighbours, and show the
    rest as one "+N more nodes" box. `value_chars` caps the value preview in each box
    (0 hides values).
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("svg", "png", "pdf"):
        raise ValueError(f"render writes .svg, .png or .pdf files, got {path.name!r}")
    if engine not in ("auto", "dot", "matplotlib"):
        raise ValueError(f"engine must be 'auto', 'dot' or 'matplotlib', got {engine!r}")
    dot = shutil.which("dot")
    if engine == "dot" and dot is None:
        raise RuntimeError("engine='dot' needs Graphviz's `dot` program on the PATH "
                           "(Debian/Ubuntu: apt-get install graphviz); or use engine='matplotlib'")
    path.parent.mkdir(parents=True, exist_ok=True)
    g = _cap(_as_nx(graph_or_output), max_nodes)
    if g.number_of_nodes() == 0:
        raise ValueError("the graph is empty: nothing to draw")
    if dot is not None and engine in ("auto", "dot"):
        _render_dot(graph_to_dot(g, max_nodes=0, value_chars=value_chars, title=title,
                                 rankdir=rankdir), path, fmt, dpi, dot)
    else:
        _render_matplotlib(g, path, fmt, dpi, value_chars, title)
    return path
