"""Port of Trace's tests/unit_tests/test_asyncio.py (sleeps shortened from 1 s to 0.2 s)."""

import asyncio
import time

from tracekit import trace
from tracekit.trace import MessageNode


@trace.bundle()
async def basic(a=0):
    await asyncio.sleep(0.2)
    return "basic"


@trace.bundle()
async def error(a=0):
    raise ValueError("error")


def test_single_task():
    async def main():
        a = trace.node("a")
        x = await basic(a)
        assert type(x) == MessageNode  # noqa: E721
        assert x == "basic"
        assert a in x.parents
        assert len(x.parents) == 1

    asyncio.run(main())


def test_tasks_run_in_parallel():
    async def main():
        a = trace.node("a")
        start = time.perf_counter()
        results = await asyncio.gather(basic(a), basic(a), basic(a))
        assert time.perf_counter() - start < 0.5  # not 3 x 0.2 s
        for x in results:
            assert type(x) == MessageNode  # noqa: E721
            assert x == "basic"
            assert a in x.parents
            assert len(x.parents) == 1

    asyncio.run(main())


def test_error_handling():
    async def main():
        a = trace.node("a")
        try:
            x = await error(a)
        except trace.ExecutionError as e:
            x = e
        assert isinstance(x, trace.ExecutionError)
        x = x.exception_node
        assert isinstance(x, MessageNode)
        assert a in x.parents
        assert len(x.parents) == 1

    asyncio.run(main())


def test_multiple_errors():
    async def main():
        a, b, c = trace.node("a"), trace.node("b"), trace.node("c")
        try:
            await asyncio.gather(error(a), error(b), error(c))
        except trace.ExecutionError as e:
            x = e  # the first error
        assert isinstance(x, trace.ExecutionError)
        x = x.exception_node
        assert isinstance(x, MessageNode)
        assert a in x.parents
        assert len(x.parents) == 1

    asyncio.run(main())
