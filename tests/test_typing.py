"""The public API is typed for a user's type checker: every `tk.*` name has its real type
(not `Any`, although `import tracekit` loads names lazily), wrong arguments are errors, and
the packages ship `py.typed`.

The mypy test runs one mypy process over a small user script, with the project's config
and the repo's `.mypy_cache` (warm after `make test`'s own mypy run; about a minute cold:
mypy reads torch's and numpy's stubs).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tracekit

ROOT = Path(__file__).resolve().parents[1]

USER_SCRIPT = textwrap.dedent('''\
    import torch

    import tracekit as tk


    class Agent(tk.Module):
        def __init__(self) -> None:
            self.instruction = tk.param("Answer in one word.", name="instruction")
            self.w = tk.param(torch.zeros(2), name="w")

        @tk.bundle()
        def answer(self, question: str) -> str:
            return question


    agent = Agent()
    opt = tk.Optimizer(agent.parameters(), llm=None, numeric="adam", lr=1e-2)
    reveal_type(tk.Optimizer)  # R:optimizer
    reveal_type(tk.param(1.0))  # R:param
    reveal_type(tk.Trainer)  # R:trainer
    reveal_type(tk.argmin)  # R:argmin
    reveal_type(tk.minimize)  # R:minimize
    reveal_type(tk.node(2.0) + 1)  # R:node_add
    reveal_type(agent.answer)  # R:bound_bundle
    reveal_type(opt.step())  # R:step
    reveal_type(tk.llm.default())  # R:llm

    tk.minimize(lambda x: (x**2).sum(), torch.zeros(2), method=3)  # E:arg-type
    tk.param(1.0, name="t", bounds=0.5)  # E:arg-type
    tk.param("x", nam="typo")  # E:call-arg
    tk.Optimzer  # E:attr-defined
''')

EXPECTED_TYPES = {
    "optimizer": r"-> tracekit\.optimizer\.Optimizer\"$",
    "param": r"\"tracekit\.[a-z_.]*ParameterNode\"$",
    "trainer": r"-> tracekit\.training\.[a-z_.]*Trainer\"$",
    "argmin": r"^\"def \(objective: .*-> tracekit\.[a-z_.]*Node\"$",
    "minimize": r"^\"def \(f: .*-> solvers\.constrained\.result\.OptimizeResult\"$",
    "node_add": r"^\"tracekit\.[a-z_.]*Node\"$",
    "bound_bundle": r"^\"tracekit\.bundled\.BoundBundle\"$",
    "step": r"^\"tracekit\.report\.StepReport\"$",
    "llm": r"^\"tracekit\.llm\.backend\.Backend\"$",
}


def test_public_names_have_their_real_types_for_mypy(tmp_path: Path) -> None:
    script = tmp_path / "user_script.py"
    script.write_text(USER_SCRIPT, encoding="utf-8")
    lines = USER_SCRIPT.splitlines()
    reveals = {i + 1: m.group(1) for i, line in enumerate(lines) if (m := re.search(r"# R:(\w+)", line))}
    errors = {i + 1: m.group(1) for i, line in enumerate(lines) if (m := re.search(r"# E:([\w-]+)", line))}
    # the project's config (pyproject.toml, found from the repo root) and its cache
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(ROOT / ".mypy_cache"),
         "--show-error-codes", "--no-error-summary", "--no-pretty", str(script)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    output = proc.stdout + proc.stderr
    assert "No module named mypy" not in output, "mypy is missing: pip install -e '.[dev]'"
    ours = {}  # line -> (severity, message) for the user script only
    for entry in output.splitlines():
        # by file name: mypy replays a cached module's messages with the path it had when cached
        m = re.match(rf"^(?:.*/)?{re.escape(script.name)}:(\d+): (error|note): (.*)$", entry)
        if m:
            ours.setdefault(int(m.group(1)), []).append((m.group(2), m.group(3)))
    assert ours, f"mypy reported nothing for the script:\n{output[-3000:]}"

    for line, key in reveals.items():
        notes = [msg for sev, msg in ours.get(line, []) if sev == "note" and msg.startswith("Revealed type is ")]
        assert notes, f"no reveal_type on line {line} ({key}):\n{output[-3000:]}"
        revealed = notes[0].removeprefix("Revealed type is ")
        assert revealed != '"Any"', f"{key}: typed as Any"
        assert re.search(EXPECTED_TYPES[key], revealed), f"{key}: {revealed}"

    for line, code in errors.items():
        found = [msg for sev, msg in ours.get(line, []) if sev == "error"]
        assert any(msg.endswith(f"[{code}]") for msg in found), \
            f"line {line}: expected a [{code}] error, got {found}\n({lines[line - 1].strip()})"

    unexpected = {line: msgs for line, msgs in ours.items()
                  if line not in errors and any(sev == "error" for sev, _ in msgs)}
    assert not unexpected, f"errors in correct code: {unexpected}"


def _lazy_table() -> dict[str, tuple[str, str | None]]:
    return dict(tracekit._LAZY)


def _type_checking_imports() -> dict[str, tuple[str, str | None]]:
    """name -> (module, attribute) of the imports under `if TYPE_CHECKING:` in tracekit/__init__.py"""
    tree = ast.parse((ROOT / "tracekit" / "__init__.py").read_text(encoding="utf-8"))
    block = next(node for node in tree.body if isinstance(node, ast.If)
                 and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
    found: dict[str, tuple[str, str | None]] = {}
    for stmt in block.body:
        assert isinstance(stmt, ast.ImportFrom) and stmt.module, ast.dump(stmt)
        for alias in stmt.names:
            name = alias.asname or alias.name
            assert alias.asname == alias.name, f"{name}: re-export as `import x as x`"
            if stmt.module == "tracekit":  # a subpackage: `from tracekit import llm as llm`
                found[name] = (f"tracekit.{alias.name}", None)
            else:
                found[name] = (stmt.module, alias.name)
    return found


def test_type_checking_imports_match_the_lazy_table() -> None:
    # every tk.* name loaded lazily at run time is imported for type checkers, from the same place
    assert _type_checking_imports() == _lazy_table()


def test_every_lazy_name_resolves_at_run_time() -> None:
    for name in _lazy_table():
        assert getattr(tracekit, name) is not None, name


@pytest.mark.parametrize("package", ["tracekit", "solvers"])
def test_packages_ship_py_typed(package: str) -> None:
    assert (ROOT / package / "py.typed").is_file()
    config = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    section = config.split("[tool.setuptools.package-data]", 1)[1].split("\n[", 1)[0]
    assert re.search(rf'^{package} = \[.*"py\.typed".*\]$', section, re.M), section
