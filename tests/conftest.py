"""Shared fixtures: tiny real models saved in the native format, and the reference fixture folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from apollo_restore.checkpoint import save_model
from apollo_restore.model import Apollo, ApolloConfig
from prerequisites import REFERENCE_FIXTURES, require


def tiny_config(**overrides) -> ApolloConfig:
    """A model small enough to run a second of audio in milliseconds, with the real architecture."""
    return ApolloConfig(**{"feature_dim": 16, "num_layers": 1, "num_heads": 2, **overrides})


def tiny_model(seed: int = 0, **overrides) -> Apollo:
    torch.manual_seed(seed)
    return Apollo(tiny_config(**overrides)).eval()


@pytest.fixture
def single_thread():
    """Tiny networks run faster on one thread of a shared 2-core machine (use with ``pytestmark``)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> Path:
    """A native checkpoint folder holding a tiny random model."""
    return save_model(tiny_model(), tmp_path / "tiny-model")


@pytest.fixture
def reference_fixtures() -> Path:
    """The reference implementation's checkpoints and output (``tests/prerequisites.py``)."""
    return require(REFERENCE_FIXTURES, "APOLLO_REFERENCE_FIXTURES")
