"""Fixtures of the LLM-layer tests: a scripted fake server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from llm_fake_server import FakeOpenAIServer


@pytest.fixture
def fake_server() -> Iterator[FakeOpenAIServer]:
    """A fresh scripted OpenAI-compatible server on 127.0.0.1."""
    with FakeOpenAIServer() as server:
        yield server
