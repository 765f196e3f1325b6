"""One torchrun worker that runs the real ``cidpipe`` CLI and records what each rank's CID distiller holds.

Usage (as torchrun's training script): rank_probe.py DUMP_DIR cidpipe-arguments...
After every ``on_epoch_end`` this rank writes DUMP_DIR/rank{R}-epoch{E}.pt with its local dictionary
weight sums (before the all-reduce), the next dictionary (after it), the dictionary in use and the
trainable parameters. Observation only: the CLI, the stage, the loop and the distiller run unchanged.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from cidpipe.cli.main import main
from cidpipe.distill.methods.cid import CIDDistiller

DUMP_DIR = Path(sys.argv[1])
_original_on_epoch_end = CIDDistiller.on_epoch_end


def _recording_on_epoch_end(self: CIDDistiller, epoch: int) -> None:
    local_weight_sum = self.dictionary_weight_sum.clone()
    _original_on_epoch_end(self, epoch)
    record = {
        "local_weight_sum": local_weight_sum,
        "next_dictionary": self.next_dictionary.clone(),
        "dictionary": self.dictionary.clone(),
        "parameters": {name: p.detach().clone() for name, p in self.named_parameters()},
    }
    torch.save(record, DUMP_DIR / f"rank{os.environ['RANK']}-epoch{epoch}.pt")


CIDDistiller.on_epoch_end = _recording_on_epoch_end

if __name__ == "__main__":
    main(sys.argv[2:])
