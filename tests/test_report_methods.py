"""The methods paragraph: author-year citations from references.bib, and only the procedures the
store's design used (own split per run, seeds x shared folds, one shared split)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from valstat.report import content
from valstat.report.analysis import analyse
from valstat.report.bib import HERE, cite_plain
from valstat.report.latex import methods_tex
from valstat.report.text import Strings
from valstat.store import load_tables
from valstat.synthetic import build_store


def _bib_fields():
    """key -> (surnames of the authors, year), read from references.bib with plain regexes."""
    text = (HERE / "references.bib").read_text(encoding="utf-8")
    out = {}
    for key, body in re.findall(r"@\w+\{(\w+),(.*?)\n\}", text, re.S):
        authors = re.search(r"author\s*=\s*\{(.*)\},?\n", body).group(1)
        names = [name.split(",")[0].strip("{} ") for name in authors.split(" and ")]
        out[key] = (names, re.search(r"year\s*=\s*\{(\d{4})\}", body).group(1))
    return out


def test_every_bibtex_key_renders_as_author_year():
    fields = _bib_fields()
    assert {"fagerland2013", "pitman1939", "morgan1939", "noether1987"} <= set(fields)
    for key, (names, year) in fields.items():
        if len(names) >= 3 or "others" in names:
            who = f"{names[0]} et al."
        elif len(names) == 2:
            who = f"{names[0]} & {names[1]}"
        else:
            who = names[0]
        assert cite_plain(f"see [@{key}].") == f"see ({who} {year}).", key


def test_a_citation_inside_parentheses_joins_them():
    assert cite_plain("(Noether gives fewer [@noether1987; @fisher1922]).") == \
        "(Noether gives fewer; Noether 1987; Fisher 1922)."
    assert cite_plain("（公式给出的更少 [@noether1987]）") == "（公式给出的更少；Noether 1987）"
    assert cite_plain("P(A > B) [@noether1987]") == "P(A > B) (Noether 1987)"


# --------------------------------------------------------------------------- design

def _val_sets(out_dir):
    """run_id -> frozenset of validation example ids, from the store's per-image rows."""
    predictions = load_tables(out_dir).predictions
    return predictions.groupby("run_id")["example"].agg(frozenset).to_dict()


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("designs")
    return {
        "own": build_store(root / "own", arms=("baseline", "constant_lr"), seeds=4, folds=1,
                           epochs=6, vary=("split", "init", "order")),
        "folds": build_store(root / "folds", arms=("baseline",), seeds=3, folds=2, epochs=6),
        "shared": build_store(root / "shared", arms=("baseline",), seeds=4, folds=1, epochs=6),
    }


def _methods(out_dir, lang="en"):
    return content.methods(analyse(load_tables(out_dir)), Strings(lang))


CROSSED_MEAN = {"en": "crossed random-effects analysis of variance", "zh": "交叉随机效应方差分析"}
CROSSED_LEARNED = {"en": "bounded by the crossed analysis of variance of their per-image correctness",
                   "zh": "改用其逐图像正确性的交叉方差分析"}
DECOMPOSED = {"en": "split into validation-split, seed and residual", "zh": "分解为验证集划分、随机种子和残差"}
FOLD_UNITS = {"en": "The folds of one seed were treated as one unit", "zh": "同一随机种子的各折"}


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_own_split_per_run_describes_no_shared_image_analysis(stores, lang):
    runs = load_tables(stores["own"]).runs
    sets = _val_sets(stores["own"])
    for arm, ids in runs.groupby("arm")["run_id"]:   # no two runs of an arm share their images
        assert len({sets[r] for r in ids}) == len(ids)
    text = _methods(stores["own"], lang)
    for phrase in (CROSSED_MEAN, DECOMPOSED, FOLD_UNITS):
        assert phrase[lang] not in text
    assert "random-effects" not in methods_tex(text, lang)
    assert ("cannot be separated" if lang == "en" else "种子与划分无法分开") in text


POOL = {"en": "drew its validation images from one pool", "zh": "都取自数据集中的同一个图像池"}


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_own_splits_from_one_pool_say_the_mean_includes_the_images_they_share(stores, tmp_path, lang):
    # 20 seeds each drawing 30 validation images from one pool of 1000: some are shared
    out = build_store(tmp_path / "pool", arms=("baseline",), seeds=20, folds=1, epochs=4,
                      vary=("split", "init", "order"), collapse=False)
    sets = list(_val_sets(out).values())
    assert len(set(sets)) == 20 and len(frozenset().union(*sets)) < 20 * 30
    assert POOL[lang] in _methods(out, lang)
    assert POOL[lang] not in _methods(stores["own"], lang)   # 4 runs: the collapse-aware interval


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_seeds_on_shared_folds_describe_the_crossed_analysis(stores, lang):
    runs = load_tables(stores["folds"]).runs.set_index("run_id")
    sets = _val_sets(stores["folds"])
    for fold, ids in runs.groupby("fold").groups.items():   # each fold's seeds share images
        assert len({sets[r] for r in ids}) == 1
    text = _methods(stores["folds"], lang)
    for phrase in (CROSSED_MEAN, DECOMPOSED, FOLD_UNITS):
        assert phrase[lang] in text
    assert "[@jordan2024]" in text


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_one_shared_split_gives_the_crossed_mean_but_no_decomposition(stores, lang):
    assert len(set(_val_sets(stores["shared"]).values())) == 1    # one split for every run
    text = _methods(stores["shared"], lang)
    # 4 seeds: the collapse-aware mean, its learned runs' mean from the crossed table
    assert CROSSED_LEARNED[lang] in text and CROSSED_MEAN[lang] not in text
    if lang == "zh":
        return
    assert DECOMPOSED["en"] not in text and "one-way" not in text   # nothing to separate
    assert FOLD_UNITS["en"] not in text


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_methods_say_what_was_trained_from_the_store(stores, lang):
    # a thesis reader must not assume the full 58 M-parameter AlexNet at 227 px
    tables = load_tables(stores["own"])
    config = tables.meta["arms_config"]
    first, model = config["baseline"], tables.meta["model_summary"]["baseline"]
    text = _methods(stores["own"], lang)
    n_train = int(tables.runs["n_train"].median())
    for value in (f"{first['data']['image_size']}×{first['data']['image_size']}×3",
                  ", ".join(map(str, model["filters"])), f"{int(model['params']):,}", str(n_train),
                  str(first["training"]["batch_size"]), f"patience={first['schedule']['patience']}"):
        assert value in text, value
    # the second arm is described by what differs from the first
    assert re.search(r"constant_lr[^.。]*schedule\.kind = constant", text), text


# --------------------------------------------------------------------------- LaTeX kit

PLAIN_BIBTEX_TYPES = {"article", "book", "booklet", "inbook", "incollection", "inproceedings",
                      "manual", "mastersthesis", "misc", "phdthesis", "proceedings", "techreport",
                      "unpublished"}


def test_bundled_bibtex_uses_plain_bibtex_types_and_no_package_commands():
    """Every entry (valstat's own included) is a type plain.bst knows, and no field needs a
    package the snippets' headers do not name (\\url would need url or hyperref)."""
    from importlib.metadata import version

    from valstat.report.bib import bib_entries, bib_text

    entries = bib_entries()
    assert {key: e["type"] for key, e in entries.items()
            if e["type"] not in PLAIN_BIBTEX_TYPES} == {}
    commands = set(re.findall(r"\\([A-Za-z]+)", bib_text()))
    assert commands <= {"c", "chi"}, commands      # accents and math only
    valstat = entries["valstat"]
    assert f"version {version('valstat')}" in valstat["howpublished"]   # what plain prints


def _table(columns, rows):
    import pandas as pd

    from valstat.report.content.common import Table

    return Table(name="t", caption="A table.", columns=columns, rows=rows,
                 frame=pd.DataFrame(rows, columns=columns))


def test_every_table_is_shrunk_to_the_text_width_only_when_wider():
    from valstat.report.latex import table_tex

    for columns in (["Arm", "n"], [f"Column {i}" for i in range(9)]):
        tex = table_tex(_table(columns, [["x"] * len(columns)]), "en")
        assert "\\ifdim\\wd0>\\linewidth\\resizebox{\\linewidth}{!}{\\usebox0}" in tex
        assert "\\else\\usebox0\\fi" in tex


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no pdflatex on this machine")
def test_wide_and_narrow_tables_compile_within_the_text_width(tmp_path):
    from valstat.report.latex import table_tex

    wide = _table(["Arm", "Component", "Method"],
                  [["a_very_long_arm_name_indeed", "finite validation set",
                    "observed (variance over runs) and something much longer than a line"]])
    narrow = _table(["Arm", "n"], [["a", "30"]])
    (tmp_path / "wide.tex").write_text(table_tex(wide, "en"), encoding="utf-8")
    (tmp_path / "narrow.tex").write_text(table_tex(narrow, "en"), encoding="utf-8")
    # \resizebox announces itself: only the wide table may be scaled (the narrow one is never
    # enlarged to the text width)
    (tmp_path / "main.tex").write_text(
        "\\documentclass{article}\n\\usepackage{booktabs,graphicx}\n"
        "\\let\\valstatresize\\resizebox\n"
        "\\renewcommand\\resizebox{\\typeout{RESIZED}\\valstatresize}\n"
        "\\begin{document}\n\\input{wide.tex}\n\\input{narrow.tex}\n\\end{document}\n",
        encoding="utf-8")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "main.tex"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]
    log = (tmp_path / "main.log").read_text(encoding="utf-8", errors="replace")
    assert "Overfull \\hbox" not in log
    assert done.stdout.count("RESIZED") == 1
