"""The optimizer loop: ask for proposals, validate them, evaluate candidates, remember.

`TextOptimizer.step(problem, objective=None)` asks the LLM for `n_candidates` proposals at
varied temperatures and seeds (each re-asked within a bound when it cannot be used, warmer
and with another seed each time), evaluates the valid ones with `objective` in a thread pool
when one is given, and keeps the best only when it beats the current values. Without an
objective, the first valid proposal (lowest temperature first) wins.

Across steps the optimizer remembers, per parameter, the values tried and what followed
(`memory.py`): a digest goes in the prompt, and a value already tried is refused (and left
out of the reply schema where it can be) while untried ones remain. When the step is stuck —
the model only repeats values already tried, or, with an objective, nothing beats the
current values — it makes an exploratory proposal of its own (`explore.py`) and says so in
its reasons. A failed step (replies that cannot be read or used, failed calls) still keeps
the values.
"""

from __future__ import annotations

import inspect
import json
import math
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, cast

from ..errors import describe, message_of
from .exclude import normal_form
from .explore import explore
from .form import breaks_form
from .memory import Memory
from .problem import Candidate, Problem, Result, Variable
from .prompt import CUT_MARK, DEFAULT_BUDGET, build_prompt, estimate_tokens, own_wording, shorten
from .reply import (
    MAX_REPLY_CHARS,
    SMALL_INT_RANGE,
    UNUSABLE,
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
# a re-ask is asked at least this warm, and this much warmer for each further attempt: a
# greedy (temperature 0) re-ask of a tiny model repeats the refused reply word for word
REASK_TEMPERATURE = 0.7
REASK_WARMING = 0.3
MAX_TEMPERATURE = 1.5
# how a refusal of a repeated value ends (the step then counts as stuck, not failed)
_REPEATS = ("propose a value not tried yet", "propose a combination not tried yet")
SAME_WORDS = "the suggestion has the same words as"  # a text repeated up to punctuation or spacing
COPY_CHARS = 20  # a text holding a whole feedback line at least this long copies the feedback
COPY_INPUT_CHARS = 12  # pieces of the prompt shorter than this are not counted as copies
COPY_SHARE = 1 / 3  # a text made this much of the description and the trace's inputs copies them
REASK_RESERVE = 160  # prompt tokens kept free for the note a re-ask adds
MAX_REPLY_TOKENS = 8192  # a re-ask after a cut-off reply doubles max_tokens up to this


def _same_words_only(problems: dict[str, str]) -> bool:
    """Whether every refused value of a reply was a text repeating known words."""
    return bool(problems) and all(p.startswith(SAME_WORDS) for p in problems.values())


def _accepted(fn: Callable[..., Any]) -> Literal[True] | frozenset[str]:
    """True when `fn` takes **kwargs, else the keyword names it accepts."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return frozenset()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return True
    return frozenset(p.name for p in params[1:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def _names_keyword(fn: Callable[..., Any], name: str) -> bool:
    """True when `fn` has a parameter called `name` (not merely **kwargs, which may pass it on)."""
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _key(values: dict[str, Any]) -> str:
    return json.dumps(values, sort_keys=True, default=repr)


class TextOptimizer:
    """An OptoPrime-style optimizer over a plain `Problem`, with candidate search.

    `llm`: a callable `llm(messages, **kwargs) -> str`; when it also has
    `structured(messages, Model, max_reasks=0, **kwargs)` (tracekit backends do), the
    reply is asked for with the backend's schema support.
    Options: `budget` (prompt tokens), `n_candidates`, `temperatures`, `seed`,
    `max_reasks` (per candidate; with `explore`, a reply refused as unusable — pasted from
    the prompt, of another form — is not re-asked: the step explores),
    `memory_size`, `max_workers` (threads for proposals
    and evaluations), `max_tokens` (reply cap; by default sized from the values),
    `max_text_chars`, `min_improvement` (a candidate must beat the current loss by more),
    `instruction`, `use_structured`, `system`, `constrain_code` (a schema pattern that keeps
    code replies function-shaped; helps tiny local models, limits capable ones),
    `avoid_tried` (values already tried are refused in replies, and left out of the
    schema — enums, and text patterns with `constrain_text` — when one variable is updated;
    a finite kind may repeat one only once every value was tried), `explore` (when the model
    only repeats values already tried, or nothing beats the current values by the
    objective, the step proposes a value of its own: an untried choice, a perturbed number,
    a recombined text; see `explore.py`).
    """

    def __init__(self, llm: Callable[..., Any], *, budget: int = DEFAULT_BUDGET, n_candidates: int = 1,
                 temperatures: Sequence[float] = DEFAULT_TEMPERATURES, seed: int | None = 0,
                 max_reasks: int = 2, memory_size: int = 5, max_workers: int = 4,
                 max_tokens: int | None = None, max_text_chars: int | None = None,
                 min_improvement: float = 0.0, instruction: str = "", use_structured: bool = True,
                 system: bool = False, constrain_code: bool = False, constrain_text: bool = False,
                 avoid_tried: bool = True, explore: bool = True) -> None:
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
        self.explore = explore
        self.memory = Memory()  # per parameter: values tried and what followed
        self.steps = 0
        self._accepts = _accepted(llm)
        # the backend's structured(): told that the prompt states the reply's form (only
        # when it names `described`: **kwargs might pass it on to a model), and whether it
        # still adds the schema as text (then those tokens are kept free in the budget)
        structured_fn = getattr(llm, "structured", None)
        self._tell_described = callable(structured_fn) and _names_keyword(structured_fn, "described")
        sends = getattr(llm, "sends_schema_text", None)
        self._schema_as_text = bool(sends(True)) if callable(sends) else True
        self._calls = 0
        self._lock = threading.Lock()
        self._current: dict[str, Any] = {}

    @property
    def tried(self) -> dict[str, list[Any]]:
        """The values tried so far, per parameter name (oldest first)."""
        return {name: self.memory.tried(name) for name in self.memory.values}

    @tried.setter
    def tried(self, values: dict[str, list[Any]]) -> None:
        self.memory = Memory()
        for name, tried in values.items():
            for value in tried:
                self.memory.record({name: value}, self.steps)

    def __getstate__(self) -> dict[str, Any]:
        """Copies and pickles carry the state, not the lock (`copy.deepcopy(optimizer)`)."""
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # --- public -----------------------------------------------------------------------------
    def step(self, problem: Problem, objective: Objective | None = None, n_candidates: int | None = None
             ) -> Result:
        """One optimization step over `problem`; see the class docstring. `n_candidates`
        overrides the option for this step (fewer trials when a budget is nearly spent)."""
        n_candidates = self.n_candidates if n_candidates is None else max(1, n_candidates)
        start = time.perf_counter()
        self._calls = 0
        for v in problem.variables:
            _fill_code_facts(v)
        current = {v.name: v.value for v in problem.variables}
        self._current = current
        feedback = shorten(" | ".join(f for f in problem.feedback if f), 300, raw_str=True)
        digest = self.memory.digest()  # earlier attempts, before this one is recorded
        self.memory.record(current, self.steps, feedback)  # what followed the current values
        if not problem.memory and digest:
            problem.memory = digest
        if self.instruction and not problem.instruction:
            problem.instruction = self.instruction
        # one variable: the schema leaves its current value out where it can (enums), so a
        # constrained reply always proposes something new, and values tried too
        single = len(problem.variables) == 1
        tried = {v.name: self._excluded(v) for v in problem.variables} \
            if (single and self.avoid_tried) else None
        model = reply_model(problem.variables, exclude_current=single,
                            constrain_code=self.constrain_code, exclude=tried,
                            constrain_text=self.constrain_text)
        structured = self.use_structured and callable(getattr(self.llm, "structured", None))
        schema_tokens = estimate_tokens(json.dumps(_readable(model.model_json_schema()), separators=(",", ":"))) \
            + 20 if structured and self._schema_as_text else 0
        prompt = build_prompt(problem, max(self.budget - REASK_RESERVE - schema_tokens, 300),
                              memory_size=self.memory_size, system=self.system)
        settings = [(self.temperatures[i % len(self.temperatures)],
                     None if self.seed is None else self.seed + 1000 * self.steps + i)
                    for i in range(n_candidates)]
        workers = min(self.max_workers, n_candidates)
        if workers > 1:
            with ThreadPoolExecutor(workers) as pool:
                candidates = list(pool.map(
                    lambda a: self._propose(a[0], a[1][0], a[1][1], prompt.messages, problem, model, structured),
                    enumerate(settings)))
        else:
            candidates = [self._propose(i, t, s, prompt.messages, problem, model, structured)
                          for i, (t, s) in enumerate(settings)]
        baseline, chosen, reasons = self._choose(problem, candidates, objective)
        explored: dict[str, str] = {}
        # explore when the step did not fail but is stuck: the model only repeated values or
        # gave unusable ones (pasted from the prompt, of another form; a bad reply or a failed
        # call keeps the values, as every failed step does), or no candidate beat the current
        # values by the objective
        stuck = any(c.repeated or c.unusable for c in candidates) or \
            (objective is not None and any(c.valid for c in candidates))
        if self.explore and chosen is None and stuck:
            baseline, chosen, explored = self._explore(problem, candidates, objective, baseline, reasons)
        suggestion = dict(candidates[chosen].values) if chosen is not None else {}
        if baseline is not None:
            self.memory.record(current, self.steps, loss=baseline)
        self.steps += 1
        return Result(suggestion=suggestion, reasons=reasons, candidates=candidates, chosen=chosen,
                      baseline_loss=baseline, prompt_tokens=prompt.tokens, prompt_stats=prompt.stats,
                      llm_calls=self._calls, seconds=time.perf_counter() - start, explored=explored)

    def state_dict(self) -> dict[str, Any]:
        """Memory and step count, JSON-friendly (values are stored as their repr when not JSON)."""
        return {"steps": self.steps, "memory": self.memory.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()`'s output (also the older form: a list of attempts and
        the values an objective judged)."""
        self.steps = int(state.get("steps", 0))
        memory = state.get("memory")
        if isinstance(memory, dict):
            self.memory = Memory()
            self.memory.load_state_dict(memory)
            return
        self.tried = {k: list(v) for k, v in (state.get("tried") or {}).items()}
        for e in memory or []:
            self.memory.record(dict(e["values"]), self.steps, str(e.get("feedback", "")))

    # --- memory ----------------------------------------------------------------------------------
    def _excluded(self, v: Variable) -> list[Any]:
        """The values of `v` a reply may not propose: every value tried, unless `v` has
        finitely many values and all were tried (then any but the current one)."""
        tried = self.memory.tried(v.name)
        if _finite(v) is not None and all(self.memory.record_of(v.name, o) is not None for o in _finite(v) or []):
            return []
        return tried

    def _same_words(self, v: Variable, value: Any) -> str:
        """What `value`, a text, repeats word for word (only its punctuation or spacing
        differs): "the current value", a value already tried, or "" when it is new."""
        words = _words(value)
        if words is None:
            return ""
        if words == _words(v.value):
            return "the current value"
        if self.avoid_tried and any(words == _words(t) for t in self.memory.tried(v.name)):
            return "a value already tried"
        return ""

    def _tried_note(self, v: Variable, value: Any) -> str:
        """Why `value` is refused as already tried ("" when it is not)."""
        if not self.avoid_tried or not self._excluded(v):
            return ""
        record = self.memory.record_of(v.name, value)
        if record is None:
            return ""
        return (f"{shorten(value, 80)} was already tried (step {record.step + 1}: "
                f"{shorten(record.note(), 160, raw_str=True)}); {_REPEATS[0]}")

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
            if self._tell_described:
                kwargs["described"] = True  # the prompt states the reply's form (reply_instructions)
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
            cand.values, cand.problems = self._validate(parsed, problem)
            cand.repeated = cand.repeated or (bool(cand.problems) and all(
                p.endswith(_REPEATS) for p in cand.problems.values()))
            # unusable: nothing usable, and some value pasted from the prompt (the others, if
            # any, only repeated)
            cand.unusable = cand.unusable or (bool(cand.problems) and not cand.values and all(
                p.endswith((UNUSABLE, *_REPEATS)) for p in cand.problems.values())
                and any(p.endswith(UNUSABLE) for p in cand.problems.values()))
            cand.unknown = parsed.unknown
            cand.reasoning = parsed.reasoning
            if cand.values:
                return cand
            why = parsed.problem or "; ".join(f"{k}: {v}" for k, v in cand.problems.items()) \
                or "no variable got a new value"
            cand.error = why[:500]
            if self.explore and (cand.unusable or _same_words_only(cand.problems)):
                # a reply pasted from the prompt (or of another form), or a text with the same
                # words as one known ("a, b" -> "a, b,"), is not re-asked: a small model's
                # re-ask pastes again, and the step's exploration costs no call
                return cand
            if parsed.cut:  # re-ask with room for a longer reply
                cand.cut_off += 1
                kwargs["max_tokens"] = min(2 * int(kwargs["max_tokens"]), MAX_REPLY_TOKENS)
                why += "; reply more briefly"
            current = _reask(messages, why)
            # a greedy re-ask repeats the refused reply: ask warmer, with another seed
            kwargs["temperature"] = min(max(temperature, REASK_TEMPERATURE) + REASK_WARMING * attempt,
                                        MAX_TEMPERATURE)
            if seed is not None:
                kwargs["seed"] = seed + 100 * (attempt + 1)
        return cand

    def _validate(self, parsed: Parsed, problem: Problem) -> tuple[dict[str, Any], dict[str, str]]:
        values: dict[str, Any] = {}
        problems: dict[str, str] = {}
        variables = problem.variables
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
                problems[v.name] = "the suggestion equals the current value; " + _REPEATS[0]
                continue
            if v.kind == "text" and (same := self._same_words(v, value)):
                problems[v.name] = f"{SAME_WORDS} {same}; " + _REPEATS[0]
                continue
            if v.kind == "text" and (copied := _copied(value, v, problem)):
                problems[v.name] = f"{v.name} copies {copied} {UNUSABLE}"
                continue
            # the form is the one of the first value remembered (a list that an exploration
            # cut to one word is still a list)
            first = next(iter(self.memory.tried(v.name)), v.value)
            if v.kind == "text" and (broken := breaks_form(first, value) or breaks_form(v.value, value)):
                problems[v.name] = f"{v.name}: {broken}; give a list of the same form {UNUSABLE}"
                continue
            note = self._tried_note(v, value) if len(variables) == 1 else ""
            if note:
                problems[v.name] = note
                continue
            values[v.name] = value
        if len(variables) > 1 and values and self.avoid_tried:
            assignment = {v.name: values.get(v.name, v.value) for v in variables}
            if self.memory.assignment_tried(assignment):
                for name in values:
                    problems[name] = "these values together were already tried; " + _REPEATS[1]
                values = {}
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
        chosen: Candidate | None
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
            return _run(objective, values)

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
            current = {**self._current, **c.values}
            self.memory.record(current, self.steps, f"failed ({c.eval_error})" if c.eval_error else "",
                               loss=c.loss)
        best = min(valid, key=lambda c: (c.loss, c.index))  # ties: the earliest (coolest) one
        best_loss = cast(float, best.loss)  # every valid candidate was scored above
        if best_loss < baseline - self.min_improvement or (math.isinf(baseline) and math.isfinite(best_loss)):
            return baseline, best
        return baseline, None

    # --- exploration -------------------------------------------------------------------------
    def _explore(self, problem: Problem, candidates: list[Candidate], objective: Objective | None,
                 baseline: float | None, reasons: dict[str, str]) -> tuple[float | None, int | None, dict[str, str]]:
        """The step's own proposal when the model gave nothing usable (or, with an
        objective, nothing better): appended to `candidates` and, without an objective or
        when it beats the current values, chosen. Returns (baseline, chosen, name -> how)."""
        rng = random.Random(None if self.seed is None else self.seed * 7919 + self.steps)
        texts = [v.value for v in problem.values if v.role == "input" and isinstance(v.value, str)]
        why = ("no LLM candidate beat the current value" if any(c.valid for c in candidates)
               else "the model only repeated values already tried" if any(c.repeated for c in candidates)
               else "the model only gave values that cannot be used (pasted from the prompt, or of "
                    "another form)")
        values: dict[str, Any] = {}
        how: dict[str, str] = {}
        several = len(problem.variables) > 1
        for attempt in range(12):  # several parameters: a combination not tried yet
            values, how = {}, {}
            for v in problem.variables:
                # after the first draw, a parameter may keep its value, and values tried
                # alone may come back in a new combination
                if attempt and rng.random() < 0.5:
                    continue
                found = explore(v, self.memory.tried(v.name) if not attempt else [], rng, texts)
                if found is not None:
                    values[v.name], how[v.name] = found
            if not several or (values and not self.memory.assignment_tried({**self._current, **values})):
                break
        else:
            values, how = {}, {}
        if not values:
            for v in problem.variables:
                reasons[v.name] = _bounded(f"{reasons.get(v.name, 'kept')}; no exploratory value to try "
                                           f"({'code is not explored' if v.kind == 'code' else 'none left'})")
            return baseline, None, {}
        cand = Candidate(index=len(candidates), temperature=None, seed=None, values=values,
                         reasoning="exploration: " + "; ".join(f"{k}: {h}" for k, h in how.items()),
                         explored=dict(how))
        candidates.append(cand)
        change = ""
        if objective is not None:
            if baseline is None:
                baseline = _run(objective, {})[0]
            cand.loss, cand.eval_error = _run(objective, values)
            self.memory.record({**self._current, **values}, self.steps,
                               f"failed ({cand.eval_error})" if cand.eval_error else "", loss=cand.loss)
            better = cand.loss < baseline - self.min_improvement or (math.isinf(baseline) and math.isfinite(cand.loss))
            if not better:
                for v in problem.variables:
                    reasons[v.name] = _bounded(f"{reasons.get(v.name, 'kept')}; an exploratory proposal did not "
                                               f"beat it either (loss {cand.loss:.6g})")
                return baseline, None, {}
            change = f", loss {baseline:.6g} -> {cand.loss:.6g}"
        for name, h in how.items():
            earlier = reasons.get(name, "").removeprefix("kept: ")
            reasons[name] = _bounded(f"explored: {h}, because {why}{change}" + (f" ({earlier})" if earlier else ""))
        return baseline, cand.index, how


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


def _run(objective: Objective, values: dict[str, Any]) -> tuple[float, str]:
    """The objective's loss for `values` and "" — or inf and why, when it fails."""
    try:
        loss = float(objective(values))
    except Exception as exc:
        return math.inf, describe(exc, limit=200)
    return (loss, "") if math.isfinite(loss) else (math.inf, f"objective returned {loss}")


def _bounded(text: str) -> str:
    return text if len(text) <= 500 else text[:497] + "..."


def _finite(v: Variable) -> list[Any] | None:
    """Every value `v` can take, when it can take few (choices, a small integer range)."""
    if v.kind == "categorical":
        return list(v.choices or [])
    if v.kind == "numeric" and isinstance(v.value, bool):
        return [False, True]
    if (v.kind == "numeric" and v.value_type == "int" and v.bounds is not None
            and v.bounds[1] - v.bounds[0] <= SMALL_INT_RANGE):
        return list(range(math.ceil(v.bounds[0]), math.floor(v.bounds[1]) + 1))
    return None


def _copied(value: Any, v: Variable, problem: Problem) -> str:
    """What a proposed text copies from the prompt instead of being a value of its own ("" when
    nothing): a whole feedback line (tiny models paste the feedback into the variable), or
    the variable's description and the trace's input texts making up at least `COPY_SHARE`
    of it (they paste the instructions or an example). What the current value already holds
    does not count, and a long text that quotes one example is not a copy."""
    if not isinstance(value, str):
        return ""
    if CUT_MARK.search(value) and not (isinstance(v.value, str) and CUT_MARK.search(v.value)):
        return "the prompt's mark of a shortened text"
    text = normal_form(value)
    now = normal_form(v.value) if isinstance(v.value, str) else ""
    for piece in own_wording(problem):
        form = normal_form(piece)
        if form in text and form not in now:
            return f"the prompt's own wording ({shorten(piece, 60)})"
    for line in (ln for f in problem.feedback for ln in str(f).splitlines()):
        form = normal_form(line.strip())
        if len(form) >= COPY_CHARS and form in text and form not in now:
            return f"the feedback ({shorten(line.strip(), 80)})"
    pieces = [("the description", v.description)]
    pieces += [("an input of the trace", x.value) for x in problem.values
               if x.role == "input" and isinstance(x.value, str)]
    covered, first = 0, ""
    for what, piece in pieces:
        form = normal_form(piece.strip()) if piece else ""
        if len(form) >= COPY_INPUT_CHARS and form in text and form not in now:
            covered += text.count(form) * len(form)
            first = first or f"{what} ({shorten(piece.strip(), 80)})"
    return first if text and covered >= COPY_SHARE * len(text) else ""


def _words(value: Any) -> tuple[str, ...] | None:
    """A text's words, lowered (None for other values): what a text says, punctuation aside."""
    return tuple(re.findall(r"\w+", value.lower())) if isinstance(value, str) else None


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
