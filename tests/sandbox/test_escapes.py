"""The escape suite: proposed code that tries to get out of the sandbox, and fails.

Each payload is a whole function that an LLM could propose (or a user could assign, or a
state file could hold). It is assigned to a trainable function and called. Whatever it
tries, nothing outside the worker changes: no file is written, no secret reaches the
output, this process keeps running, no call outlives the wall-clock limit, and harmless
proposals still run. `reference` already uses the names the static check guards (`os`,
`open`, imports...), so these payloads get past it and meet the sandbox itself.
"""

from __future__ import annotations

import io
import json
import operator
import os
import pathlib
import pickle
import random
import re
import sys
import tempfile
import time

import numpy as np
import pytest
import torch

import tracekit as tk
from tracekit import kinds
from tracekit.sandbox.client import SandboxedFunction

SECRET = "module-secret-7c1f"          # a module global the original never uses
ENV_SECRET = "env-secret-93ab"


@tk.bundle(trainable=True)
def reference(text):
    """Upper-case the text (the other branch only names what the payloads use)."""
    if text == "never":
        import ctypes
        import os
        import socket
        import subprocess
        return (open, eval, exec, compile, getattr, setattr, vars, __import__, globals, os, sys, ctypes,
                subprocess, socket, pickle, text.__class__)
    return text.upper()


@tk.bundle(trainable=True)
def parse_amount(text):
    """Return the dollar amount in the text as an int."""
    return int(text.split()[0])


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    monkeypatch.setenv("TK_TEST_SECRET", ENV_SECRET)
    for fn in (reference, parse_amount):
        fn.parameters()[0].write(fn.source)
    yield
    for fn in (reference, parse_amount):
        fn.parameters()[0].write(fn.source)


def run(fn, source, arg="5 dollars", refusable=False):
    """Assign `source` and call it in the sandbox. The payloads here must get past the
    static check (so the sandbox is what stops them) unless `refusable`."""
    param = fn.parameters()[0]
    param.write(fn.source)  # checked against the original, not the last payload
    try:
        param.data = source
    except tk.InvalidValueError as exc:
        if refusable:
            return None, str(exc)
        raise
    assert isinstance(fn.versions.function_for(param.raw), SandboxedFunction)
    started = time.perf_counter()
    out = fn(arg)
    assert time.perf_counter() - started < 10
    return out, out.data


def body(expr: str, name: str = "reference") -> str:
    return f"def {name}(text):\n    import os\n    return {expr}\n"


def marker_payloads(marker: pathlib.Path) -> dict[str, str]:
    m = str(marker)
    crafted = pickle.dumps(_Evil(m))
    return {
        "open for writing": body(f"open({m!r}, 'w').write('x')"),
        "pathlib write_text": body(f"pathlib.Path({m!r}).write_text('x')"),
        "print to a file": body(f"print('x', file=pathlib.Path({m!r}).open('w'))"),
        "os.system": body(f"os.system('touch {m}')"),
        "random._os": body(f"random._os.system('touch {m}')"),
        "pathlib.os": body(f"pathlib.os.system('touch {m}')"),
        "torch.os": body(f"torch.os.system('touch {m}')"),
        "tempfile._os": body(f"tempfile._os.system('touch {m}')"),
        "subprocess": body(f"__import__('subprocess').run(['touch', {m!r}])"),
        "os.popen": body(f"os.popen('touch {m}').read()"),
        "exec builtin": body(f"exec({('open(' + repr(m) + ', chr(119))')!r})"),
        "torch.builtins.exec": body(f"getattr(torch, 'builtins', __builtins__).exec("
                                    f"{('open(' + repr(m) + ', chr(119))')!r})"),
        "__builtins__ subscript": body(f"__builtins__['open']({m!r}, 'w')"),
        "operator.attrgetter dunder": body(
            f"operator.attrgetter('__class__.__init__.__globals__')(json.JSONDecoder)['sys']"
            f".modules['os'].system('touch {m}')"),
        "ctypes libc": body(f"__import__('ctypes').CDLL(None).system(b'touch {m}')"),
        "np.ctypeslib": body(f"np.ctypeslib.ctypes.CDLL(None).system(b'touch {m}')"),
        "pickle via torch.load": body(f"torch.load(io.BytesIO({crafted!r}), weights_only=False)"),
        "pickle via np.load": body(f"np.load(io.BytesIO({_np_pickle(m)!r}), allow_pickle=True)"),
        "pickle.loads": body(f"pickle.loads({crafted!r})"),
        "mkdir": body(f"os.mkdir({m!r})"),
        "symlink": body(f"os.symlink('/etc/passwd', {m!r})"),
        "fork then write": body(f"os.fork() or open({m!r}, 'w')"),
        "thread": body(f"__import__('threading').Thread(target=lambda: open({m!r}, 'w')).start()"),
        "torch.save": body(f"torch.save(1, {m!r})"),
        "np.save": body(f"np.save({m!r}, np.zeros(2))"),
    }


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _np_pickle(marker: str) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.array([_Evil(marker)], dtype=object), allow_pickle=True)
    return buf.getvalue()


def test_no_payload_writes_a_file(tmp_path):
    marker = tmp_path / "marker"
    for label, source in marker_payloads(marker).items():
        out, data = run(reference, source)
        assert not marker.exists(), f"{label} wrote the marker"
        assert out.is_error or data is None or isinstance(data, (int, str)), (label, data)
    assert not marker.exists()
    assert list(tmp_path.iterdir()) == []


def test_secrets_do_not_reach_the_output(tmp_path):
    secret_file = tmp_path / "credentials"
    secret_file.write_text("file-secret-55d0")
    payloads = [
        body("dict(os.environ)"),
        body("os.environ.get('TK_TEST_SECRET')"),
        body("random._os.environ.copy()"),
        body(f"open({str(secret_file)!r}).read()"),
        body(f"pathlib.Path({str(secret_file)!r}).read_text()"),
        body("open('/proc/%d/environ' % os.getppid()).read()"),
        body("open('/proc/%d/cmdline' % os.getppid()).read()"),
        body("open('/proc/%d/mem' % os.getppid(), 'rb').read(10)"),
        body("SECRET"),
        body("globals().get('SECRET')"),
        body("sys.modules[__name__].SECRET if __name__ in sys.modules else None"),
        body("[m for m in sys.modules if 'test_escapes' in m]"),
        body("open('/etc/shadow').read()"),
        body("os.listdir(os.path.expanduser('~'))"),
    ]
    for source in payloads:
        out, data = run(reference, source)
        text = json.dumps(data, default=str)
        for secret in (SECRET, ENV_SECRET, "file-secret-55d0"):
            assert secret not in text, (source, text[:300])


def test_the_parent_process_survives(tmp_path):
    payloads = [
        body("os.kill(os.getppid(), 9)"),
        body("os.killpg(0, 9)"),
        body("os.kill(-1, 9)"),
        body("(_ for _ in ()).throw(SystemExit(3))"),
        body("exec('raise KeyboardInterrupt')"),
        body("os._exit(0)"),
        body("os.kill(os.getpid(), 9)"),
        body("__import__('signal').pthread_kill(__import__('threading').main_thread().ident, 9)"),
        body("[os.fork() for _ in range(64)]"),
        body("os.execv('/bin/true', ['true'])"),
    ]
    for source in payloads:
        out, data = run(reference, source)
        assert out.is_error, (source, data)
    reference.parameters()[0].write(reference.source)
    assert reference("ok").data == "OK"  # this process is alive and runs its own code  # a new worker took over; this process is alive


def test_network_is_closed():
    for expr in ("__import__('socket').create_connection(('127.0.0.1', 9), 1)",
                 "__import__('socket').socket()",
                 "__import__('urllib.request').request.urlopen('http://127.0.0.1:9', timeout=1)"):
        out, data = run(reference, body(expr))
        assert out.is_error, (expr, data)


def test_memory_is_limited():
    for expr in ("len(bytearray(2 * 1024 ** 3))", "np.ones(2 ** 28).sum()",
                 "float(torch.ones(2 ** 29).sum())", "len('x' * (2 ** 31))"):
        out, data = run(reference, body(expr))
        assert out.is_error, (expr, data)
    out, data = run(reference, body("len(bytearray(2 * 1024 ** 3))"))
    assert "memory limit" in str(data)
    out, data = run(reference, body("len(bytearray(10 * 1024 ** 2))"))
    assert data == 10 * 1024 ** 2  # the same worker still serves a modest allocation


def test_a_loop_is_stopped_at_the_wall_clock_limit():
    @tk.bundle(trainable=True, sandbox=tk.sandbox.Limits(timeout_s=1.0))
    def spin(x):
        return x

    started = time.perf_counter()
    out, data = run(spin, "def spin(x):\n    while True:\n        pass\n", 1)
    assert out.is_error and out.data.type == "SandboxTimeout"
    assert "timed out after 1 s" in out.data.message
    assert time.perf_counter() - started < 5
    again = spin(2)  # the same version is not run again: it fails at once
    assert again.is_error and "not run again" in again.data.message
    out, data = run(spin, "def spin(x):\n    return x * 2\n", 4)  # a new worker serves it
    assert data == 8


def test_a_time_sleep_is_stopped_too():
    @tk.bundle(trainable=True, sandbox=tk.sandbox.Limits(timeout_s=1.0))
    def nap(x):
        return x

    out, _ = run(nap, "def nap(x):\n    return __import__('time').sleep(60)\n", 1) \
        if False else run(nap, "def nap(x):\n    return time.sleep(60)\n", 1)
    assert out.is_error and out.data.type == "SandboxTimeout"


def test_defaults_must_be_constants(tmp_path):
    marker = tmp_path / "marker"
    for source in (f"def parse_amount(text=open({str(marker)!r}, 'w')):\n    return 1\n",
                   "def parse_amount(text=random._os.system('true')):\n    return 1\n",
                   "def parse_amount(text=[i for i in range(10**9)]):\n    return 1\n"):
        with pytest.raises(tk.InvalidValueError, match="not a constant"):
            reference.parameters()[0].data = source.replace("parse_amount", "reference")
    parse_amount.parameters()[0].data = "def parse_amount(text='5 x'):\n    return int(text.split()[0])\n"
    assert not marker.exists()


def test_annotations_are_not_evaluated(tmp_path):
    marker = tmp_path / "marker"
    out, data = run(reference, f"def reference(text: os.system('touch {marker}')):\n"
                               f"    return 7\n")
    assert data == 7 and not marker.exists()


def test_a_monkeypatch_stays_in_the_worker():
    before = json.loads
    out, _ = run(reference, body("vars(json).update(loads=lambda *a, **k: 'patched')"))
    assert not out.is_error  # it patched the worker's own json
    assert json.loads is before and json.loads("[1]") == [1]
    out, data = run(reference, body("vars(__import__('tracekit.kinds').kinds).update(RISKY_NAMES=frozenset())"))
    assert not out.is_error  # it emptied the worker's own copy
    assert "open" in kinds.RISKY_NAMES


def test_the_public_namespace_has_no_importlib():
    assert not hasattr(tk, "importlib")
    out, data = run(parse_amount, "def parse_amount(text):\n"
                                  "    return tk.importlib.import_module('subprocess').run(['true'])\n",
                       refusable=True)
    assert out is None or out.is_error


def test_harmless_proposals_still_run():
    out, data = run(parse_amount, "def parse_amount(text):\n"
                                  "    m = re.search(r'\\d+', text)\n"
                                  "    return int(m.group()) if m else None\n", "refund 30 dollars")
    assert data == 30
    out, data = run(parse_amount, "def parse_amount(text):\n"
                                  "    words = [w for w in text.split() if w.isdigit()]\n"
                                  "    return sum(int(w) for w in words)\n", "2 and 40")
    assert data == 42
    out, data = run(reference, "def reference(text):\n    return text.lower() + '!'\n", "HEY")
    assert data == "hey!"


def test_exceptions_carry_the_failing_line():
    out, _ = run(parse_amount, "def parse_amount(text):\n    x = 1\n    return x / 0\n")
    assert out.is_error
    assert out.data.type == "ZeroDivisionError"
    assert out.data.lineno == 3 and out.data.line == "return x / 0"


def test_tensors_and_arrays_cross_without_autograd():
    out, data = run(reference, "def reference(text):\n    return text * 2\n", torch.arange(4.0))
    assert torch.equal(data, torch.arange(4.0) * 2)
    out, data = run(reference, "def reference(text):\n    return text + 1\n", np.arange(3))
    assert data.tolist() == [1, 2, 3]
    w = torch.ones(3, requires_grad=True)
    out = reference(w * 2)
    assert out.is_error and "autograd" in out.data.message and "sandbox=False" in out.data.message


def test_objects_that_cannot_cross_are_named():
    run(reference, "def reference(text):\n    return text\n")
    out = reference(object())
    assert out.is_error and "plain data" in out.data.message
    out, data = run(reference, "def reference(text):\n    return open\n", "x")
    assert out.is_error and "cannot leave the sandbox" in out.data.message


def test_a_refused_value_keeps_the_old_code():
    param = parse_amount.parameters()[0]
    param.data = "def parse_amount(text):\n    return 11\n"
    with pytest.raises(tk.InvalidValueError):
        param.data = "def parse_amount(text=os.getcwd()):\n    return 1\n"
    assert parse_amount("x").data == 11


_ = (operator, random, re, tempfile)  # used by the payloads through the function's module
