"""Shared fixtures of the distillation tests: tiny models with the zoo's feature API, small threads."""

from __future__ import annotations

import pytest
import torch

from cidpipe.distill.config import DistillConfig


@pytest.fixture(autouse=True)
def _few_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def distill_cfg() -> DistillConfig:
    """Short CID warm-up so the tests reach the post-warm-up phase in a few calls."""
    cfg = DistillConfig()
    cfg.cid.warmup_epochs = 2
    cfg.dkd.warmup_epochs = 4
    cfg.fitnet.hint_weight = 7.0  # not 1, so a weight that is ignored shows
    return cfg
