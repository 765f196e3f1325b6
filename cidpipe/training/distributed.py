"""Multi-process training through torchrun: DDP when WORLD_SIZE > 1, a no-op otherwise.

The data order is identical on every rank (same seeded generator) and rank r trains on batches
r, r+W, r+2W, ... so no sampler state has to be saved for an exact resume. Method state that must agree
across ranks (CID's dictionary) is all-reduced by the method itself at the epoch end.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env(device: str) -> None:
    """Join the process group torchrun describes in the environment (no-op for a single process)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")


def wrap(module: torch.nn.Module, device: str) -> torch.nn.Module:
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return module
    device_ids = [torch.device(device).index or 0] if device.startswith("cuda") else None
    # CID's head is unused during warm-up, so some parameters get no gradient in some steps.
    return torch.nn.parallel.DistributedDataParallel(
        module, device_ids=device_ids, find_unused_parameters=True
    )
