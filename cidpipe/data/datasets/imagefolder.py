"""``imagefolder``: class-per-folder images on disk, decoded lazily.

data.root either holds ``train/`` and ``test/`` (each with one folder per class), or is itself a folder of
class folders, in which case a fixed stratified 20 % (seed 0, independent of data.split_seed) becomes the
test split. A ``val/`` folder next to ``train/`` is the validation split (data.val_fraction is then not
used); without one, validation is carved from the training part with data.split_seed / data.val_fraction.
With ``train/`` and ``val/`` but no ``test/`` (the ImageNet layout, whose "val" is the benchmark split)
``val/`` is the test split and validation is carved from ``train/``, so model selection never sees it.
Class names are the training class folders, sorted; images are found recursively inside each class folder.
Formats: PNG, JPEG, BMP, GIF, WebP, PPM/PGM, TIFF. Images are resized to data.input_size (default 32;
a side or [h, w]), or go through data.transforms, and are normalised with the ImageNet mean/std unless
data.mean / data.std say otherwise.
Files are hostile input: empty or oversized files are refused when the folders are scanned, and decoding
is bounded (pixel count, formats; see folder_split.py); a bad file is a one-line DataError naming it.
"""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np

from cidpipe.data.base import DatasetBundle
from cidpipe.data.config import DataConfig
from cidpipe.data.folder_split import IMAGE_SUFFIXES, ImageFolderSplit, check_image_file_size
from cidpipe.data.preflight import is_directory, require_directory
from cidpipe.data.registry import register_dataset
from cidpipe.data.splitting import DEFAULT_PAD, input_hw, resolve_hflip, size_record, stratified_split
from cidpipe.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGEFOLDER_TEST_FRACTION = 0.2
IMAGEFOLDER_TEST_SEED = 0
_ROOT_HINT = "set data.root to a folder of class folders (or one with train/ and test/)"


def _class_dirs(directory: Path) -> list[Path]:
    try:
        return sorted((d for d in directory.iterdir() if d.is_dir() and not d.name.startswith(".")),
                      key=lambda d: d.name)
    except OSError as err:
        raise DataError(f"cannot list {directory} ({err.strerror or err}); check its permissions") from err


def _images_in(folder: Path) -> list[Path]:
    """The image files under ``folder`` (recursively, sorted); a zero-byte or huge one is an error now."""
    try:
        candidates = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    except OSError as err:
        raise DataError(f"cannot list {folder} ({err.strerror or err}); check its permissions") from err
    images = []
    for path in candidates:
        try:
            info = path.stat()
        except OSError as err:  # e.g. a dangling symlink
            raise DataError(f"image {path} cannot be read ({err.strerror or err}); "
                            "remove or replace it") from err
        if stat.S_ISREG(info.st_mode):  # not directories named x.png, FIFOs or devices
            check_image_file_size(path, info.st_size)
            images.append(path)
    return images


def scan_class_folders(directory: Path, class_names: list[str] | None = None
                       ) -> tuple[list[str], list[Path], np.ndarray]:
    """(class names, image paths, labels) of a folder of class folders; ``class_names`` fixes the labels."""
    folders = _class_dirs(directory)
    if not folders:
        raise DataError(f"{directory} has no class folders; expected <class>/<image> (or train/ and test/)")
    names = class_names if class_names is not None else [d.name for d in folders]
    index = {name: i for i, name in enumerate(names)}
    paths: list[Path] = []
    labels: list[int] = []
    for folder in folders:
        if folder.name not in index:
            raise DataError(f"{folder} is a class not present in the training folders; use the same "
                            f"class folders in train/ and {directory.name}/")
        images = _images_in(folder)
        # (All folders empty is the error below.)
        if not images and class_names is None and any(_first_image(f) is not None for f in folders):
            raise _untrainable_class(folder)
        paths.extend(images)
        labels.extend([index[folder.name]] * len(images))
    if not paths:
        raise DataError(f"{directory} has class folders but no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return names, paths, np.asarray(labels, dtype=np.int64)


def _untrainable_class(folder: Path) -> DataError:
    # A class the training images never show cannot be learnt, yet it would be a logit of the model and a
    # class of every evaluation.
    return DataError(f"{folder} has no images ({', '.join(sorted(IMAGE_SUFFIXES))}), so the class "
                     f"'{folder.name}' cannot be learnt; add its images or remove the folder")


def _root(cfg: DataConfig) -> Path:
    if cfg.root is None:
        raise DataError("data.root is required for imagefolder: "
                        "a folder of class folders (or train/ + test/)")
    return require_directory(Path(cfg.root).expanduser(), "imagefolder root", _ROOT_HINT)


def _parts(root: Path) -> dict[str, Path]:
    """The split folders under ``root``: train (always), and val / test where they exist."""
    if not is_directory(root / "train"):
        return {"train": root}
    return {"train": root / "train", **{name: root / name for name in ("val", "test")
                                          if is_directory(root / name)}}


def _first_image(folder: Path) -> Path | None:
    try:
        images = (p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        return next(images, None)
    except OSError as err:
        raise DataError(f"cannot list {folder} ({err.strerror or err}); check its permissions") from err


def check_imagefolder_available(cfg: DataConfig) -> None:
    """The root is readable and has class folders with images; lists folders, does not scan every file."""
    root = _root(cfg)
    layout = _parts(root)
    parts = [root] if len(layout) == 1 else list(layout.values())
    train_classes = None
    for part in parts:
        folders = _class_dirs(part)
        if not folders:
            raise DataError(f"{part} has no class folders; expected <class>/<image> (or train/ and test/)")
        names = {d.name for d in folders}
        if train_classes is not None and not names <= train_classes:
            extra = sorted(names - train_classes)[0]
            raise DataError(f"{part / extra} is a class not present in the training folders; use the "
                            f"same class folders in train/ and {part.name}/")
        train_classes = names if train_classes is None else train_classes
        if not any(_first_image(d) is not None for d in folders):
            raise DataError(f"{part} has class folders but no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        if part == parts[0]:  # the training folders: every class the model learns needs an image
            empty = next((d for d in folders if _first_image(d) is None), None)
            if empty is not None:
                raise _untrainable_class(empty)


def imagefolder_class_count(cfg: DataConfig) -> int:
    """The class folders of the training part: the model's class count (listing only)."""
    return len(_class_dirs(_parts(_root(cfg))["train"]))


@register_dataset("imagefolder", check=check_imagefolder_available, classes=imagefolder_class_count)
def load_imagefolder_bundle(cfg: DataConfig) -> DatasetBundle:
    root = _root(cfg)
    provenance: dict = {"source": str(root)}
    layout = _parts(root)
    if len(layout) == 1:
        # A lone train/ (no val/ or test/) is not a layout we know: read root itself as class folders,
        # as before val/ was recognised (train/ is then one of the classes).
        class_names, paths, labels = scan_class_folders(root)
        pool, test = stratified_split(labels, IMAGEFOLDER_TEST_FRACTION, IMAGEFOLDER_TEST_SEED)
        pool = np.sort(pool)
        pool_paths, pool_labels = [paths[i] for i in pool], labels[pool]
        test_paths, test_labels = [paths[i] for i in test], labels[test]
        provenance.update(test_fraction=IMAGEFOLDER_TEST_FRACTION, test_seed=IMAGEFOLDER_TEST_SEED)
        val_folder = None
    else:
        class_names, pool_paths, pool_labels = scan_class_folders(layout["train"])
        test_name = "test" if "test" in layout else "val"
        _, test_paths, test_labels = scan_class_folders(layout[test_name], class_names)
        val_folder = layout["val"] if "test" in layout and "val" in layout else None
        if test_name == "val":
            provenance["test_folder"] = "val"
    if val_folder is not None:
        _, val_paths, val_labels = scan_class_folders(val_folder, class_names)
        # Nothing held out, but the same seeded order as a carved split: data.limit_train takes its head.
        keep, _ = stratified_split(pool_labels, 0.0, cfg.split_seed)
        provenance.update(val_folder="val", split_seed=cfg.split_seed)
    else:
        keep, val = stratified_split(pool_labels, cfg.val_fraction, cfg.split_seed)
        val_paths, val_labels = [pool_paths[i] for i in val], pool_labels[val]
        provenance.update(val_fraction=cfg.val_fraction, split_seed=cfg.split_seed)
    hw = input_hw(cfg)
    # The configured per-sample transforms replace the batched pad + crop + flip.
    pad, hflip = (0, False) if cfg.transforms is not None else (DEFAULT_PAD, resolve_hflip(cfg, True))
    size = size_record(hw)
    # A square stays an int: the input size is part of the split fingerprints recorded so far.
    split_size = hw[0] if isinstance(size, int) else hw

    def make(paths: list[Path], labels: np.ndarray) -> ImageFolderSplit:
        return ImageFolderSplit(paths, labels, root=root, input_size=split_size, mean=IMAGENET_MEAN,
                                std=IMAGENET_STD, pad=pad, hflip=hflip, num_workers=cfg.num_workers,
                                transforms=cfg.transforms)

    return DatasetBundle(
        name="imagefolder", class_names=class_names, num_classes=len(class_names),
        input_shape=(3, *hw), mean=IMAGENET_MEAN, std=IMAGENET_STD,
        train=make([pool_paths[i] for i in keep], pool_labels[keep]),
        val=make(val_paths, val_labels),
        test=make(test_paths, test_labels),
        provenance={"input_size": size, "hflip": hflip, "pad": pad, **provenance},
    )
