"""docs/coming-from-trace.md is checked against this suite so that it cannot drift: the code
of every "works" / "renamed" row runs, every "different" row names a strict xfail here,
every strict xfail here is listed in the guide, and the operator list matches the module."""

from __future__ import annotations

import importlib
import inspect
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "coming-from-trace.md"
HERE = Path(__file__).parent
STATUSES = {"works", "renamed", "different", "not supported"}


def rows() -> list[dict[str, str]]:
    text = GUIDE.read_text(encoding="utf-8").split("## Every Trace name", 1)[1].split("\n## ", 1)[0]
    out = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[1] in STATUSES:
            out.append(dict(zip(("trace", "status", "tracekit", "note", "test"), cells)))
    return out


def code_of(cell: str) -> str | None:
    if cell == "—":
        return None
    match = re.fullmatch(r"`(.+)`", cell)
    assert match, f"the tracekit cell {cell!r} is not one code span"
    return match.group(1)


def sample_namespace() -> dict:
    ns: dict = {}
    exec("import copy\nimport tracekit as tk\nfrom tracekit import trace\n"
         "from tracekit.trace import *\nfrom tracekit.trace import operators as ops\n", ns)
    trace = ns["trace"]

    def llm(messages, **kwargs):
        return json.dumps({"reasoning": "guide check", "suggestion": {}})

    ns["x"] = trace.node("a b")
    ns["d"] = trace.node({"k": 1})
    ns["p"] = trace.node("v", trainable=True, name="p")

    @trace.bundle(trainable=True)
    def fun(a):
        return a

    @trace.bundle()
    def fails():
        raise ValueError("no")

    ns["fun"] = fun
    ns["out"] = fun(ns["x"])

    @trace.model
    class M:
        def __init__(self):
            self.q = trace.node(1, trainable=True)

    ns["m"] = M()
    ns["opt"] = trace.OptoPrime([ns["p"]], llm=llm)
    try:
        fails()
    except trace.ExecutionError as e:
        ns["err"] = e
    return ns


def xfail_tests() -> dict[str, bool]:
    """Test id (file::name[param]) -> whether it is a strict xfail, for every test here."""
    found: dict[str, bool] = {}
    for path in sorted(HERE.glob("test_*.py")):
        module = importlib.import_module(f"tests.compat.{path.stem}")
        for name, fn in vars(module).items():
            if not (name.startswith("test_") and inspect.isfunction(fn)):
                continue
            marks = getattr(fn, "pytestmark", [])
            strict = any(m.name == "xfail" and m.kwargs.get("strict") for m in marks)
            found[f"{path.name}::{name}"] = strict
            for m in marks:
                if m.name != "parametrize":
                    continue
                ids = m.kwargs.get("ids") or []
                for i, value in enumerate(m.args[1]):
                    if callable(ids):
                        pid = ids(value)
                    else:
                        pid = ids[i] if i < len(ids) else str(i)
                    param_marks = getattr(value, "marks", ())
                    found[f"{path.name}::{name}[{pid}]"] = strict or any(
                        pm.name == "xfail" and pm.kwargs.get("strict") for pm in param_marks)
    return found


def test_the_guide_has_every_section():
    statuses = {r["status"] for r in rows()}
    assert statuses == STATUSES
    assert len(rows()) >= 60


@pytest.mark.parametrize("row", [r for r in rows() if r["status"] in ("works", "renamed")],
                         ids=lambda r: r["trace"][:60])
def test_works_and_renamed_rows_run(row):
    code = code_of(row["tracekit"])
    assert code is not None, f"{row['trace']}: a {row['status']} row needs tracekit code"
    exec(code, sample_namespace())


def test_rows_name_existing_tests_of_the_right_kind():
    tests = xfail_tests()
    for row in rows():
        ref = row["test"]
        if ref == "—":
            assert row["status"] == "not supported", f"{row['trace']}: only unsupported names may lack a test"
            continue
        ref = ref.strip("`")
        assert ref in tests, f"{row['trace']}: no test {ref} in tests/compat"
        if row["status"] in ("works", "renamed"):
            assert not tests[ref], f"{row['trace']}: {ref} is an xfail, but the row says {row['status']}"
        if row["status"] == "different":
            assert tests[ref], f"{row['trace']}: {ref} must be a strict xfail"


def test_every_strict_xfail_is_in_the_guide():
    listed = {r["test"].strip("`") for r in rows()}
    missing = [t for t, strict in xfail_tests().items() if strict and t not in listed
               and not any(t.startswith(f"{ref}[") for ref in listed)]
    assert not missing, f"differences not in docs/coming-from-trace.md: {missing}"


def test_operator_list_matches_the_module():
    from tracekit.trace import operators

    text = GUIDE.read_text(encoding="utf-8")
    block = text.split("<!-- operators -->", 1)[1].split("<!-- /operators -->", 1)[0]
    listed = {name.strip() for name in block.replace("\n", " ").split(",") if name.strip()}
    public = {name for name, value in vars(operators).items()
              if callable(value) and not name.startswith("_") and not inspect.ismodule(value)
              and getattr(value, "__module__", operators.__name__) == operators.__name__
              or name == "ne"}
    public -= {"Any", "annotations"}
    assert listed == public
