"""One rank of the CID dictionary all-reduce test (run as a script, one process per rank, gloo on CPU).

Usage: python cid_ddp_worker.py RANK WORLD_SIZE PORT OUTPUT_FILE. With WORLD_SIZE 1 it runs without
torch.distributed: the single-process reference. Each rank takes its share of every batch of a fixed
sequence, wraps the distiller in DistributedDataParallel (broadcast_buffers on, as by default) and runs
a warm-up epoch and one post-warm-up epoch of forward/backward steps without optimizer steps, so the
weights (and so the features) stay identical to the single-process run; the student has no BatchNorm,
so a sample's feature does not depend on which half-batch it is in.
"""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist
from distill_tiny_models import make_batches, make_pair

from cidpipe.distill import build_distiller
from cidpipe.distill.config import DistillConfig

NUM_CLASSES = 6


def run(rank: int, world_size: int) -> dict[str, torch.Tensor]:
    torch.set_num_threads(1)
    cfg = DistillConfig()
    cfg.cid.warmup_epochs = 1
    cfg.cid.dictionary_momentum = 0.25
    student, teacher = make_pair(num_classes=NUM_CLASSES, batch_norm=False)
    distiller = build_distiller("cid", student, teacher, cfg, num_classes=NUM_CLASSES, epochs=3)
    model = distiller
    if world_size > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            distiller, find_unused_parameters=distiller.ddp_find_unused_parameters
        )
    distiller.train()
    weight_sums = []
    for epoch, seed in [(0, 11), (1, 12)]:
        distiller.on_epoch_start(epoch)
        for x, y in make_batches(4, 16, NUM_CLASSES, seed=seed):
            model(x[rank::world_size], y[rank::world_size]).loss.backward()
        weight_sums.append(distiller.dictionary_weight_sum.clone())
        distiller.on_epoch_end(epoch)
    return {
        "next_dictionary": distiller.next_dictionary.clone(),
        "dictionary": distiller.dictionary.clone(),
        "local_weight_sum": weight_sums[-1],
    }


def main() -> None:
    rank, world_size, port, output = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    if world_size > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        dist.init_process_group("gloo", rank=rank, world_size=world_size)
    result = run(rank, world_size)
    torch.save(result, output)
    if world_size > 1:
        # Both ranks finish before either tears gloo down: a peer closing its pairs while the other still
        # holds them can abort the other process at exit ("terminate called without an active exception").
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
