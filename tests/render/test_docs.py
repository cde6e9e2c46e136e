"""The documentation: strict mkdocs build, runnable code blocks, pictures script."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from .test_render import png_size

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
# pages whose python blocks are run (other engineers' guides have their own tests)
RUNNABLE = (["index.md", "coming-from-trace.md", "coming-from-dspy-textgrad.md"]
            + sorted(f"concepts/{p.name}" for p in (DOCS / "concepts").glob("*.md")))


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    assert "WARNING" not in log and "ERROR" not in log, log
    api = (site / "api" / "core" / "index.html").read_text(encoding="utf-8")
    assert "tracekit.nodes.param" in api and "ParameterNode" in api  # docstrings were rendered
    for picture in ("quickstart_graph.svg", "exception_graph.svg", "run.png"):
        assert (site / "img" / picture).is_file()


def test_every_page_in_docs_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    missing = [p for p in pages if not re.search(rf":\s*{re.escape(p)}\s*$", nav, re.M)]
    assert not missing, f"pages not in the mkdocs.yml nav: {missing}"


def test_code_blocks_of_the_concept_pages_run():
    pages = [str(DOCS / p) for p in RUNNABLE]
    assert len(pages) >= 12
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("doc_blocks.py")), *pages],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]


def test_the_block_runner_reports_a_failing_block(tmp_path):
    page = tmp_path / "bad.md"
    page.write_text("```python\nx = 1\n```\n<!-- no-run -->\n```python\nraise SystemError\n```\n"
                    "```python\nassert x == 2, 'x is 1'\n```\n")
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("doc_blocks.py")), str(page)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "block 1" in proc.stderr and "x is 1" in proc.stderr and "SystemError" not in proc.stderr


def test_committed_pictures_are_valid():
    img = DOCS / "img"
    for name in ("quickstart_graph.svg", "exception_graph.svg", "capped_graph.svg"):
        text = (img / name).read_text(encoding="utf-8")
        assert text.lstrip().startswith(("<?xml", "<svg", "<!DOCTYPE"))
    assert "exception_" in (img / "exception_graph.svg").read_text(encoding="utf-8")
    for name in ("exception_graph_matplotlib.png", "run.png"):
        width, height = png_size(img / name)
        assert width > 400 and height > 300


@pytest.mark.slow
def test_make_pictures_script(tmp_path):
    proc = subprocess.run([sys.executable, str(DOCS / "make_pictures.py"), "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    made = sorted(p.name for p in tmp_path.iterdir())
    assert made == sorted(p.name for p in (DOCS / "img").iterdir()), made
    assert png_size(tmp_path / "run.png")[0] > 400
