"""Graphs are freed with their outputs; tracing is safe across threads and asyncio tasks;
importing tracekit is fast and does not import torch."""

import asyncio
import gc
import subprocess
import sys
import threading
import weakref

import tracekit as tk


@tk.bundle()
def step(a, b):
    return a + b


def test_graph_is_freed_when_outputs_are_dropped():
    x = tk.param(1.0, name="x")
    y = tk.node(0.0)
    first = y
    for _ in range(1000):
        y = step(y, x)
    ref_first, ref_last = weakref.ref(first), weakref.ref(y)
    del first, y
    assert ref_first() is None and ref_last() is None  # freed by refcounting alone
    assert x.data == 1.0


def test_graph_is_freed_after_backward_and_zero_feedback():
    x = tk.param(1.0, name="x")
    out = x
    for _ in range(100):
        out = out * 1.0
    opt = tk.Optimizer([x])
    opt.backward(out, "feedback")
    ref = weakref.ref(out)
    del out
    assert ref() is not None  # the parameter's feedback record keeps it until zero_feedback
    opt.zero_feedback()
    gc.collect()
    assert ref() is None


def test_tracing_from_8_threads_builds_separate_correct_graphs():
    results, errors = {}, []
    barrier = threading.Barrier(8)

    def worker(i):
        try:
            p = tk.param(float(i), name=f"p{i}")
            prompt = tk.param(f"prompt {i}", name=f"prompt{i}")

            @tk.bundle()
            def read(v):
                return f"{prompt}:{v}"

            barrier.wait()
            y = tk.node(0.0)
            for _ in range(500):
                y = step(y, p)
            text = read(y)
            g = tk.subgraph(text)
            results[i] = (y.data, {q.name for q in g.parameters}, text.data)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i in range(8):
        value, params, text = results[i]
        assert value == 500.0 * i
        assert params == {f"p{i}", f"prompt{i}"}
        assert text == f"prompt {i}:{500.0 * i}"


def test_tracing_from_concurrent_asyncio_tasks():
    @tk.bundle()
    async def slow_read(v, tag):
        await asyncio.sleep(0.001)
        return f"{tag}={v}"

    async def run(i):
        p = tk.param(float(i), name=f"a{i}")
        out = await slow_read(p * 2, f"t{i}")
        return out, p

    async def main():
        return await asyncio.gather(*(run(i) for i in range(20)))

    for i, (out, p) in enumerate(asyncio.run(main())):
        assert out.data == f"t{i}={2.0 * i}"
        assert tk.subgraph(out).parameters == [p]


def test_import_does_not_import_torch_openai_or_cvxpy():
    # Import time itself is measured in benchmarks/tracing.py, not asserted here.
    code = ("import time, sys; t = time.perf_counter(); import tracekit as tk; "
            "tk.param('x', name='p'); tk.bundle; "
            "print(time.perf_counter() - t); "
            "print(any(m in sys.modules for m in ('torch', 'openai', 'cvxpy', 'networkx')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    seconds, torch_loaded = out.stdout.split()
    assert torch_loaded == "False"
    assert float(seconds) > 0


def test_public_functions_work_whatever_the_import_order():
    # importing a submodule that shares a public function's name must not break the call
    code = ("import tracekit as tk; tk.Module; import tracekit.bundled, tracekit.problems; "
            "import tracekit.pictures.graph_picture, tracekit.pictures.run_plot\n"
            "@tk.bundle\ndef f(a):\n    return a + 1\n"
            "g = tk.bundle(trainable=True)(lambda a: a)\n"
            "r = tk.minimize(lambda x: (x ** 2).sum(), [1.0, 2.0], method='slsqp')\n"
            "print(f(tk.node(1)).data, type(g).__name__, abs(float(r.fun)) < 1e-8)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2", "BundledFunction", "True"]
