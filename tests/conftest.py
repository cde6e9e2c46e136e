"""Shared test fixtures.

LLM fixtures (owned by the LLM layer):

- `embedded_llm` (session): the real embedded model (SmolLM2-135M on llama.cpp), started once
  per test session with its cache in a private directory. Tests that use it should be marked
  `@pytest.mark.real_llm`. When llama-cpp-python or the model is not installed the tests are
  skipped with the install hint, unless TRACEKIT_REQUIRE_REAL_LLM=1 (CI), which fails them.
- `embedded_llm_nocache` (function): the same server, without a cache, fresh accounting.
- The whole session writes LLM caches under a temporary TRACEKIT_CACHE_DIR, never ~/.cache.

Property-based (hypothesis) suites run the "ci" profile by default: few examples, no
deadline. Run them long with `--hypothesis-profile=long` or `HYPOTHESIS_PROFILE=long`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

# Property-based tests (tests/hostile, tests/core/test_damaged_files.py): few examples by
# default so that CI stays fast; HYPOTHESIS_PROFILE=long runs thousands (docs/guarantees.md).
_checks = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
settings.register_profile("ci", max_examples=25, deadline=None, suppress_health_check=_checks)
settings.register_profile("long", max_examples=3000, deadline=None, suppress_health_check=_checks)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session", autouse=True)
def _private_llm_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point TRACEKIT_CACHE_DIR at a temporary directory for the whole session."""
    path = tmp_path_factory.mktemp("tracekit-cache")
    previous = os.environ.get("TRACEKIT_CACHE_DIR")
    os.environ["TRACEKIT_CACHE_DIR"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("TRACEKIT_CACHE_DIR", None)
    else:
        os.environ["TRACEKIT_CACHE_DIR"] = previous


def _start_embedded(**options: Any) -> Any:
    from tracekit.llm import EmbeddedLLM, EmbeddedModelError

    llm = EmbeddedLLM(**options)
    try:
        llm.server.ensure_started()
    except EmbeddedModelError as error:
        if os.environ.get("TRACEKIT_REQUIRE_REAL_LLM") == "1":
            pytest.fail(f"embedded model required but unavailable: {error}")
        pytest.skip(f"embedded model unavailable: {error}")
    return llm


@pytest.fixture(scope="session")
def embedded_llm(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The real embedded backend, one server per session, cache in a private directory."""
    return _start_embedded(cache=tmp_path_factory.mktemp("embedded-llm-cache"))


@pytest.fixture
def embedded_llm_nocache(embedded_llm: Any) -> Any:
    """A backend on the same server with no cache and its own (zeroed) accounting."""
    from tracekit.llm import EmbeddedLLM

    return EmbeddedLLM(cache=False)
