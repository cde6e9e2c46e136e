"""Where code runs: the user's own code in this process, anything else in the sandbox,
and nothing at all where no sandbox can be set up (unless the user opts out by name)."""

from __future__ import annotations

import asyncio
import re
import warnings

import pytest

import tracekit as tk
from tracekit import codeparam
from tracekit.errors import UnsafeCodeWarning
from tracekit.sandbox import client, isolation, namespace
from tracekit.sandbox.client import SandboxedFunction

API_KEY = "sk-never-crosses"
PATTERN = r"\d+"


def _digits(text):
    return re.findall(PATTERN, text)


@tk.bundle(trainable=True)
def first_number(text):
    """The first number in the text."""
    return int(_digits(text)[0])


def test_the_users_own_code_runs_in_process():
    assert first_number.versions.function_for(first_number.source) is first_number.fn
    assert first_number("a 12 b").data == 12


def test_proposals_run_in_the_sandbox_and_see_only_what_the_original_uses():
    param = first_number.parameters()[0]
    param.data = ("def first_number(text):\n"
                  "    return [int(d) for d in _digits(text)][-1] + len(PATTERN)\n")
    fn = first_number.versions.function_for(param.raw)
    assert isinstance(fn, SandboxedFunction)
    assert first_number("1 and 20").data == 20 + len(PATTERN)  # helper and constant crossed
    param.data = "def first_number(text):\n    return API_KEY\n"
    out = first_number("x")
    assert out.is_error and "API_KEY" in out.data.message  # not defined in the sandbox
    param.write(first_number.source)


def test_the_plan_copies_modules_and_used_globals_only():
    plan = namespace.plan(first_number.fn)
    assert plan.modules["re"] == "re" and plan.modules["tk"] == "tracekit"
    assert "_digits" in plan.helpers and plan.values["PATTERN"] == PATTERN  # the helper uses it
    assert "API_KEY" not in plan.values and "API_KEY" not in plan.helpers


def test_no_sandbox_means_proposals_are_refused(monkeypatch):
    monkeypatch.setattr(isolation, "unavailable", lambda: "this kernel has no Landlock (test)")
    client.shutdown()

    @tk.bundle(trainable=True)
    def double(x):
        return x * 2

    with pytest.raises(tk.InvalidValueError, match=r"no Landlock.*sandbox=False"):
        double.parameters()[0].data = "def double(x):\n    return x * 3\n"
    assert double.parameters()[0].data == double.source  # nothing was lost
    assert double(4).data == 8  # the user's own code still runs


def test_the_named_opt_out_runs_in_process_and_warns_once(monkeypatch):
    monkeypatch.setattr(codeparam, "_warned_unsafe", False)

    @tk.bundle(trainable=True, sandbox=False)
    def triple(x):
        return x * 3

    with pytest.warns(UnsafeCodeWarning, match="without a sandbox"):
        triple.parameters()[0].data = "def triple(x):\n    return x * 30\n"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        triple.parameters()[0].data = "def triple(x):\n    return x * 300\n"
    fn = triple.versions.function_for(triple.parameters()[0].raw)
    assert not isinstance(fn, SandboxedFunction) and triple(1).data == 300


def test_the_opt_out_still_catches_system_exit(monkeypatch):
    monkeypatch.setattr(codeparam, "_warned_unsafe", True)

    @tk.bundle(trainable=True, sandbox=False)
    def quit_(x):
        return x

    quit_.parameters()[0].data = "def quit_(x):\n    raise SystemExit(2)\n"
    out = quit_(1)
    assert out.is_error and out.data.type == "SystemExit"
    with tk.no_trace(), pytest.raises(RuntimeError, match="SystemExit"):
        quit_(1)


def test_a_method_sees_a_plain_data_copy_of_self():
    class Agent(tk.Module):
        def __init__(self):
            self.scale = 3
            self.lookup = {"a": 1}
            self.handle = object()  # not plain data: stays out

        @tk.bundle(trainable=True)
        def act(self, x):
            return x

    agent = Agent()
    agent.act.code_param.data = "def act(self, x):\n    return x * self.scale + self.lookup['a']\n"
    assert agent.act(2).data == 7
    agent.act.code_param.data = "def act(self, x):\n    return self.handle\n"
    out = agent.act(2)
    assert out.is_error and "did not cross into the sandbox" in out.data.message


def test_async_proposals_run_too():
    @tk.bundle(trainable=True)
    async def fetch(x):
        return x

    fetch.parameters()[0].data = "async def fetch(x):\n    return x + 1\n"
    out = asyncio.run(fetch(1))
    assert out.data == 2


def test_loaded_state_is_sandboxed(tmp_path):
    class Tool(tk.Module):
        @tk.bundle(trainable=True)
        def run(self, x):
            return x

    tool = Tool()
    tool.run.code_param.data = "def run(self, x):\n    return -x\n"
    tool.save(tmp_path / "tool")
    fresh = Tool()
    fresh.load(tmp_path / "tool")
    fn = Tool.run.versions.function_for(fresh.run.code_param.raw)
    assert isinstance(fn, SandboxedFunction) and fresh.run(5).data == -5


def test_trace_programs_keep_working():
    from tracekit.trace import bundle

    @bundle(trainable=True)
    def add(a, b):
        return a + b

    assert add(1, 2).data == 3
    add.parameter.data = "def add(a, b):\n    return a + b + 1\n"
    assert add(1, 2).data == 4


def test_bad_sandbox_options_are_named():
    with pytest.raises(TypeError, match="sandbox must be"):
        tk.bundle(trainable=True, sandbox="yes")
    with pytest.raises(ValueError, match="timeout_s must be a positive number"):
        tk.sandbox.Limits(timeout_s=0)
    with pytest.raises(ValueError, match="memory_mb must be at least"):
        tk.sandbox.Limits(memory_mb=1)
    with pytest.raises(TypeError):
        tk.sandbox.configure(no_such_limit=1)


def test_configure_changes_the_defaults():
    before = tk.sandbox.defaults()
    try:
        assert tk.sandbox.configure(timeout_s=2.5).timeout_s == 2.5
        assert tk.sandbox.defaults().memory_mb == before.memory_mb
    finally:
        tk.sandbox.configure(timeout_s=before.timeout_s)


def test_status_says_the_sandbox_works_here():
    assert tk.sandbox.status() is None  # CI runs on Linux with Landlock and seccomp
