"""Model selection never keeps a CID warm-up epoch: that epoch's model is the plain student, not the CID
graph (head g, dictionary D) the method deploys; a small validation split made a warm-up epoch tie for
best and the "CID" student was exported without its head."""

from __future__ import annotations

import pytest
import torch

from cidpipe.distill.config import DistillConfig
from cidpipe.distill.registry import build_distiller
from cidpipe.models import build_model
from cidpipe.training.state import FitState


def cid_distiller(warmup: int):
    torch.manual_seed(0)
    cfg = DistillConfig(method="cid").model_copy(deep=True)
    cfg.cid.warmup_epochs = warmup
    student, teacher = build_model("tinycnn", 4), build_model("tinycnn", 4)
    return build_distiller("cid", student, teacher, cfg, num_classes=4, epochs=warmup + 2)


@pytest.mark.parametrize("select", ["best_val", "last"])
def test_warm_up_epochs_are_never_selected(select):
    distiller = cid_distiller(warmup=2)
    assert distiller.first_selectable_epoch == 2
    state = FitState()
    for epoch, val in enumerate([90.0, 90.0, 60.0, 70.0]):  # the warm-up epochs score best
        state.select(select, {"epoch": epoch, "val_top1": val}, distiller)
    assert state.selected_epoch == 3 and state.selected_val_top1 == 70.0


def test_a_tie_after_warm_up_keeps_the_earliest_cid_epoch():
    distiller = cid_distiller(warmup=1)
    state = FitState()
    for epoch, val in enumerate([25.0, 25.0, 25.0]):
        state.select("best_val", {"epoch": epoch, "val_top1": val}, distiller)
    assert state.selected_epoch == 1 and state.selected_weights is not None


def test_other_methods_select_from_the_first_epoch():
    torch.manual_seed(0)
    student, teacher = build_model("tinycnn", 4), build_model("tinycnn", 4)
    kd = build_distiller("kd", student, teacher, DistillConfig(method="kd"), num_classes=4, epochs=3)
    state = FitState()
    for epoch, val in enumerate([80.0, 70.0]):
        state.select("best_val", {"epoch": epoch, "val_top1": val}, kd)
    assert state.selected_epoch == 0
