"""File formats and bad input: IDX, CIFAR pickles (restricted unpickler), image folders, digits constants."""

from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from data_fakes import write_fake_cifar, write_fake_fashion, write_fake_imagefolder

from cidpipe.data import DataConfig, load_dataset
from cidpipe.data.datasets.digits import DIGITS_MEAN, DIGITS_STD, digits_pixel_statistics
from cidpipe.data.datasets.fashion_mnist import FASHION_MNIST_MEAN, FASHION_MNIST_STD
from cidpipe.data.datasets.idx import read_idx, write_idx
from cidpipe.data.datasets.safe_pickle import load_restricted_pickle
from cidpipe.errors import DataError


def normalised(images: np.ndarray, mean: tuple, std: tuple) -> np.ndarray:
    m = np.asarray(mean, dtype=np.float32)[:, None, None]
    s = np.asarray(std, dtype=np.float32)[:, None, None]
    return (images.astype(np.float32) / 255.0 - m) / s


def test_fashion_test_split_is_the_padded_replicated_idx_data(tmp_path: Path) -> None:
    arrays = write_fake_fashion(tmp_path, 100, 30)
    bundle = load_dataset(DataConfig(name="fashion-mnist", root=tmp_path))
    x, y = bundle.test.to_numpy()
    raw = np.pad(arrays["t10k_images"], ((0, 0), (2, 2), (2, 2)))
    expected = normalised(np.repeat(raw[:, None], 3, axis=1), FASHION_MNIST_MEAN, FASHION_MNIST_STD)
    np.testing.assert_allclose(x, expected, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(y, arrays["t10k_labels"])


def test_fashion_torchvision_layout_is_found(tmp_path: Path) -> None:
    write_fake_fashion(tmp_path / "FashionMNIST" / "raw", 50, 20)
    assert len(load_dataset(DataConfig(name="fashion-mnist", root=tmp_path)).test) == 20


def test_fashion_missing_files_say_where_and_how(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist") as info:
        load_dataset(DataConfig(name="fashion-mnist", root=tmp_path / "nowhere"))
    assert str(tmp_path / "nowhere") in str(info.value) and "data.download" in str(info.value)


def test_idx_roundtrip_plain_and_gzip(tmp_path: Path) -> None:
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for compress in (False, True):
        path = tmp_path / f"a{compress}"
        write_idx(path, array, compress=compress)
        np.testing.assert_array_equal(read_idx(path, 3), array)


@pytest.mark.parametrize("damage", ["truncate", "magic", "ndim", "bad-gzip"])
def test_corrupt_idx_is_a_data_error(tmp_path: Path, damage: str) -> None:
    write_fake_fashion(tmp_path, 50, 20)
    path = tmp_path / "t10k-images-idx3-ubyte"
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[:-10])
    elif damage == "magic":
        path.write_bytes(b"\x01\x00" + raw[2:])
    elif damage == "ndim":
        path.write_bytes(raw[:3] + b"\x02" + raw[4:])
    else:
        gz = tmp_path / "train-images-idx3-ubyte.gz"
        gz.write_bytes(gzip.compress(b"x" * 100)[:30])
    with pytest.raises(DataError, match="replace the file"):
        load_dataset(DataConfig(name="fashion-mnist", root=tmp_path))


@pytest.mark.parametrize("variant", ["cifar10", "cifar100"])
def test_cifar_pixels_and_labels_follow_the_plane_layout(tmp_path: Path, variant: str) -> None:
    records = write_fake_cifar(tmp_path, variant)
    bundle = load_dataset(DataConfig(name=variant, root=tmp_path))
    test_record = records["test_batch" if variant == "cifar10" else "test"]
    label_key = "labels" if variant == "cifar10" else "fine_labels"
    x, y = bundle.test.to_numpy()
    # Row = 1024 red values, then green, then blue, each 32x32 row-major.
    expected = normalised(test_record["data"].reshape(-1, 3, 32, 32), bundle.mean, bundle.std)
    np.testing.assert_allclose(x, expected, atol=1e-5)
    np.testing.assert_array_equal(y, test_record[label_key])
    assert bundle.class_names[:2] == (["class0", "class1"] if variant == "cifar10" else ["fine00", "fine01"])
    # data.root may also point at the extracted folder itself.
    folder = tmp_path / ("cifar-10-batches-py" if variant == "cifar10" else "cifar-100-python")
    assert load_dataset(DataConfig(name=variant, root=folder)).test.fingerprint() == bundle.test.fingerprint()


def test_synthetic_cifar100_for_gpu_timing_reads_as_cifar100(tmp_path: Path) -> None:
    """benchmarks/make_synthetic_cifar100.py (the GPU session's stand-in data) writes the real format."""
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "make_synthetic_cifar100.py"
    spec = importlib.util.spec_from_file_location("make_synthetic_cifar100", script)
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    maker.write(tmp_path, n_train=400, n_test=200)
    bundle = load_dataset(DataConfig(name="cifar100", root=tmp_path))
    x, y = bundle.test.to_numpy()
    assert x.shape == (200, 3, 32, 32) and sorted(set(y.tolist())) == list(range(100))
    assert len(bundle.train) + len(bundle.val) == 400 and bundle.class_names[0] == "class00"


def test_fashion_pairs_for_the_qat_benchmark_are_two_real_garments_per_image(tmp_path: Path) -> None:
    """benchmarks/make_fashion_pairs.py (issue 16's 100-class task): red = first garment, green = second,
    label 10 * first + second, test pairs only from test images; read back as cifar100."""
    arrays = write_fake_fashion(tmp_path / "src", 60, 30)
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "make_fashion_pairs.py"
    spec = importlib.util.spec_from_file_location("make_fashion_pairs", script)
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    folder = maker.write(tmp_path / "pairs", tmp_path / "src", n_train=90, n_test=40)
    with open(folder / "test", "rb") as fh:
        record = pickle.load(fh)  # noqa: S301 -- the file this test just wrote
    images = record["data"].reshape(40, 3, 32, 32)
    test_images, test_labels = arrays["t10k_images"], arrays["t10k_labels"]
    for image, label in zip(images[:10], record["fine_labels"][:10], strict=True):
        first, second = (int(np.flatnonzero((test_images == image[c, 2:30, 2:30]).all(axis=(1, 2)))[0])
                         for c in (0, 1))
        assert label == 10 * test_labels[first] + test_labels[second] and not image[2].any()
    bundle = load_dataset(DataConfig(name="cifar100", root=tmp_path / "pairs"))
    assert len(bundle.test) == 40 and len(bundle.train) + len(bundle.val) == 90
    assert bundle.class_names[12] == "Trouser + Pullover"  # 10 * 1 + 2


def test_cifar_missing_directory_names_the_layout(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cifar-10-batches-py.*data_batch_1.*test_batch.*batches.meta"):
        load_dataset(DataConfig(name="cifar10", root=tmp_path))


class _RunsCode:
    """Pickles to a call of os.getcwd: harmless, but any code execution would be the exploit."""

    def __reduce__(self):
        return (os.getcwd, ())


@pytest.mark.parametrize("payload", ["global", "object-array"])
def test_cifar_pickle_with_forbidden_content_is_refused(tmp_path: Path, payload: str) -> None:
    write_fake_cifar(tmp_path, "cifar10")
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    if payload == "global":
        record = {"data": _RunsCode(), "labels": [0]}
    else:
        record = {"data": np.array([[1, "two"]], dtype=object), "labels": [0]}
    path.write_bytes(pickle.dumps(record, protocol=2))
    with pytest.raises(DataError, match="not a plain CIFAR batch"):
        load_dataset(DataConfig(name="cifar10", root=tmp_path))
    with pytest.raises(DataError, match="forbidden|object arrays"):
        load_restricted_pickle(path)


def test_restricted_unpickler_reads_python2_style_strings(tmp_path: Path) -> None:
    # Python 2's cPickle stores the pixel buffer as a str opcode; latin1 maps it back to the bytes.
    path = tmp_path / "py2"
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    path.write_bytes(pickle.dumps({"data": array}, protocol=0))
    np.testing.assert_array_equal(load_restricted_pickle(path)["data"], array)


def test_imagefolder_single_directory_carves_a_fixed_test_split(fake_roots: dict[str, Path]) -> None:
    bundle = load_dataset(DataConfig(name="imagefolder", root=fake_roots["imagefolder"]))
    assert bundle.class_names == ["cat", "dog", "owl"]
    assert np.bincount(bundle.test.labels.numpy()).tolist() == [2, 2, 2]
    x, _ = bundle.test.to_numpy()
    assert x.shape == (6, 3, 32, 32) and np.isfinite(x).all()


def test_imagefolder_train_test_layout(tmp_path: Path) -> None:
    write_fake_imagefolder(tmp_path / "train", per_class=6)
    write_fake_imagefolder(tmp_path / "test", classes=("cat", "owl"), per_class=2, seed=1)
    bundle = load_dataset(DataConfig(name="imagefolder", root=tmp_path))
    assert bundle.class_names == ["cat", "dog", "owl"]
    assert len(bundle.train) + len(bundle.val) == 18
    assert sorted(bundle.test.labels.tolist()) == [0, 0, 2, 2]  # labels follow the training classes


def test_a_capped_accuracy_pass_keeps_every_class_of_a_class_sorted_folder(tmp_path: Path) -> None:
    """bench.max_eval_samples / export.parity.samples take every k-th test image: the first 8 of a folder
    stored class by class would be cats and dogs only, and an owl-blind top-1 would be gated."""
    write_fake_imagefolder(tmp_path / "train", per_class=4)
    write_fake_imagefolder(tmp_path / "test", per_class=6, seed=1)
    test = load_dataset(DataConfig(name="imagefolder", root=tmp_path)).test
    assert test.labels.tolist() == [0] * 6 + [1] * 6 + [2] * 6  # storage order: class by class
    _, first = test.to_numpy(max_samples=8)
    assert set(first.tolist()) == {0, 1}
    images, labels = test.evenly_spaced(8).to_numpy()
    assert np.bincount(labels).tolist() == [3, 3, 2] and images.shape[0] == 8
    assert test.evenly_spaced(None) is test and test.evenly_spaced(50) is test


def test_the_class_count_is_known_without_reading_the_data(tmp_path: Path) -> None:
    """What the plan uses to foresee a head reset: class folders listed, no image decoded."""
    from cidpipe.data.registry import planned_class_count

    write_fake_imagefolder(tmp_path / "train", classes=("a", "b", "c", "d"), per_class=1)
    (tmp_path / "train" / "d" / "000.png").write_bytes(b"not decoded by the count")
    assert planned_class_count(DataConfig(name="imagefolder", root=tmp_path)) == 4
    assert planned_class_count(DataConfig(name="digits")) == 10
    assert planned_class_count(DataConfig(name="cifar100", root=tmp_path)) == 100


def test_a_class_missing_from_test_is_named_before_training(tmp_path: Path) -> None:
    """test/ without a dog folder: the reported top-1 never measures dogs; the stage says so up front."""
    import io

    from rich.console import Console

    from cidpipe.stages.contract import StageOptions
    from cidpipe.stages.fit_stage import warn_about_missing_classes

    write_fake_imagefolder(tmp_path / "train", per_class=6)
    write_fake_imagefolder(tmp_path / "test", classes=("cat", "owl"), per_class=2, seed=1)
    bundle = load_dataset(DataConfig(name="imagefolder", root=tmp_path))
    assert bundle.classes_without_samples() == {"test": ["dog"]}
    out = io.StringIO()
    warn_about_missing_classes(bundle, StageOptions(console=Console(file=out, width=300)))
    assert out.getvalue().strip() == ("warning: the test split has no images of 1 of 3 classes (dog); its "
                                      "accuracy does not cover them")
    complete = load_dataset(DataConfig(name="imagefolder", root=tmp_path / "train"))
    assert complete.classes_without_samples() == {}


def test_an_extra_class_in_val_names_the_val_folder(tmp_path: Path) -> None:
    from cidpipe.data.datasets.imagefolder import check_imagefolder_available

    write_fake_imagefolder(tmp_path / "train", classes=("cat", "dog"), per_class=4)
    write_fake_imagefolder(tmp_path / "val", classes=("cat", "coat"), per_class=2, seed=1)
    cfg = DataConfig(name="imagefolder", root=tmp_path)
    for attempt in (check_imagefolder_available, load_dataset):
        with pytest.raises(DataError, match=r"val/coat is a class not present .* train/ and val/"):
            attempt(cfg)


@pytest.mark.parametrize("layout", ["train/", "root"])
def test_an_empty_training_class_folder_is_refused(tmp_path: Path, layout: str) -> None:
    """A class with no training image cannot be learnt (it used to be warned about as a val-split gap);
    an empty class folder in val/ or test/ only leaves that split without the class."""
    from cidpipe.data.datasets.imagefolder import check_imagefolder_available

    train = tmp_path / "train" if layout == "train/" else tmp_path
    write_fake_imagefolder(train, classes=("cat", "dog"), per_class=4)
    (train / "owl").mkdir()
    if layout == "train/":
        write_fake_imagefolder(tmp_path / "val", classes=("cat", "dog"), per_class=2, seed=1)
        (tmp_path / "val" / "owl").mkdir()
    cfg = DataConfig(name="imagefolder", root=tmp_path)
    for attempt in (check_imagefolder_available, load_dataset):
        with pytest.raises(DataError, match=r"owl has no images .*so the class 'owl' cannot be learnt; add "):
            attempt(cfg)
    if layout == "train/":
        write_fake_imagefolder(train / "owl", classes=("a",), per_class=4, seed=2)
        check_imagefolder_available(cfg)  # val/owl stays empty: a warning at training time, not an error
        assert load_dataset(cfg).classes_without_samples() == {"test": ["owl"]}


def test_imagefolder_bad_directories(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        load_dataset(DataConfig(name="imagefolder", root=tmp_path / "empty"))
    (tmp_path / "noimages" / "cat").mkdir(parents=True)
    (tmp_path / "noimages" / "cat" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match="no images"):
        load_dataset(DataConfig(name="imagefolder", root=tmp_path / "noimages"))
    with pytest.raises(DataError, match="not a directory"):
        load_dataset(DataConfig(name="imagefolder", root=tmp_path / "missing"))
    with pytest.raises(DataError, match="data.root is required"):
        load_dataset(DataConfig(name="imagefolder"))


def test_imagefolder_undecodable_image_names_the_file(tmp_path: Path, fake_roots: dict[str, Path]) -> None:
    shutil.copytree(fake_roots["imagefolder"], tmp_path / "folder")
    bad = tmp_path / "folder" / "dog" / "img000.png"
    bad.write_bytes(b"not a png")
    bundle = load_dataset(DataConfig(name="imagefolder", root=tmp_path / "folder", val_fraction=0.5))
    split = next(s for s in (bundle.train, bundle.val, bundle.test) if bad in s.paths)
    with pytest.raises(DataError, match="img000.png"):
        split.to_numpy()


def test_digits_constants_match_their_recipe() -> None:
    mean, std = digits_pixel_statistics()
    assert DIGITS_MEAN == (round(mean, 4),) * 3 and DIGITS_STD == (round(std, 4),) * 3
    x, _ = load_dataset(DataConfig(name="digits")).train.to_numpy()
    # Normalised training pixels are centred and unit-scaled (train is 90 % of the statistics' pool).
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1.0) < 0.05


def test_worker_decode_error_stays_one_line(tmp_path: Path, fake_roots: dict[str, Path]) -> None:
    shutil.copytree(fake_roots["imagefolder"], tmp_path / "folder")
    (tmp_path / "folder" / "owl" / "img001.png").write_bytes(b"broken")
    bundle = load_dataset(DataConfig(name="imagefolder", root=tmp_path / "folder", num_workers=1))
    split = next(s for s in (bundle.train, bundle.val, bundle.test)
                 if tmp_path / "folder" / "owl" / "img001.png" in s.paths)
    with pytest.raises(DataError) as info:
        list(split.batches(4, shuffle=False, augment=False))
    assert "\n" not in str(info.value) and "img001.png" in str(info.value)
