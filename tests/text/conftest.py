"""Fixtures of the text-optimizer tests."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest


@pytest.fixture
def real_llm(request: pytest.FixtureRequest) -> Any:
    """The real embedded model: the session fixture of tests/conftest.py when there is one."""
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("the embedded model (llama-cpp-python[server]) is not installed")
    for name in ("embedded_llm_nocache", "embedded_llm"):
        try:
            return request.getfixturevalue(name)
        except pytest.FixtureLookupError:
            continue
    from tracekit.llm import EmbeddedLLM

    return EmbeddedLLM(cache=False)
