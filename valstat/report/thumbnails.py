"""The report's "images behind the jumps" section: thumbnails of the most unstable validation
images per arm and of the images the largest-drop run lost and gained, plus its thesis figure.

Images are read now, from the user's folder or the built-in digits (valstat.images), inlined as
base64 PNG data URIs (the page stays one file) and never written to the store. An image that
cannot be read becomes a placeholder tile and one warning per arm, never a failure.
"""

from __future__ import annotations

import base64
import io
import warnings

import numpy as np

from valstat.images import ExampleSource, arm_source, class_names, example_source
from valstat.report.text import Strings
from valstat.stats.flips import moved_images

TILE_PX = 112           # thumbnail edge in the page (CSS pixels x 2 for sharp screens)
FIGURE_PX = 128         # largest edge kept for the thesis figure
PLACEHOLDER = 235       # grey level of a missing image's tile


def _fit(pixels: np.ndarray, size: int) -> np.ndarray:
    """Scale (H, W, 3) uint8 to fit a size x size square (nearest when enlarging, so the 8 px
    digits stay sharp pixels), centred on white."""
    from PIL import Image

    h, w = pixels.shape[:2]
    scale = size / max(h, w)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    resample = Image.NEAREST if scale >= 1 else Image.LANCZOS
    image = Image.fromarray(pixels).resize(new, resample)
    canvas = Image.new("RGB", (size, size), (255, 255, 255))
    canvas.paste(image, ((size - new[0]) // 2, (size - new[1]) // 2))
    return np.asarray(canvas)


def _placeholder(size: int) -> np.ndarray:
    tile = np.full((size, size, 3), PLACEHOLDER, dtype=np.uint8)
    diagonal = np.arange(size)
    for offset in (-1, 0, 1):           # a grey cross: "no image here"
        keep = (diagonal + offset >= 0) & (diagonal + offset < size)
        tile[diagonal[keep], diagonal[keep] + offset] = 160
        tile[diagonal[keep], size - 1 - diagonal[keep] - offset] = 160
    return tile


def _data_uri(pixels: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _tile(source: ExampleSource, example: int, lines: list, missing: list) -> dict:
    pixels = source.pixels(example)
    if pixels is None:
        missing.append(source.name(example) or f"#{example}")
    name = source.name(example) or f"#{example}"
    return {"uri": _data_uri(_fit(pixels, TILE_PX) if pixels is not None
                             else _placeholder(TILE_PX)),
            "pixels": None if pixels is None else _fit(pixels, min(FIGURE_PX, max(
                pixels.shape[:2]))),
            "name": name, "lines": lines, "found": pixels is not None}


def _warn_missing(arm: str, missing: list, source: ExampleSource) -> None:
    if not missing or source.kind is None:      # the page says why there are no images
        return
    where = source.note or (f"under {source.root}" if source.root else "")
    warnings.warn(f"{len(missing)} image(s) of arm {arm} could not be read {where} "
                  f"(first: {missing[0]}); shown as placeholders", stacklevel=3)


def image_section(analysis, S: Strings) -> dict | None:
    """Context for the template: {intro, arms: [{title, note, tiles}], drop: {title, intro,
    tiles} or None}; each tile {uri, name, lines, found, pixels (for the figure)}. Images and
    their flips come from the correctness cube (summary.unstable_images, analysis.core.cube).
    None when the store holds no per-image predictions."""
    unstable = analysis.summary.unstable_images
    if not unstable:
        return None
    T = S.section("images")
    names = class_names(analysis.meta)

    def cls(index):
        return names[int(index)] if 0 <= int(index) < len(names) else str(index)

    sources = {arm: example_source(analysis.meta, arm_source(analysis.meta, arm))
               for arm in analysis.arms}
    arms = []
    for arm in analysis.arms:
        images = unstable.get(arm)
        if images is None:
            continue
        source, missing, tiles = sources[arm], [], []
        for item in images:
            lines = [T["tile_class"].format(cls=item.class_name),
                     T["tile_flips"].format(flips=item.flips, lost=item.lost,
                                            gained=item.gained),
                     T["tile_final"].format(k=item.final_correct, runs=item.runs)]
            if item.confused_with:
                top = item.confused_with[0]
                lines.append(T["tile_confused"].format(cls=top.class_name, times=top.times))
            tiles.append(_tile(source, item.example, lines, missing))
        _warn_missing(arm, missing, source)
        arms.append({"arm": arm, "tiles": tiles, "intro": "",
                     "title": (T["arm"].format(arm=arm, count=len(tiles)) if tiles
                               else T["none"].format(arm=arm)),
                     "note": T["unknown_source"].format(arm=arm, note=source.note)
                     if source.kind is None else ""})
    drop = None
    example = analysis.example
    if example is not None and example.drop and example.paired:
        d = example.drop
        code = int(analysis.core.runs.loc[example.run_id, "code"])
        cube = analysis.core.cube
        moved = moved_images(cube.at(code, d.from_epoch), cube.at(code, d.to_epoch))
        source, missing, tiles = sources.get(example.arm) or ExampleSource(None), [], []
        for row in moved.itertuples(index=False):
            lines = [T["tile_class"].format(cls=cls(row.label)),
                     T[f"tile_{row.direction}"].format(before=cls(row.predicted_before),
                                                       after=cls(row.predicted_after))]
            tiles.append(_tile(source, row.example, lines, missing))
        _warn_missing(example.arm, missing, source)
        lost = int((moved["direction"] == "lost").sum())
        drop = {"title": T["drop_heading"].format(run=example.run_id, e0=d.from_epoch,
                                                  e1=d.to_epoch),
                "intro": T["drop_intro"].format(lost=lost, gained=len(moved) - lost,
                                                net=lost - (len(moved) - lost)),
                "note": "", "tiles": tiles}
    return {"intro": T["intro"], "arms": arms, "drop": drop}


def image_figure(section: dict, S: Strings, dest):
    """The thesis figure of the grid (figures/unstable_images.{pdf,svg,png}), or None when no
    arm has an unstable image. Returns a report.figures.FigureEntry."""
    from valstat.report import plots
    from valstat.report.figures import _entry

    T = S.section("images")
    panels = [{"title": T["figure_title"].format(arm=arm["arm"]), "tiles": arm["tiles"]}
              for arm in section["arms"] if arm["tiles"]]
    if not panels:
        return None
    with plots.figure_context(S.lang):
        fig = plots.plot_image_grid(panels, T["missing"])
        return _entry(plots.save_figure(fig, dest, "unstable_images"), T["caption"])
