"""Colour-biased datasets in the style of Biased MNIST (ReBias, Bahng et al., ICML 2020).

Class k owns colour k of a fixed palette. In the training and validation splits a sample is painted with
its class colour with probability ``rho`` and otherwise with a uniformly drawn *other* colour, so colour
predicts the class almost perfectly there. The test split comes in three flavours (``extra_test``):
``aligned`` (always the class colour), ``unbiased`` (uniform over all K colours; also ``bundle.test``) and
``conflicting`` (uniform over the K-1 colours that are not the class colour). A model that learned the
shortcut scores high on aligned and low on conflicting.

Painting (cidpipe/data/paint.py): grayscale datasets (all three channels equal: digits, fashion-mnist) get a
coloured background (pixels darker than 16/255), the strokes stay; colour datasets (cifar, imagefolder) get a
coloured frame ``border_width`` px wide. Everything is deterministic given ``bias.seed``; tensor splits are
painted once, file-backed splits paint each image as it is decoded from the per-index colour choice.
"""

from __future__ import annotations

import colorsys

import numpy as np
import torch

from cidpipe.data.base import DatasetBundle, ImageFolderSplit, Split, TensorSplit
from cidpipe.data.config import BiasConfig
from cidpipe.data.paint import paint
from cidpipe.errors import ConfigError

# Ten well-separated saturated colours (after Trubetskoy's list of distinct colours), none near black
# or white, so a background or frame colour is never confused with strokes or the image.
BASE_PALETTE = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (170, 110, 40), (128, 128, 0),
)
_STREAMS = {"train": 0, "val": 1, "unbiased": 3, "conflicting": 4}
_PAINT_CHUNK = 8192


def palette(num_colours: int) -> np.ndarray:
    """uint8 [K, 3]: the base palette for K <= 10, else K colours spread over the HSV wheel."""
    if num_colours <= len(BASE_PALETTE):
        return np.asarray(BASE_PALETTE[:num_colours], dtype=np.uint8)
    golden = 0.618033988749895  # golden-ratio hue steps keep consecutive colours far apart
    levels = ((1.0, 1.0), (0.6, 0.9), (1.0, 0.65))  # (saturation, value) rings for large K
    colours = [colorsys.hsv_to_rgb((i * golden) % 1.0, *levels[i % len(levels)]) for i in range(num_colours)]
    result = np.rint(np.asarray(colours) * 255).astype(np.uint8)
    if len(np.unique(result, axis=0)) != num_colours:
        raise ConfigError(f"cannot make {num_colours} distinct bias colours; use fewer classes")
    return result


def _other_colour(labels: np.ndarray, num_colours: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform over the K-1 colours that are not the label's: draw from K-1 and skip over the label."""
    other = rng.integers(0, num_colours - 1, size=len(labels))
    return other + (other >= labels)


def colour_assignment(labels: np.ndarray, num_colours: int, flavour: str, rho: float,
                      rng: np.random.Generator) -> np.ndarray:
    """Colour index per sample for a flavour: biased (train/val), aligned, unbiased or conflicting."""
    labels = np.asarray(labels, dtype=np.int64)
    if flavour == "aligned":
        return labels.copy()
    if flavour == "unbiased":
        return rng.integers(0, num_colours, size=len(labels))
    if flavour == "conflicting":
        return _other_colour(labels, num_colours, rng)
    if flavour == "biased":
        keep = rng.random(len(labels)) < rho
        return np.where(keep, labels, _other_colour(labels, num_colours, rng))
    raise ValueError(f"unknown bias flavour {flavour!r}")


def _style(bundle: DatasetBundle, cfg: BiasConfig) -> str:
    if cfg.kind == "background-colour":
        return "background"
    if cfg.kind == "border-colour":
        return "border"
    train = bundle.train
    if isinstance(train, TensorSplit):
        images = train.images
        grayscale = bool((images[:, 1:] == images[:, :1]).all())
        return "background" if grayscale else "border"
    return "border"


def _painted(split: Split, colours: np.ndarray, pal: np.ndarray, style: str, width: int) -> Split:
    colours_t = torch.from_numpy(colours)
    if isinstance(split, TensorSplit):
        pal_t = torch.from_numpy(pal)
        chunks = [paint(split.images[s : s + _PAINT_CHUNK], pal_t[colours_t[s : s + _PAINT_CHUNK]], style,
                        width=width) for s in range(0, len(split), _PAINT_CHUNK)]
        images = torch.cat(chunks) if chunks else split.images.clone()
        return split.with_images(images, bias_colours=colours_t)
    if isinstance(split, ImageFolderSplit):
        return split.replace(bias_palette=pal, bias_colours=colours_t, paint_style=style, paint_width=width)
    raise ConfigError(f"colour bias does not support {type(split).__name__} splits")


def apply_bias(bundle: DatasetBundle, cfg: BiasConfig) -> DatasetBundle:
    """A new bundle: biased train/val, test = unbiased, extra_test = aligned/unbiased/conflicting."""
    k = bundle.num_classes
    if k < 2:
        raise ConfigError("data.bias needs at least 2 classes")
    if bundle.input_shape[0] != 3:
        raise ConfigError(f"data.bias needs 3-channel images; {bundle.name} has {bundle.input_shape[0]}")
    pal = palette(k)
    style = _style(bundle, cfg)

    def make(split: Split, flavour: str, stream: str) -> Split:
        rng = np.random.default_rng([cfg.seed, _STREAMS.get(stream, 2)])
        colours = colour_assignment(split.labels.numpy(), k, flavour, cfg.rho, rng)
        return _painted(split, colours, pal, style, cfg.border_width)

    flavours = {name: make(bundle.test, name, name) for name in ("aligned", "unbiased", "conflicting")}
    return DatasetBundle(
        name=bundle.name, class_names=bundle.class_names, num_classes=k, input_shape=bundle.input_shape,
        mean=bundle.mean, std=bundle.std,
        train=make(bundle.train, "biased", "train"), val=make(bundle.val, "biased", "val"),
        test=flavours["unbiased"], extra_test={**bundle.extra_test, **flavours},
        provenance={**bundle.provenance, "bias": {"rho": cfg.rho, "seed": cfg.seed, "style": style,
                                                   "border_width": cfg.border_width,
                                                   "palette": pal.tolist()}},
    )
