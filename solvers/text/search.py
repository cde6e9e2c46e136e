"""The optimizer loop: ask for proposals, validate them, evaluate candidates, remember.

`TextOptimizer.step(problem, objective=None)` asks the LLM for `n_candidates` proposals at
varied temperatures and seeds (each re-asked within a bound when it cannot be used),
evaluates the valid ones with `objective` in a thread pool when one is given, and keeps
the best only when it beats the current values. Without an objective, the first valid
proposal (lowest temperature first) wins.
"""

from __future__ import annotations

import inspect
import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..errors import describe, message_of
from .problem import Candidate, MemoryEntry, Problem, Result, Variable
from .prompt import DEFAULT_BUDGET, build_prompt, estimate_tokens, shorten
from .reply import (
    MAX_REPLY_CHARS,
    Parsed,
    ReplyError,
    check_value,
    code_facts,
    model_values,
    parse_reply,
    reply_model,
    storable,
)

Objective = Callable[[dict[str, Any]], float]
DEFAULT_TEMPERATURES = (0.0, 0.7, 1.0, 1.3)
REASK_RESERVE = 160  # prompt tokens kept free for the note a re-ask adds
MAX_REPLY_TOKENS = 8192  # a re-ask after a cut-off reply doubles max_tokens up to this


def _accepted(fn: Callable[..., Any]) -> bool | frozenset[str]:
    """True when `fn` takes **kwargs, else the keyword names it accepts."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return frozenset()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return True
    return frozenset(p.name for p in params[1:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def _key(values: dict[str, Any]) -> str:
    return json.dumps(values, sort_keys=True, default=repr)


class TextOptimizer:
    """An OptoPrime-style optimizer over a plain `Problem`, with candidate search.

    `llm`: a callable `llm(messages, **kwargs) -> str`; when it also has
    `structured(messages, Model, max_reasks=0, **kwargs)` (tracekit backends do), the
    reply is asked for with the backend's schema support.
    Options: `budget` (prompt tokens), `n_candidates`, `temperatures`, `seed`,
    `max_reasks` (per candidate), `memory_size`, `max_workers` (threads for proposals
    and evaluations), `max_tokens` (reply cap; by default sized from the values),
    `max_text_chars`, `min_improvement` (a candidate must beat the current loss by more),
    `instruction`, `use_structured`, `system`, `constrain_code` (a schema pattern that keeps
    code replies function-shaped; helps tiny local models, limits capable ones),
    `avoid_tried` (when one enumerable variable is updated, values the objective already
    judged are left out of the schema's enum, so candidates explore instead of repeating).
    """

    def __init__(self, llm: Callable[..., Any], *, budget: int = DEFAULT_BUDGET, n_candidates: int = 1,
                 temperatures: Sequence[float] = DEFAULT_TEMPERATURES, seed: int | None = 0,
                 max_reasks: int = 2, memory_size: int = 5, max_workers: int = 4,
                 max_tokens: int | None = None, max_text_chars: int | None = None,
                 min_improvement: float = 0.0, instruction: str = "", use_structured: bool = True,
                 system: bool = False, constrain_code: bool = False, constrain_text: bool = False,
                 avoid_tried: bool = True) -> None:
        if not callable(llm):
            raise TypeError(f"llm must be a callable llm(messages, **kwargs) -> str, got {type(llm).__name__}")
        if n_candidates < 1:
            raise ValueError(f"n_candidates must be >= 1, got {n_candidates}")
        if max_reasks < 0:
            raise ValueError(f"max_reasks must be >= 0, got {max_reasks}")
        if not temperatures:
            raise ValueError("temperatures must not be empty")
        self.llm = llm
        self.budget = budget
        self.n_candidates = n_candidates
        self.temperatures = tuple(float(t) for t in temperatures)
        self.seed = seed
        self.max_reasks = max_reasks
        self.memory_size = memory_size
        self.max_workers = max(1, max_workers)
        self.max_tokens = max_tokens
        self.max_text_chars = max_text_chars
        self.min_improvement = min_improvement
        self.instruction = instruction
        self.use_structured = use_structured
        self.system = system
        self.constrain_code = constrain_code
        self.constrain_text = constrain_text
        self.avoid_tried = avoid_tried
        self.tried: dict[str, list[Any]] = {}  # values an objective already judged, per name
        self.memory: deque[MemoryEntry] = deque(maxlen=max(4 * memory_size, 1))
        self.steps = 0
        self._accepts = _accepted(llm)
        self._calls = 0
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        """Copies and pickles carry the state, not the lock (`copy.deepcopy(optimizer)`)."""
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # --- public -----------------------------------------------------------------------------
    def step(self, problem: Problem, objective: Objective | None = None) -> Result:
        """One optimization step over `problem`; see the class docstring."""
        start = time.perf_counter()
        self._calls = 0
        for v in problem.variables:
            _fill_code_facts(v)
        if not problem.memory and self.memory:
            problem.memory = list(self.memory)
        if self.instruction and not problem.instruction:
            problem.instruction = self.instruction
        # one variable: the schema leaves its current value out where it can (enums), so a
        # constrained reply always proposes something new
        single = len(problem.variables) == 1
        tried = {v.name: list(self.tried.get(v.name, [])) for v in problem.variables} \
            if (single and self.avoid_tried) else None
        model = reply_model(problem.variables, exclude_current=single,
                            constrain_code=self.constrain_code, exclude=tried,
                            constrain_text=self.constrain_text)
        structured = self.use_structured and callable(getattr(self.llm, "structured", None))
        schema_tokens = estimate_tokens(json.dumps(_readable(model.model_json_schema()), separators=(",", ":"))) \
            + 20 if structured else 0
        prompt = build_prompt(problem, max(self.budget - REASK_RESERVE - schema_tokens, 300),
                              memory_size=self.memory_size, system=self.system)
        settings = [(self.temperatures[i % len(self.temperatures)],
                     None if self.seed is None else self.seed + 1000 * self.steps + i)
                    for i in range(self.n_candidates)]
        workers = min(self.max_workers, self.n_candidates)
        if workers > 1:
            with ThreadPoolExecutor(workers) as pool:
                candidates = list(pool.map(
                    lambda a: self._propose(a[0], a[1][0], a[1][1], prompt.messages, problem, model, structured),
                    enumerate(settings)))
        else:
            candidates = [self._propose(i, t, s, prompt.messages, problem, model, structured)
                          for i, (t, s) in enumerate(settings)]
        baseline, chosen, reasons = self._choose(problem, candidates, objective)
        suggestion = dict(candidates[chosen].values) if chosen is not None else {}
        self._remember(problem, candidates, objective is not None)
        self.steps += 1
        return Result(suggestion=suggestion, reasons=reasons, candidates=candidates, chosen=chosen,
                      baseline_loss=baseline, prompt_tokens=prompt.tokens, prompt_stats=prompt.stats,
                      llm_calls=self._calls, seconds=time.perf_counter() - start)

    def state_dict(self) -> dict[str, Any]:
        """Memory and step count, JSON-friendly (values are stored shortened when not JSON)."""
        return {"steps": self.steps,
                "tried": {k: [_jsonable(x) for x in v] for k, v in self.tried.items()},
                "memory": [{"values": {k: _jsonable(v) for k, v in e.values.items()}, "feedback": e.feedback}
                           for e in self.memory]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state.get("steps", 0))
        self.tried = {k: list(v) for k, v in state.get("tried", {}).items()}
        self.memory.clear()
        for e in state.get("memory", []):
            self.memory.append(MemoryEntry(dict(e["values"]), str(e["feedback"])))

    # --- proposals -----------------------------------------------------------------------------
    def _reply_tokens(self, problem: Problem) -> int:
        if self.max_tokens is not None:
            return self.max_tokens
        size = sum(estimate_tokens(str(v.value)) for v in problem.variables if v.kind in ("text", "code"))
        return int(min(max(200 + 2 * size, 256), 4096))

    def _call(self, messages: list[dict[str, str]], **kwargs: Any) -> str:
        with self._lock:
            self._calls += 1
        if self._accepts is not True:
            kwargs = {k: v for k, v in kwargs.items() if k in self._accepts}
        reply = self.llm(messages, **kwargs)
        if not isinstance(reply, str):
            raise ReplyError(f"the LLM returned {type(reply).__name__}, not text")
        return reply

    def _structured(self, messages: list[dict[str, str]], model: type, variables: list[Variable],
                    **kwargs: Any) -> Parsed:
        with self._lock:
            self._calls += 1
        try:
            instance = self.llm.structured(messages, model, max_reasks=0, **kwargs)  # type: ignore[attr-defined]
        except Exception as exc:
            attempts = getattr(exc, "attempts", None)
            if attempts:  # the backend got a reply that did not validate: read it field by field
                reply = attempts[-1][0]  # a str that keeps the backend's .finish_reason
                return parse_reply(reply if isinstance(reply, str) else str(reply), variables)
            raise
        values, unknown, reasoning = model_values(instance, variables)
        return Parsed(values=values, unknown=unknown, reasoning=reasoning)

    def _propose(self, index: int, temperature: float, seed: int | None, messages: list[dict[str, str]],
                 problem: Problem, model: type, structured: bool) -> Candidate:
        cand = Candidate(index=index, temperature=temperature, seed=seed)
        kwargs: dict[str, Any] = {"temperature": temperature, "max_tokens": self._reply_tokens(problem)}
        if seed is not None:
            kwargs["seed"] = seed
        current = messages
        for attempt in range(self.max_reasks + 1):
            cand.attempts = attempt + 1
            reply = ""
            try:
                if structured:
                    parsed = self._structured(current, model, problem.variables, **kwargs)
                else:
                    reply = self._call(current, **kwargs)
                    parsed = parse_reply(reply[:MAX_REPLY_CHARS], problem.variables,
                                         finish_reason=getattr(reply, "finish_reason", None))
            except ReplyError as exc:
                parsed = Parsed(problem=message_of(exc))
            except Exception as exc:  # transport or backend failure: no re-ask
                cand.error = f"LLM call failed: {describe(exc, limit=300)}"
                return cand
            cand.values, cand.problems = self._validate(parsed, problem.variables)
            cand.unknown = parsed.unknown
            cand.reasoning = parsed.reasoning
            if cand.values:
                return cand
            why = parsed.problem or "; ".join(f"{k}: {v}" for k, v in cand.problems.items()) \
                or "no variable got a new value"
            cand.error = why[:500]
            if parsed.cut:  # re-ask with room for a longer reply
                cand.cut_off += 1
                kwargs["max_tokens"] = min(2 * int(kwargs["max_tokens"]), MAX_REPLY_TOKENS)
                why += "; reply more briefly"
            current = _reask(messages, why)
        return cand

    def _validate(self, parsed: Parsed, variables: list[Variable]) -> tuple[dict[str, Any], dict[str, str]]:
        values: dict[str, Any] = {}
        problems: dict[str, str] = {}
        for v in variables:
            if v.name not in parsed.values:
                continue
            if not storable(parsed.values[v.name]):
                problems[v.name] = ("the value holds text that is not valid Unicode (an unpaired "
                                    "surrogate such as \\ud800), which cannot be saved")
                continue
            try:
                value = check_value(v, parsed.values[v.name], self._text_cap(v))
            except ReplyError as exc:
                problems[v.name] = message_of(exc, 300)
                continue
            if _same(value, v.value):
                problems[v.name] = "the suggestion equals the current value"
                continue
            values[v.name] = value
        return values, problems

    def _text_cap(self, v: Variable) -> int | None:
        return self.max_text_chars

    # --- choosing -----------------------------------------------------------------------------
    def _choose(self, problem: Problem, candidates: list[Candidate], objective: Objective | None
                ) -> tuple[float | None, int | None, dict[str, str]]:
        valid = [c for c in candidates if c.valid]
        reasons: dict[str, str] = {}
        if not valid:
            why = "; ".join(sorted({c.error for c in candidates if c.error})) or "no usable suggestion"
            for v in problem.variables:
                per = sorted({c.problems[v.name] for c in candidates if v.name in c.problems})
                reasons[v.name] = "kept: " + ("; ".join(per) if per else why)[:400]
            return None, None, reasons
        baseline: float | None = None
        if objective is None:
            chosen = valid[0]
        else:
            baseline, chosen = self._evaluate(objective, valid)
            if chosen is None:
                best = min((c.loss for c in valid if c.loss is not None and math.isfinite(c.loss)), default=None)
                note = (f"no candidate beat the current value (loss {baseline:.6g}"
                        + (f", best candidate {best:.6g})" if best is not None else ", every candidate failed)"))
                for v in problem.variables:
                    reasons[v.name] = "kept: " + note
                return baseline, None, reasons
        for v in problem.variables:
            if v.name in chosen.values:
                how = f"candidate {chosen.index + 1}/{len(candidates)} (temperature {chosen.temperature:g})"
                if chosen.loss is not None:
                    how += f", loss {baseline:.6g} -> {chosen.loss:.6g}"
                reasons[v.name] = "LLM suggestion, " + how
            else:
                reasons[v.name] = "kept: " + chosen.problems.get(v.name, "the chosen proposal leaves it as is")
        return baseline, chosen.index, reasons

    def _evaluate(self, objective: Objective, valid: list[Candidate]) -> tuple[float, Candidate | None]:
        unique: dict[str, Candidate] = {}
        for c in valid:
            unique.setdefault(_key(c.values), c)

        def run(values: dict[str, Any]) -> tuple[float, str]:
            try:
                loss = float(objective(values))
            except Exception as exc:
                return math.inf, describe(exc, limit=200)
            return (loss, "") if math.isfinite(loss) else (math.inf, f"objective returned {loss}")

        jobs: list[dict[str, Any]] = [{}] + [c.values for c in unique.values()]
        workers = min(self.max_workers, len(jobs))
        if workers > 1:
            with ThreadPoolExecutor(workers) as pool:
                results = list(pool.map(run, jobs))
        else:
            results = [run(j) for j in jobs]
        baseline = results[0][0]
        scored = dict(zip(unique, results[1:]))
        for c in valid:
            c.loss, c.eval_error = scored[_key(c.values)]
            for name, value in c.values.items():
                seen = self.tried.setdefault(name, [])
                if value not in seen and len(seen) < 256:
                    seen.append(value)
        best = min(valid, key=lambda c: (c.loss, c.index))  # ties: the earliest (coolest) one
        if best.loss < baseline - self.min_improvement or (math.isinf(baseline) and math.isfinite(best.loss)):
            return baseline, best
        return baseline, None

    # --- memory ---------------------------------------------------------------------------------
    def _remember(self, problem: Problem, candidates: list[Candidate], evaluated: bool) -> None:
        feedback = " | ".join(f for f in problem.feedback if f)
        self.memory.append(MemoryEntry({v.name: v.value for v in problem.variables}, shorten(feedback, 300, raw_str=True)))
        if evaluated:
            for c in candidates:
                if c.valid and c.loss is not None:
                    note = f"objective loss {c.loss:.6g}" if math.isfinite(c.loss) else f"failed ({c.eval_error})"
                    self.memory.append(MemoryEntry(dict(c.values), note))


def _readable(node: Any) -> Any:
    """The schema as the model reads it (patterns constrain the server's grammar only and are
    not shown; see tracekit.llm.structured), for sizing the prompt budget."""
    if isinstance(node, dict):
        return {k: _readable(v) for k, v in node.items() if not (k == "pattern" and isinstance(v, str))}
    if isinstance(node, list):
        return [_readable(v) for v in node]
    return node


def _reask(messages: list[dict[str, str]], why: str) -> list[dict[str, str]]:
    """The original prompt plus a short note on what was wrong (bounded, inside the reserve)."""
    note = ("\n\nYour previous reply could not be used: " + shorten(why, 420, raw_str=True)
            + "\nReply again with only the JSON object described above.")
    out = [dict(m) for m in messages]
    out[-1]["content"] = out[-1]["content"] + note
    return out


def _same(a: Any, b: Any) -> bool:
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:
        return False


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return shorten(value, 500)


def _fill_code_facts(v: Variable) -> None:
    if v.kind != "code" or (v.signature and v.function) or not isinstance(v.value, str):
        return
    try:
        name, _, line = code_facts(v.value)
    except (SyntaxError, StopIteration, ValueError):
        return
    v.function = v.function or name
    v.signature = v.signature or line
