"""default(), set_default() and the embedded model's missing-install errors (no server)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import tracekit.llm as tkllm
from tracekit.llm import EmbeddedLLM, EmbeddedModelError, OpenAICompatible
from tracekit.llm.embedded import EmbeddedServer, find_model_file

ENV = ("TRACEKIT_LLM_MODEL", "TRACEKIT_LLM_BASE_URL", "OPENAI_API_KEY", "TRACEKIT_LLM_API_KEY")


@pytest.fixture
def clean_env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    tkllm.set_default(None)
    yield monkeypatch
    tkllm.set_default(None)


def test_default_is_the_embedded_model_when_nothing_is_configured(clean_env):
    clean_env.setenv("OPENAI_API_KEY", "sk-unused")  # a key alone does not switch
    llm = tkllm.default()
    assert isinstance(llm, EmbeddedLLM) and tkllm.default() is llm
    assert llm.accounting.prices == {} and llm.free


def test_default_follows_the_environment(clean_env):
    clean_env.setenv("TRACEKIT_LLM_BASE_URL", "http://127.0.0.1:8000/v1")
    clean_env.setenv("TRACEKIT_LLM_MODEL", "qwen")
    llm = tkllm.default()
    assert isinstance(llm, OpenAICompatible) and not isinstance(llm, EmbeddedLLM)
    assert (llm.model, llm.base_url) == ("qwen", "http://127.0.0.1:8000/v1")
    tkllm.set_default(None)
    clean_env.setenv("TRACEKIT_LLM_MODEL", "embedded")
    assert isinstance(tkllm.default(), EmbeddedLLM)


def test_set_default_and_as_backend_none(clean_env):
    tkllm.set_default(lambda messages: "mine")
    assert tkllm.as_backend(None)("q") == "mine"


def test_missing_model_file_says_how_to_install(tmp_path):
    with pytest.raises(EmbeddedModelError, match="make setup") as info:
        find_model_file(tmp_path / "nope.gguf")
    assert "TRACEKIT_LLM_BASE_URL" in str(info.value)


def test_a_server_that_dies_at_start_is_reported(tmp_path):
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a model")
    server = EmbeddedServer(bogus, startup_timeout=60)
    with pytest.raises(EmbeddedModelError) as info:
        server.ensure_started()
    assert "scripts/setup.sh" in str(info.value)
    assert not server.running


def test_server_command_uses_context_and_seed():
    command = EmbeddedServer(n_ctx=4096, seed=7).command(Path("m.gguf"), 1234)
    joined = " ".join(command)
    assert "--n_ctx 4096" in joined and "--seed 7" in joined and "--host 127.0.0.1" in joined


def test_start_up_timeout_stops_the_server_and_says_so(tmp_path, monkeypatch):
    import tracekit.llm.embedded as embedded

    monkeypatch.setattr(embedded, "find_model_file", lambda path=None: tmp_path / "m.gguf")
    monkeypatch.setattr(
        EmbeddedServer, "command",
        lambda self, model, port: [sys.executable, "-c", "import time; time.sleep(30)"],
    )
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: object())
    server = EmbeddedServer(startup_timeout=0.5)
    with pytest.raises(EmbeddedModelError, match="did not answer within 0.5s"):
        server.ensure_started()
    assert not server.running
