"""Fixtures of tests/data: one thread, and small on-disk datasets written by the tests themselves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from data_fakes import write_fake_cifar, write_fake_fashion, write_fake_imagefolder

FAKE_FASHION_TRAIN = 600
FAKE_FASHION_TEST = 200


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def fake_roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One small on-disk copy of every file-backed dataset, written once per session."""
    base = tmp_path_factory.mktemp("datasets")
    write_fake_fashion(base / "fashion", FAKE_FASHION_TRAIN, FAKE_FASHION_TEST)
    write_fake_cifar(base / "cifar", "cifar10")
    write_fake_cifar(base / "cifar", "cifar100")
    write_fake_imagefolder(base / "folder")
    return {"fashion-mnist": base / "fashion", "cifar10": base / "cifar", "cifar100": base / "cifar",
            "imagefolder": base / "folder", "digits": base}
