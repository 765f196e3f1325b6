"""Fixtures shared with tests/export: the same trained digits net and CID stand-in (export_nets.py)."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch

# export_nets.py lives beside the export tests; one copy of the models for both areas.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))
from export_nets import SmallConvNet, digits_32, make_cid_standin, train  # noqa: E402

from cidpipe.export.torch2onnx import export_onnx  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _few_threads():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits():
    return digits_32()


@pytest.fixture(scope="session")
def trained_net(digits):
    torch.manual_seed(0)
    return train(SmallConvNet(), digits[0], digits[1])


@pytest.fixture(scope="session")
def fp32_onnx(trained_net, tmp_path_factory):
    return export_onnx(trained_net, (1, 32, 32), tmp_path_factory.mktemp("fp32") / "student.onnx")


@pytest.fixture(scope="session")
def cid_onnx(trained_net, digits, tmp_path_factory):
    model = make_cid_standin(copy.deepcopy(trained_net), digits[0], digits[1])
    return export_onnx(model, (1, 32, 32), tmp_path_factory.mktemp("cid") / "cid.onnx")
