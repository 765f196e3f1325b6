"""A file-backed split: images decoded from disk batch by batch by a DataLoader.

Default path: decoding and resizing use PIL in the loader workers; augmentation (crop with zero padding +
flip) and normalisation then run on the decoded uint8 batch with the same batched code as TensorSplit, on
the target device, with the caller's generator. That keeps a seeded run identical for num_workers=0 and
>0 and the two split kinds statistically identical.

With data.transforms: the training view is a per-sample torchvision v2 pipeline run in the workers, seeded
per sample from one draw of the caller's generator (transforms.py), so it too is identical for any
num_workers and on resume; every other view is the eval resize + centre crop. Normalisation stays batched.

Loaders (and their workers, with num_workers > 0) persist from one epoch to the next; memory is pinned
when batches go to CUDA. File reading itself (bounds on hostile files) is in image_files.py.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from cidpipe.data.augment import normalise, random_crop_flip
from cidpipe.data.image_files import (  # noqa: F401 - re-exported: callers import them from here
    IMAGE_FORMATS,
    IMAGE_SUFFIXES,
    MAX_IMAGE_FILE_BYTES,
    MAX_IMAGE_PIXELS,
    _file_sha256,
    check_image_file_size,
    decode_image,
)
from cidpipe.data.paint import paint
from cidpipe.data.split import Split, as_index_tensor, batch_order, batch_slices
from cidpipe.data.tensor_split import TensorSplit
from cidpipe.data.transform_config import TransformsConfig
from cidpipe.data.transforms import Pipeline, eval_pipeline, run_seeded, sample_seed, train_pipeline
from cidpipe.errors import DataError


class _DecodedImages(Dataset):
    """Item i -> (uint8 [3, h, w] tensor, label); painted with its bias colour when one is set.

    An item ``(i, pass_seed)`` is a training view through the seeded ``train_pipeline``; a plain ``i`` is
    the deterministic view: ``eval_pipeline`` when data.transforms is set, else a resize (as always).
    """

    def __init__(self, paths: Sequence[Path], labels: np.ndarray, input_size: int | tuple[int, int],
                 colours: np.ndarray | None, paint_style: str, paint_width: int,
                 train_pipeline: Pipeline | None = None, eval_pipeline: Pipeline | None = None) -> None:
        self.paths, self.labels, self.input_size = list(paths), labels, input_size
        self.colours, self.paint_style, self.paint_width = colours, paint_style, paint_width
        self.train_pipeline, self.eval_pipeline = train_pipeline, eval_pipeline

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[Tensor, int]:
        i, pass_seed = item if isinstance(item, tuple) else (item, None)
        if self.eval_pipeline is None:
            image = torch.from_numpy(decode_image(self.paths[i], self.input_size).copy()).permute(2, 0, 1)
        else:
            full = torch.from_numpy(decode_image(self.paths[i], None).copy()).permute(2, 0, 1)
            if pass_seed is None:
                image = self.eval_pipeline(full)
            else:
                image = run_seeded(self.train_pipeline, full, sample_seed(pass_seed, i))
            image = image.contiguous()
        if self.colours is not None:
            # After the transforms: the bias frame must survive random crops intact.
            colour = torch.from_numpy(self.colours[i : i + 1])
            image = paint(image[None], colour, self.paint_style, width=self.paint_width)[0]
        return image, int(self.labels[i])


class _OrderSampler(Sampler):
    """The sample order of the next pass, set before each ``iter(loader)``: lets one DataLoader (and its
    persistent workers) serve every epoch, whatever order each epoch draws."""

    def __init__(self) -> None:
        self.items: list = []
        self.busy = False  # a pass is running on this loader

    def __iter__(self) -> Iterator:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


def resolve_workers(num_workers: int | str) -> int:
    """data.num_workers as a count: "auto" = min(4, CPU cores), enough to keep decoding off the step."""
    if num_workers == "auto":
        return min(4, os.cpu_count() or 1)
    return int(num_workers)


class ImageFolderSplit(Split):
    """Images on disk (any PIL format) at ``input_size`` (a square side or (h, w)), labels given per file.

    Without ``transforms`` every image is resized to the input size and the training view is the batched
    pad+crop+flip on the device. With ``transforms`` (data.transforms) the training view is the seeded
    per-sample torchvision pipeline and every other view the eval resize + centre crop.
    """

    def __init__(self, paths: Sequence[Path], labels: Sequence[int] | np.ndarray, *, root: Path,
                 input_size: int | tuple[int, int], mean: Sequence[float], std: Sequence[float],
                 pad: int = 4, hflip: bool = True, num_workers: int | str = 0,
                 bias_palette: np.ndarray | None = None, bias_colours: np.ndarray | Tensor | None = None,
                 paint_style: str = "border", paint_width: int = 4,
                 transforms: TransformsConfig | None = None) -> None:
        self.paths = [Path(p) for p in paths]
        self._labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        if len(self.paths) != len(self._labels):
            raise ValueError(f"{len(self.paths)} paths but {len(self._labels)} labels")
        self.root = Path(root)
        # An int stays an int: it is part of the fingerprint, which must not change for square inputs.
        self.input_size = (int(input_size) if isinstance(input_size, int)
                           else tuple(int(v) for v in input_size))
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.pad, self.hflip, self.num_workers = int(pad), bool(hflip), resolve_workers(num_workers)
        self.bias_palette = bias_palette
        self.bias_colours = None if bias_colours is None else torch.as_tensor(np.asarray(bias_colours)).long()
        self.paint_style, self.paint_width = paint_style, int(paint_width)
        self.transforms = transforms
        self._fingerprint: str | None = None
        # (training view?, batch size, drop_last, pinned) -> a DataLoader kept for its persistent workers.
        self._loaders: dict[tuple, tuple[DataLoader, _OrderSampler]] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return f"ImageFolderSplit(n={len(self)}, root={self.root}, size={self.input_size})"

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_loaders"] = {}  # loaders and their worker processes stay with the process that made them
        return state

    @property
    def labels(self) -> torch.LongTensor:
        return self._labels

    @property
    def input_hw(self) -> tuple[int, int]:
        size = self.input_size
        return (size, size) if isinstance(size, int) else size

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return 3, *self.input_hw

    def _dataset(self) -> _DecodedImages:
        colours = None
        if self.bias_colours is not None and self.bias_palette is not None:
            colours = self.bias_palette[self.bias_colours.numpy()]
        train = evaluate = None
        if self.transforms is not None:
            train = train_pipeline(self.transforms.train_ops(), self.input_hw)
            evaluate = eval_pipeline(self.transforms.eval, self.input_hw)
        return _DecodedImages(self.paths, self._labels.numpy(), self.input_size, colours, self.paint_style,
                              self.paint_width, train, evaluate)

    def _loader(self, key: tuple, batch_size: int, drop_last: bool, pin: bool
                ) -> tuple[tuple, DataLoader, _OrderSampler]:
        if key in self._loaders and self._loaders[key][1].busy:
            # A second pass while the first is still running: a persistent loader has one iterator,
            # which a second iter() would reset under the first, so this pass gets its own.
            key = (*key, "concurrent", id(object()))
        if key not in self._loaders:
            sampler = _OrderSampler()
            # Persistent workers: an epoch then costs no worker start-up (seconds with 4+ workers);
            # pinned memory: the host-to-device copy of each batch runs asynchronously.
            # With transforms the loader gets its own generator: each iter() draws a worker base seed,
            # which would otherwise come from the global RNG the training loop checkpoints (the
            # per-sample seeds make that draw irrelevant). The plain path keeps drawing it, as it did.
            generator = torch.Generator() if self.transforms is not None else None
            loader = DataLoader(self._dataset(), batch_size=batch_size, sampler=sampler,
                                num_workers=self.num_workers, drop_last=drop_last, pin_memory=pin,
                                persistent_workers=self.num_workers > 0, generator=generator)
            self._loaders[key] = (loader, sampler)
        return key, *self._loaders[key]

    def _uint8_batches(self, items: list, batch_size: int, drop_last: bool, *, training_view: bool = False,
                       pin: bool = False, persist: bool = False) -> Iterator[tuple[Tensor, Tensor]]:
        """uint8 batches of ``items`` in order; ``persist`` keeps the loader's workers for the next pass
        (every epoch's training and validation), else they stop at the end (one-off passes)."""
        key, loader, sampler = self._loader((training_view, batch_size, drop_last, pin), batch_size,
                                            drop_last, pin)
        sampler.items = items
        batches = iter(loader)
        sampler.busy = True
        try:
            yield from batches
        except DataError as err:
            # A worker's error arrives wrapped in its traceback text; keep only the user's one line.
            message = str(err).strip().splitlines()[-1].removeprefix("cidpipe.errors.DataError: ")
        except BaseException:
            self._close_loader(key, batches)
            raise
        else:
            sampler.busy = False
            if not persist or self.num_workers == 0 or "concurrent" in key:
                self._close_loader(key, batches)
            return
        self._close_loader(key, batches)
        raise DataError(message)

    def _close_loader(self, key: tuple, batches: Iterator) -> None:
        # Stop the workers now: left to the garbage collector (the traceback keeps the iterator alive)
        # the shutdown waits out a 5 s timeout.
        self._loaders.pop(key, None)
        shutdown = getattr(batches, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()

    def batches(self, batch_size: int, *, shuffle: bool, augment: bool, device: str | torch.device = "cpu",
                generator: torch.Generator | None = None, drop_last: bool = False, with_index: bool = False
                ) -> Iterator[tuple[Tensor, ...]]:
        device = torch.device(device)
        order = batch_order(len(self), shuffle=shuffle, generator=generator)
        # The loader follows `order` batch by batch, so the slices of `order` are each batch's indices.
        slices = batch_slices(order, batch_size, drop_last)
        per_sample = augment and self.transforms is not None
        items: list = order.tolist()
        if per_sample:
            # One draw per pass from the epoch's generator seeds every sample's pipeline (transforms.py).
            pass_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
            items = [(i, pass_seed) for i in items]
        pin = device.type == "cuda"
        for images, labels in self._uint8_batches(items, batch_size, drop_last, training_view=per_sample,
                                                  pin=pin, persist=True):
            index = next(slices)
            images = images.to(device, non_blocking=True)
            if augment and not per_sample and (self.pad > 0 or self.hflip):
                images = random_crop_flip(images, self.pad, self.hflip, generator)
            batch = (normalise(images, self.mean, self.std), labels.to(device=device, dtype=torch.long))
            yield (*batch, index.to(device, non_blocking=True)) if with_index else batch

    def load_uint8(self, max_samples: int | None = None) -> tuple[Tensor, Tensor]:
        """Decode the first ``max_samples`` images (storage order, the un-augmented view) into one tensor."""
        parts, labels = [], []
        for images, batch_labels in self.uint8_chunks(max_samples):
            parts.append(images)
            labels.append(batch_labels)
        if not parts:
            return torch.empty((0, *self.input_shape), dtype=torch.uint8), torch.empty(0, dtype=torch.long)
        return torch.cat(parts), torch.cat(labels).long()

    def uint8_chunks(self, max_samples: int | None = None, chunk: int = 256
                     ) -> Iterator[tuple[Tensor, Tensor]]:
        """The un-augmented uint8 images of the first ``max_samples`` samples, ``chunk`` at a time."""
        n = len(self) if max_samples is None else min(int(max_samples), len(self))
        yield from self._uint8_batches(list(range(n)), chunk, False)

    def to_numpy(self, max_samples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        images, labels = self.load_uint8(max_samples)
        return normalise(images, self.mean, self.std).numpy(), labels.numpy().astype(np.int64)

    def fingerprint(self) -> str:
        """Hash of (path relative to the root, label, file bytes) per sample plus size and bias colours."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            digest.update(repr(("ImageFolderSplit", self.input_size, self.mean, self.std)).encode())
            if self.transforms is not None:  # the eval view (the split's content) depends on the crop
                digest.update(repr(("eval", self.transforms.eval.model_dump(mode="json"))).encode())
            for path, label in zip(self.paths, self._labels.tolist(), strict=True):
                rel = path.relative_to(self.root).as_posix() if path.is_relative_to(self.root) else path.name
                digest.update(f"{rel}\0{label}\0".encode())
                digest.update(_file_sha256(path))
            if self.bias_colours is not None and self.bias_palette is not None:
                digest.update(self.bias_palette.astype(np.uint8).tobytes())
                digest.update(self.bias_colours.numpy().astype("<i8").tobytes())
                digest.update(f"{self.paint_style}:{self.paint_width}".encode())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def describe(self) -> dict:
        record = super().describe()
        if self.transforms is not None:
            record["transforms"] = self.transforms.model_dump(mode="json")
        return record

    def materialise(self) -> TensorSplit:
        """Decode everything once into a TensorSplit (bias colours baked in; the un-augmented view)."""
        images, labels = self.load_uint8()
        return TensorSplit(images, labels, self.mean, self.std, pad=self.pad, hflip=self.hflip,
                           bias_colours=self.bias_colours)

    def to_device(self, device: str | torch.device) -> TensorSplit:
        return self.materialise().to_device(device)

    def subset(self, indices: Sequence[int] | np.ndarray | Tensor) -> ImageFolderSplit:
        index = as_index_tensor(indices)
        return self.replace(paths=[self.paths[i] for i in index.tolist()], labels=self._labels[index].numpy(),
                            bias_colours=None if self.bias_colours is None else self.bias_colours[index])

    def with_normalisation(self, mean: Sequence[float], std: Sequence[float]) -> ImageFolderSplit:
        return self.replace(mean=mean, std=std)

    def replace(self, **changes: object) -> ImageFolderSplit:
        """A copy with some constructor arguments changed."""
        args: dict[str, object] = dict(
            paths=self.paths, labels=self._labels.numpy(), root=self.root, input_size=self.input_size,
            mean=self.mean, std=self.std, pad=self.pad, hflip=self.hflip, num_workers=self.num_workers,
            bias_palette=self.bias_palette, bias_colours=self.bias_colours, paint_style=self.paint_style,
            paint_width=self.paint_width, transforms=self.transforms)
        args.update(changes)
        return ImageFolderSplit(**args)  # type: ignore[arg-type]
