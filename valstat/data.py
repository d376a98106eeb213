"""Images in: the user's folder (Keras layout) or scikit-learn's built-in handwritten digits.

Decoding happens once per data source and image size: the arrays are cached in the output
folder (`cache/*.npz`) and in memory, so every run on a worker reuses them.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from valstat.errors import ValstatError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
BUILTIN = "digits"
MIN_IMAGES_PER_CLASS = 2


@dataclass
class Dataset:
    """Decoded images with labels.

    images: (N, S, S, 3) uint8; labels: (N,) int64 in [0, n_classes); names: (N,) source names.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    names: list[str]
    source: str
    skipped: list[str] = field(default_factory=list)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def describe(self) -> dict:
        counts = np.bincount(self.labels, minlength=self.n_classes)
        return {"source": self.source, "class_names": self.class_names,
                "class_counts": {name: int(c) for name, c in zip(self.class_names, counts)},
                "n_images": int(len(self.labels)), "image_size": int(self.images.shape[1]),
                "skipped": self.skipped,
                # the decoded pixels and labels: the store refuses runs on other images
                "digest": hashlib.blake2b(self.images.tobytes() + self.labels.astype(np.int64).tobytes(),
                                          digest_size=16).hexdigest(),
                # example id -> file, so reports can show the images a store's ids refer to
                "files": None if self.source == BUILTIN else list(self.names)}


def _to_rgb_uint8(image) -> np.ndarray:
    """PIL image of any mode (L, LA, P, RGBA, I;16, I, F, CMYK) -> (H, W, 3) uint8."""
    from PIL import Image

    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / top * 255.0, 0, 255).astype(np.uint8), "L")
    elif image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _resize(rgb: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.BILINEAR), dtype=np.uint8)


def index_folder(root: str | Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """Class names (sorted folder names) and (file, label) pairs, without decoding."""
    root = Path(root).expanduser()
    if not root.exists():
        raise ValstatError(f"data folder {root}: no such folder")
    if not root.is_dir():
        raise ValstatError(f"data folder {root}: not a folder (expected one subfolder per class)")
    try:
        class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except PermissionError:
        raise ValstatError(f"data folder {root}: cannot be read (permission denied)") from None
    if not class_dirs:
        raise ValstatError(f"data folder {root}: no class subfolders (expected one subfolder per class, "
                        "e.g. cats/ and dogs/, each holding images)")
    if len(class_dirs) < 2:
        raise ValstatError(f"data folder {root}: only one class ({class_dirs[0].name}); "
                        "classification needs at least two class subfolders")
    files = []
    for label, class_dir in enumerate(class_dirs):
        found = []
        seen_dirs = set()
        for folder, subdirs, names in os.walk(class_dir, followlinks=True):
            real = os.path.realpath(folder)
            if real in seen_dirs:      # symlink loop: visit each real folder once
                subdirs[:] = []
                continue
            seen_dirs.add(real)
            subdirs.sort()
            found.extend(Path(folder) / name for name in sorted(names)
                         if name.lower().endswith(IMAGE_EXTENSIONS))
        if not found:
            raise ValstatError(f"data folder {root}: class folder '{class_dir.name}' holds no images "
                            f"({', '.join(IMAGE_EXTENSIONS)})")
        files.extend((path, label) for path in found)
    return [d.name for d in class_dirs], files


def _decode_folder(root: Path, class_names: list[str], files: list[tuple[Path, int]],
                   image_size: int) -> Dataset:
    from PIL import Image, UnidentifiedImageError

    images, labels, names, skipped = [], [], [], []
    for path, label in files:
        try:
            with Image.open(path) as image:
                image.load()
                rgb = _to_rgb_uint8(image)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            skipped.append(str(path.relative_to(root)))
            continue
        images.append(_resize(rgb, image_size))
        labels.append(label)
        names.append(str(path.relative_to(root)))
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(class_names))
    for name, count in zip(class_names, counts):
        if count < MIN_IMAGES_PER_CLASS:
            raise ValstatError(f"data folder {root}: class '{name}' has {count} readable image(s) "
                            f"after skipping {len(skipped)} unreadable file(s); "
                            f"need at least {MIN_IMAGES_PER_CLASS}")
    if skipped:
        shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        warnings.warn(f"skipped {len(skipped)} unreadable image(s): {shown}", stacklevel=2)
    return Dataset(images=np.stack(images), labels=np.asarray(labels, dtype=np.int64),
                   class_names=class_names, names=names, source=str(root), skipped=skipped)


def _decode_digits(image_size: int) -> Dataset:
    """scikit-learn's 1,797 handwritten digits (8x8, 0-16) upscaled to RGB image_size^2."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    gray = np.round(digits.images / 16.0 * 255.0).astype(np.uint8)
    images = np.stack([_resize(np.repeat(g[:, :, None], 3, axis=2), image_size) for g in gray])
    return Dataset(images=images, labels=digits.target.astype(np.int64),
                   class_names=[str(d) for d in range(10)],
                   names=[f"digits[{i}]" for i in range(len(gray))], source=BUILTIN)


def _folder_fingerprint(root: Path, files: list[tuple[Path, int]]) -> str:
    """Hash of the indexed files' names, labels, sizes and modification times."""
    digest = hashlib.sha256()
    for path, label in files:
        stat = path.stat()
        digest.update(f"{path.relative_to(root)}|{label}|{stat.st_size}|{stat.st_mtime_ns}\n"
                      .encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:16]


_MEMORY: dict[tuple, Dataset] = {}


def load_dataset(source: str, image_size: int, cache_dir: str | Path | None = None) -> Dataset:
    """Decode `source` ("digits" or a folder) at `image_size`, once; later calls hit the cache."""
    if source == BUILTIN:
        key = (BUILTIN, image_size)
    else:
        root = Path(source).expanduser()
        class_names, files = index_folder(root)
        key = (str(root.resolve()), image_size, _folder_fingerprint(root, files))
    if key in _MEMORY:
        return _MEMORY[key]
    cache_file = None
    if cache_dir is not None:
        tag = hashlib.sha256(repr(key).encode()).hexdigest()[:16]
        cache_file = Path(cache_dir) / f"images-{tag}.npz"
        if cache_file.exists():
            with np.load(cache_file, allow_pickle=False) as saved:
                dataset = Dataset(images=saved["images"], labels=saved["labels"],
                                  class_names=list(saved["class_names"]),
                                  names=list(saved["names"]), source=str(saved["source"]),
                                  skipped=list(saved["skipped"]))
            _MEMORY[key] = dataset
            return dataset
    dataset = (_decode_digits(image_size) if source == BUILTIN
               else _decode_folder(root, class_names, files, image_size))
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        partial = cache_file.with_suffix(".partial.npz")
        np.savez(partial, images=dataset.images, labels=dataset.labels,
                 class_names=np.asarray(dataset.class_names), names=np.asarray(dataset.names),
                 source=np.asarray(dataset.source), skipped=np.asarray(dataset.skipped, dtype=str))
        os.replace(partial, cache_file)
    _MEMORY[key] = dataset
    return dataset
