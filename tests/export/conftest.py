"""Fixtures: a trained digits conv net and its CID stand-in (trained once per session, a few seconds)."""

from __future__ import annotations

import pytest
import torch
from export_nets import SmallConvNet, digits_32, make_cid_standin, train


@pytest.fixture(scope="session", autouse=True)
def _few_threads():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits():
    return digits_32()


@pytest.fixture(scope="session")
def trained_net(digits):
    x_train, y_train, _, _ = digits
    torch.manual_seed(0)
    return train(SmallConvNet(), x_train, y_train)


@pytest.fixture(scope="session")
def cid_model(trained_net, digits):
    import copy

    x_train, y_train, _, _ = digits
    return make_cid_standin(copy.deepcopy(trained_net), x_train, y_train)
