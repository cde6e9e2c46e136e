"""tk.render: traced graphs drawn to SVG/PNG with Graphviz `dot` and with matplotlib."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch

import tracekit as tk
from tracekit.pictures import graph_picture as render_mod
from tracekit.pictures.graph_picture import MORE_NODE, graph_to_dot, render

HAS_DOT = shutil.which("dot") is not None
ENGINES = [pytest.param("dot", marks=pytest.mark.skipif(not HAS_DOT, reason="graphviz `dot` not installed")),
           "matplotlib"]
EXCEPTION_FILL = render_mod._STYLE["exception"][1]
PARAM_FILL = render_mod._STYLE["parameter"][1]


@tk.bundle()
def features(text, positive_words):
    """Count positive keywords."""
    words = text.lower().split()
    keywords = {w.strip() for w in positive_words.split(",")}
    return torch.tensor([float(sum(w in keywords for w in words)), 1.0])


@tk.bundle()
def classify(x, weights):
    return torch.sigmoid(x @ weights)


@tk.bundle()
def parse_amount(text):
    return int(text.split()[0])


def workflow_with_exception() -> tk.Node:
    words = tk.param("great, lovely", name="positive_words")
    weights = tk.param(torch.zeros(2), name="weights")
    prob = classify(features(tk.node("great food", name="review"), words), weights)
    amount = parse_amount(tk.node("twelve dollars", name="message"))  # raises -> ExceptionNode
    return amount + prob


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def svg_text(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    root = ET.fromstring(text.encode("utf-8"))  # parses as XML
    assert root.tag.endswith("svg")
    return text


def test_workflow_really_has_exception_nodes():
    out = workflow_with_exception()
    g = tk.to_networkx(out)
    types = {n: a["type"] for n, a in g.nodes(data=True)}
    assert sorted(t for t in types.values() if t == "exception") == ["exception", "exception"]
    assert types["positive_words"] == "parameter"


@pytest.mark.parametrize("engine", ENGINES)
def test_render_svg_contains_every_node_and_marks_exceptions(engine, tmp_path):
    out = workflow_with_exception()
    path = render(out, tmp_path / "graph.svg", engine=engine, title="review workflow")
    assert path == tmp_path / "graph.svg"
    text = svg_text(path)
    for name in tk.to_networkx(out).nodes:
        assert name in text, f"node {name!r} missing from the {engine} SVG"
    assert EXCEPTION_FILL in text.lower() and PARAM_FILL in text.lower()
    assert "review workflow" in text


@pytest.mark.parametrize("engine", ENGINES)
def test_render_png_is_a_readable_picture(engine, tmp_path):
    path = render(workflow_with_exception(), tmp_path / "graph.png", engine=engine)
    width, height = png_size(path)
    assert 300 < width < 10000 and 100 < height < 10000


@pytest.mark.parametrize("engine", ENGINES)
def test_render_accepts_subgraph_networkx_and_lists(engine, tmp_path):
    out = workflow_with_exception()
    render(tk.subgraph(out), tmp_path / "a.svg", engine=engine)
    render(tk.to_networkx(out), tmp_path / "b.svg", engine=engine)
    render([out], tmp_path / "c.svg", engine=engine)
    for name in "abc":
        assert "positive_words" in svg_text(tmp_path / f"{name}.svg")


def long_chain(n: int) -> tuple[tk.Node, int]:
    a = tk.param(1.0, name="alpha")
    b = tk.param(2.0, name="beta")
    x = a
    for i in range(n):
        x = x * b + tk.node(i) if i % 2 else x - a
    return x, tk.to_networkx(x).number_of_nodes()


def test_large_graphs_are_capped_with_a_more_marker():
    out, total = long_chain(100)
    assert total > 150
    g = render_mod._cap(tk.to_networkx(out), 20)
    assert g.number_of_nodes() == 20
    assert {"alpha", "beta", out.name} <= set(g.nodes)  # parameters and the output survive
    assert g.nodes[MORE_NODE]["hidden"] == total - 19
    dot = graph_to_dot(out, max_nodes=20)
    assert f"+{total - 19} more nodes" in dot
    assert dot.count("shape=") == 20


def test_small_graphs_are_not_capped():
    out, total = long_chain(3)
    g = render_mod._cap(tk.to_networkx(out), 40)
    assert MORE_NODE not in g and g.number_of_nodes() == total


@pytest.mark.parametrize("engine", ENGINES)
def test_render_large_graph(engine, tmp_path):
    out, total = long_chain(100)
    text = svg_text(render(out, tmp_path / "big.svg", engine=engine, max_nodes=24))
    assert f"+{total - 23} more nodes" in text
    assert "alpha" in text and out.name in text


def test_dot_labels_are_escaped():
    p = tk.param('say "hi" \\ bye', name="quote")
    dot = graph_to_dot(p + "!")
    assert '\\"hi\\"' in dot
    if HAS_DOT:  # dot accepts the source
        proc = subprocess.run(["dot", "-Tsvg"], input=dot.encode(), capture_output=True, timeout=60)
        assert proc.returncode == 0, proc.stderr


def test_engine_dot_without_graphviz_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(render_mod.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="graphviz"):
        render(tk.param(1.0, name="p") + 1, tmp_path / "g.svg", engine="dot")
    # "auto" falls back to matplotlib
    text = svg_text(render(tk.param(1.0, name="p") + 1, tmp_path / "g.svg"))
    assert "matplotlib" in text.lower()


def test_bad_suffix_and_engine_are_refused(tmp_path):
    out = tk.param(1.0, name="p") + 1
    with pytest.raises(ValueError, match="svg"):
        render(out, tmp_path / "g.jpg")
    with pytest.raises(ValueError, match="engine"):
        render(out, tmp_path / "g.svg", engine="plotly")


def test_importing_tracekit_and_render_does_not_import_matplotlib():
    code = ("import sys, tracekit, tracekit.pictures.graph_picture, tracekit.pictures.run_plot; "
            "tracekit.pictures.graph_picture.render; tracekit.render; tracekit.plot_run; "
            "assert 'matplotlib' not in sys.modules and 'networkx' not in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("engine", ENGINES)
def test_labels_with_dollars_quotes_and_newlines(engine, tmp_path):
    price = tk.param('costs $5 or $6, "cheap"\nsecond line', name="price_text")
    out = price + " <b>&"
    text = svg_text(render(out, tmp_path / "g.svg", engine=engine, title="a $ title"))
    assert "price_text" in text and "$5" in text
