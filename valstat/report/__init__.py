"""`valstat report`: one self-contained HTML page plus a thesis kit, built from a store.

    build_report(out_dir, dest=None, lang="en") -> Path of index.html
    write_single_run_report(epochs_df, predictions_df, val_size, dest, lang="en", title=None)

Output folder (default OUT_DIR/report/):
    index.html                 figures inline (SVG data URIs), CSS inline, no network
    figures/<stem>.{pdf,svg,png}   PDF with TrueType fonts embedded; 300-dpi PNG
    figures.tex                one figure environment per figure (caption, label)
    tables/<name>.{tex,csv}    booktabs tables and their CSV twins
    methods.tex, methods.md    the methods paragraph with citations
    references.bib             BibTeX for every method cited
    summary.json               valstat.summary.summarize output

Never imports TensorFlow or Keras.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from valstat.errors import ValstatError

if TYPE_CHECKING:
    from valstat.results import Diagnosis, Placement

__all__ = ["build_report", "write_single_run_report"]

FIGURE_FORMATS = ("pdf", "svg", "png")


def _prepare_dest(dest: Path) -> Path:
    """Create `dest` and check it is writable; ValstatError (one line) otherwise."""
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValstatError(f"cannot create the report folder {dest}: "
                        f"{error.strerror or error}") from None
    if not dest.is_dir():
        raise ValstatError(f"cannot write the report: {dest} exists and is not a folder")
    try:
        handle, probe = tempfile.mkstemp(prefix=".valstat-write-test-", dir=dest)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise ValstatError(f"cannot write into the report folder {dest}: "
                        f"{error.strerror or error}") from None
    return dest


def _clean_figures(folder: Path) -> None:
    """Remove figures of a previous build, so a figure that no longer applies is not left."""
    from valstat.report.figures import FIGURES

    for stem in FIGURES:
        for fmt in FIGURE_FORMATS:
            (folder / f"{stem}.{fmt}").unlink(missing_ok=True)


def _environment():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    from valstat.report.text import HERE

    return Environment(loader=FileSystemLoader(str(HERE / "templates")), autoescape=True,
                       undefined=StrictUndefined, trim_blocks=False, lstrip_blocks=False)


# CJK ideographs, radicals, symbols and punctuation, full-width forms, extension planes
_CJK = re.compile("[\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef\U00020000-\U0002ffff]")


def _render(template: str, context: dict, lang: str = "en") -> str:
    """Render twice when the page holds CJK text: the second time with an inline @font-face
    subset to exactly the CJK characters used, so the page shows real glyphs offline even on
    a machine without any CJK font."""
    from valstat.fonts import css_font_face, find_cjk_font

    env = _environment()
    page = env.get_template(template).render(font_face="", **context)
    cjk = "".join(sorted(set(_CJK.findall(page))))
    if not cjk:
        return page
    # an English page with CJK class names and no CJK font: left to the browser's fonts
    face = css_font_face(cjk) if lang == "zh" or find_cjk_font() is not None else ""
    return env.get_template(template).render(font_face=face, **context)


def build_report(out_dir, dest=None, lang: str = "en") -> Path:
    """Write the report for the store in `out_dir` into `dest` (default OUT_DIR/report/).

    Returns the path of index.html. Raises ValstatError for an unknown language, a missing or
    empty store, or a destination that cannot be written.
    """
    from valstat import __version__
    from valstat.report.text import Strings

    S = Strings(lang)
    from valstat.store import load_tables

    tables = load_tables(out_dir)
    if tables.runs.empty:
        raise ValstatError(f"the store in {out_dir} holds 0 runs: nothing to report yet "
                        "(wait until `valstat run` has finished at least one run)")
    dest = _prepare_dest(Path(dest) if dest is not None else Path(out_dir) / "report")

    from valstat.report import content, latex
    from valstat.report.analysis import analyse
    from valstat.report.figures import make_figures
    from valstat.report.bib import bib_entries, cite_keys, cite_plain, format_reference

    analysis = analyse(tables)
    figures_dir = dest / "figures"
    figures_dir.mkdir(exist_ok=True)
    _clean_figures(figures_dir)
    figures = make_figures(analysis, S, figures_dir)
    from valstat.report.thumbnails import image_figure, image_section

    images = image_section(analysis, S)
    grid = image_figure(images, S, figures_dir) if images else None
    figures += [grid] if grid else []

    table_list = content.tables(analysis, S)
    methods = content.methods(analysis, S)
    keys = list(dict.fromkeys(cite_keys(methods)))
    latex.write_tables(table_list, dest / "tables", lang)
    (dest / "figures.tex").write_text(latex.figures_tex(figures, lang), encoding="utf-8")
    (dest / "methods.tex").write_text(latex.methods_tex(methods, lang), encoding="utf-8")
    (dest / "methods.md").write_text(
        latex.methods_md(methods, S["methods.title"], S["methods.references"]),
        encoding="utf-8")
    latex.write_bib(keys, dest / "references.bib")
    (dest / "summary.json").write_text(json.dumps(analysis.summary.to_dict(), indent=2,
                                                  ensure_ascii=False), encoding="utf-8")

    entries = bib_entries()
    experiment = analysis.meta.get("experiment") or S["page.unnamed"]
    context = {
        "S": S.data, "html_lang": "zh-CN" if lang == "zh" else "en", "version": __version__,
        "title": f"{S['page.title']} — {experiment}",
        "subtitle": S("page.subtitle", experiment=experiment),
        "coverage": content.coverage(analysis, S),
        "coverage_complete": analysis.coverage["complete"],
        "setup": content.setup(analysis, S),
        "arm_differences": content.arm_differences(analysis, S),
        "findings": content.findings(analysis, S),
        "figures": figures, "tables": table_list, "advice": content.advice(analysis, S),
        "images": images,
        "methods": cite_plain(methods),
        "references": [format_reference(entries[k]) for k in keys if k in entries],
        "generated": S("page.generated", store=str(out_dir), version=__version__),
    }
    index = dest / "index.html"
    index.write_text(_render("report.html.j2", context, lang), encoding="utf-8")
    return index


def write_single_run_report(epochs_df, predictions_df, val_size, dest, lang: str = "en",
                            title: str | None = None, against: Placement | None = None,
                            diagnosis: Diagnosis | None = None) -> Path:
    """Single-run report (`valstat diagnose HISTORY --report DIR`): the curve with its
    per-epoch binomial band and largest drop, loss beside accuracy, and the learning-rate
    trace with the collapse marked, in the same page style. Returns the path of index.html.

    epochs_df: epoch, val_accuracy and optionally val_loss, learning_rate (one run);
    predictions_df: per-image rows (epoch, example, label, predicted) or None;
    val_size: validation images (None: inferred from the accuracy lattice);
    against: a valstat.results.Placement (valstat.against.place_history), to place the run
    among its reruns; diagnosis: the valstat.diagnose.diagnose result the CLI printed (None:
    computed here). Every number of a history without predictions is read from the diagnosis,
    so the page and `valstat diagnose` state the same facts; per-image predictions replace
    Fisher's test by McNemar's for the moves and the drop.
    """
    import numpy as np
    import pandas as pd

    from valstat import __version__, stats
    from valstat.diagnose import diagnose
    from valstat.report import content
    from valstat.report.figures import make_single_run_figures
    from valstat.report.text import Strings, epoch, pct, pts, rate
    from valstat.results import Detectability, LargestDrop

    S = Strings(lang)
    result = diagnosis if diagnosis is not None else diagnose(epochs_df, val_size=val_size)
    n = result.val_size
    dest = _prepare_dest(Path(dest))
    epochs = epochs_df.sort_values("epoch").reset_index(drop=True)
    accuracy = epochs["val_accuracy"].to_numpy(dtype=float)
    correct = None
    if predictions_df is not None and len(predictions_df):
        from valstat.core import Cube   # the one correctness cube, for this one run

        grid = Cube.build(predictions_df.assign(run_id="history"), pd.Index(["history"])).grid(0)
        if grid is not None and np.array_equal(grid[0], epochs["epoch"].to_numpy()) \
                and grid[3].shape[1] == n:
            correct = grid[3]

    last = result.epochs[-1]
    paragraphs = [S("single.lattice", n=n, step=pts(1 / n), k=last.k, acc=pct(last.val_accuracy),
                    low=pct(last.low), high=pct(last.high))]
    if correct is None:   # the diagnosis' Fisher tests, as `valstat diagnose` prints them
        changes = None
        drop = result.largest_drop
        beyond, tested = result.changes_beyond_noise, result.changes_tested
        detect = None
        if tested:
            detect = (S("diagnose.detect", n=n, acc=pct(last.val_accuracy),
                        images=S.images(result.detectable_drop_last))
                      if result.detectable_drop_last is not None
                      else S("diagnose.detect_none", n=n, acc=pct(last.val_accuracy)))
    else:                 # McNemar on the per-image predictions
        changes = stats.curve_changes(accuracy, n, correct=correct)
        changes["epoch"] = epochs["epoch"].to_numpy()
        drop = stats.largest_drop(changes)
        drop = None if drop is None else LargestDrop.from_stats(drop)
        within = changes["within_noise"].dropna()
        beyond, tested = int((~within.astype(bool)).sum()), len(within)
        detect = None if not tested else content.moves_detect_text(Detectability(
            **stats.move_detectability(n, lost=changes["lost"][1:], gained=changes["gained"][1:])), S)
    paragraphs.append(S("single.changes", beyond=beyond, tested=tested, n=n))
    if detect:
        paragraphs.append(detect)
    if drop is not None:
        k = {row.epoch: row.k for row in result.epochs}
        paragraphs.append(S("single.drop", k0=k[drop.from_epoch], k1=k[drop.to_epoch], n=n,
                            e0=drop.from_epoch, e1=drop.to_epoch, images=S.images(-drop.images),
                            points=pts(-drop.images / n)))
        paragraphs += content.drop_texts(drop, n, correct is not None, S)
    if result.lr_collapse_epoch is not None:
        paragraphs.append(S("single.lr", initial=rate(result.lr_initial),
                            epoch=result.lr_collapse_epoch,
                            after=result.lr_epochs_after_collapse,
                            final=rate(result.lr_final)))
        ties = result.lr_cuts_after_ties
        if ties and ties.consistent:
            paragraphs.append(S("single.lr_ties", ties=ties.after_ties_only, cuts=ties.cuts))
    if result.best_val_accuracy_epoch is not None:
        paragraphs.append(S("single.best", best_acc=epoch(result.best_val_accuracy_epoch),
                            best_loss=epoch(result.best_val_loss_epoch),
                            epochs=result.best_epoch_optimism.epochs, n=n,
                            noise=pts(result.best_epoch_expected_optimism, signed=True)))
    if correct is None:
        paragraphs.append(S["single.no_predictions"])
    if changes is None:   # the figure's band: the diagnosis' rows
        changes = pd.DataFrame([row.to_dict() for row in result.epochs]).assign(n=n)

    figures_dir = dest / "figures"
    figures_dir.mkdir(exist_ok=True)
    _clean_figures(figures_dir)
    figures = make_single_run_figures(epochs, changes, drop, result.lr_collapse_epoch,
                                      S, figures_dir, n)
    if against is not None:            # valstat diagnose --against: the run among its reruns
        from valstat.report import against as placed

        paragraphs += placed.paragraphs(against, S)
        entry = placed.figure(against, S, figures_dir)
        figures += [entry] if entry else []
    heading = S("page.single_title", title=title or "history")
    context = {"S": S.data, "html_lang": "zh-CN" if lang == "zh" else "en",
               "version": __version__, "title": heading, "paragraphs": paragraphs,
               "figures": figures,
               "generated": S("page.generated", store=title or "history",
                              version=__version__)}
    index = dest / "index.html"
    index.write_text(_render("single.html.j2", context, lang), encoding="utf-8")
    return index
