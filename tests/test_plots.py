"""Figures: each function draws labelled axes; saving writes PDF (TrueType only), SVG and PNG;
Chinese labels use the packaged CJK font (no tofu: every glyph is in a font we ship)."""

from __future__ import annotations

import re
import tomllib

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib import font_manager  # noqa: E402
from matplotlib.ft2font import FT2Font  # noqa: E402

from valstat import fonts  # noqa: E402
from valstat.report import plots  # noqa: E402
from valstat.report.text import HERE  # noqa: E402
from valstat.results import Interval, LargestDrop  # noqa: E402
from valstat.stats import curve_changes, largest_drop  # noqa: E402


def pdf_fonts(path) -> list[tuple[str, str]]:
    """(subtype, base font) of every font dictionary in a PDF written by matplotlib.

    matplotlib writes font dictionaries as plain (uncompressed) objects, so a regex over the
    bytes finds them; FontFile2 marks an embedded TrueType program.
    """
    data = path.read_bytes()
    return [(m.group(1).decode(), m.group(2).decode())
            for m in re.finditer(rb"/Subtype\s*/(\w+)[^>]*?/BaseFont\s*/([\w+-]+)", data)] + \
        [(m.group(2).decode(), m.group(1).decode())
         for m in re.finditer(rb"/BaseFont\s*/([\w+-]+)[^>]*?/Subtype\s*/(\w+)", data)]


def assert_truetype_only(path):
    data = path.read_bytes()
    assert b"/Type3" not in data, f"{path.name} has a Type 3 font"
    assert b"/FontFile2" in data, f"{path.name} embeds no TrueType font program"
    assert b"/FontFile3" not in data, f"{path.name} embeds a CFF (FontFile3) font"
    kinds = {kind for kind, _ in pdf_fonts(path)}
    assert kinds <= {"Type0", "CIDFontType2", "TrueType"}, kinds


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture()
def labels():
    with open(HERE / "en.toml", "rb") as handle:
        return tomllib.load(handle)["figures"]


def _epochs(runs=4, epochs=10, n=30, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(runs):
        k = np.clip(np.cumsum(rng.integers(-2, 4, size=epochs)) + 10, 0, n)
        lr = 1e-3 * 0.1 ** (np.arange(epochs) // 3)
        for e in range(epochs):
            rows.append({"run_id": f"a/s{r}/f0", "arm": "a" if r < 2 else "b", "epoch": e,
                         "val_accuracy": k[e] / n, "val_loss": 2.0 * np.exp(-e / 4) + 0.1 * r,
                         "learning_rate": lr[e]})
    return pd.DataFrame(rows)


def test_save_figure_writes_three_formats_with_truetype(tmp_path, labels):
    epochs = _epochs()
    bands = epochs.groupby(["arm", "epoch"])["val_accuracy"].agg(
        estimate="mean", low="min", high="max").reset_index()
    with plots.figure_context("en"):
        fig = plots.plot_val_accuracy_runs(epochs, bands, {"a": 30, "b": 30},
                                           plots.arm_colors(["a", "b"]), labels)
        saved = plots.save_figure(fig, tmp_path, "runs")
    assert {p.suffix for p in saved.paths.values()} == {".pdf", ".svg", ".png"}
    assert all(p.stat().st_size > 1000 for p in saved.paths.values())
    assert saved.svg.lstrip().startswith("<?xml")
    assert_truetype_only(saved.paths["pdf"])
    assert "DejaVuSans" in {name.split("+")[-1] for _, name in pdf_fonts(saved.paths["pdf"])}
    from PIL import Image

    with Image.open(saved.paths["png"]) as image:
        width = image.size[0]
        dpi = image.info.get("dpi", (0, 0))[0]
    assert abs(dpi - 300) < 1
    assert abs(width / 300 * 2.54 - 16) < 0.6   # thesis text width, 16 cm


def test_every_plot_function_labels_its_axes(labels):
    epochs = _epochs()
    n = 30
    one = epochs[epochs["run_id"] == "a/s0/f0"]
    changes = curve_changes(one["val_accuracy"].to_numpy(), n)
    drop = LargestDrop.from_stats(largest_drop(changes))
    colors = plots.arm_colors(["a", "b"])
    per_run = pd.DataFrame({"arm": ["a", "a", "b", "b"], "final": [0.5, 0.6, 0.7, 0.7],
                            "best": [0.6, 0.7, 0.8, 0.8]})
    final_a = Interval(estimate=0.55, low=0.4, high=0.7, method="t", level=0.95, n=2, n_units=None,
                       sd=0.07, pi_low=0.2, pi_high=0.9, note="", design="own split per run",
                       scope="new validation images")
    intervals = {"a": {"final": final_a, "best": None}, "b": {"final": None, "best": None}}
    components = pd.DataFrame({"arm": ["a"] * 5, "component": ["total", "finite_sample", "split",
                                                              "seed", "residual"],
                               "variance": [0.01, 0.004, np.nan, 0.003, 0.006]})
    curve = pd.DataFrame({"n": [10, 30, 100, 1000], "halfwidth": [0.25, 0.15, 0.08, 0.03]})
    paired = pd.DataFrame({"unit": ["0", "1", "0", "1"], "arm": ["a", "a", "b", "b"],
                           "final": [0.5, 0.6, 0.7, 0.6]})
    selection = pd.DataFrame({"run_id": ["x", "y"], "arm": ["a", "b"], "chosen": [0.8, 0.9],
                              "truth": [0.7, 0.85]})
    collapse = pd.DataFrame({"run_id": ["a/s0/f0"], "arm": ["a"], "epoch": [6],
                             "learning_rate": [1e-5]})
    matrix = np.random.default_rng(1).random((30, 10)) > 0.4
    with plots.figure_context("en"):
        figures = [
            plots.plot_run_band(changes, drop, "note", "a/s0/f0", colors["a"], labels),
            plots.plot_accuracy_distribution(per_run, intervals, {"a": n, "b": n}, colors,
                                             labels),
            plots.plot_loss_vs_accuracy(epochs[epochs["arm"] == "a"], "a/s0/f0", colors["a"],
                                        labels),
            plots.plot_learning_rate(epochs, collapse, colors, labels),
            plots.plot_variance_components(components, colors, labels),
            plots.plot_correct_map([{"title": "run", "matrix": matrix,
                                     "row_labels": [str(i // 3) for i in range(30)]}], labels),
            plots.plot_halfwidth(curve, {"n": 30, "p": 0.7, "halfwidth": 0.15}, None, labels,
                                 [(0.05, 300)]),
            plots.plot_arms_paired(paired, ["a", "b"], colors, labels),
            plots.plot_selection(selection, colors, labels),
        ]
    for fig in figures:
        fig.canvas.draw()   # tick label texts exist only once drawn
        visible = [ax for ax in fig.axes if ax.get_visible()]
        assert visible
        assert any(ax.get_xlabel() for ax in visible), fig
        # the y axis is named: a label, or tick labels that carry text
        assert any(ax.get_ylabel() or any(t.get_text() for t in ax.get_yticklabels())
                   for ax in visible), fig
    bars = [t.get_text() for t in figures[4].axes[0].get_yticklabels()]
    assert bars == [labels[f"vc_{c}"] for c in ("total", "finite_sample", "split", "seed", "residual")]
    lr_axis = figures[3].axes[0]
    assert lr_axis.get_yscale() == "log"


def test_arm_colours_are_stable_and_distinct():
    first = plots.arm_colors(["a", "b", "c"])
    again = plots.arm_colors(["a", "b", "c"])
    assert first == again and len(set(first.values())) == 3


def test_cjk_font_is_packaged_truetype_and_registered():
    path = fonts.cjk_font_path()
    assert path.suffix == ".ttc" and path.is_file()
    assert "site-packages" in str(path) or "dist-packages" in str(path)
    family = fonts.register_cjk_font()
    assert family == fonts.CJK_FAMILY
    assert fonts.font_family("zh") == ["DejaVu Sans", family]
    assert fonts.font_family("en") == ["DejaVu Sans", family]   # CJK class names, no boxes
    from fontTools.ttLib import TTFont

    font = TTFont(str(path), fontNumber=0, lazy=True)
    assert "glyf" in font and "CFF " not in font     # TrueType outlines: embeds as fonttype 42
    assert "fvar" not in font                         # static, not a variable font
    assert font["OS/2"].usWeightClass == 400          # regular weight


def _chars(value) -> set:
    if isinstance(value, dict):
        return set().union(*(_chars(v) for v in value.values())) if value else set()
    return set(str(value))


def test_every_chinese_figure_glyph_is_in_a_font_we_ship():
    """No tofu: each character of the zh figure text is in DejaVu Sans or the CJK font."""
    with open(HERE / "zh.toml", "rb") as handle:
        strings = tomllib.load(handle)
    wanted = _chars(strings["figures"]) - set("{}:.0fg")
    fonts.register_cjk_font()
    dejavu = FT2Font(font_manager.findfont("DejaVu Sans", fallback_to_default=False))
    cjk = FT2Font(str(fonts.cjk_font_path()))
    covered = set(dejavu.get_charmap()) | set(cjk.get_charmap())
    missing = sorted(ch for ch in wanted if ord(ch) not in covered and not ch.isspace())
    assert not missing, f"characters without a glyph: {missing}"


def test_chinese_pdf_embeds_the_cjk_font_as_truetype(tmp_path, labels):
    with open(HERE / "zh.toml", "rb") as handle:
        zh = tomllib.load(handle)["figures"]
    curve = pd.DataFrame({"n": [10, 30, 100], "halfwidth": [0.25, 0.15, 0.08]})
    with plots.figure_context("zh"):
        fig = plots.plot_halfwidth(curve, {"n": 30, "p": 0.7, "halfwidth": 0.15}, None, zh)
        saved = plots.save_figure(fig, tmp_path, "hw")
    assert_truetype_only(saved.paths["pdf"])
    names = {name.split("+")[-1] for _, name in pdf_fonts(saved.paths["pdf"])}
    assert "WenQuanYiMicroHei" in names
    assert 'font-family' not in saved.svg   # SVG text is drawn as paths: no font needed


def test_css_font_face_subsets_to_the_text():
    css = fonts.css_font_face("验证准确率 abc")
    assert css.startswith("@font-face{font-family:'valstat-cjk'")
    assert "data:font/woff;base64," in css
    assert "U+9A8C" in css and "U+61" not in css   # 验 is in, ASCII is left to other fonts
    assert len(css) < 20000
    assert fonts.css_font_face("only ascii") == ""


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_variance_figure_text_does_not_overlap(lang):
    """The n/a note sits below the x-axis label; the confounded design shows its own rows."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    with open(HERE / f"{lang}.toml", "rb") as handle:
        labels = tomllib.load(handle)["figures"]
    colors = plots.arm_colors(["a", "b"])
    one_fold = pd.DataFrame({"arm": ["a"] * 5 + ["b"] * 5,
                             "component": ["total", "finite_sample", "split", "seed", "residual"] * 2,
                             "variance": [0.01, 0.004, np.nan, 0.01, np.nan] * 2})
    confounded = pd.DataFrame({"arm": ["a"] * 3 + ["b"] * 3,
                               "component": ["total", "finite_sample", "seed_split"] * 2,
                               "variance": [0.005, 0.0005, 0.0045, 0.02, 0.004, 0.016]})
    with plots.figure_context(lang):
        for frame in (one_fold, confounded):
            fig = plots.plot_variance_components(frame, colors, labels)
            renderer = FigureCanvasAgg(fig).get_renderer()
            fig.draw(renderer)
            ax = fig.axes[0]
            names = [t.get_text() for t in ax.get_yticklabels()]
            texts = [t for t in ax.texts if t.get_text()] + [ax.xaxis.label]
            boxes = [t.get_window_extent(renderer) for t in texts]
            figure_box = fig.bbox
            for i, box in enumerate(boxes):
                assert figure_box.x0 - 1 <= box.x0 and box.x1 <= figure_box.x1 + 1, texts[i].get_text()
                assert figure_box.y0 - 1 <= box.y0 and box.y1 <= figure_box.y1 + 1, texts[i].get_text()
                for j in range(i):
                    assert not box.overlaps(boxes[j]), (texts[i].get_text(), texts[j].get_text())
            if frame is confounded:
                assert names == [labels["vc_total"], labels["vc_finite_sample"], labels["vc_seed_split"]]
                assert not [t for t in ax.texts if t.get_text().startswith("n/a:")]
            else:
                note = [t for t in ax.texts if t.get_text().startswith("n/a:")]
                assert len(note) == 1
                assert note[0].get_window_extent(renderer).y1 < ax.xaxis.label.get_window_extent(renderer).y0


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_drop_note_shows_the_adjusted_p_its_verdict_uses(lang):
    from scipy import stats as sps

    from valstat.report.figures import drop_note
    from valstat.report.text import Strings

    # 24/30 at epochs 0-8, then 15/30: Fisher p for 24 vs 15 of 30, times the 9 moves scanned
    k = np.r_[np.full(9, 24), 15]
    changes = curve_changes(k / 30, 30)
    drop = LargestDrop.from_stats(largest_drop(changes))
    raw = sps.fisher_exact([[24, 6], [15, 15]]).pvalue
    adjusted = min(1.0, 9 * raw)
    assert raw < 0.05 <= adjusted and drop.within_noise
    L = Strings(lang).section("figures")
    note = drop_note(drop, 30, Strings(lang))
    assert f"{adjusted:.2f}" in note and f"{raw:.3f}" not in note and f"{raw:.2f}" not in note
    assert ("adjusted" if lang == "en" else "校正后") in note and L["within_noise"] in note
    with plots.figure_context(lang):
        fig = plots.plot_run_band(changes, drop, note, "", "C0", L)
    assert note in [t.get_text() for t in fig.axes[0].texts]


def test_the_drop_note_covers_no_point_of_the_curve_and_its_leader_crosses_none():
    """A run whose note, 40 points below the drop, used to hide the epoch-7 point, and whose
    relocated note's leader then crossed the curve (both seen in the default report): the note
    box now holds no epoch's point and no part of the line, and the thin line from the note to
    the drop crosses no segment of the curve but the drop's own."""
    from valstat.report.figures import drop_note
    from valstat.report.text import Strings

    k = np.array([3, 3, 3, 3, 3, 3, 4, 6, 14, 14, 21, 10, 16, 23, 22, 24, 25, 23, 23, 10])
    changes = curve_changes(k / 30, 30)
    drop = LargestDrop.from_stats(largest_drop(changes))
    assert (drop.from_epoch, drop.to_epoch) == (18, 19)
    L = Strings("en").section("figures")
    note = drop_note(drop, 30, Strings("en"))
    with plots.figure_context("en"):
        fig = plots.plot_run_band(changes, drop, note, "b/s12/f0", "C1", L)
        fig.draw_without_rendering()
        ax = fig.axes[0]
        text = next(t for t in ax.texts if t.get_text().replace("\n", " ") == note)
        box = text.get_bbox_patch().get_window_extent()
    epochs = np.arange(len(k), dtype=float)
    t = np.linspace(0, 1, 50)[:, None]
    line = np.vstack([(1 - t) * np.c_[epochs[i], k[i] / 30] + t * np.c_[epochs[i + 1], k[i + 1] / 30]
                      for i in range(len(k) - 1)])
    inside = [p for p in ax.transData.transform(line) if box.contains(*p)]
    assert inside == []
    frame = ax.get_window_extent()
    assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
    # the leader: from where it leaves the note's box to the middle of the drop
    leader = text.arrow_patch.get_path().vertices
    ends = [leader[0], ax.transData.transform((18.5, (k[18] + k[19]) / 60))]

    def side(a, b, c):
        return np.sign((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))

    points = ax.transData.transform(np.c_[epochs, k / 30])
    crossed = [i for i in range(len(k) - 1) if i != 18
               and side(*ends, points[i]) != side(*ends, points[i + 1])
               and side(points[i], points[i + 1], ends[0]) != side(points[i], points[i + 1], ends[1])]
    assert crossed == []


@pytest.mark.parametrize("lang, second_line_starts", [("en", "("), ("zh", "（")])
def test_a_drop_note_on_two_lines_breaks_at_a_clause_not_inside_one(lang, second_line_starts):
    from valstat.report.figures import drop_note
    from valstat.report.text import Strings

    k = np.array([3, 3, 3, 3, 3, 3, 4, 6, 14, 14, 21, 10, 16, 23, 22, 24, 25, 23, 23, 10])
    drop = LargestDrop.from_stats(largest_drop(curve_changes(k / 30, 30)))
    note = drop_note(drop, 30, Strings(lang))
    first, second = plots._two_lines(note).split("\n")
    assert second.startswith(second_line_starts)
    assert (first + (" " if lang == "en" else "") + second) == note


def test_the_coloured_run_of_the_loss_panel_is_never_cut_off(labels):
    epochs = _epochs(runs=40)
    epochs = epochs.assign(arm="a", val_loss=lambda d: 1.0 + 0.01 * d["epoch"])   # 400 points
    peak = (epochs["run_id"] == "a/s0/f0") & (epochs["epoch"] == 5)
    epochs.loc[peak, "val_loss"] = 9.0        # one epoch of one run: above the 99.5th percentile
    with plots.figure_context("en"):
        fig = plots.plot_loss_vs_accuracy(epochs, "a/s0/f0", "C0", labels)
    assert fig.axes[0].get_ylim()[1] >= 9.0
    assert "Loss: continuous" in [fig.axes[0].get_title(loc) for loc in ("left", "center", "right")]
    with plots.figure_context("en"):
        others = plots.plot_loss_vs_accuracy(epochs, "a/s1/f0", "C0", labels)
    assert others.axes[0].get_ylim()[1] < 9.0   # a grey outlier may leave the axis
