"""`valstat diagnose HISTORY --against OUT_DIR`: one history placed among a store's reruns.

Reference values are computed here independently: percentiles with
scipy.stats.percentileofscore(kind="mean"), bands with numpy quantiles, drops by a loop.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import percentileofscore

from conftest import valstat
from valstat.synthetic import build_store
from valstat.errors import ValstatError
from valstat.stats.against import largest_fall, percentile_of, place_curve, place_value
from valstat.against import format_placement, place_history
from valstat.diagnose import diagnose
from valstat.history import read_history
from valstat.store import Store, load_tables


def test_percentile_matches_scipy_with_ties():
    rng = np.random.default_rng(1)
    reference = rng.integers(0, 31, 57) / 30          # a lattice: many ties
    for value in (0.0, 0.5, 11 / 30, 1.0, 2.0):
        assert percentile_of(value, reference) == pytest.approx(
            percentileofscore(reference, value, kind="mean"))


def test_place_value_band_and_verdict():
    reference = np.arange(1, 41, dtype=float)          # 1..40
    low, high = np.quantile(reference, [0.025, 0.975])
    inside = place_value(20.0, reference)
    assert (inside["low"], inside["high"]) == pytest.approx((low, high))
    assert inside["typical"] and inside["reruns"] == 40 and inside["median"] == 20.5
    assert not place_value(0.5, reference)["typical"]
    assert not place_value(41.0, reference)["typical"]
    assert place_value(41.0, reference)["percentile"] == 100.0
    # with fewer than 39 reruns a value beyond all of them gets no verdict; inside, typical
    few = place_value(100.0, reference[:12])
    assert few["typical"] is None and few["high"] <= 12.0 < few["value"]
    assert place_value(6.0, reference[:12])["typical"] is True


@pytest.mark.parametrize("reruns, lattice", [(12, False), (39, False), (60, False), (39, True), (100, True)])
def test_a_run_like_the_reruns_is_called_unusual_at_most_one_time_in_twenty(reruns, lattice):
    rng = np.random.default_rng(reruns)
    draws = 4000
    values = rng.normal(size=(draws, reruns + 1))
    if lattice:                                        # largest drops in whole images: many ties
        values = np.clip(np.rint(2 + 1.5 * values), 0, None)
    unusual = sum(place_value(v[-1], v[:-1], whole=lattice)["typical"] is False for v in values)
    # at most 0.05 (the order-statistic bound, 2k/(R+1)); 3 binomial sd above it is 0.060
    assert unusual / draws <= 0.060
    # the central band alone ([min, max] of 39) is left 2/40 of the time: the bound is tight
    if reruns == 39 and not lattice:
        assert unusual / draws >= 0.040


def test_place_curve_per_epoch_and_outside_flags():
    rng = np.random.default_rng(2)
    reruns = pd.DataFrame([(f"r{r}", e, rng.integers(10, 25) / 30, rng.uniform(0.5, 1.5))
                           for r in range(25) for e in range(4)],
                          columns=["run_id", "epoch", "val_accuracy", "val_loss"])
    curve = pd.DataFrame({"epoch": [0, 1, 2, 3, 4], "val_accuracy": [0.5, 0.1, 0.9, 0.6, 0.6],
                          "val_loss": [1.0, 3.0, 0.1, np.nan, 1.0]})
    placed = place_curve(curve, reruns)
    for row in placed.itertuples(index=False):
        ref = reruns.loc[reruns["epoch"] == row.epoch, row.metric].to_numpy()
        if ref.size == 0:                               # epoch 4: no rerun got there
            assert row.reruns == 0 and pd.isna(row.outside)
            continue
        low, high = np.quantile(ref, [0.025, 0.975])
        if row.metric == "val_accuracy":     # on the 1/30 lattice: rounded outward to observed values
            low, high = max(ref[ref <= low]), min(ref[ref >= high])
        assert row.percentile == pytest.approx(percentileofscore(ref, row.value, kind="mean"))
        assert (row.low, row.high) == pytest.approx((low, high))
        assert row.outside == (-1 if row.value < low else 1 if row.value > high else 0)
    flags = placed.set_index(["epoch", "metric"])["outside"]
    assert flags[(1, "val_accuracy")] == -1 and flags[(2, "val_accuracy")] == 1
    assert flags[(1, "val_loss")] == 1 and flags[(2, "val_loss")] == -1
    assert (3, "val_loss") not in flags.index           # NaN in the curve: not placed


def test_largest_fall_by_loop():
    rng = np.random.default_rng(3)
    for _ in range(50):
        k = rng.integers(0, 31, rng.integers(1, 12))
        expected = max([0] + [int(a - b) for a, b in zip(k[:-1], k[1:])])
        assert largest_fall(k / 30, 30) == expected


# --------------------------------------------------------------------------- the command

def _history_of(tables, run_id, path, keep=("epoch", "loss", "accuracy", "val_loss",
                                            "val_accuracy", "learning_rate")):
    frame = tables.epochs[tables.epochs["run_id"] == run_id][list(keep)]
    frame.to_csv(path, index=False)
    return frame


def _collapse_epoch(rates):
    below = np.flatnonzero(np.asarray(rates) < 0.01 * rates[0] * (1 - 1e-6))
    return int(below[0]) if below.size else None


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """20 epochs x 12 seeds, ReduceLROnPlateau on val accuracy: rates collapse, drops vary."""
    return build_store(tmp_path_factory.mktemp("reruns"), arms=("baseline", "constant_lr"),
                       seeds=12, folds=1, epochs=20, collapse=False)


def test_json_places_every_epoch_drop_and_collapse(synthetic, tmp_path):
    tables = load_tables(synthetic)
    history = _history_of(tables, "baseline/s5/f0", tmp_path / "log.csv")
    done = valstat("diagnose", tmp_path / "log.csv", "--against", synthetic, "--arm",
                   "baseline", "--json")
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    result = payload["against"]
    # the diagnosis of the history as `diagnose --json` prints it, with the placement beside it
    diagnosis = diagnose(read_history(tmp_path / "log.csv"), val_size=30)
    assert payload == {**diagnosis.to_dict(), "against": result}
    reruns = tables.epochs[tables.epochs["run_id"].str.startswith("baseline/")]
    assert result["reruns"] == 12 and result["val_size"] == 30 and result["arms"] == ["baseline"]
    for row in result["epochs"]:
        for metric in ("val_accuracy", "val_loss"):
            ref = reruns.loc[reruns["epoch"] == row["epoch"], metric].to_numpy()
            value = float(history.loc[history["epoch"] == row["epoch"], metric].iloc[0])
            assert row[metric]["percentile"] == pytest.approx(
                percentileofscore(ref, value, kind="mean"))
            low, high = np.quantile(ref, [0.025, 0.975])
            if metric == "val_accuracy":   # whole images: widened outward to observed values
                low, high = max(ref[ref <= low]), min(ref[ref >= high])
            assert (row[metric]["low"], row[metric]["high"]) == pytest.approx((low, high))
            assert row[metric]["outside"] == int(value > high) - int(value < low)
    falls = []
    collapses = []
    for _, run in reruns.groupby("run_id"):
        k = np.rint(run.sort_values("epoch")["val_accuracy"].to_numpy() * 30)
        falls.append(max([0.0] + list(k[:-1] - k[1:])))
        collapses.append(_collapse_epoch(run.sort_values("epoch")["learning_rate"].to_numpy()))
    k = np.rint(history["val_accuracy"].to_numpy() * 30)
    own_fall = max([0.0] + list(k[:-1] - k[1:]))
    assert result["largest_drop"]["value"] == own_fall
    assert result["largest_drop"]["percentile"] == pytest.approx(
        percentileofscore(falls, own_fall, kind="mean"))
    # images are whole: the band's ends are drops some rerun had, rounded outward
    low, high = np.quantile(falls, [0.025, 0.975])
    falls = np.array(falls)
    assert result["largest_drop"]["low"] == max(falls[falls <= low])
    assert result["largest_drop"]["high"] == min(falls[falls >= high])
    own = _collapse_epoch(history["learning_rate"].to_numpy())
    collapsed = [c for c in collapses if c is not None]
    assert own is not None and len(collapsed) >= 6       # the founding schedule collapses
    assert result["lr_collapse"]["epoch"] == own
    assert result["lr_collapse"]["reruns_collapsed"] == len(collapsed)
    assert result["lr_collapse"]["placed"]["percentile"] == pytest.approx(
        percentileofscore(collapsed, own, kind="mean"))


def test_text_and_report_show_the_run_over_the_band(synthetic, tmp_path):
    tables = load_tables(synthetic)
    _history_of(tables, "baseline/s2/f0", tmp_path / "log.csv",
                keep=("epoch", "val_loss", "val_accuracy", "learning_rate"))
    done = valstat("diagnose", tmp_path / "log.csv", "--against", synthetic, "--arm", "baseline",
                   "--report", tmp_path / "report", "--lang", "zh")
    assert done.returncode == 0, done.stderr
    # --lang zh speaks Chinese in the terminal too, with the same counts
    assert "的 12 次重复运行比较" in done.stdout and "百分位" in done.stdout and "against" not in done.stdout
    assert (tmp_path / "report" / "figures" / "against_reruns.png").stat().st_size > 10_000
    html = (tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    assert "重复训练" in html and 'id="fig-against_reruns"' in html


def test_history_outside_the_band_is_flagged(synthetic, tmp_path):
    epochs = pd.DataFrame({"epoch": range(20), "val_accuracy": [0.0] * 20,
                           "val_loss": [9.0] * 20})
    epochs.to_csv(tmp_path / "bad.csv", index=False)
    done = valstat("diagnose", tmp_path / "bad.csv", "--against", synthetic, "--val-size",
                   "30", "--arm", "baseline", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)["against"]
    loss = result["outside"]["val_loss"]
    assert (loss["epochs"], loss["compared"]) == (20, 20)
    # how often a rerun leaves the band of the other 11, by hand: numpy's 2.5 % and 97.5 % quantiles
    epochs_table = load_tables(synthetic).epochs
    reruns = epochs_table[epochs_table["run_id"].str.startswith("baseline/")]
    expected = 0.0
    for _, at in reruns.groupby("epoch"):
        values = at["val_loss"].to_numpy()
        for i in range(values.size):
            others = np.delete(values, i)
            low, high = np.quantile(others, 0.025), np.quantile(others, 0.975)
            expected += (values[i] < low or values[i] > high) / values.size
    assert loss["expected"] == pytest.approx(expected)
    assert 20 * 0.05 < expected < 20 * 0.5     # 12 reruns: well above the nominal 5 % of 20 epochs
    text = valstat("diagnose", tmp_path / "bad.csv", "--against", synthetic, "--val-size", "30",
                   "--arm", "baseline").stdout
    assert f"val loss leaves the reruns' 95% band in 20 of 20 epochs; a rerun leaves the others' band in {expected:.1f} of them" in text
    assert result["lr_collapse"]["recorded"] is False


@pytest.mark.parametrize("case", ["other_size", "empty", "missing", "arm", "arm_alone", "pooled"])
def test_bad_stores_give_one_line(case, synthetic, tmp_path):
    history = pd.DataFrame({"epoch": range(3), "val_accuracy": [0.5, 0.6, 0.7]})
    history.to_csv(tmp_path / "log.csv", index=False)
    store = synthetic
    args = []
    if case == "other_size":
        store = build_store(tmp_path / "big", arms=("a",), seeds=2, folds=1, epochs=3,
                            val_size=90, collapse=False)
        args = ["--val-size", "30"]
    elif case == "empty":
        store = tmp_path / "empty"
        Store(store).close()
    elif case == "missing":
        store = tmp_path / "nowhere"
    elif case == "arm":
        args = ["--arm", "nope"]
    command = ["diagnose", tmp_path / "log.csv", "--against", store, *args]
    if case == "arm_alone":
        command = ["diagnose", tmp_path / "log.csv", "--arm", "baseline"]
    done = valstat(*command)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("valstat: error:"), done.stderr
    expected = {"other_size": "no runs with 30 validation images (its runs have 90)",
                "empty": "holds no finished runs", "missing": "no valstat store",
                "arm": "no arm 'nope'", "arm_alone": "--arm needs --against",
                # two recipes are never pooled: name them and ask for one
                "pooled": "has 2 arms with 30 validation images (baseline, constant_lr); "
                          "compare with one of them: --arm baseline"}[case]
    assert expected in lines[0]


def test_val_size_is_taken_from_the_store_when_the_history_fits_it(synthetic):
    history = pd.DataFrame({"epoch": [0, 1], "val_accuracy": [0.5, 0.6]})

    assert place_history(history, synthetic, arm="baseline").val_size == 30
    with pytest.raises(ValstatError, match="not whole numbers of images for any"):
        place_history(pd.DataFrame({"epoch": [0], "val_accuracy": [0.123]}), synthetic)
    assert math.isclose(place_history(history, synthetic, val_size=30, arm="baseline").level, 0.95)


def test_placement_text_speaks_chinese_with_the_same_numbers(tmp_path):
    tables = load_tables(build_store(tmp_path / "store", arms=("baseline",), seeds=4, folds=1, epochs=8))
    run_id = tables.runs["run_id"].iloc[1]
    history = tables.epochs[tables.epochs["run_id"] == run_id].drop(columns="run_id")
    placed = place_history(history, tmp_path / "store", val_size=30)
    en, zh = format_placement(placed), format_placement(placed, "zh")
    assert en.startswith("against 4 reruns") and zh.startswith("与 ") and "against" not in zh
    assert len(en.splitlines()) == len(zh.splitlines())


def test_chinese_terminal_text_has_no_english_sentence(synthetic, tmp_path):
    import re
    import string
    import tomllib

    from valstat.report.text import HERE

    tables = load_tables(synthetic)
    _history_of(tables, "baseline/s3/f0", tmp_path / "log.csv")
    done = valstat("diagnose", tmp_path / "log.csv", "--against", synthetic, "--arm", "baseline",
                   "--lang", "zh")
    assert done.returncode == 0, done.stderr
    text = done.stdout

    def literals(section, lang):
        """The fixed words of every string of one section of en.toml / zh.toml (no fields)."""
        with open(HERE / f"{lang}.toml", "rb") as handle:
            strings = tomllib.load(handle)[section]
        return [chunk.strip() for value in strings.values()
                for chunk, *_ in string.Formatter().parse(value) if chunk.strip()]

    zh = literals("placement", "zh")
    assert sum(chunk in text for chunk in zh) >= 8            # the placement lines speak zh.toml
    assert "与 " in text and "重复运行" in text
    # no English sentence: no fixed phrase of the English strings, no three English words in a row
    # (names such as val_accuracy, ReduceLROnPlateau, Wilson or the store path stand alone)
    english = [c for section in ("placement", "diagnose") for c in literals(section, "en")
               if len(c.split()) >= 2 and re.search("[a-z]{3}", c)]
    assert english and not [c for c in english if c in text]
    assert not re.findall(r"[A-Za-z]{2,}(?:[ ,]+[A-Za-z]{2,}){2,}", text.replace(str(synthetic), ""))


def test_against_json_keeps_every_key(synthetic, tmp_path):
    """The "against" part of `diagnose --json` has the same keys, nested, as before Placement."""
    tables = load_tables(synthetic)
    _history_of(tables, "baseline/s5/f0", tmp_path / "log.csv")
    done = valstat("diagnose", tmp_path / "log.csv", "--against", synthetic, "--arm", "baseline",
                   "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)["against"]
    placed = {"value", "reruns", "percentile", "median", "low", "high", "typical"}
    assert list(result) == ["store", "val_size", "arms", "reruns", "level", "collapse_threshold",
                            "epochs", "outside", "largest_drop", "lr_collapse"]
    assert len(result["epochs"]) == 20
    for row in result["epochs"]:
        assert list(row) == ["epoch", "val_accuracy", "val_loss"]
        for metric in ("val_accuracy", "val_loss"):
            assert set(row[metric]) == placed - {"typical"} | {"outside"}
    assert result["outside"].keys() == {"val_accuracy", "val_loss"}
    assert all(set(count) == {"epochs", "compared", "expected"} for count in result["outside"].values())
    assert set(result["largest_drop"]) == placed
    assert set(result["lr_collapse"]) == {"epoch", "recorded", "reruns_collapsed",
                                          "reruns_with_rate", "placed", "typical"}
    assert set(result["lr_collapse"]["placed"]) == placed


def test_epoch_without_val_loss_has_no_val_loss_key(synthetic, tmp_path):
    """A metric the history lacks at an epoch is left out of that epoch, not written as null."""
    history = pd.DataFrame({"epoch": range(3), "val_accuracy": [0.5, 0.6, 0.7],
                            "val_loss": [1.0, np.nan, 0.8]})
    placed = place_history(history, synthetic, val_size=30, arm="baseline")
    rows = placed.to_dict()["epochs"]
    assert [list(row) for row in rows] == [["epoch", "val_accuracy", "val_loss"],
                                           ["epoch", "val_accuracy"],
                                           ["epoch", "val_accuracy", "val_loss"]]
    assert placed.epochs[1].val_loss is None and placed.epochs[1].val_accuracy.reruns == 12


def test_percentiles_are_english_ordinals_and_chinese_numbers():
    from valstat.report.text import Strings

    en, zh = Strings("en"), Strings("zh")
    expected = {0: "0th", 1: "1st", 2: "2nd", 3: "3rd", 4: "4th", 11: "11th", 12: "12th",
                13: "13th", 21: "21st", 22: "22nd", 42: "42nd", 61: "61st", 72: "72nd",
                100: "100th", 101: "101st", 111: "111th", 112: "112th", 113: "113th"}
    assert {n: en.ordinal(n) for n in expected} == expected
    assert zh.ordinal(72) == "72" and zh("placement.percentile", p=zh.ordinal(72)) == "第 72 百分位"


def test_text_says_22nd_not_22th(synthetic, tmp_path):
    tables = load_tables(synthetic)
    _history_of(tables, "baseline/s5/f0", tmp_path / "log.csv")
    placed = place_history(read_history(tmp_path / "log.csv"), synthetic, arm="baseline")
    text = format_placement(placed)
    import re

    ordinals = re.findall(r"\b(\d+)(st|nd|rd|th)\b", text)
    assert len(ordinals) >= 20                     # every placed epoch has one
    for number, suffix in ordinals:
        n = int(number)
        right = "th" if n % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
        assert suffix == right, f"{number}{suffix}"


def test_figure_draws_the_whole_history_and_the_band_where_reruns_exist(synthetic, tmp_path,
                                                                        monkeypatch):
    """A 30-epoch history against 20-epoch reruns: all 30 epochs drawn, the band on the first 20."""
    from valstat.report import against, plots
    from valstat.report.text import Strings

    tables = load_tables(synthetic)
    run = tables.epochs[tables.epochs["run_id"] == "baseline/s1/f0"].sort_values("epoch")
    tail = run.iloc[[-1] * 10].assign(epoch=range(20, 30))
    history = pd.concat([run, tail]).drop(columns="run_id")
    placed = place_history(history, synthetic, arm="baseline")
    drawn = {}
    real = plots.plot_against
    monkeypatch.setattr(plots, "plot_against",
                        lambda panels, *a: drawn.setdefault("panels", panels) and real(panels, *a))
    assert against.figure(placed, Strings("en"), tmp_path) is not None
    for panel in drawn["panels"]:
        frame = panel["frame"]
        assert frame["epoch"].tolist() == list(range(30))
        assert frame["low"].notna().tolist() == [True] * 20 + [False] * 10
