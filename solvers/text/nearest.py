"""Nearest demos: the labelled examples most like a call's inputs, by Okapi BM25.

Small models copy the answers of worked examples that resemble the question far more
reliably than they follow an instruction (retrieved in-context examples, as in DSPy's
`KNNFewShot`). `NearestDemos` indexes the rows once and, per call, returns the `k` rows
whose input fields score highest against the call's inputs, the most similar last (next to
the question). A row with the same inputs as the call is left out, so a training example is
never its own demo.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """Lower-cased word tokens of a text."""
    return _WORD.findall(text.lower())


class NearestDemos:
    """BM25 over the input fields of labelled rows; `pick(values, k)` per call."""

    def __init__(self, rows: Sequence[dict[str, Any]], inputs: Sequence[str]) -> None:
        from rank_bm25 import BM25Okapi

        self.rows = list(rows)
        self.inputs = list(inputs)
        self._keys = [self._key(row) for row in self.rows]
        corpus = [words(key) or ["_"] for key in self._keys]
        self._index = BM25Okapi(corpus) if corpus else None

    def _key(self, row: dict[str, Any]) -> str:
        return "\n".join(str(row[name]) for name in self.inputs)

    def pick(self, values: dict[str, Any], k: int) -> list[dict[str, Any]]:
        """The `k` rows most similar to `values` (ties keep the rows' order), the most similar
        last; rows whose inputs equal `values` are left out."""
        if self._index is None or k <= 0:
            return []
        key = self._key(values)
        scores = self._index.get_scores(words(key) or ["_"])
        ranked = sorted((i for i in range(len(self.rows)) if self._keys[i] != key),
                        key=lambda i: (-scores[i], i))
        return [self.rows[i] for i in reversed(ranked[:k])]
