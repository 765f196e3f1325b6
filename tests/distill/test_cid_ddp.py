"""CID under torch.distributed: two real gloo processes on CPU build the same dictionary as one process."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import cid_ddp_worker
import pytest
import torch

WORKER = Path(__file__).with_name("cid_ddp_worker.py")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(rank: int, world_size: int, port: int, output: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(rank), str(world_size), str(port), str(output)],
        cwd=WORKER.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


@pytest.mark.timeout(120)
def test_two_ranks_hold_the_single_process_dictionary(tmp_path):
    port = _free_port()
    outputs = [tmp_path / f"rank{rank}.pt" for rank in range(2)]
    processes = [_launch(rank, 2, port, outputs[rank]) for rank in range(2)]
    single = cid_ddp_worker.run(0, 1)  # the reference, in this process while the ranks start
    for process in processes:
        log, _ = process.communicate(timeout=100)
        assert process.returncode == 0, log
    rank0, rank1 = (torch.load(path, weights_only=True) for path in outputs)
    # Each rank saw different samples, so the local sums differ: the all-reduce is what makes D agree.
    assert not torch.allclose(rank0["local_weight_sum"], rank1["local_weight_sum"])
    torch.testing.assert_close(
        rank0["local_weight_sum"] + rank1["local_weight_sum"], single["local_weight_sum"], atol=1e-5, rtol=0
    )
    for key in ("dictionary", "next_dictionary"):
        assert torch.equal(rank0[key], rank1[key]), key
        torch.testing.assert_close(rank0[key], single[key], atol=1e-5, rtol=0)
    assert single["next_dictionary"].abs().sum() > 0
