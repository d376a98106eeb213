"""`valstat report`: a report from a small synthetic store, checked as a student would use it.

One English report is built in a fresh interpreter (to check TensorFlow/Keras are never
imported) from a store whose class, arm and experiment names are hostile to HTML and LaTeX;
one Chinese report is built in-process. The page is opened in headless Chromium from file://
with the network off. Cheaper variants (partial store, no truth set) are checked on the text
alone, without drawing figures.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from report_fixtures import CHROMIUM, HOSTILE, Chromium
from valstat.synthetic import build_store
from valstat.errors import ValstatError
from valstat.report import build_report, write_single_run_report
from valstat.report.figures import FIGURES as ALL_FIGURES
from valstat.store import Store, load_tables

FIGURES = tuple(f for f in ALL_FIGURES if f != "against_reruns")   # single-run report only

REPO = Path(__file__).resolve().parent.parent
EVIL_EXPERIMENT = 'exp <b>bold</b> & 100% $x_1$ #{~^}\\'
EVIL_ARM = "lr_1e-3 & <i>"
ARMS = (EVIL_ARM, "constant_lr")


def _store(path: Path, **kwargs) -> Path:
    defaults = dict(arms=ARMS, seeds=3, folds=2, epochs=12, class_names=HOSTILE,
                    experiment=EVIL_EXPERIMENT)
    defaults.update(kwargs)
    return build_store(path, **defaults)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return _store(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="module")
def english(store):
    """Build the English report in a fresh interpreter; return (index path, modules seen)."""
    code = ("import json, sys\n"
            "from valstat.report import build_report\n"
            f"index = build_report({str(store)!r})\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'keras', 'torch', 'jax'))\n"
            "print(json.dumps({'index': str(index), 'heavy': heavy}))\n")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return Path(result["index"]), result["heavy"]


@pytest.fixture(scope="module")
def chinese(store, tmp_path_factory):
    return build_report(store, tmp_path_factory.mktemp("zh"), lang="zh")


# --------------------------------------------------------------------------- the files

def test_report_never_imports_tensorflow_or_keras(english):
    index, heavy = english
    assert index == index.parent / "index.html" and index.parent.name == "report"
    assert heavy == []


def test_report_writes_the_thesis_kit(english):
    index, _ = english
    dest = index.parent
    stems = {p.stem for p in (dest / "figures").glob("*.pdf")}
    assert stems == set(FIGURES)          # this store allows every figure
    for stem in stems:
        for fmt in ("svg", "png"):
            assert (dest / "figures" / f"{stem}.{fmt}").stat().st_size > 1000
    for name in ("arms", "comparisons", "variance", "optimism"):
        assert (dest / "tables" / f"{name}.tex").read_text().count("\\toprule") == 1
        assert (dest / "tables" / f"{name}.csv").stat().st_size > 0
    figures_tex = (dest / "figures.tex").read_text()
    assert figures_tex.count("\\begin{figure}") == len(stems)
    assert figures_tex.count("\\caption{") == figures_tex.count("\\label{fig:valstat-")
    summary = json.loads((dest / "summary.json").read_text())
    assert summary["arm_names"] == list(ARMS)


def test_methods_cite_every_bibtex_entry_they_need(english):
    dest = english[0].parent
    methods = (dest / "methods.tex").read_text()
    cited = {k for group in re.findall(r"\\cite\{([^}]*)\}", methods) for k in group.split(",")}
    bib = (dest / "references.bib").read_text()
    keys = set(re.findall(r"@\w+\{([^,]+),", bib))
    assert cited == keys
    assert {"wilson1927", "clopper1934", "brown2001", "mcnemar1947", "fisher1922",
            "nadeau2003", "bouthillier2021", "jordan2024", "valstat"} <= keys
    assert f"Python package, version {version('valstat')}," in bib     # valstat cites itself, this version
    assert "version = {" not in bib         # biblatex would print a version field a second time
    markdown = (dest / "methods.md").read_text()
    assert "(Wilson 1927; Brown et al. 2001)" in markdown
    assert "Clopper, C. J., Pearson, E. S. (1934)" in markdown
    page = english[0].read_text()
    paragraph = re.search(r"<div class=\"methods\"><p>(.*?)</p></div>", page, re.S)
    assert paragraph, "the page has a methods paragraph"
    for text in (markdown.split("### References")[0], paragraph.group(1)):
        assert "))" not in text and "[@" not in text
        raw = [key for key in keys - {"valstat"} if re.search(rf"\b{key}\b", text)]
        assert raw == []      # every key renders as author-year


def test_every_pdf_embeds_truetype_only(english, chinese):
    from test_plots import assert_truetype_only, pdf_fonts

    for index in (english[0], chinese):
        for pdf in (index.parent / "figures").glob("*.pdf"):
            assert_truetype_only(pdf)
    cjk = {name.split("+")[-1] for pdf in (chinese.parent / "figures").glob("*.pdf")
           for _, name in pdf_fonts(pdf)}
    assert "WenQuanYiMicroHei" in cjk


# --------------------------------------------------------------------------- the page

def test_page_is_self_contained(english):
    html = english[0].read_text(encoding="utf-8")
    assert "<script" not in html.lower().replace("&lt;script", "")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert not re.search(r"url\(\s*['\"]?https?:", html)
    assert "<link" not in html
    images = re.findall(r'<img src="([^"]+)"', html)
    assert len(images) == len(FIGURES)
    assert all(src.startswith("data:image/svg+xml;base64,") for src in images)


def test_data_derived_text_is_escaped_in_html(english):
    html = english[0].read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#34;quotes&#34;" in html
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "<i>" not in html and "lr_1e-3 &amp; &lt;i&gt;" in html


def test_data_derived_text_is_escaped_in_latex(english):
    dest = english[0].parent
    arms_tex = (dest / "tables" / "arms.tex").read_text()
    assert r"lr\_1e-3 \& \textless{}i\textgreater{}" in arms_tex
    assert "<i>" not in arms_tex


def test_methods_quote_the_calibration_table(english):
    # the coverage figures come from benchmarks/calibration.py's data file, not from the text
    from valstat.report.content import CALIBRATION

    methods = (english[0].parent / "methods.tex").read_text()
    table = json.loads(CALIBRATION.read_text())
    assert f"{table['reps']} replications per design" in methods
    for value in table["coverage"].values():
        assert f"{value:.2f}" in methods


def test_page_says_what_it_covers_and_answers_the_questions(english):
    html = english[0].read_text(encoding="utf-8")
    assert "covers every run the sweep planned: 12" in html
    for heading in ("Accuracy on 30 images moves in steps of 3.3 points",
                    "Is the drop bigger than the noise of this validation set?",
                    "Why the curves go flat", "Why the loss is smooth",
                    "Where the run-to-run spread comes from",
                    "Picking the best epoch flatters the model", "What to do"):
        assert heading in html, heading
    assert "McNemar" in html and "ReduceLROnPlateau" in html
    assert re.search(r"predicted the class “[^”]+” for every validation image", html)
    assert re.search(r"For ±5 points with 80% probability [^.]* you need about \d+ validation images", html)


def _pixel_spread(path: Path) -> tuple[float, float]:
    from PIL import Image, ImageStat

    with Image.open(path) as image:
        grey = image.convert("L")
        stddev = ImageStat.Stat(grey).stddev[0]
        histogram = grey.histogram()
    ink = 1 - sum(histogram[240:]) / sum(histogram)
    return stddev, ink


@pytest.mark.skipif(not Path(CHROMIUM).exists(),
                    reason=f"{CHROMIUM} is not installed (CI installs Chromium)")
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_page_renders_offline_in_headless_chromium(lang, english, chinese, tmp_path):
    index = english[0] if lang == "en" else chinese
    browser = Chromium(tmp_path / "profile")
    try:
        browser.open(index.resolve().as_uri())
        images = browser.evaluate(
            "JSON.stringify(Array.from(document.querySelectorAll('img:not(.thumb)'))"
            ".map(i => [i.complete, i.naturalWidth]))")
        fonts_ok = browser.evaluate("document.fonts.ready.then(() => document.fonts.status)")
        cjk_font = browser.evaluate("document.fonts.check('16px valstat-cjk', '验证')")
        shot = browser.screenshot(tmp_path / f"{lang}.png")
        errors = browser.errors()
        fetched = [u for u in browser.requests() if not u.startswith(("data:", "file:"))]
    finally:
        browser.close()
    images = json.loads(images)
    assert len(images) == len(FIGURES)
    assert all(complete and width > 100 for complete, width in images), images
    assert errors == []
    assert fetched == []
    assert fonts_ok == "loaded"
    assert cjk_font is True      # the hostile class name aside, zh text needs the CJK subset
    stddev, ink = _pixel_spread(shot)
    assert stddev > 20 and ink > 0.03, (stddev, ink)


# --------------------------------------------------------------------------- LaTeX

OVERFULL_PT = 1.0          # TeX's own \hfuzz is 0.1pt; a table may not stick out more than this
OVERFULL_RE = re.compile(r"Overfull \\hbox \(([\d.]+)pt too wide\)")


def _latex(engine: str, work: Path, name: str) -> subprocess.CompletedProcess:
    return subprocess.run([engine, "-interaction=nonstopmode", "-halt-on-error", f"{name}.tex"],
                          cwd=work, capture_output=True, text=True, timeout=240)


def _compile(engine: str, preamble: str, dest: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """The snippets as a student pastes them: an `article` with only the packages the snippets'
    header comments name, built as LaTeX, BibTeX (plain.bst), LaTeX, LaTeX. The result is the
    last run's, with .log (main.log), .bibtex (BibTeX's run) and .tables_log (the log of a
    document that holds the tables alone, for overfull boxes) added."""
    tables = [f"\\input{{tables/{t.stem}.tex}}" for t in sorted((dest / "tables").glob("*.tex"))]
    body = ["\\input{methods.tex}", *tables, "\\input{figures.tex}", "\\bibliographystyle{plain}",
            "\\bibliography{references}"]
    work = tmp_path / "tex"
    shutil.copytree(dest, work)
    for name, lines in (("main", body), ("tables", tables)):
        document = (f"\\documentclass{{article}}\n{preamble}\n"
                    "\\usepackage{booktabs,graphicx}\n\\begin{document}\n"
                    + "\n".join(lines) + "\n\\end{document}\n")
        (work / f"{name}.tex").write_text(document, encoding="utf-8")
    tables_run = _latex(engine, work, "tables")
    done = _latex(engine, work, "main")
    bibtex = None
    if done.returncode == 0 and shutil.which("bibtex"):
        bibtex = subprocess.run(["bibtex", "main"], cwd=work, capture_output=True, text=True,
                                timeout=120)
        for _ in range(2):
            done = _latex(engine, work, "main")
            if done.returncode:
                break
    done.log = (work / "main.log").read_text(encoding="utf-8", errors="replace")
    done.tables = tables_run
    done.tables_log = (work / "tables.log").read_text(encoding="utf-8", errors="replace")
    done.bibtex = bibtex
    return done


def _assert_clean_latex(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, done.stdout[-3000:]
    assert done.tables.returncode == 0, done.tables.stdout[-3000:]
    overfull = [float(w) for w in OVERFULL_RE.findall(done.tables_log)]
    assert all(w <= OVERFULL_PT for w in overfull), \
        f"a table is wider than the text: Overfull \\hbox by {max(overfull)}pt"
    if done.bibtex is not None:          # plain.bst knows every entry type and needs no package
        out = done.bibtex.stdout + done.bibtex.stderr
        assert done.bibtex.returncode == 0, out
        assert "Warning--" not in out and "isn't style-file defined" not in out, out
        assert "Undefined control sequence" not in done.log
        assert not re.search(r"Citation `[^']+' on page \d+ undefined", done.log)


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no pdflatex on this machine")
def test_english_latex_snippets_compile(english, tmp_path):
    done = _compile("pdflatex", "\\usepackage[T1]{fontenc}\n\\usepackage[utf8]{inputenc}",
                    english[0].parent, tmp_path)
    _assert_clean_latex(done)
    if done.bibtex is not None:
        bbl = (tmp_path / "tex" / "main.bbl").read_text(encoding="utf-8")
        entry = bbl[bbl.index("\\bibitem{valstat}"):]
        assert f"version {version('valstat')}" in entry.split("\\bibitem")[1]   # plain shows it


def _has_ctex() -> bool:
    if shutil.which("xelatex") is None or shutil.which("kpsewhich") is None:
        return False
    found = subprocess.run(["kpsewhich", "ctex.sty"], capture_output=True, text=True)
    return bool(found.stdout.strip())


@pytest.mark.skipif(not _has_ctex(), reason="no xelatex with ctex on this machine")
def test_chinese_latex_snippets_compile(chinese, tmp_path):
    done = _compile("xelatex", "\\usepackage{ctex}", chinese.parent, tmp_path)
    _assert_clean_latex(done)


# --------------------------------------------------------------------------- Chinese text

def test_chinese_report_text_and_font(chinese):
    html = chinese.read_text(encoding="utf-8")
    assert '<html lang="zh-CN">' in html
    assert "我的验证曲线为什么是这个样子？" in html
    assert "本报告涵盖扫描计划中的全部运行：共 12 次" in html
    assert "@font-face{font-family:'valstat-cjk'" in html
    used = set(re.findall("[\u4e00-\u9fff]", re.sub(r"data:[^\"')]+", "", html)))
    ranges = re.search(r"unicode-range:([^;]+);", html).group(1)
    covered = {chr(int(code[2:], 16)) for code in ranges.split(",")}
    assert used <= covered
    methods = (chinese.parent / "methods.tex").read_text(encoding="utf-8")
    assert "Wilson 得分区间~\\cite{wilson1927,brown2001}" in methods
    assert "每次运行的验证集准确率" in (chinese.parent / "figures.tex").read_text(encoding="utf-8")


# --------------------------------------------------------------------------- variants (text only)

def _text_of(out_dir: Path, lang: str = "en") -> str:
    """Every sentence the report would print, without drawing any figure."""
    from valstat.report import content
    from valstat.report.analysis import analyse
    from valstat.report.text import Strings

    S = Strings(lang)
    analysis = analyse(load_tables(out_dir))
    parts = content.coverage(analysis, S)
    for finding in content.findings(analysis, S):
        parts += [finding["title"], *finding["paragraphs"]]
    parts += content.advice(analysis, S) + [content.methods(analysis, S)]
    return "\n".join(parts)


def test_partial_store_says_how_many_runs_it_covers(tmp_path):
    out = build_store(tmp_path / "partial", seeds=3, folds=2, epochs=8, max_runs=5)
    text = _text_of(out)
    assert "covers 5 of the 12 runs the sweep planned" in text
    assert "still running or was interrupted" in text


def test_store_without_truth_set_says_so(tmp_path):
    out = build_store(tmp_path / "notruth", arms=("baseline",), seeds=2, folds=2, epochs=8,
                      truth=False)
    text = _text_of(out)
    assert "The store has no truth set (truth accuracy is absent)" in text
    assert "Selection optimism" not in text
    assert "overstated accuracy by" not in text


def test_store_with_a_diverged_run_and_missing_meta(tmp_path):
    out = build_store(tmp_path / "diverged", arms=("baseline",), seeds=3, folds=1, epochs=8,
                      diverged=True, meta=False)
    text = _text_of(out)
    assert "1 run diverged" in text
    assert "does not say how many were planned" in text


def test_each_seed_with_its_own_split_shows_the_draw_of_validation_images(tmp_path):
    from valstat.report.analysis import analyse

    out = build_store(tmp_path / "own_split", arms=("baseline",), seeds=4, folds=1, epochs=6,
                      vary=("split", "init", "order"))
    variance = analyse(load_tables(out)).variance
    rows = variance.set_index("component")
    assert list(rows.index) == ["total", "finite_sample", "seed_split"]
    assert rows.loc["finite_sample", "method"] in ("stratified-per-run", "binomial-per-run")
    assert rows.loc["seed_split", "variance"] == pytest.approx(
        max(0.0, rows.loc["total", "variance"] - rows.loc["finite_sample", "variance"]))
    text = _text_of(out)
    assert "Drawing 30 validation images alone gives a run’s accuracy a standard deviation" in text
    assert "the parts of seed and split cannot be told apart" in text
    assert "Where every run drew its own validation images" in text and "[@jordan2024]" not in text
    assert "仅仅抽取 30 张验证图像" in _text_of(out, "zh")


# --------------------------------------------------------------------------- user errors

def test_unknown_language_is_a_user_error(store, tmp_path):
    with pytest.raises(ValstatError, match="unknown language 'fr'"):
        build_report(store, tmp_path / "r", lang="fr")


def test_missing_store_is_a_user_error(tmp_path):
    with pytest.raises(ValstatError, match="no valstat store"):
        build_report(tmp_path / "nothing", tmp_path / "r")


def test_empty_store_is_a_user_error(tmp_path):
    Store(tmp_path / "empty").close()
    with pytest.raises(ValstatError, match="0 runs"):
        build_report(tmp_path / "empty", tmp_path / "r")


def test_unwritable_destination_is_a_user_error(store, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(ValstatError, match="cannot create the report folder"):
        build_report(store, blocker / "report")


# --------------------------------------------------------------------------- single run

def test_single_run_report(tmp_path):
    import numpy as np
    import pandas as pd

    accuracy = np.array([4, 9, 15, 18, 21, 17, 17, 17, 17, 17]) / 30
    rate = 1e-3 * np.array([1, 1, 1, 1, 1, 1, 0.1, 0.1, 0.01, 0.001])
    epochs = pd.DataFrame({"epoch": np.arange(10), "val_accuracy": accuracy,
                           "val_loss": np.linspace(2.2, 0.9, 10), "learning_rate": rate,
                           "loss": np.linspace(2.3, 0.5, 10), "accuracy": accuracy})
    index = write_single_run_report(epochs, None, 30, tmp_path / "single", lang="zh",
                                    title="history.csv")
    html = index.read_text(encoding="utf-8")
    assert index.name == "index.html"
    assert {p.stem for p in (tmp_path / "single" / "figures").glob("*.pdf")} == \
        {"run_band", "loss_vs_accuracy", "learning_rate"}
    assert "单次训练：history.csv" in html
    assert "Fisher" in html
    # within noise says what Fisher's test (no per-image predictions) could detect, at the last
    # epoch's accuracy, as `valstat diagnose` says it
    from power_reference import fisher_drop_reference

    detect = fisher_drop_reference(30, accuracy[-1])
    assert f"对事先选定的一次变化做 Fisher 检验，只能以 80% 功效检出 {detect} 张图像或更大的下降" in html
    assert len(re.findall(r'<img src="data:image/svg\+xml;base64,', html)) == 3


def test_store_without_per_image_predictions(tmp_path):
    out = build_store(tmp_path / "nopred", arms=("baseline",), seeds=2, folds=1, epochs=8,
                      predictions=False)
    text = _text_of(out)
    assert "no per-image predictions, so a collapse to one class cannot be checked" in text
    assert "Fisher’s exact test" in text and "[@fisher1922]" in text


def test_every_string_exists_in_both_languages_with_the_same_placeholders():
    import string
    import tomllib

    from valstat.report.text import HERE

    def flat(table, prefix=""):
        out = {}
        for key, value in table.items():
            if isinstance(value, dict):
                out.update(flat(value, f"{prefix}{key}."))
            else:
                out[prefix + key] = value
        return out

    def fields(text):
        return {name for _, name, _, _ in string.Formatter().parse(text) if name}

    en, zh = (flat(tomllib.load(open(HERE / f"{lang}.toml", "rb"))) for lang in ("en", "zh"))
    assert set(en) == set(zh)
    assert {k for k in en if fields(en[k]) != fields(zh[k])} == set()
    assert set(re.findall(r"\[@(\w+)", " ".join(en.values()))) == \
        set(re.findall(r"\[@(\w+)", " ".join(zh.values())))


def test_one_class_collapse_counts_from_when_the_final_class_took_over():
    import pandas as pd

    from valstat.core import Cube
    from valstat.report.analysis import _one_class

    rows = []
    for epoch, guesses in enumerate([[7] * 4, [4] * 4, [6] * 4, [6] * 4]):
        rows += [("r", epoch, example, label, guess)
                 for example, (label, guess) in enumerate(zip([6, 1, 2, 3], guesses))]
    predictions = pd.DataFrame(rows, columns=["run_id", "epoch", "example", "label",
                                              "predicted"])
    flags = Cube.build(predictions, pd.Index(["r"])).one_class()
    # one class at every epoch, but class 6 only from epoch 2: the streak starts there
    assert flags.loc[0].tolist() == [True, True, 2, 6]
    runs = pd.DataFrame({"run_id": ["r"], "arm": ["a"], "final_val_accuracy": [0.25], "n": [4],
                         "last_epoch": [3]}).join(flags.reset_index(drop=True))
    meta = {"dataset": {"class_names": [f"c{i}" for i in range(8)]}}
    (item,) = _one_class(runs, meta)
    assert (item["from_epoch"], item["epochs"], item["class_name"], item["k"]) == (2, 2, "c6", 1)


def test_single_run_report_uses_per_image_predictions_when_they_form_a_grid(tmp_path):
    from valstat.store import load_tables

    tables = load_tables(build_store(tmp_path / "store", arms=("baseline",), seeds=1, folds=1,
                                     epochs=8, collapse=False))
    run_id = tables.runs["run_id"].iloc[0]
    epochs = tables.epochs[tables.epochs["run_id"] == run_id].drop(columns="run_id")
    predictions = tables.predictions[tables.predictions["run_id"] == run_id].drop(columns="run_id")
    with_images = write_single_run_report(epochs, predictions, 30, tmp_path / "a").read_text()
    without = write_single_run_report(epochs, None, 30, tmp_path / "b").read_text()
    from valstat.report.text import Strings

    note = Strings("en")["single.no_predictions"][:40]   # "A Keras history has no per-image ..."
    assert note not in with_images and note in without


def test_signed_points_never_print_minus_zero():
    from valstat.report.text import pts

    assert pts(-0.0004, signed=True) == "+0.0"          # rounds to 0.0 points
    assert pts(-0.0006, signed=True) == "−0.1"
    assert pts(0.0123, signed=True) == "+1.2"
    assert pts(-0.0004) == "0.0" and pts(-0.0123) == "−1.2"


# --------------------------------------------------------------------------- augmentation arms

def _finals_and_collapse(out_dir: Path, arm: str):
    """{seed: (final val accuracy, ended predicting one class)} of one arm, from the tables."""
    tables = load_tables(out_dir)
    runs = tables.runs[tables.runs["arm"] == arm].set_index("run_id")
    last = tables.epochs.sort_values("epoch").groupby("run_id").tail(1).set_index("run_id")
    preds = tables.predictions
    out = {}
    for run_id, row in runs.iterrows():
        final = preds[(preds["run_id"] == run_id) & (preds["epoch"] == last.loc[run_id, "epoch"])]
        out[int(row["seed"])] = (float(last.loc[run_id, "val_accuracy"]), final["predicted"].nunique() == 1)
    return out


def test_augment_arms_state_the_paired_change_in_spread(tmp_path):
    import numpy as np

    out = build_store(tmp_path / "augment", arms=("none", "tutorial"), seeds=10, folds=1, epochs=8,
                      vary=("split", "init", "order", "augment"))
    none, tutorial = _finals_and_collapse(out, "none"), _finals_and_collapse(out, "tutorial")
    collapsed_none = sum(c for _, c in none.values())
    collapsed_tutorial = sum(c for _, c in tutorial.values())
    assert collapsed_none == 1 and collapsed_tutorial == 0     # the synthetic store's one collapse
    learned = [s for s in none if not none[s][1] and not tutorial[s][1]]
    sd_a = np.std([none[s][0] for s in learned], ddof=1)
    sd_b = np.std([tutorial[s][0] for s in learned], ddof=1)
    text = _text_of(out)
    assert ("How tutorial changed the run-to-run spread: 0 of its 10 runs ended predicting one class "
            "for every image, against 1 of the 10 runs of none; the share of collapsed runs changed by "
            "−10.0 points") in text
    assert (f"Among the {len(learned)} pairs in which both runs learned (neither collapsed), final accuracy "
            f"had a standard deviation of {100 * sd_b:.1f} points under tutorial against {100 * sd_a:.1f} "
            f"under none: the spread of tutorial is {sd_b / sd_a:.2f} times that of none") in text
    assert "Pitman–Morgan test for paired samples" in text and "[@pitman1939; @morgan1939]" in text
    zh = _text_of(out, "zh")
    assert "tutorial 如何改变运行间的离散程度：tutorial 的 10 次运行中有 0 次" in zh
    assert f"tutorial 的离散程度是 none 的 {sd_b / sd_a:.2f} 倍" in zh
    # no arm augments in this synthetic store: the augment seed is not listed as varied
    from valstat.report import content
    from valstat.report.analysis import analyse
    from valstat.report.text import Strings

    def varied(store):
        rows = dict(content.setup(analyse(load_tables(store)), Strings("en")))
        return rows["Seeds and folds"].split("varied per seed: ")[1]

    assert varied(out) == "split, init, order"
    with Store(out) as store:
        arms_config = store.meta()["arms_config"]
        arms_config["tutorial"]["augment"] = {"rotation_range": 20.0, "horizontal_flip": True}
        store.set_meta({"arms_config": arms_config})
    assert varied(out) == "split, init, order, augment"


def test_too_few_learned_pairs_give_no_spread_ratio(tmp_path):
    out = build_store(tmp_path / "few", arms=("none", "tutorial"), seeds=5, folds=1, epochs=6,
                      vary=("split", "init", "order"))
    text = _text_of(out)
    assert ("Pairs with both runs learning (neither collapsed): only 4 of 5, too few to estimate how "
            "tutorial changed the spread among runs that learn (at least 5 are needed).") in text
    assert "times that of none" not in text
    assert "只有 4 组的两次运行都学会了" in _text_of(out, "zh")


def test_spread_change_without_predictions_says_collapse_is_unseen(tmp_path):
    out = build_store(tmp_path / "nopred_arms", arms=("none", "tutorial"), seeds=6, folds=1, epochs=6,
                      vary=("split", "init", "order"), predictions=False)
    text = _text_of(out)
    assert "without per-image predictions a collapse to one class cannot be seen" in text
    assert "Over all 6 pairs, final accuracy had a standard deviation of" in text


def test_spread_ratio_on_one_shared_split_says_it_holds_for_these_images(tmp_path):
    out = build_store(tmp_path / "shared", arms=("none", "tutorial"), seeds=7, folds=1, epochs=6,
                      vary=("init", "order"))
    text = _text_of(out)
    assert "Among the 6 pairs in which both runs learned" in text
    assert "The pairs share their validation images, so this ratio holds for new seeds on these images" in text
    own = build_store(tmp_path / "own", arms=("none", "tutorial"), seeds=7, folds=1, epochs=6,
                      vary=("split", "init", "order"))
    assert "so this ratio holds for new seeds" not in _text_of(own)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_largest_drop_sentence_gives_the_adjusted_p_its_verdict_uses(lang):
    import numpy as np
    from scipy import stats as sps

    from valstat.report.content import drop_texts
    from valstat.report.text import Strings
    from valstat.results import LargestDrop
    from valstat.stats import curve_changes, largest_drop

    k = np.r_[np.full(9, 24), 15]   # 24/30 then 15/30: Fisher p < 0.05 alone, not after 9 moves
    drop = LargestDrop.from_stats(largest_drop(curve_changes(k / 30, 30)))
    raw = sps.fisher_exact([[24, 6], [15, 15]]).pvalue
    adjusted = min(1.0, 9 * raw)
    verdict, scan = drop_texts(drop, 30, False, Strings(lang))
    assert f"= {adjusted:.2f}" in verdict and f"= {raw:.2g}" not in verdict
    assert ("Bonferroni-adjusted" if lang == "en" else "Bonferroni 校正后") in verdict
    assert f"= {raw:.2g}" in scan   # the one-move p, labelled as such, beside the multiplier


def _paired_drop(lost, gained, moves=10):
    """The largest drop of a 30-image curve flat at 20/30 for `moves` moves, then `lost` images
    going wrong and `gained` going right (per-image correctness: the McNemar path)."""
    import numpy as np

    from valstat.results import LargestDrop
    from valstat.stats import curve_changes, largest_drop

    correct = np.zeros((moves + 1, 30), dtype=bool)
    correct[:, :20] = True
    correct[-1, :lost] = False
    correct[-1, 20:20 + gained] = True
    return LargestDrop.from_stats(largest_drop(curve_changes(correct.mean(axis=1), 30, correct=correct)))


def test_largest_drop_threshold_is_given_for_the_images_that_changed_and_only_within_noise():
    from scipy import stats as sps

    from valstat.report.content import drop_texts
    from valstat.report.text import Strings

    S = Strings("en")
    # 8 lost, 2 gained of 10 changed; as the largest of 10 moves, McNemar (exact, two-sided)
    # flags a net loss j of those 10 only when 2 * P(Bin(10, 1/2) <= (10 - j) / 2) * 10 < 0.05
    drop = _paired_drop(lost=8, gained=2)
    flag = min(j for j in (0, 2, 4, 6, 8, 10)
               if 10 * 2 * sps.binom.cdf((10 - j) // 2, 10, 0.5) < 0.05)
    assert drop.within_noise and drop.discordant == 10 and flag == 10
    _, scan = drop_texts(drop, 30, True, S)
    assert "with the 10 images that changed answer between the two epochs" in scan
    assert f"images lost outnumber those gained by {flag} images or more" in scan
    # 14 lost, none gained: 10 * 2 * 0.5**14 = 0.0012, beyond noise; no "within noise" caveat
    beyond = _paired_drop(lost=14, gained=0)
    verdict, scan = drop_texts(beyond, 30, True, S)
    assert not beyond.within_noise and "larger than the noise" in verdict
    assert "within noise" not in scan and "beyond noise even so" in scan
    # 3 lost of 3 changed: 10 * 2 * 0.5**3 > 1, and no split of 3 could be flagged
    _, scan = drop_texts(_paired_drop(lost=3, gained=0), 30, True, S)
    assert "with only 3 images changing answer" in scan and "could flag no loss at all" in scan


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_moves_within_noise_sentence_says_which_drop_the_test_could_detect(lang):
    from types import SimpleNamespace

    from power_reference import mcnemar_drop_reference

    from valstat.report.analysis import analyse
    from valstat.report.content import findings
    from valstat.report.text import Strings
    from valstat.synthetic import fake_store

    runs, epochs, predictions, meta, _ = fake_store(arms=("a",), seeds=3, folds=2, epochs=6, seed=2)
    analysis = analyse(SimpleNamespace(runs=runs, epochs=epochs, predictions=predictions, meta=meta))
    (detect,) = analysis.summary.arms["a"].moves_within_noise.detectable
    expected = mcnemar_drop_reference(30, detect.churn)
    drop = next(f for f in findings(analysis, Strings(lang)) if f["id"] == "drop")
    sentence = ("With 30 images, drops under {} images cannot be told from noise" if lang == "en"
                else "在 30 张图像上，小于 {} 张图像的下降无法与噪声区分")
    assert any(sentence.format(expected) in p for p in drop["paragraphs"])


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_curve_band_with_one_shared_split_is_the_crossed_interval_and_says_so(lang):
    from types import SimpleNamespace

    from valstat.report.analysis import analyse
    from valstat.report.figures import figure_builders
    from valstat.report.text import Strings
    from interval_reference import korn_graubard
    from valstat.stats import crossed_mean_interval, mean_interval
    from valstat.synthetic import fake_store

    runs, epochs, predictions, meta, _ = fake_store(arms=("a",), seeds=5, folds=1, epochs=3, seed=4)
    analysis = analyse(SimpleNamespace(runs=runs, epochs=epochs, predictions=predictions, meta=meta))
    for epoch in range(3):
        at = predictions[predictions["epoch"] == epoch].sort_values(["run_id", "example"])
        table = (at["label"] == at["predicted"]).to_numpy(dtype=float).reshape(5, 30)  # runs x shared images
        crossed = crossed_mean_interval(table, new_run_columns=30)
        want = korn_graubard(crossed["estimate"], crossed["se"], crossed["df"], 5 * 30)
        band = analysis.bands.set_index("epoch").loc[epoch]
        assert (band["low"], band["high"]) == (pytest.approx(want[0]), pytest.approx(want[1]))
        assert band["scope"] == "new validation images"
        # never narrower than treating the five runs as independent (the t interval on these images)
        t = mean_interval(table.mean(axis=1))
        assert band["high"] - band["low"] >= t["high"] - t["low"] - 1e-9
    S = Strings(lang)
    caption = figure_builders(analysis, S)["val_accuracy_runs"][1]
    assert S.section("captions")["band_crossed"] in caption
    assert S.section("captions")["band_conditional"] not in caption


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_few_runs_report_the_collapse_aware_interval_and_what_it_allows(lang):
    from types import SimpleNamespace

    from scipy import stats as sps

    from valstat.core import Settings
    from valstat.report.analysis import analyse
    from valstat.report.content import findings, methods
    from valstat.report.text import Strings
    from valstat.synthetic import fake_store

    # 8 runs on their own splits, one ending on class 0 for every image (counted on request)
    runs, epochs, predictions, meta, _ = fake_store(arms=("a",), seeds=8, folds=1, epochs=4, shared_split=False,
                                                    diverged=("a", 2, 0, 3), seed=3)
    analysis = analyse(SimpleNamespace(runs=runs, epochs=epochs, predictions=predictions, meta=meta),
                       Settings(count_diverged=True))
    S = Strings(lang)
    share = f"{100 * sps.beta.ppf(0.9875, 2, 7):.0f}%"   # 1 of 8 collapsed: Clopper-Pearson at 1 - 0.05/4
    spread = next(f for f in findings(analysis, S) if f["id"] == "spread")
    # every class holds a third of each split: one share, "33%", not "33% to 33%"
    expected = S("findings.spread_collapse", below=S.count("runs", 20), share=share, shares="33%", collapsed=1, runs=8)
    assert expected in spread["paragraphs"]
    assert "33% to 33%" not in expected and "33% 至 33%" not in expected
    assert ("With fewer than 20 runs the" if lang == "en" else "少于 20 次运行时") in expected
    assert S("methods.means_collapse", below=20) in methods(analysis, S)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_collapse_aware_interval_over_seeds_says_seeds(lang):
    from types import SimpleNamespace

    from valstat.report.analysis import analyse
    from valstat.report.content import findings
    from valstat.report.text import Strings
    from valstat.synthetic import fake_store

    # 2 seeds x 5 folds, each seed its own split, every run predicting class 0: the seeds are the units
    runs, epochs, predictions, meta, _ = fake_store(arms=("a",), seeds=2, folds=5, epochs=4, shared_split=False,
                                                    seed=5)
    predictions = predictions.assign(predicted=0)
    epochs = epochs.assign(val_accuracy=1 / 3)
    analysis = analyse(SimpleNamespace(runs=runs, epochs=epochs, predictions=predictions, meta=meta))
    paragraphs = " ".join(next(f for f in findings(analysis, Strings(lang)) if f["id"] == "spread")["paragraphs"])
    if lang == "en":
        assert "With fewer than 20 seeds the confidence interval" in paragraphs
        assert "Fewer than 2 seeds had a run that learned" in paragraphs
    else:
        assert "少于 20 个种子时" in paragraphs and "有运行学会的种子不足 2 个" in paragraphs


def test_every_per_image_map_of_a_collapsed_run_is_marked_one_class():
    from types import SimpleNamespace

    from valstat.report.analysis import analyse
    from valstat.synthetic import fake_store

    runs, epochs, predictions, meta, _ = fake_store(arms=("a", "b"), seeds=2, folds=1, epochs=4, seed=3)
    collapsing = predictions["run_id"].isin(["a/s0/f0", "b/s1/f0"]) & (predictions["epoch"] >= 1)
    predictions.loc[collapsing, "predicted"] = 0
    analysis = analyse(SimpleNamespace(runs=runs, epochs=epochs, predictions=predictions, meta=meta))
    collapsed = {item["run_id"] for item in analysis.one_class}
    assert collapsed == {"a/s0/f0", "b/s1/f0"}
    assert analysis.correct_maps
    for chart in analysis.correct_maps:
        assert (chart["kind"] == "collapsed") == (chart["run_id"] in collapsed), chart["run_id"]


@pytest.mark.parametrize("design", [dict(seeds=1, folds=1, epochs=2), dict(seeds=1, folds=1, epochs=3),
                                    dict(seeds=2, folds=1, epochs=2, vary=("split", "init", "order"))])
def test_counts_of_one_take_the_singular_in_the_report_and_stats(tmp_path, design):
    import re

    from valstat.report.stats_text import format_summary
    from valstat.summary import summarize

    out = build_store(tmp_path / "s", **design)
    tables = load_tables(out)
    text = _text_of(out) + "\n" + format_summary(
        summarize(tables.runs, tables.epochs, tables.predictions, tables.meta), "en")
    plural_of_one = re.compile(r"(?<![\d.,/])1 (runs|pairs|seeds|moves|epochs|images|cuts|steps|ties)\b"
                               r"|\b1 of (the )?1 \w+s\b|of 1 \w+s\b")
    assert not [m.group(0) for m in plural_of_one.finditer(text)], text


def test_a_store_whose_recorded_plan_shrank_is_described_by_the_seeds_it_holds(tmp_path):
    from valstat.report.analysis import analyse
    from valstat.report.content import setup
    from valstat.report.text import Strings

    out = build_store(tmp_path / "s", seeds=4, folds=1, epochs=3)
    with Store(out) as store:        # as `valstat run --seeds 2` left it before it kept the plan
        store.set_meta({"sweep": {**store.meta()["sweep"], "seeds": 2}})
    analysis = analyse(load_tables(out))
    assert (analysis.coverage["planned_seeds"], analysis.coverage["planned"]) == (4, 8)
    assert "2 × 4 × 1" in _text_of(out) and "2 × 2 × 1" not in _text_of(out)
    assert ("Seeds and folds", "seeds × folds = 4 × 1; varied per seed: init, order") in setup(analysis, Strings("en"))


def test_arms_on_different_validation_images_are_not_called_paired_by_split(tmp_path):
    from valstat.report.analysis import analyse

    out = build_store(tmp_path / "sizes", arms=("val30", "val90"), val_sizes={"val30": 30, "val90": 90},
                      seeds=3, folds=1, epochs=4, collapse=False)
    comparison = analyse(load_tables(out)).summary.comparisons[0]
    assert comparison.pairs == 3 and comparison.pairs_on_different_images == 3 and not comparison.mcnemar
    text = _text_of(out)
    assert "paired by seed (3 pairs); the two runs of a pair scored different validation images" in text
    assert "paired by seed and split" not in text
    assert "Accuracy on n images moves in steps of 1/n" in text and "over the n images" in text
    assert "Accuracy on 30 images" not in text and "over the 30 images" not in text
    # P(A > B) of arms on 30 and 90 images differs from 1/2 at equal accuracy: not offered as a test
    assert "val30 scored 30 validation images and val90 90" in text and "not as a test" in text
    from valstat.report.stats_text import format_summary

    summary = analyse(load_tables(out)).summary
    assert "(validation sizes 30 vs 90: not a test of equal accuracy)" in format_summary(summary)
    assert "（验证集大小 30 对 90：不是准确率相等的检验）" in format_summary(summary, "zh")
    same = build_store(tmp_path / "same", arms=("a", "b"), seeds=3, folds=1, epochs=4, collapse=False)
    assert analyse(load_tables(same)).summary.comparisons[0].pairs_on_different_images == 0
    assert "paired by seed and split (3 pairs)" in _text_of(same)
    assert "not as a test" not in _text_of(same)


@pytest.mark.parametrize("lang, observed, draw", [("en", "observed (variance over runs)", "binomial draw per run"),
                                                  ("zh", "观测值（运行间方差）", "每次运行二项抽取")])
def test_variance_table_names_its_methods_in_words(tmp_path, lang, observed, draw):
    from valstat.report.analysis import analyse
    from valstat.report.content import tables
    from valstat.report.text import Strings

    out = build_store(tmp_path / "own", seeds=4, folds=1, epochs=4, vary=("split", "init", "order"))
    table = next(t for t in tables(analyse(load_tables(out)), Strings(lang)) if t.name == "variance")
    methods = {row[-1] for row in table.rows}
    assert observed in methods and draw in methods
    assert not any(re.fullmatch(r"[a-z]+(-[a-z]+)+", m) for m in methods), methods   # no raw ids
