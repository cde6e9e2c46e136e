"""Generated bad arguments against every public entry point: each gives a ValueError or
TypeError (or a subclass) whose message names the argument, before any work is done.

Run long with HYPOTHESIS_PROFILE=long (see docs/guarantees.md).
"""

from __future__ import annotations

import contextlib
import io
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import tracekit as tk
from solvers.constrained import METHODS
from tracekit.cli import main as cli_main

# values of the wrong type for most arguments
junk = st.one_of(st.integers(-5, 5), st.floats(allow_nan=True, allow_infinity=True),
                 st.text(max_size=8), st.lists(st.integers(), max_size=3), st.just(object()),
                 st.just(b"x"), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
not_bool = junk.filter(lambda v: not isinstance(v, bool))
not_str = junk.filter(lambda v: v is not None and not isinstance(v, str))
not_callable = junk.filter(lambda v: not callable(v))
bad_count = st.one_of(st.integers(-10, 0), st.floats(allow_nan=True), st.text(max_size=3),
                      st.just(True))
bad_positive = st.one_of(st.floats(max_value=0.0), st.just(float("nan")), st.just(float("inf")),
                         st.text(max_size=3), st.just(None), st.just(True))


def raises_naming(argument: str, call) -> None:
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    assert argument in str(info.value), f"{argument!r} not named in: {info.value}"


# --- tk.param -------------------------------------------------------------------------------
PARAM_BAD = {
    "name": st.one_of(not_str, st.just(""), st.just("   ")),
    "description": not_str,
    "trainable": not_bool,
    "kind": st.text(max_size=8).filter(lambda k: k not in ("text", "code", "numeric", "categorical")),
    "bounds": st.one_of(st.just((2.0, 1.0)), st.just((math.nan, 1.0)), st.just((1.0,)),
                        st.just("ab"), st.integers(), st.just((None, 1.0))),
    "choices": st.one_of(st.just([]), st.text(min_size=1, max_size=4), st.integers(),
                         st.just({"a": 1})),
}


@given(data=st.data(), argument=st.sampled_from(sorted(PARAM_BAD)))
def test_param_refuses_bad_arguments_by_name(data, argument):
    value = data.draw(PARAM_BAD[argument])
    raises_naming(argument, lambda: tk.param(0.5, **{argument: value}))


@given(value=st.one_of(st.just(float("nan")), st.just(float("inf")), st.just(""), st.just("  "),
                       st.just(None), st.just(object()), st.just(b"x"),
                       st.just(torch.tensor([float("nan")])), st.just(True)))
def test_param_refuses_a_bad_initial_value(value):
    raises_naming("value", lambda: tk.param(value))


# --- tk.bundle ------------------------------------------------------------------------------
BUNDLE_BAD = {"trainable": not_bool, "catch_errors": not_bool, "description": not_str,
              "name": st.one_of(not_str, st.just(""))}


@given(data=st.data(), argument=st.sampled_from(sorted(BUNDLE_BAD)))
def test_bundle_refuses_bad_arguments_by_name(data, argument):
    value = data.draw(BUNDLE_BAD[argument])

    def f(x):
        return x

    raises_naming(argument, lambda: tk.bundle(f, **{argument: value}))


@given(fn=not_callable)
def test_bundle_refuses_what_is_not_a_function(fn):
    raises_naming("fn", lambda: tk.bundle(fn))


# --- tk.minimize / tk.bilevel -----------------------------------------------------------------
X0 = torch.tensor([1.0, 2.0], dtype=torch.float64)


def f(x):
    return (x ** 2).sum()


MINIMIZE_BAD = {
    "x0": st.one_of(st.just(None), st.text(min_size=1, max_size=3), st.just([]),
                    st.just(torch.tensor([float("nan"), 1.0]))),
    "method": st.one_of(st.text(max_size=6), st.integers()),
    "tol": bad_positive, "feas_tol": bad_positive, "kkt_tol": bad_positive,
    "max_iter": bad_count,
    "batched": not_bool.filter(lambda v: v is not None),
    "constraints": st.one_of(st.integers(), st.lists(st.integers(), min_size=1, max_size=2),
                             st.just("g")),
    "bounds": st.one_of(st.just((2.0, 1.0)), st.just((math.nan, 1.0)), st.just(("a", "b")),
                        st.integers()),
    "options": st.one_of(st.integers(), st.just({"no_such_option": 1})),
    "multipliers0": st.one_of(st.integers(), st.text(min_size=1, max_size=3)),
}


@given(data=st.data(), argument=st.sampled_from(sorted(MINIMIZE_BAD)))
def test_minimize_refuses_bad_arguments_by_name(data, argument):
    value = data.draw(MINIMIZE_BAD[argument])
    if argument == "method" and isinstance(value, str) and value.lower() in METHODS:
        return
    kwargs = {"x0": X0, argument: value}
    if argument == "options" and isinstance(value, dict):
        kwargs["method"] = "auglag"
    name = "options" if argument == "options" else argument
    raises_naming(name, lambda: tk.minimize(f, **kwargs))


def outer(x, y):
    return ((y - 1) ** 2).sum() + (x ** 2).sum()


def inner(x, y):
    return ((y - x) ** 2).sum()


BILEVEL_BAD = {
    "y0": st.one_of(st.just(None), st.text(min_size=1, max_size=3), st.just([])),
    "method": st.text(max_size=6), "inner_method": st.text(max_size=6),
    "linear_solver": st.text(max_size=6),
    "inner_tol": bad_positive, "tol": bad_positive,
    "max_iter": bad_count,
    "inner_bounds": st.one_of(st.just((2.0, 1.0)), st.just((math.nan, 1.0)), st.integers()),
    "inner_constraints": st.one_of(st.integers(), st.lists(st.integers(), min_size=1, max_size=2)),
    "constraints": st.one_of(st.integers(), st.lists(st.integers(), min_size=1, max_size=2)),
}


@given(data=st.data(), argument=st.sampled_from(sorted(BILEVEL_BAD)))
def test_bilevel_refuses_bad_arguments_by_name(data, argument):
    value = data.draw(BILEVEL_BAD[argument])
    accepted = {"method": METHODS, "inner_method": METHODS, "linear_solver": ("auto", "dense", "cg")}
    if argument in accepted and isinstance(value, str) and value.lower() in accepted[argument]:
        return
    kwargs = {"x0": X0, "y0": X0, argument: value}
    raises_naming(argument, lambda: tk.bilevel(outer, inner, **kwargs))


# --- tk.Trainer -------------------------------------------------------------------------------
TRAINER_BAD = {
    "batch_size": bad_count, "epochs": bad_count, "max_steps": bad_count, "patience": bad_count,
    "trace_examples": bad_count, "max_concurrency": bad_count,
    "feedback_chars": bad_count,
    "min_delta": st.one_of(st.floats(max_value=-1e-9), st.just(float("nan")), st.text(max_size=3)),
    "error_score": st.one_of(st.just(float("nan")), st.just(float("inf")), st.text(max_size=3)),
    "higher_is_better": not_bool, "revert_on_worse": not_bool, "resume": not_bool,
    "progress": not_bool,
    "run_dir": st.one_of(st.integers(), st.lists(st.integers(), max_size=2)),
    "executor": st.one_of(st.text(max_size=6).filter(lambda s: s not in ("thread", "async", "serial", "ray")),
                          st.integers()),
    "batch_objective": st.one_of(st.text(max_size=6).filter(lambda s: s not in ("batch", "train")),
                                 st.integers(2, 9)),
    "call": not_callable.filter(lambda v: v is not None),
    "train": st.one_of(st.just([]), st.integers(), st.text(min_size=1, max_size=3)),
    "val": st.one_of(st.just([]), st.integers()),
}


@given(data=st.data(), argument=st.sampled_from(sorted(TRAINER_BAD)))
def test_trainer_refuses_bad_arguments_by_name(data, argument):
    value = data.draw(TRAINER_BAD[argument])
    p = tk.param(1.0, name="w")
    kwargs = {argument: value}
    train = kwargs.pop("train", [(1, 1), (2, 2)])
    name = {"train": "train", "val": "val"}.get(argument, argument)
    raises_naming(name, lambda: tk.Trainer(lambda x: x, tk.Optimizer([p]), lambda out, ex: 1.0,
                                           train, progress=kwargs.pop("progress", False), **kwargs))


@given(argument=st.sampled_from(["workflow", "optimizer", "metric"]), value=not_callable)
def test_trainer_refuses_what_is_not_callable(argument, value):
    p = tk.param(1.0, name="w")
    given_args = {"workflow": lambda x: x, "optimizer": tk.Optimizer([p]), "metric": lambda o, e: 1.0}
    given_args[argument] = value
    raises_naming(argument, lambda: tk.Trainer(given_args["workflow"], given_args["optimizer"],
                                               given_args["metric"], [(1, 1)], progress=False))


# --- the CLI -------------------------------------------------------------------------------------
@given(argv=st.one_of(
    st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                     max_size=12), max_size=4),
    st.tuples(st.sampled_from(["run", "show", "graph"]),
              st.one_of(st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                                       blacklist_characters="\x00"),
                                min_size=1, max_size=20),
                        st.sampled_from(["/", "/dev/null", "/etc/hostname", ".", "..", "none.py",
                                         "none.toml", "os:path", "os:sep", ":", "json:loads",
                                         "tracekit:param", "none.py:f"]))).map(list)))
def test_cli_answers_any_arguments_with_an_error_line_not_a_traceback(argv):
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = cli_main(argv)
        except SystemExit as exit_:  # argparse: usage errors exit with status 2
            code = exit_.code
    if code == 0 or (not argv and "usage" in out.getvalue()):
        return  # e.g. --help, a command that found something to show, or no command: help
    assert code in (1, 2), (argv, code)
    assert "error" in err.getvalue() and "Traceback" not in err.getvalue(), err.getvalue()
