"""Trace's `OptoPrime(params, llm=...)`: a `tk.Optimizer` with Trace's spellings
(`parameters`, `backward(node, feedback="")`, `step(verbose=...)`).

The LLM route of tk.Optimizer is an OptoPrime-style optimizer (the graph as code, the
feedback, a JSON reply with reasoning and suggestions); numeric parameters go wherever
tk.Optimizer sends them (gradients for tensors on a differentiable path, else the LLM).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tracekit.feedback import Feedback
from tracekit.nodes import Node, ParameterNode, TracedError
from tracekit.optimizer import Optimizer, StepReport

#: OptoPrime keywords with a tk.Optimizer option of the same meaning.
_RENAMED = {"memory_size": "memory_size", "max_tokens": "max_tokens"}
#: OptoPrime keywords that only change how Trace builds its prompt or logs; tracekit has its
#: own prompt (see docs/text.md), so they are accepted and have no effect.
_IGNORED = ("propagator", "objective", "ignore_extraction_error", "include_example",
            "prompt_symbols", "json_keys", "log", "initial_var_char_limit", "optimizer_prompt_symbol_set",
            "use_json_object_format", "highlight_variables", "system_prompt")


class TraceOptimizer(Optimizer):
    """`tk.Optimizer` answering to Trace's optimizer spellings."""

    @property
    def parameters(self) -> list[ParameterNode]:
        """The parameters being optimized (Trace's attribute; tracekit's is `params`)."""
        return self.params

    @property
    def log(self) -> list[dict[str, Any]]:
        """Trace's `optimizer.log`: one JSON-ready dict per step, made from `history` (the
        step reports): each parameter's old and new value preview, whether it changed and why."""
        return [{"step": i, "llm_calls": r.llm_calls, "prompt_tokens": r.prompt_tokens,
                 "completion_tokens": r.completion_tokens,
                 "changes": [{"name": c.name, "kind": c.kind, "solver": c.solver, "old": str(c.old),
                              "new": str(c.new), "changed": c.changed, "reason": c.reason}
                             for c in r.changes]}
                for i, r in enumerate(self.history)]

    def backward(self, output: Node, feedback: Any = "", retain_graph: bool = False,
                 visualize: bool = False, **ignored: Any) -> Any:
        """Attach feedback to the parameters `output` depends on. Trace's default feedback
        is an empty text; an exception node's `data` given as feedback is used as its text;
        `visualize` is ignored (draw with `tk.render(output, path)`)."""
        if isinstance(feedback, TracedError):  # Trace programs feed exception_node.data back
            feedback = str(feedback)
        if isinstance(feedback, str) and not feedback:
            feedback = Feedback(text="")
        return super().backward(output, feedback, retain_graph=retain_graph)

    def step(self, verbose: bool | str = False, **ignored: Any) -> StepReport:
        """One optimization step; `verbose` prints the step report."""
        report = super().step()
        if verbose:
            print(report)
        return report


def OptoPrime(parameters: Iterable[Any], llm: Any = None, **kwargs: Any) -> TraceOptimizer:  # noqa: N802
    """Trace's `OptoPrime(params, llm=...)`, returning a tk.Optimizer (`TraceOptimizer`).
    `llm` is any `f(messages, **kwargs) -> str` or a tracekit backend (default: `tk.llm.default()`)."""
    options = {_RENAMED[k]: v for k, v in kwargs.items() if k in _RENAMED}
    unknown = sorted(set(kwargs) - set(_RENAMED) - set(_IGNORED))
    if unknown:
        options.update({k: kwargs[k] for k in unknown})  # tk.Optimizer names the bad ones
    return TraceOptimizer(list(parameters), llm=llm, **options)
