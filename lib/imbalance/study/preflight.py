"""Pre-flight: a study's own data (an image folder or an .npz) checked here, before any notebook starts.

Each problem is one line naming the file and what was expected, found in seconds instead of inside
every kernel after its start-up (and never retried: it would recur).  Image headers are read for
every file; pixels are decoded for up to DECODE_LIMIT files (a truncated JPEG shows only then).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

MIN_SIDE = 8                  # the smallest image side a model takes (image_size's own floor)
MAX_PIXELS = 50_000_000       # width x height of one image: more is a decompression bomb, not a photo
DECODE_LIMIT = 5_000          # images decoded in full (the rest: headers only)


@dataclass(frozen=True)
class FolderSummary:
    classes: tuple[str, ...]
    train_counts: tuple[int, ...]
    val_counts: tuple[int, ...]


def check_study_data(params) -> None:
    """The pre-flight check for the study's dataset: image folders and .npz files (others are checked by
    their loaders' hashes)."""
    from imbalance.data.datasets import check_npz, data_root
    if params.dataset == "npz":
        check_npz(data_root(params.data_root))
    elif params.dataset == "imagefolder":
        check_image_folder(data_root(params.data_root), image_size=params.image_size)


def _image_files(folder: Path, split: str) -> list[Path]:
    """Every file under a class folder, following links as ImageFolder does, but refusing a loop."""
    seen, files = set(), []
    for current, dirs, names in os.walk(folder, followlinks=True):
        stat = os.stat(current)
        key = (stat.st_dev, stat.st_ino)
        if key in seen:
            raise ValueError(f"imagefolder: {current} leads back to a folder already read (a symlink loop) in "
                             f"{split}/; remove the link")
        seen.add(key)
        for d in dirs:
            target = Path(current) / d
            if target.is_symlink():
                real = target.resolve()
                if Path(current).resolve().is_relative_to(real) or real == Path(current).resolve():
                    raise ValueError(f"imagefolder: {target} is a symlink loop (it points to {real}, a folder "
                                     "that holds it); remove the link")
        files += [Path(current) / n for n in sorted(names) if not n.startswith(".")]
    return sorted(files)


def check_image_folder(root: str | os.PathLike, *, image_size: int | None = None) -> FolderSummary:
    """<root>/train/<class>/* and <root>/val/<class>/*: the same >= 2 classes, none empty, every file an image
    the model can take (at least MIN_SIDE pixels a side, at most MAX_PIXELS, decodable), and one size
    throughout when image_size is None."""
    from PIL import Image
    root = Path(root).expanduser()
    splits = {}
    for split in ("train", "val"):
        folder = root / split
        if not folder.is_dir():
            raise FileNotFoundError(f"imagefolder: {folder} not found; expected {root}/{split}/<class>/<image> folders")
        classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not classes:
            raise ValueError(f"imagefolder: {folder} holds no class folders; expected {folder}/<class>/<image>")
        splits[split] = {c: _image_files(folder / c, split) for c in classes}
    train, val = splits["train"], splits["val"]
    if len(train) < 2:
        raise ValueError(f"imagefolder: {root / 'train'} holds one class folder ({next(iter(train))}); expected "
                         "at least 2 classes")
    missing = sorted(set(train) - set(val))
    if missing:
        raise ValueError(f"imagefolder: {root / 'val'} lacks class folder {missing[0]!r}; expected the classes of "
                         f"{root / 'train'}")
    extra = sorted(set(val) - set(train))
    if extra:
        raise ValueError(f"imagefolder: {root / 'val' / extra[0]} is not a class of {root / 'train'}")
    for split, classes in splits.items():
        empty = [c for c, files in classes.items() if not files]
        if empty:
            raise ValueError(f"imagefolder: {root / split / empty[0]} holds no images; expected at least one per class")
    first, decoded = None, 0
    for split, classes in splits.items():
        for files in classes.values():
            for path in files:
                size = _image_size(Image, path, decode=decoded < DECODE_LIMIT)
                decoded += 1
                if min(size) < MIN_SIDE:
                    raise ValueError(f"imagefolder: {path} is {size[0]}x{size[1]} pixels; expected at least "
                                     f"{MIN_SIDE}x{MIN_SIDE}")
                if image_size is None:
                    if first is None:
                        first = (path, size)
                    elif size != first[1]:
                        raise ValueError(f"imagefolder: {path} is {size[0]}x{size[1]} pixels but {first[0]} is "
                                         f"{first[1][0]}x{first[1][1]}; set image_size (and image_fit) to bring "
                                         "them to one size")
    return FolderSummary(tuple(train), tuple(len(f) for f in train.values()), tuple(len(f) for f in val.values()))


def _image_size(Image, path: Path, *, decode: bool) -> tuple[int, int]:
    if path.stat().st_size == 0:
        raise ValueError(f"imagefolder: {path} is empty (0 bytes); expected an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                size = image.size
                if size[0] * size[1] > MAX_PIXELS:
                    raise ValueError(f"imagefolder: {path} is {size[0]}x{size[1]} pixels; expected at most "
                                     f"{MAX_PIXELS:,} pixels an image")
                if decode:
                    image.load()
    except ValueError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ValueError(f"imagefolder: {path} is too large to decode ({exc})") from None
    except (OSError, SyntaxError, Image.UnidentifiedImageError) as exc:
        raise ValueError(f"imagefolder: {path} is not a readable image ({' '.join(str(exc).split())[:200]})") from None
    return size
