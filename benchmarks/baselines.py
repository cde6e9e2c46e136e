"""Baselines shared by the benchmarks: an 'LLM' that proposes at random."""

from __future__ import annotations

import json
import random
import re
from typing import Any


class RandomProposals:
    """A baseline 'LLM' that ignores the prompt and proposes random values."""

    def __init__(self, params: list[Any], seed: int) -> None:
        self.params = params
        self.rng = random.Random(seed)

    def __call__(self, messages: list[dict[str, str]], **kwargs: Any) -> str:
        words = re.findall(r"[a-z]+", messages[-1]["content"].lower())
        suggestion = {}
        for p in self.params:
            if p.kind == "numeric":
                lo, hi = p.bounds
                suggestion[p.name] = (self.rng.randint(int(lo), int(hi)) if isinstance(p.raw, int)
                                      else round(self.rng.uniform(lo, hi), 3))
            elif p.kind == "categorical":
                suggestion[p.name] = self.rng.choice(p.choices)
            else:
                suggestion[p.name] = ", ".join(self.rng.sample(words, k=min(len(words), self.rng.randint(1, 4))))
        return json.dumps({"suggestion": suggestion, "reasoning": "random"})
