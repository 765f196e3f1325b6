"""Multi-process training through torchrun: DDP when WORLD_SIZE > 1, a no-op otherwise.

The data order is identical on every rank (same seeded generator) and rank r trains on batches
r, r+W, r+2W, ... so no sampler state has to be saved for an exact resume. Every rank must take the
same number of optimizer steps (each backward is a collective, and a rank that stopped early would leave
the others waiting), so the last round of an epoch is used only when it is complete: at most W-1
batches per epoch are skipped, different ones each epoch because the order is reshuffled.

Method state that must agree across ranks (CID's dictionary) is all-reduced by the method itself at
the epoch end. Rank 0 alone evaluates, writes checkpoints and publishes the stage; the other ranks take
its decisions through :func:`broadcast_float` and wait at :func:`barrier`.
"""

from __future__ import annotations

import atexit
import os

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def launched_world_size() -> int:
    """WORLD_SIZE as torchrun set it (1 when this process was not started by a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_from_env(device: str) -> str:
    """Join the process group torchrun describes in the environment; returns this rank's device.

    A no-op for a single process (the device comes back unchanged). Under torchrun, CUDA uses NCCL and
    rank-local GPU ``cuda:LOCAL_RANK`` (also made the current device, so a bare "cuda" means it too);
    CPU uses gloo. Idempotent: a second call (the next stage of ``cidpipe run``) reuses the group.
    """
    if launched_world_size() <= 1:
        return device
    on_cuda = device.startswith("cuda")
    if on_cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if on_cuda else "gloo")
        # On an error exit there is no final barrier (a peer may be stuck in a collective; torchrun
        # stops the others when this process exits), only the group's own cleanup.
        atexit.register(shutdown, wait=False)
    return device


def shutdown(wait: bool = True) -> None:
    """Destroy the process group; ``wait`` first meets the other ranks, so none leaves while one talks."""
    if dist.is_available() and dist.is_initialized():
        if wait and dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_float(value: float, device: str, src: int = 0) -> float:
    """Every rank gets rank ``src``'s value (e.g. the validation accuracy that picks the best epoch)."""
    if not is_distributed():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(tensor, src=src)
    return float(tensor.item())


def all_true(flag: torch.Tensor) -> torch.Tensor:
    """A boolean that is True on every rank only when it is True on all of them (divergence checks)."""
    if not is_distributed():
        return flag
    as_int = flag.to(torch.int32).reshape(1)
    dist.all_reduce(as_int, op=dist.ReduceOp.MIN)
    return as_int[0].bool()


def all_reduce_sum_(tensors: list[torch.Tensor]) -> None:
    """In-place sum over ranks (epoch metrics, so rank 0's history describes the whole epoch)."""
    if not is_distributed():
        return
    for tensor in tensors:
        dist.all_reduce(tensor)


def steps_this_epoch(steps_per_epoch: int, world: int) -> int:
    """Batches of the epoch that are trained: whole rounds of ``world`` batches only (see the docstring)."""
    if world <= 1:
        return steps_per_epoch
    return (steps_per_epoch // world) * world


def wrap(module: torch.nn.Module, device: str, find_unused_parameters: bool = False) -> torch.nn.Module:
    """DistributedDataParallel around ``module`` under a multi-process group, else ``module`` itself.

    ``find_unused_parameters`` comes from the distiller (``ddp_find_unused_parameters``): only methods
    with parameters that skip some steps (CID's head during warm-up) pay for the unused-parameter search.
    """
    if not is_distributed():
        return module
    device_ids = None
    if device.startswith("cuda"):
        index = torch.device(device).index
        device_ids = [index if index is not None else torch.cuda.current_device()]
    return torch.nn.parallel.DistributedDataParallel(
        module, device_ids=device_ids, find_unused_parameters=find_unused_parameters
    )
