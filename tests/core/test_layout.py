"""The public API's shape: functions are functions, and none shares a submodule's name."""

import importlib
import inspect
import pkgutil
import subprocess
import sys

import tracekit as tk


def _submodule_names(package) -> set[str]:
    return {m.name for m in pkgutil.iter_modules(package.__path__)}


def test_no_public_function_shares_its_name_with_a_submodule():
    clashes = sorted(set(tk.__all__) & _submodule_names(tk))
    # subpackages exported as themselves (tk.llm, tk.training) are modules, not functions
    assert all(inspect.ismodule(getattr(tk, name)) for name in clashes), clashes


def test_solver_packages_have_no_function_named_like_a_submodule():
    import solvers

    for info in pkgutil.walk_packages(solvers.__path__, "solvers."):
        if not info.ispkg:
            continue
        package = importlib.import_module(info.name)
        for name in _submodule_names(package):
            value = package.__dict__.get(name)
            assert value is None or inspect.ismodule(value), f"{info.name}.{name} is {value!r}"


def test_help_and_signature_show_the_functions():
    for fn in (tk.bundle, tk.minimize, tk.bilevel, tk.render, tk.plot_run, tk.param, tk.node):
        assert inspect.isfunction(fn), fn
        assert "(" in str(inspect.signature(fn))
    assert "trainable" in inspect.signature(tk.bundle).parameters


def test_public_functions_are_functions_whatever_the_import_order():
    code = ("import importlib, pkgutil, inspect, tracekit as tk\n"
            "for m in pkgutil.walk_packages(tk.__path__, 'tracekit.'):\n"
            "    if not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
            "for name in tk.__all__:\n"
            "    v = getattr(tk, name)\n"
            "    assert not inspect.ismodule(v) or name in ('llm', 'training', 'sandbox'), name\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
