"""Fine-tuning options of train.*: AdamW, linear warm-up, backbone/head LR factors, label smoothing.

The defaults must leave the optimizer, its groups, every LR and every loss exactly as before; the new
options must keep resume bit-identical. Real data: sklearn digits at 16 px, a tiny CNN.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cidpipe.config import validate_recipe
from cidpipe.data.config import DataConfig
from cidpipe.data.registry import load_dataset
from cidpipe.distill.registry import build_distiller
from cidpipe.errors import ConfigError
from cidpipe.models import build_model
from cidpipe.train_config import OptimConfig
from cidpipe.training.engine import build_engine
from cidpipe.training.loop import RunSettings, fit
from cidpipe.training.schedule import build_optimizer, learning_rate, lr_scaled_groups, set_learning_rate
from tests.conftest import tiny_recipe_dict

FINETUNE = dict(optimizer="adamw", lr=2e-3, betas=(0.9, 0.99), weight_decay=0.01, warmup_epochs=1,
                label_smoothing=0.1, backbone_lr_scale=0.5, head_lr_scale=2.0, schedule="cosine")


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DataConfig(name="digits", input_size=16, limit_train=384))


def _teacher_distiller(bundle, epochs: int):
    torch.manual_seed(0)
    model = build_model("tinycnn", bundle.num_classes, in_channels=3)
    recipe = validate_recipe(tiny_recipe_dict("/tmp/unused"))
    return build_distiller("ce", model, None, recipe.distill, num_classes=bundle.num_classes, epochs=epochs)


def test_new_keys_stay_out_of_the_dump_at_their_defaults() -> None:
    # Stage ids hash this dump: a recipe that does not use the new keys keeps the id it had.
    dumped = OptimConfig().model_dump(mode="json")
    new_keys = {"optimizer", "betas", "warmup_epochs", "label_smoothing", "backbone_lr_scale",
                "head_lr_scale"}
    assert not new_keys & set(dumped)
    assert OptimConfig(**FINETUNE).model_dump(mode="json")["optimizer"] == "adamw"


def test_adamw_without_lr_is_a_one_line_config_error(tmp_path) -> None:
    # The section replaces the fixture's teacher.train whole: no lr.
    raw = tiny_recipe_dict(tmp_path, teacher={"train": {"epochs": 2, "optimizer": "adamw"}})
    with pytest.raises(ConfigError, match="adamw needs an explicit lr"):
        validate_recipe(raw)


def test_warmup_ramps_linearly_then_follows_the_schedule() -> None:
    cfg = OptimConfig(epochs=10, schedule="cosine", warmup_epochs=3)
    plain = OptimConfig(epochs=10, schedule="cosine")
    lrs = [learning_rate(cfg, 0.1, e) for e in range(10)]
    for epoch in range(3):
        assert lrs[epoch] == pytest.approx(learning_rate(plain, 0.1, epoch) * (epoch + 1) / 4)
    assert lrs[3:] == [learning_rate(plain, 0.1, e) for e in range(3, 10)]
    assert lrs[0] > 0 and lrs[0] < lrs[1] < lrs[2]
    # No warm-up: the very formulas of before (bit-equal floats).
    assert learning_rate(plain, 0.1, 4) == 0.5 * 0.1 * (1 + math.cos(math.pi * 4 / 10))


def test_default_groups_are_untouched_and_scaled_groups_split_classifier_from_backbone(digits) -> None:
    distiller = _teacher_distiller(digits, 2)
    groups = distiller.param_groups(5e-4)
    assert lr_scaled_groups(groups, distiller, OptimConfig()) is groups
    sgd = build_optimizer(groups, OptimConfig(), 0.05, "cpu")
    assert all("lr_scale" not in g and g["lr"] == 0.05 for g in sgd.param_groups)

    cfg = OptimConfig(backbone_lr_scale=0.1, head_lr_scale=3.0)
    split = lr_scaled_groups(distiller.param_groups(5e-4), distiller, cfg)
    head = {id(p) for p in distiller.student.classifier.parameters()}
    for group in split:
        in_head = {id(p) in head for p in group["params"]}
        assert in_head == {group["name"].endswith("/head")}
    optimizer = build_optimizer(split, cfg, 0.05, "cpu")
    set_learning_rate(optimizer, 0.02)
    for group in optimizer.param_groups:
        assert group["lr"] == pytest.approx(0.02 * (3.0 if group["name"].endswith("/head") else 0.1))
    total = sum(len(g["params"]) for g in split)
    assert total == sum(1 for p in distiller.parameters() if p.requires_grad)


def test_frozen_backbone_moves_only_the_head(digits) -> None:
    distiller = _teacher_distiller(digits, 1)
    cfg = OptimConfig(optimizer="adamw", lr=1e-2, backbone_lr_scale=0.0, weight_decay=0.05)
    engine = build_engine(distiller, cfg, "cpu", cfg.lr)
    before = {k: v.detach().clone() for k, v in distiller.student.named_parameters()}
    x, y = next(iter(digits.train.batches(64, shuffle=False, augment=False)))
    out = distiller(x, y)
    engine.optimizer.zero_grad()
    out.loss.backward()
    engine.optimizer.step()
    after = dict(distiller.student.named_parameters())
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("classifier.") for k in changed)


def test_label_smoothing_reaches_the_ce_term_and_zero_is_plain_ce(digits) -> None:
    distiller = _teacher_distiller(digits, 1)
    x, y = next(iter(digits.train.batches(64, shuffle=False, augment=False)))
    with torch.no_grad():
        logits = distiller.student(x)
        assert torch.equal(distiller(x, y).loss, F.cross_entropy(logits, y))  # bit-equal, as before
        build_engine(distiller, OptimConfig(label_smoothing=0.2), "cpu", 0.05)
        assert distiller.label_smoothing == 0.2
        expected = F.cross_entropy(logits, y, label_smoothing=0.2)
        assert torch.equal(distiller(x, y).loss, expected)


def test_finetune_options_resume_bit_identically(digits, tmp_path) -> None:
    cfg = OptimConfig(epochs=3, **FINETUNE)

    def settings(path):
        return RunSettings(device="cpu", seed=2, batch_size=64, eval_batch_size=256, base_lr=cfg.lr,
                           checkpoint_path=path, label="finetune")

    straight = _teacher_distiller(digits, 3)
    fit(straight, digits, cfg, settings(tmp_path / "straight.pt"))

    interrupted = _teacher_distiller(digits, 3)
    original = interrupted.on_epoch_start

    def stop_at_epoch_2(epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        original(epoch)

    interrupted.on_epoch_start = stop_at_epoch_2
    with pytest.raises(KeyboardInterrupt):
        fit(interrupted, digits, cfg, settings(tmp_path / "resumed.pt"))
    resumed = _teacher_distiller(digits, 3)
    result = fit(resumed, digits, cfg, settings(tmp_path / "resumed.pt"))
    assert result.resumed_from_epoch == 2
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
