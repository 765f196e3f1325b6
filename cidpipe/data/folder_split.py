"""A file-backed split: images decoded from disk batch by batch by a DataLoader.

Decoding and resizing use PIL in the loader workers; augmentation (crop with zero padding + flip) and
normalisation then run on the decoded uint8 batch with the same batched code as TensorSplit, on the
target device, with the caller's generator. That keeps a seeded run identical for num_workers=0 and >0
(torchvision's per-sample transforms would draw from each worker's own RNG) and the two splits kinds
statistically identical.
"""

from __future__ import annotations

import functools
import hashlib
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from cidpipe.data.augment import normalise, random_crop_flip
from cidpipe.data.paint import paint
from cidpipe.data.split import Split, as_index_tensor, batch_order, batch_slices
from cidpipe.data.tensor_split import TensorSplit
from cidpipe.errors import DataError

# Image files are hostile input: a few kilobytes of PNG can declare 100 000 x 100 000 pixels (a
# "decompression bomb"), and PIL identifies a file by its content, not its suffix (an "image" may be
# an EPS that PIL would hand to Ghostscript). So the formats are limited to those IMAGE_SUFFIXES name,
# and the pixel count is bounded before anything is decoded: 8192 x 8192 is larger than the photos
# image-classification datasets hold (and 200 MB as RGB, per image and loader worker), while models
# here see at most data.input_size (<= 4096) squared.
MAX_IMAGE_PIXELS = 8192 * 8192
# Room for the largest file the pixel bound admits in a common format (16-bit RGB TIFF, ~400 MB).
MAX_IMAGE_FILE_BYTES = 512 * 1024 * 1024
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff"})
# PIL format ids of those suffixes (PIL's JPEG reader also returns the multi-picture MPO variant).
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "PPM", "TIFF")


@functools.cache
def _open_formats() -> tuple[str, ...]:
    # Image.open raises KeyError for a format this Pillow build lacks (WebP is optional): ask only
    # for those it has.
    from PIL import Image

    Image.init()
    return tuple(f for f in IMAGE_FORMATS if f in Image.OPEN)


def check_image_file_size(path: Path, size: int) -> None:
    """DataError naming ``path`` when a file of ``size`` bytes cannot be an image we decode."""
    if size == 0:
        raise DataError(f"image {path} is empty (0 bytes); remove or replace the file")
    if size > MAX_IMAGE_FILE_BYTES:
        raise DataError(f"image {path} is {size} bytes (limit {MAX_IMAGE_FILE_BYTES}); "
                        "remove or shrink the file")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0][:200] if text else type(err).__name__)


def decode_image(path: Path, size: int | tuple[int, int], mode: str = "RGB") -> np.ndarray:
    """uint8 [H, W, 3] ("RGB") or [H, W] ("L") of the image at ``path`` resized to ``size``.

    ``size`` is the side of a square or (height, width). Everything that can go wrong with a hostile
    file is a DataError naming it: empty or oversized files, formats other than IMAGE_FORMATS, more
    than MAX_IMAGE_PIXELS (also when PIL only warns), truncated or damaged data. For any caller that
    reads user images (e.g. quantization calibration), not only the imagefolder dataset.
    """
    from PIL import Image

    height, width = (size, size) if isinstance(size, int) else size
    try:
        check_image_file_size(path, path.stat().st_size)
        with warnings.catch_warnings():
            # PIL only *warns* between its limit and twice that; a bomb must stop the run, not scroll by.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=_open_formats()) as img:  # reads the header only
                img_width, img_height = img.size
                if img_width * img_height > MAX_IMAGE_PIXELS:
                    raise DataError(f"image {path} is {img_width}x{img_height} pixels, more than the "
                                    f"{MAX_IMAGE_PIXELS} allowed (a decompression bomb?); "
                                    "remove or shrink it")
                converted = img.convert(mode).resize((width, height), Image.Resampling.BILINEAR)
                array = np.asarray(converted, dtype=np.uint8)
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise DataError(f"image {path} is too large to decode ({_first_line(err)}); "
                        "remove or shrink it") from err
    except Exception as err:
        # PIL's format plugins fail on damaged input with many exception types (OSError for truncated
        # data, SyntaxError, ValueError, struct.error, ...): any of them means this one file is bad.
        raise DataError(f"cannot decode image {path}: {_first_line(err)}; "
                        "remove or replace the file") from err
    expected = (height, width, 3) if mode == "RGB" else (height, width)
    if array.shape != expected:
        raise DataError(f"cannot decode image {path}: got an array of shape {array.shape}; "
                        "remove or replace the file")
    return array


def _file_sha256(path: Path) -> bytes:
    # Streamed: a large file is hashed in 1 MB pieces instead of being read into memory whole.
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            check_image_file_size(path, os.fstat(fh.fileno()).st_size)
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    except OSError as err:
        raise DataError(f"cannot read image {path}: {err.strerror or err}; "
                        "remove or replace the file") from err
    return digest.digest()


class _DecodedImages(Dataset):
    """Item i -> (uint8 [3, S, S] tensor, label); painted with its bias colour when one is set."""

    def __init__(self, paths: Sequence[Path], labels: np.ndarray, input_size: int,
                 colours: np.ndarray | None, paint_style: str, paint_width: int) -> None:
        self.paths, self.labels, self.input_size = list(paths), labels, input_size
        self.colours, self.paint_style, self.paint_width = colours, paint_style, paint_width

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        array = decode_image(self.paths[i], self.input_size)
        image = torch.from_numpy(array.copy()).permute(2, 0, 1)
        if self.colours is not None:
            colour = torch.from_numpy(self.colours[i : i + 1])
            image = paint(image[None], colour, self.paint_style, width=self.paint_width)[0]
        return image, int(self.labels[i])


class ImageFolderSplit(Split):
    """Images on disk (any PIL format) resized to ``input_size`` square, labels given per file."""

    def __init__(self, paths: Sequence[Path], labels: Sequence[int] | np.ndarray, *, root: Path,
                 input_size: int, mean: Sequence[float], std: Sequence[float], pad: int = 4,
                 hflip: bool = True, num_workers: int = 0, bias_palette: np.ndarray | None = None,
                 bias_colours: np.ndarray | Tensor | None = None, paint_style: str = "border",
                 paint_width: int = 4) -> None:
        self.paths = [Path(p) for p in paths]
        self._labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        if len(self.paths) != len(self._labels):
            raise ValueError(f"{len(self.paths)} paths but {len(self._labels)} labels")
        self.root, self.input_size = Path(root), int(input_size)
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.pad, self.hflip, self.num_workers = int(pad), bool(hflip), int(num_workers)
        self.bias_palette = bias_palette
        self.bias_colours = None if bias_colours is None else torch.as_tensor(np.asarray(bias_colours)).long()
        self.paint_style, self.paint_width = paint_style, int(paint_width)
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return f"ImageFolderSplit(n={len(self)}, root={self.root}, size={self.input_size})"

    @property
    def labels(self) -> torch.LongTensor:
        return self._labels

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return 3, self.input_size, self.input_size

    def _dataset(self) -> _DecodedImages:
        colours = None
        if self.bias_colours is not None and self.bias_palette is not None:
            colours = self.bias_palette[self.bias_colours.numpy()]
        return _DecodedImages(self.paths, self._labels.numpy(), self.input_size, colours, self.paint_style,
                              self.paint_width)

    def _uint8_batches(self, order: Tensor, batch_size: int,
                       drop_last: bool) -> Iterator[tuple[Tensor, Tensor]]:
        loader = DataLoader(self._dataset(), batch_size=batch_size, sampler=order.tolist(),
                            num_workers=self.num_workers, drop_last=drop_last)
        batches = iter(loader)
        try:
            yield from batches
        except DataError as err:
            # A worker's error arrives wrapped in its traceback text; keep only the user's one line.
            message = str(err).strip().splitlines()[-1].removeprefix("cidpipe.errors.DataError: ")
        else:
            return
        finally:
            # Stop the workers now: left to the garbage collector (the traceback keeps the iterator
            # alive) the shutdown waits out a 5 s timeout.
            shutdown = getattr(batches, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()
            del batches
        raise DataError(message)

    def batches(self, batch_size: int, *, shuffle: bool, augment: bool, device: str | torch.device = "cpu",
                generator: torch.Generator | None = None, drop_last: bool = False, with_index: bool = False
                ) -> Iterator[tuple[Tensor, ...]]:
        device = torch.device(device)
        order = batch_order(len(self), shuffle=shuffle, generator=generator)
        # The loader follows `order` batch by batch, so the slices of `order` are each batch's indices.
        slices = batch_slices(order, batch_size, drop_last)
        for images, labels in self._uint8_batches(order, batch_size, drop_last):
            index = next(slices)
            images = images.to(device, non_blocking=True)
            if augment and (self.pad > 0 or self.hflip):
                images = random_crop_flip(images, self.pad, self.hflip, generator)
            batch = (normalise(images, self.mean, self.std), labels.to(device=device, dtype=torch.long))
            yield (*batch, index.to(device, non_blocking=True)) if with_index else batch

    def load_uint8(self, max_samples: int | None = None) -> tuple[Tensor, Tensor]:
        """Decode the first ``max_samples`` images (storage order) into one uint8 tensor."""
        n = len(self) if max_samples is None else min(int(max_samples), len(self))
        parts, labels = [], []
        for images, batch_labels in self._uint8_batches(torch.arange(n), 256, False):
            parts.append(images)
            labels.append(batch_labels)
        if not parts:
            return torch.empty((0, *self.input_shape), dtype=torch.uint8), torch.empty(0, dtype=torch.long)
        return torch.cat(parts), torch.cat(labels).long()

    def to_numpy(self, max_samples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        images, labels = self.load_uint8(max_samples)
        return normalise(images, self.mean, self.std).numpy(), labels.numpy().astype(np.int64)

    def fingerprint(self) -> str:
        """Hash of (path relative to the root, label, file bytes) per sample plus size and bias colours."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            digest.update(repr(("ImageFolderSplit", self.input_size, self.mean, self.std)).encode())
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

    def materialise(self) -> TensorSplit:
        """Decode everything once into a TensorSplit (bias colours baked in)."""
        images, labels = self.load_uint8()
        return TensorSplit(images, labels, self.mean, self.std, pad=self.pad, hflip=self.hflip,
                           bias_colours=self.bias_colours)

    def to_device(self, device: str | torch.device) -> TensorSplit:
        return self.materialise().to_device(device)

    def subset(self, indices: Sequence[int] | np.ndarray | Tensor) -> ImageFolderSplit:
        index = as_index_tensor(indices)
        return self.replace(paths=[self.paths[i] for i in index.tolist()], labels=self._labels[index].numpy(),
                            bias_colours=None if self.bias_colours is None else self.bias_colours[index])

    def replace(self, **changes: object) -> ImageFolderSplit:
        """A copy with some constructor arguments changed."""
        args: dict[str, object] = dict(
            paths=self.paths, labels=self._labels.numpy(), root=self.root, input_size=self.input_size,
            mean=self.mean, std=self.std, pad=self.pad, hflip=self.hflip, num_workers=self.num_workers,
            bias_palette=self.bias_palette, bias_colours=self.bias_colours, paint_style=self.paint_style,
            paint_width=self.paint_width)
        args.update(changes)
        return ImageFolderSplit(**args)  # type: ignore[arg-type]
