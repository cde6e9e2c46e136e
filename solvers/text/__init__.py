"""The LLM text and code optimizer (OptoPrime-style), usable without tracekit.

Describe the problem with plain dataclasses (`Problem`, `Variable`, `Call`, `Value`),
give any callable `llm(messages, **kwargs) -> str`, and call `TextOptimizer(llm).step(problem)`:
it builds a prompt within a token budget, asks for `{"suggestion": {...}, "reasoning": ...}`,
validates every value for its kind, optionally searches over several candidates with an
objective, and returns the chosen values and the reasons. Across steps it remembers, per
variable, the values tried and what followed (`memory.py`), never proposes one again while
untried ones remain, and explores by itself when stuck (`explore.py`).
"""

from .problem import Call, Candidate, MemoryEntry, Problem, Result, Value, Variable
from .prompt import DEFAULT_BUDGET, Prompt, build_prompt, estimate_tokens, rank_calls, shorten
from .reply import ReplyError, check_code, check_value, extract_json, parse_reply, reply_model
from .search import TextOptimizer

__all__ = [
    "DEFAULT_BUDGET",
    "Call",
    "Candidate",
    "MemoryEntry",
    "Problem",
    "Prompt",
    "ReplyError",
    "Result",
    "TextOptimizer",
    "Value",
    "Variable",
    "build_prompt",
    "check_code",
    "check_value",
    "estimate_tokens",
    "extract_json",
    "parse_reply",
    "rank_calls",
    "reply_model",
    "shorten",
]
