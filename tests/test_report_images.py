"""The images behind the jumps: example ids -> the user's files, thumbnails inlined in the report
(placeholders for missing files), hostile file names escaped, checked in headless Chromium."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY, valstat, write_image_folder
from report_fixtures import CHROMIUM, Chromium
from valstat.synthetic import build_store
from valstat.report import build_report
from valstat.store import Store, load_tables

HOSTILE_FILE = "<img src=x onerror=alert(1)>.png"
ESCAPED = "&lt;img src=x onerror=alert(1)&gt;.png"


def _folder(root: Path) -> tuple[Path, list]:
    """Real images in Keras layout plus one file with a hostile name; returns (root, files)."""
    from PIL import Image

    data = write_image_folder(root, classes=("cats", "dogs"), per_class=4)
    pixels = np.zeros((30, 20, 3), dtype=np.uint8)
    pixels[:, :10] = 255
    Image.fromarray(pixels).save(data / "cats" / HOSTILE_FILE)
    files = sorted(str(p.relative_to(data)) for p in data.rglob("*.*"))
    return data, files


@pytest.fixture(scope="module")
def folder_store(tmp_path_factory):
    """A synthetic store whose meta says its images come from a real folder: example i is the
    hostile file when i % 3 == 0, a file that does not exist when i % 3 == 1, else a real one."""
    tmp = tmp_path_factory.mktemp("images")
    data, files = _folder(tmp / "photos")
    real = [f for f in files if f != f"cats/{HOSTILE_FILE}"]
    names = [f"cats/{HOSTILE_FILE}" if i % 3 == 0 else f"cats/gone_{i}.png" if i % 3 == 1
             else real[i % len(real)] for i in range(1500)]
    out = build_store(tmp / "store", arms=("baseline",), seeds=3, folds=1, epochs=10,
                      collapse=False)
    with Store(out) as store:
        meta = store.meta()
        meta["dataset"].update(source=str(data), files=names)
        meta["arms_config"]["baseline"]["data"]["source"] = str(data)
        store.set_meta({"dataset": meta["dataset"], "arms_config": meta["arms_config"]})
    return out, names


@pytest.fixture(scope="module")
def report(folder_store, tmp_path_factory):
    out, _ = folder_store
    with pytest.warns(UserWarning, match=r"image\(s\) of arm baseline could not be read"):
        return build_report(out, tmp_path_factory.mktemp("report"))


def _tiles(html: str) -> list:
    return re.findall(r'<img class="thumb" src="data:image/png;base64,([^"]+)" alt="([^"]*)"',
                      html)


def test_thumbnails_are_inlined_with_flip_captions(folder_store, report):
    from PIL import Image

    out, names = folder_store
    html = report.read_text(encoding="utf-8")
    summary = json.loads((report.parent / "summary.json").read_text())
    listed = summary["unstable_images"]["baseline"]
    assert len(listed) == 12
    assert [item["file"] for item in listed] == [names[item["example"]] for item in listed]
    tiles = _tiles(html)
    assert len(tiles) >= 12
    for encoded, _ in tiles:
        with Image.open(io.BytesIO(base64.b64decode(encoded))) as image:
            assert image.size == (112, 112)
    section = html[html.index('<section id="images">'):html.index('<section id="figures">')]
    for item in listed:
        assert f"flips: {item['flips']} ({item['lost']}↓ {item['gained']}↑)" in section
        assert f"right in {item['final_correct']}/{item['runs']} runs" in section
    missing = [item for item in listed if item["example"] % 3 == 1]
    assert missing and section.count('class="thumb missing"') >= len(missing)
    assert (report.parent / "figures" / "unstable_images.png").stat().st_size > 20_000


def test_lost_and_gained_images_of_the_largest_drop_run(folder_store, report):
    out, _ = folder_store
    html = report.read_text(encoding="utf-8")
    heading = re.search(r"The images behind the largest drop: run (\S+), epoch (\d+) → (\d+)",
                        html)
    assert heading, "no lost/gained block"
    run, e0, e1 = heading.group(1), int(heading.group(2)), int(heading.group(3))
    predictions = load_tables(out).predictions
    part = predictions[predictions["run_id"] == run]
    before = part[part["epoch"] == e0].set_index("example")
    after = part[part["epoch"] == e1].set_index("example")
    lost = gained = 0
    for example in before.index:
        ok0 = before.at[example, "predicted"] == before.at[example, "label"]
        ok1 = after.at[example, "predicted"] == after.at[example, "label"]
        lost += ok0 and not ok1
        gained += ok1 and not ok0
    assert lost > gained
    block = html[heading.start():html.index('<section id="figures">')]
    assert f"lost {lost} and gained {gained} validation images" in block
    assert block.count('<img class="thumb"') == lost + gained
    assert block.count("lost: now") == lost and block.count("gained: was") == gained


def test_hostile_file_name_is_escaped(report):
    html = report.read_text(encoding="utf-8")
    assert ESCAPED in html
    assert "<img src=x" not in html and "onerror=alert(1)>" not in html


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed")
def test_thumbnails_render_in_chromium_and_the_name_stays_text(report, tmp_path):
    browser = Chromium(tmp_path / "profile")
    try:
        browser.open(report.resolve().as_uri())
        thumbs = json.loads(browser.evaluate(
            "JSON.stringify(Array.from(document.querySelectorAll('img.thumb'))"
            ".map(i => [i.complete, i.naturalWidth, i.getBoundingClientRect().width]))"))
        injected = browser.evaluate("document.querySelectorAll('img[src=\"x\"]').length")
        names = json.loads(browser.evaluate(
            "JSON.stringify(Array.from(document.querySelectorAll('figure.thumb code'))"
            ".map(c => c.textContent))"))
        errors = browser.errors()
        fetched = [u for u in browser.requests() if not u.startswith(("data:", "file:"))]
    finally:
        browser.close()
    assert len(thumbs) >= 12
    assert all(complete and natural == 112 and shown >= 100 for complete, natural, shown
               in thumbs), thumbs
    assert injected == 0
    assert f"cats/{HOSTILE_FILE}" in names
    assert errors == [] and fetched == []


def test_chinese_report_has_the_section(folder_store, tmp_path):
    out, _ = folder_store
    with pytest.warns(UserWarning):
        index = build_report(out, tmp_path / "zh", lang="zh")
    html = index.read_text(encoding="utf-8")
    assert "造成跳变的图像" in html and "翻转" in html and ESCAPED in html


def test_trained_folder_store_maps_example_ids_to_its_files(tmp_path):
    """Real training on a user folder: the store's meta lists the files behind the example ids
    (each in its label's class folder), `valstat stats --json` names the same files, and the
    report reads every image it shows without a warning."""
    import warnings

    from PIL import Image

    data = write_image_folder(tmp_path / "photos", classes=("cats", "dogs"), per_class=14)
    for index in range(3):   # hostile names that really are trained and validated on
        pixels = np.full((24, 24, 3), 200 if index % 2 else 40, dtype=np.uint8)
        Image.fromarray(pixels).save(data / "cats" / f"<b>{index} {HOSTILE_FILE}")
    out = tmp_path / "out"
    done = valstat("run", TINY, "--data", data, "--seeds", "2", "--epochs", "3",
                   "--val-size", "10", "--out", out, "--quiet", "--workers", "1")
    assert done.returncode == 0, done.stderr
    tables = load_tables(out)
    files = tables.meta["dataset"]["files"]
    assert len(files) == 31 and all((data / f).is_file() for f in files)
    classes = tables.meta["dataset"]["class_names"]
    for example, label in tables.predictions[["example", "label"]].drop_duplicates() \
            .itertuples(index=False):
        assert files[example].split("/")[0] == classes[label]
    stats = valstat("stats", out, "--json")
    assert stats.returncode == 0, stats.stderr
    listed = json.loads(stats.stdout)["unstable_images"]
    assert set(listed) == {"plain", "batchnorm"}
    for arm, images in listed.items():      # may be empty: a tiny run can stay on one class
        for item in images:
            assert item["file"] == files[item["example"]]
            assert item["file"].split("/")[0] == item["class_name"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        index = build_report(out)
    html = index.read_text(encoding="utf-8")
    assert html.count('<img class="thumb"') >= sum(map(len, listed.values()))
    assert "<b>0" not in html and "<img src=x" not in html


# --------------------------------------------------------------------------- the thesis figure

CAPTION_4 = ["class 7", "flips: 7 (3↓ 4↑)", "right in 1/3 runs", "taken for square ×5"]


def _grid(counts: list, lines: list, missing_every: int = 0):
    """plot_image_grid of one panel per count (that many tiles), every caption `lines`."""
    from valstat.report import plots

    rng = np.random.default_rng(0)
    panels = [{"title": f"Arm {i}",
               "tiles": [{"pixels": None if missing_every and j % missing_every == 0
                          else rng.integers(0, 255, (8, 8, 3), dtype=np.uint8),
                          "lines": lines} for j in range(count)]}
              for i, count in enumerate(counts)]
    return plots.plot_image_grid(panels, "image missing")


def _texts_outside(fig) -> list:
    """(text, how far it sticks out of the figure in pixels) for every text drawn past an edge
    (or over its own panel's neighbours: each caption must lie inside its subfigure)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    FigureCanvasAgg(fig)
    fig.canvas.draw()                       # runs the constrained layout, as savefig does
    renderer = fig.canvas.get_renderer()
    outside = []
    for box_owner in [fig, *fig.subfigs]:
        box = box_owner.bbox
        for text in box_owner.findobj(Text):
            if not text.get_visible() or not text.get_text():
                continue
            extent = text.get_window_extent(renderer)
            over = max(box.x0 - extent.x0, extent.x1 - box.x1,
                       box.y0 - extent.y0, extent.y1 - box.y1)
            if over > 0.01:
                outside.append((text.get_text().splitlines()[-1], round(over, 2)))
    return outside


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("counts", [[12, 1], [6, 1], [1], [2, 1, 1], [12, 12], [7, 13], [1, 12],
                                    [5, 6, 11]])
@pytest.mark.parametrize("n_lines", [3, 4])
def test_image_grid_never_clips_a_caption_line(counts, n_lines, lang):
    """Every caption line lies inside the figure and its own panel, however many thumbnails each
    arm has (a last arm with one thumbnail used to lose its last line at the bottom edge)."""
    from valstat.report import plots

    with plots.figure_context(lang):
        fig = _grid(counts, CAPTION_4[:n_lines], missing_every=5)
        assert _texts_outside(fig) == []


def test_saved_image_grid_has_no_ink_on_its_bottom_edge(tmp_path):
    """The PNG as written: a one-thumbnail last arm's caption ends above the bottom edge."""
    from PIL import Image

    from valstat.report import plots

    with plots.figure_context("en"):
        saved = plots.save_figure(_grid([12, 1], CAPTION_4), tmp_path, "unstable_images")
    with Image.open(saved.paths["png"]) as image:
        grey = np.asarray(image.convert("L"))
    assert grey[-3:].min() > 240, "a caption runs into the bottom edge of the image"
