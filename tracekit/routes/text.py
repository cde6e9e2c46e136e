"""The "text" route of `tk.Optimizer`: feeds the trace to `solvers.text.TextOptimizer`.

`TextSolver` turns the feedback records' subgraphs into the solver's plain `Problem`
(one linear pass over each subgraph), runs one optimizer step, and returns one
`ParamUpdate` per parameter. It updates text, code and categorical parameters, and
numbers without a gradient path when no objective is given.

Options (passed to `tk.Optimizer(..., **options)` or in a param group):
`budget` (prompt tokens, default 4000; 900 for a grammar server such as llama.cpp's), `n_candidates` (default 1; 4 when an objective
is given), `temperatures`, `seed`, `max_reasks` (default 2), `memory_size` (default 5),
`max_workers`, `max_tokens`, `max_text_chars`, `min_improvement`, `instruction`,
`constrain_code` and `constrain_text` (default: on for grammar servers), `avoid_tried`
and `explore` (default on: values tried are not proposed again; a stuck step explores),
`objective` (overrides the Optimizer's).

The objective is a callable returning a loss (lower is better). With no arguments it is
called with each candidate written into the parameters and the old values restored
afterwards (calls are serialized, since they share the parameters); with one argument
it receives `{parameter name: candidate value}` and must not rely on the parameters, and
then candidates are evaluated in parallel.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from solvers.text import Call, Problem, TextOptimizer, Value, Variable
from tracekit.nodes import MessageNode, ParameterNode, _is_tensor
from tracekit.options import TEXT_OPTIONS
from tracekit.seam import (
    UNCHANGED,
    ParamUpdate,
    PromptNames,
    StepContext,
    trials_left,
    values_objective,
)

EMBEDDED_BUDGET = 900  # the prompt budget (tokens) for the embedded model, by measurement


class TextSolver:
    """The LLM optimizer for text, code and categorical parameters (see module doc)."""

    name = "text"

    def __init__(self, params: list[ParameterNode], llm: Any = None, **options: Any) -> None:
        self.llm = llm
        self.options = {k: options[k] for k in TEXT_OPTIONS if k in options and options[k] is not None}
        if "prompt_tokens" in options:  # an alias that reads well next to the other limits
            self.options["budget"] = options["prompt_tokens"]
        self.objective = options.get("objective")
        self._optimizer: TextOptimizer | None = None
        self._state: dict[str, Any] | None = None
        self._backend: Any = None
        self._eval_lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        """Copies and pickles carry the state, not the lock (`copy.deepcopy(optimizer)`)."""
        state = self.__dict__.copy()
        del state["_eval_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._eval_lock = threading.Lock()

    # --- the LLM ------------------------------------------------------------------------------
    def _get_optimizer(self, context: StepContext, has_objective: bool) -> TextOptimizer:
        if self._optimizer is None:
            from tracekit import llm as llm_layer

            raw = self.llm if self.llm is not None else context.llm
            self._backend = llm_layer.as_backend(raw)  # None -> the configured default model
            options = dict(self.options)
            options.setdefault("n_candidates", 4 if has_objective else 1)
            # tiny local models write function-shaped code only when the schema insists: the
            # small-model defaults apply to any grammar server (llama.cpp, found by probing
            # its structured output once), the embedded model or one the user points at
            grammar_server = small_model_server(self._backend)
            options.setdefault("constrain_code", grammar_server)
            options.setdefault("constrain_text", grammar_server)
            # a prompt token costs the embedded model ~8 ms on a core; a shorter prompt
            # found as good on the ticket task (docs/text.md) at ~half the step time
            if grammar_server:
                options.setdefault("budget", EMBEDDED_BUDGET)
            self._optimizer = TextOptimizer(self._backend, **options)
            if self._state is not None:
                self._optimizer.load_state_dict(self._state)
        return self._optimizer

    # --- the step -------------------------------------------------------------------------------
    def step(self, params: list[ParameterNode], context: StepContext) -> list[ParamUpdate]:
        """Propose new values for `params` from their feedback; the Optimizer validates them."""
        objective = self.objective if self.objective is not None else context.objective
        left = trials_left(objective)
        if left == 0:  # nothing could judge a proposal: ask the model for none
            return [ParamUpdate(context.name_of(p), self.name, reason="kept: no trials left in this "
                                "step's share of max_metric_calls") for p in params]
        optimizer = self._get_optimizer(context, objective is not None)
        names = {id(p): context.name_of(p) for p in params}
        problem = build_problem(params, context.records(params), names)
        solver_objective = self._wrap(objective, params, names) if objective is not None else None
        with self._backend.accounting.scope() as spent:  # this step's calls, from every thread
            result = optimizer.step(problem, solver_objective,
                                    None if left is None else min(optimizer.n_candidates, left))
        info = {
            "prompt_tokens_estimate": result.prompt_tokens,
            "prompt": result.prompt_stats,
            "candidates": sum(1 for c in result.candidates if not c.explored),  # the LLM's
            "valid_candidates": sum(1 for c in result.candidates if c.valid and not c.explored),
            # the step's own exploratory proposal, when one was made (chosen or not)
            "exploratory_candidates": sum(1 for c in result.candidates if c.explored),
            "chosen": result.chosen,
            "baseline_loss": result.baseline_loss,
            "losses": [c.loss for c in result.candidates],
            "replies": result.llm_calls,  # replies asked for (re-asks included)
            "unknown_names": sorted({u for c in result.candidates for u in c.unknown}),
            # why replies were re-asked or dropped (a candidate keeps its last problem)
            "reply_problems": [c.error for c in result.candidates if c.error],
            # replies refused as cut off (never repaired into a value), then re-asked
            "cut_off_replies": sum(c.cut_off for c in result.candidates),
            # parameters given the step's own exploratory value (the model gave nothing
            # usable, or nothing better by the objective): name -> how it was made
            "explored": dict(result.explored),
            "seconds": result.seconds,
            "llm_usage": spent.copy(),  # a tracekit.llm.Usage: calls, tokens, cost, cache hits
        }
        updates = []
        for p in params:
            name = names[id(p)]
            new = result.suggestion.get(name, UNCHANGED)
            updates.append(ParamUpdate(name, self.name, new_value=new,
                                       reason=result.reasons.get(name, ""), info=info))
        return updates

    def _wrap(self, objective: Callable[..., Any], params: list[ParameterNode],
              names: dict[int, str]) -> Callable[[dict[str, Any]], float]:
        # shared parameters: candidates are evaluated one at a time
        return values_objective(objective, {names[id(p)]: p for p in params}, lock=self._eval_lock)

    # --- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The optimizer's memory and step count (JSON-friendly)."""
        if self._optimizer is not None:
            return self._optimizer.state_dict()
        return dict(self._state or {})

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._state = dict(state)
        if self._optimizer is not None:
            self._optimizer.load_state_dict(self._state)


def small_model_server(backend: Any) -> bool:
    """True for a backend whose server constrains replies by a grammar (llama.cpp's
    `json_object` + schema): the local small-model servers, however they were started."""
    from tracekit.llm.structured import ENFORCED_MODES

    probe = getattr(backend, "probe_structured", None)
    mode = probe() if callable(probe) else getattr(backend, "structured_mode", "prompt")
    return mode in ENFORCED_MODES


# --- the trace as a plain Problem --------------------------------------------------------------
def variable_for(p: ParameterNode, name: str) -> Variable:
    """The solver's plain `Variable` for `p`, under `name`, with `p`'s acceptance as its check."""
    value = p.raw
    value_type = p.value_type.__name__
    if _is_tensor(value):
        value = value.detach().cpu().tolist()
        value_type = "Tensor"
    return Variable(name=name, kind=p.kind, value=value, description=p.description or "",
                    bounds=p.bounds, choices=list(p.choices) if p.choices is not None else None,
                    constraints=[str(c) for c in p.constraints], value_type=value_type,
                    check=acceptance_check(p))


def acceptance_check(p: ParameterNode) -> Callable[[Any], Any]:
    """The text solver's `Variable.check` for `p`: the parameter's own validation (the one
    definition per kind in `tracekit.kinds`, then its validator), so a proposal gets the
    same verdict as `p.data = value`. Accepted tensors come back as nested lists, the
    form the solver shows and remembers."""
    def check(value: Any) -> Any:
        accepted = p.validate(value)
        return accepted.detach().cpu().tolist() if _is_tensor(accepted) else accepted

    return check


def build_problem(params: list[ParameterNode], records: list[Any], names: dict[int, str]) -> Problem:
    """The plain description of what the LLM should see, in one pass over each subgraph.

    Parameters being updated appear under their optimizer names; every other node under
    its Python name (made unique). On-path calls become code lines; their inputs that do
    not depend on the parameters are inputs; the records' outputs are outputs.

    A record with a `problem_pieces(names)` method (traced in another process:
    `tracekit.training.portable`) contributes the calls, values and feedback of the
    `Problem` it returns for parameters named `names`.
    """
    prebuilt = [r for r in records if callable(getattr(r, "problem_pieces", None))]
    if prebuilt:  # portable records (traced in another process) build their own pieces
        problem = build_problem(params, [r for r in records if not callable(getattr(r, "problem_pieces", None))], names)
        for r in prebuilt:
            part = r.problem_pieces(set(names.values()))
            problem.calls.extend(part.calls)
            problem.values.extend(part.values)
            problem.feedback.extend(part.feedback)
        return problem
    labels: dict[int, str] = dict(names)
    prompt_names = PromptNames(names.values())

    def label(n: Any) -> str:
        key = id(n)
        found = labels.get(key)
        if found is not None:
            return found
        lab = labels[key] = prompt_names.new(n.stable_name)  # the same each step
        return lab

    calls: list[Call] = []
    values: dict[int, Value] = {}
    seen_calls: set[int] = set()
    feedback: list[tuple[str, str]] = []  # (output label, text)
    output_ids: set[int] = set()
    for r in records:
        for o in r.graph.outputs:
            output_ids.add(id(o))
    for r in records:
        graph = r.graph
        on_path = graph.on_path
        for n in graph.nodes:
            if id(n) not in on_path or not isinstance(n, MessageNode) or id(n) in seen_calls:
                continue
            seen_calls.add(id(n))
            calls.append(_call(n, label, names))
            for parent in n.parents:
                if id(parent) in names or id(parent) in values:
                    continue
                role = "other" if id(parent) in on_path else "input"
                values[id(parent)] = Value(label(parent), parent.raw, role, _type_name(parent.raw))
            if id(n) not in values:
                role = "output" if id(n) in output_ids else "other"
                values[id(n)] = Value(label(n), n.raw, role, _type_name(n.raw))
        text = r.feedback.describe()
        if not r.loss_is_finite:
            text += " (the loss is not finite)"
        feedback.append((label(r.output), text))
        if id(r.output) not in values and id(r.output) not in names:
            values[id(r.output)] = Value(label(r.output), r.output.raw, "output", _type_name(r.output.raw))
    for key, v in values.items():
        if key in output_ids:
            v.role = "output"
    variables = [variable_for(p, names[id(p)]) for p in params]
    return Problem(variables=variables, calls=calls, values=list(values.values()),
                   feedback=feedback_texts(feedback))


def feedback_texts(feedback: list[tuple[str, str]]) -> list[str]:
    """One text per distinct feedback, naming the outputs it is about: the same text on many
    outputs ("correct") is said once, after the texts that are said once (those are the
    signal; the prompt keeps the first ones when room is short)."""
    if len(feedback) == 1:
        return [feedback[0][1]]
    by_text: dict[str, list[str]] = {}
    for output, text in feedback:
        by_text.setdefault(text, []).append(output)
    ordered = sorted(by_text.items(), key=lambda item: len(item[1]) > 1)  # stable: once-said first
    return [f"on {_outputs(outputs)}: {text}" for text, outputs in ordered]


def _outputs(labels: list[str], shown: int = 3) -> str:
    if len(labels) <= shown:
        return ", ".join(labels)
    return f"{', '.join(labels[:shown])} and {len(labels) - shown} more"


def _type_name(value: Any) -> str:
    if getattr(value, "is_error", False) or type(value).__name__ == "TracedError":
        return "error"
    return "tensor" if _is_tensor(value) else type(value).__name__


def _call(n: MessageNode, label: Callable[[Any], str], names: dict[int, str]) -> Call:
    labels = [label(p) for p in n.parents]
    op = n.op
    try:
        code = f"{label(n)} = {op.code_line(n.argnames, labels)}"
    except Exception:  # an unusual op: fall back to the node's own rendering
        code = n.code_line()
    code_var = [labels[i] for i, a in enumerate(n.argnames) if a == "__code__"]
    if code_var:
        code += f"   # runs the code in variable {code_var[0]}"
    error = str(n.raw) if getattr(n, "is_error", False) else ""
    function = getattr(op, "name", "") or ""
    describe = getattr(op, "call_detail", None)  # e.g. a tk.argmin node: its problem and outcome
    detail = describe() if callable(describe) else ""
    return Call(output=label(n), code=code, function=function, doc=getattr(op, "doc", "") or "",
                inputs=labels, error=error, detail=detail)
