"""The validation images behind the jumps: example ids -> files, and the most unstable images.

A store keeps example ids only: global indices into the data set a run was trained on
(valstat.data.load_dataset order). `ExampleSource` maps them back to a file of the user's folder
(the list recorded in the store's meta `dataset.files`, or, for stores written before it was
recorded, the folder indexed again the way `load_dataset` does) or to an index of the built-in
digits. Thumbnails are read from there when a report is built; they are never stored.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from valstat.core.cube import Cube
from valstat.data import BUILTIN, _to_rgb_uint8, index_folder
from valstat.errors import ValstatError
from valstat.results import Confusion, UnstableImage
from valstat.stats.flips import flips_per_image

TOP = 12          # images listed per arm
#: The data source a store written by valstat.keras.Recorder names: it holds no images.
RECORDED_SOURCE = "recorded with valstat.keras.Recorder"


@dataclass
class ExampleSource:
    """Where the images of one data source live. kind: "digits", "folder" or None (unknown,
    e.g. a store written by valstat.keras.Recorder; `note` says why); names: the file of each
    example id, relative to `root`."""

    kind: str | None
    root: Path | None = None
    names: list | None = None
    note: str = ""

    def name(self, example: int) -> str | None:
        """'digits[12]', the file relative to the data folder, or None when unknown."""
        if self.kind == BUILTIN:
            return f"digits[{int(example)}]"
        if self.names is not None and 0 <= int(example) < len(self.names):
            return str(self.names[int(example)])
        return None

    def path(self, example: int) -> Path | None:
        """The image file of a folder example (None for the digits or an unknown example)."""
        name = self.name(example) if self.kind == "folder" else None
        return None if name is None else self.root / name

    def pixels(self, example: int) -> np.ndarray | None:
        """(H, W, 3) uint8 pixels of one example as stored on disk, or None if unreadable."""
        if self.kind == BUILTIN:
            images = _digits()
            if not 0 <= int(example) < len(images):
                return None
            gray = np.round(images[int(example)] / 16.0 * 255.0).astype(np.uint8)
            return np.repeat(gray[:, :, None], 3, axis=2)
        path = self.path(example)
        if path is None:
            return None
        from PIL import Image

        try:
            with Image.open(path) as image:
                image.load()
                return _to_rgb_uint8(image)
        except (OSError, ValueError, SyntaxError):
            return None


@functools.lru_cache(maxsize=1)
def _digits() -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().images


def arm_source(meta: dict, arm: str) -> str | None:
    """The data source ("digits" or a folder) of one arm, from the store's meta."""
    data = ((meta.get("arms_config") or {}).get(arm) or {}).get("data") or {}
    return data.get("source") or (meta.get("dataset") or {}).get("source")


def example_source(meta: dict, source: str | None) -> ExampleSource:
    """Resolve `source` ("digits" or a folder) to an ExampleSource. kind None, with the reason
    in `note`, when its example ids cannot be matched to images."""
    if source == BUILTIN:
        return ExampleSource(BUILTIN)
    if source == RECORDED_SOURCE:
        return ExampleSource(None, note="valstat.keras.Recorder keeps predictions, not images")
    dataset = meta.get("dataset") or {}
    same = dataset.get("source") == source
    if same and dataset.get("files"):
        return ExampleSource("folder", Path(source).expanduser(), list(dataset["files"]))
    try:
        _, files = index_folder(source or "")
    except ValstatError as error:
        return ExampleSource(None, note=str(error))
    root = Path(source).expanduser()
    skipped = set(dataset.get("skipped") or []) if same else set()
    names = [name for name in (str(p.relative_to(root)) for p, _ in files)
             if name not in skipped]
    if same and dataset.get("n_images") not in (None, len(names)):
        return ExampleSource(None, note=f"{root} now holds {len(names)} images, the store was "
                             f"trained on {dataset['n_images']}")
    return ExampleSource("folder", root, names)


def class_names(meta: dict) -> list:
    return list((meta.get("dataset") or {}).get("class_names") or meta.get("class_names") or [])


def _class(names: list, index) -> str:
    return str(names[int(index)]) if 0 <= int(index) < len(names) else str(int(index))


def unstable_images(runs: pd.DataFrame, cube: Cube, meta: dict, top: int = TOP) -> dict:
    """The `top` most unstable validation images of each arm, from the correctness cube.

    runs: run_id, arm, code (the run table's runs to count; code = the cube's run code).
    Returns {arm: [UnstableImage]} (valstat.results), most unstable first
    (valstat.stats.flips.image_flips' order). An image counts as unstable when it flipped at
    least once or the runs disagree on it at their last epoch; arms with predictions but no
    such image get [], arms without predictions are left out.
    """
    names = class_names(meta)
    out = {}
    for arm in dict.fromkeys(list(meta.get("arms") or []) + sorted(runs["arm"].unique())):
        rows = cube.rows_of(runs.loc[runs["arm"] == arm, "code"])
        if rows[0].size == 0:
            continue
        source = example_source(meta, arm_source(meta, arm))
        table = flips_per_image(*rows)
        unstable = table[(table["flips"] > 0) | ((table["final_correct"] > 0)
                                                 & (table["final_correct"] < table["runs"]))]
        out[arm] = [UnstableImage(
            example=int(row.example), file=source.name(row.example),
            label=int(row.label), class_name=_class(names, row.label),
            flips=int(row.flips), lost=int(row.lost), gained=int(row.gained),
            transitions=int(row.transitions), runs=int(row.runs),
            final_correct=int(row.final_correct), final_accuracy=float(row.final_accuracy),
            confused_with=[Confusion(label=c, class_name=_class(names, c), times=t)
                           for c, t in row.confused_with],
        ) for row in unstable.head(top).itertuples(index=False)]
    return out
