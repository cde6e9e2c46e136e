"""Fixtures for the training tests: an empty solver registry and scripted solvers."""

from __future__ import annotations

import pytest

from tracekit import seam as registry


@pytest.fixture
def empty_registry(monkeypatch):
    """No solver registered and no built-in found: tests register scripted solvers."""
    monkeypatch.setattr(registry, "_factories", {})
    monkeypatch.setattr(registry, "_BUILTIN", {})
