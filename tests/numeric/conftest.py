"""Fixtures for the numeric tests: one torch thread while a test runs (restored after).

The tensors here are tiny: a second intra-op thread only adds synchronization, which on a
busy machine costs more than the work itself.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
