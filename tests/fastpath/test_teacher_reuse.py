"""Teacher-output reuse (distill.reuse_teacher_outputs): exact without augmentation, loud with it."""

from __future__ import annotations

import copy

import pytest
import torch

from cidpipe.data.base import DatasetBundle
from cidpipe.train_config import OptimConfig
from cidpipe.training.loop import RunSettings, fit
from tests.fastpath.fastpath_helpers import MEAN, STD, FastPath, make_distiller, tiny_pair, tiny_split

CLASSES = 6


@pytest.mark.parametrize("method", ["cid", "kd", "fitnet"])
def test_cached_teacher_outputs_give_the_same_steps_as_recomputing(method):
    split = tiny_split(classes=CLASSES)
    student, teacher = tiny_pair(CLASSES)
    distiller = make_distiller(method, student, teacher, CLASSES)
    recomputed = FastPath(copy.deepcopy(distiller))  # same R / g initialisation on both sides
    cached = FastPath(distiller)
    plain = split.batches(50, shuffle=False, augment=False, with_index=True)  # another batching on purpose
    cached.distiller.build_teacher_cache(plain, len(split))
    for epoch in (0, 1):
        expected = recomputed.epoch(split, seed=5, epoch=epoch)
        got = cached.epoch(split, seed=5, epoch=epoch, use_index=True)
        torch.testing.assert_close(torch.tensor(got), torch.tensor(expected), rtol=1e-6, atol=1e-6)
    for name, value in recomputed.distiller.state_dict().items():
        torch.testing.assert_close(cached.distiller.state_dict()[name], value, rtol=1e-5, atol=1e-6,
                                   msg=f"{method}: {name} differs after two epochs")


def test_cache_is_looked_up_not_recomputed():
    """With the cache set the teacher never runs: a poisoned teacher changes nothing."""
    split = tiny_split(classes=CLASSES)
    student, teacher = tiny_pair(CLASSES)
    distiller = make_distiller("cid", student, teacher, CLASSES)
    plain = split.batches(64, shuffle=False, augment=False, with_index=True)
    distiller.build_teacher_cache(plain, len(split))
    x, y, index = next(split.batches(16, shuffle=True, augment=False, with_index=True,
                                     generator=torch.Generator().manual_seed(0)))
    features, logits = distiller.teacher_features_and_logits(x)
    with torch.no_grad():
        for parameter in distiller.teacher.parameters():
            parameter.fill_(float("nan"))
    cached_features, cached_logits = distiller.teacher_features_and_logits(x, index)
    torch.testing.assert_close(cached_features, features)
    torch.testing.assert_close(cached_logits, logits)
    assert cached_logits.dtype == torch.float32


def _bundle() -> DatasetBundle:
    train, val = tiny_split(160, CLASSES, seed=1), tiny_split(64, CLASSES, seed=2)
    return DatasetBundle(name="tiny", class_names=[str(c) for c in range(CLASSES)], num_classes=CLASSES,
                         input_shape=train.input_shape, mean=MEAN, std=STD, train=train, val=val, test=val)


def _fit(tmp_path, name: str, *, reuse: bool, augment: bool):
    student, teacher = tiny_pair(CLASSES)
    torch.manual_seed(7)  # the same R / g initialisation in every call
    distiller = make_distiller("cid", student, teacher, CLASSES, epochs=2)
    run = RunSettings(device="cpu", seed=0, batch_size=32, eval_batch_size=64, base_lr=0.01,
                      checkpoint_path=tmp_path / f"{name}.pt", resume=False, label=name, augment=augment,
                      reuse_teacher_outputs=reuse)
    result = fit(distiller, _bundle(), OptimConfig(epochs=2, schedule="cosine"), run)
    return distiller, result


def test_fit_with_reuse_matches_fit_without_when_not_augmenting(tmp_path):
    reused, reused_result = _fit(tmp_path, "reused", reuse=True, augment=False)
    plain, plain_result = _fit(tmp_path, "plain", reuse=False, augment=False)
    for got, expected in zip(reused_result.history, plain_result.history, strict=True):
        assert got["train_loss"] == pytest.approx(expected["train_loss"], rel=1e-5)
        assert got["val_top1"] == pytest.approx(expected["val_top1"], abs=1e-9)
    torch.testing.assert_close(reused.dictionary, plain.dictionary, rtol=0, atol=1e-5)
    assert "_teacher_cache" not in reused.__dict__, "fit must free the cache when it returns"


def test_fit_with_reuse_and_augmentation_warns(tmp_path):
    with pytest.warns(UserWarning, match="APPROXIMATION"):
        _fit(tmp_path, "approx", reuse=True, augment=True)
