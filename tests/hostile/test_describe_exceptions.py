"""Describing an exception never raises: raising `__str__`/`__repr__`, huge messages,
cyclic causes, unpicklable arguments (generated with hypothesis), in every place tracekit
formats one: the describe functions, exception nodes, the trainer, the text optimizer."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

import solvers.errors
import tracekit as tk
import tracekit.errors


class StrRaises(Exception):
    def __str__(self):
        raise RuntimeError("no str for you")


class BothRaise(Exception):
    def __str__(self):
        raise ValueError("no str")

    def __repr__(self):
        raise ValueError("no repr")


class StrNotText(Exception):
    def __str__(self):
        return 42  # type: ignore[return-value]


class Recursive(Exception):
    def __str__(self):
        return str(self)


KINDS = [StrRaises, BothRaise, StrNotText, Recursive, ValueError, KeyError]


@st.composite
def exceptions(draw):
    kind = draw(st.sampled_from(KINDS))
    message = draw(st.one_of(st.text(max_size=50), st.just("x" * 200_000),
                             st.just("line1\nline2"), st.just("\udcff\x00\u202e")))
    args = [message]
    if draw(st.booleans()):
        args.append(threading.Lock())  # unpicklable argument
    exc = kind(*args)
    depth = draw(st.integers(0, 4))
    chain = [exc]
    for _ in range(depth):
        chain.append(draw(st.sampled_from(KINDS))("cause"))
    for a, b in zip(chain, chain[1:]):
        a.__cause__ = b
    if draw(st.booleans()):
        chain[-1].__context__ = exc  # a cycle
        chain[-1].__cause__ = exc
    return exc


@pytest.mark.parametrize("module", [tracekit.errors, solvers.errors])
@given(exc=exceptions())
def test_describe_never_raises_and_stays_short(module, exc):
    text = module.describe(exc, causes=True)
    assert isinstance(text, str) and text.startswith(type(exc).__name__)
    assert len(text) < 3 * module.MESSAGE_CHARS
    assert isinstance(module.message_of(exc), str)


@given(exc=exceptions())
def test_a_bundle_that_raises_any_exception_gives_an_exception_node(exc):
    @tk.bundle()
    def fails(x):
        raise exc

    out = fails(tk.node(1))
    assert out.is_error
    assert out.error.type == type(exc).__name__
    assert isinstance(str(out.error), str) and len(str(out.error)) < 3 * tracekit.errors.MESSAGE_CHARS


def test_the_known_case_a_raising_str_becomes_an_exception_node():
    @tk.bundle()
    def fails(x):
        raise StrRaises("boom")

    out = fails(tk.node(1))
    assert out.is_error and "StrRaises" in str(out.error)


def test_the_trainer_records_a_workflow_or_metric_error_that_cannot_be_printed():
    from tracekit.training.trainer import Evaluate

    def workflow(x):
        raise BothRaise("x")

    def metric(prediction, example):
        raise StrRaises("y")

    failed = Evaluate(workflow, lambda p, e: 1.0)((0, (1, 1)))
    assert failed.error.startswith("the workflow raised BothRaise")
    failed = Evaluate(lambda x: x, metric)((0, (1, 1)))
    assert failed.error.startswith("the metric raised StrRaises")


def test_an_objective_raising_an_unprintable_error_is_a_failed_candidate():
    from solvers.text import Problem, TextOptimizer, Variable

    def objective(values):
        raise StrRaises("x")

    llm = lambda messages, **kw: '{"suggestion": {"t": "a better text"}}'  # noqa: E731
    opt = TextOptimizer(llm, use_structured=False)
    result = opt.step(Problem(variables=[Variable(name="t", kind="text", value="old")]), objective)
    assert result.chosen is None
    assert "StrRaises" in result.candidates[0].eval_error
