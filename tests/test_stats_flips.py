"""valstat.stats.flips against explicit loops, on random predictions and on a real sweep."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from valstat.core.cube import Cube
from valstat.errors import ValstatError
from valstat.stats.flips import flips_per_image, image_flips, lost_and_gained, moved_images
from valstat.store import load_tables


def _random_predictions(seed=0, runs=5, epochs=6, pool=40, n=12, classes=4):
    """Runs with their own validation images (drawn from a pool), shuffled row order."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, pool)
    rows = []
    for r in range(runs):
        images = rng.choice(pool, n, replace=False)
        skill = rng.uniform(0.3, 0.9, n)
        for e in range(epochs):
            right = rng.random(n) < skill
            wrong = (labels[images] + rng.integers(1, classes, n)) % classes
            predicted = np.where(right, labels[images], wrong)
            rows += [(f"r{r}", e, int(i), int(labels[i]), int(p), 0.5)
                     for i, p in zip(images, predicted)]
    frame = pd.DataFrame(rows, columns=["run_id", "epoch", "example", "label", "predicted",
                                        "p_true"])
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def _by_loop(predictions):
    """Per example: flips, lost, gained, runs, final_correct, confusions, by plain iteration."""
    out = {}
    for (run, example), group in predictions.groupby(["run_id", "example"]):
        group = group.sort_values("epoch")
        ok = list(group["predicted"] == group["label"])
        item = out.setdefault(example, {"lost": 0, "gained": 0, "runs": 0, "final_correct": 0,
                                        "transitions": 0, "confused": Counter()})
        item["runs"] += 1
        item["final_correct"] += int(ok[-1])
        for before, after in zip(ok[:-1], ok[1:]):
            item["transitions"] += 1
            item["lost"] += int(before and not after)
            item["gained"] += int(after and not before)
        for label, predicted in zip(group["label"], group["predicted"]):
            if label != predicted:
                item["confused"][int(predicted)] += 1
    return out


def _check_against_loop(predictions):
    table = image_flips(predictions)
    expected = _by_loop(predictions)
    assert sorted(table["example"]) == sorted(expected)
    for row in table.itertuples(index=False):
        item = expected[row.example]
        assert (row.lost, row.gained, row.flips) == (item["lost"], item["gained"],
                                                     item["lost"] + item["gained"])
        assert (row.runs, row.final_correct, row.transitions) == (
            item["runs"], item["final_correct"], item["transitions"])
        assert row.final_accuracy == pytest.approx(item["final_correct"] / item["runs"])
        assert dict(row.confused_with) == dict(item["confused"])
        counts = [t for _, t in row.confused_with]
        assert counts == sorted(counts, reverse=True)
        assert row.wrong == sum(item["confused"].values())
    flips = table["flips"].to_numpy()
    assert np.all(np.diff(flips) <= 0)        # most unstable first
    return table


def test_flip_counts_match_an_explicit_loop():
    table = _check_against_loop(_random_predictions())
    assert table["flips"].max() > 0 and table["lost"].sum() > 0 and table["gained"].sum() > 0


def test_ties_in_flips_put_the_images_runs_disagree_on_first():
    rows = []
    for run, (ok_a, ok_b) in enumerate([(1, 1), (1, 0)]):   # image 0: 2/2 right, image 1: 1/2
        for example, ok in ((0, ok_a), (1, ok_b)):
            rows += [(f"r{run}", 0, example, 0, 0 if ok else 1),
                     (f"r{run}", 1, example, 0, 0 if ok else 1)]
    frame = pd.DataFrame(rows, columns=["run_id", "epoch", "example", "label", "predicted"])
    table = image_flips(frame)
    assert list(table["example"]) == [1, 0] and list(table["flips"]) == [0, 0]


def test_lost_and_gained_match_the_two_epochs():
    predictions = _random_predictions(seed=3)
    run = "r2"
    moved = lost_and_gained(predictions, run, 1, 4)
    part = predictions[predictions["run_id"] == run]
    a = part[part["epoch"] == 1].set_index("example")
    b = part[part["epoch"] == 4].set_index("example")
    lost = sorted(i for i in a.index if a.at[i, "predicted"] == a.at[i, "label"]
                  and b.at[i, "predicted"] != b.at[i, "label"])
    gained = sorted(i for i in a.index if a.at[i, "predicted"] != a.at[i, "label"]
                    and b.at[i, "predicted"] == b.at[i, "label"])
    assert list(moved["example"]) == lost + gained
    assert list(moved["direction"]) == ["lost"] * len(lost) + ["gained"] * len(gained)
    for row in moved.itertuples(index=False):
        assert row.predicted_before == a.at[row.example, "predicted"]
        assert row.predicted_after == b.at[row.example, "predicted"]
    k_change = (b["predicted"] == b["label"]).sum() - (a["predicted"] == a["label"]).sum()
    assert len(gained) - len(lost) == k_change


def test_the_correctness_cube_gives_the_same_flips_and_moved_images():
    predictions = _random_predictions(seed=5)
    run_ids = pd.Index(sorted(predictions["run_id"].unique()))
    cube = Cube.build(predictions, run_ids)
    some = [1, 3]          # run codes r1, r3
    from_cube = flips_per_image(*cube.rows_of(some))
    from_frame = image_flips(predictions[predictions["run_id"].isin(run_ids[some])])
    assert from_cube["flips"].sum() > 0
    pd.testing.assert_frame_equal(from_cube, from_frame)
    moved = moved_images(cube.at(2, 1), cube.at(2, 4))
    assert len(moved) > 0
    pd.testing.assert_frame_equal(moved, lost_and_gained(predictions, "r2", 1, 4))
    assert cube.at(2, 99) is None and flips_per_image(*cube.rows_of([])).empty


def test_bad_input_is_one_clear_error():
    predictions = _random_predictions()
    with pytest.raises(ValstatError, match="epoch 99"):
        lost_and_gained(predictions, "r0", 0, 99)
    with pytest.raises(ValstatError, match="predicted"):
        image_flips(predictions.drop(columns="predicted"))
    with pytest.raises(ValstatError, match="more than once"):
        image_flips(pd.concat([predictions, predictions.head(1)]))
    assert image_flips(predictions.head(0)).empty


def test_real_sweep_flips_and_stats_json(tiny_sweep):
    import json

    from conftest import valstat

    tables = load_tables(tiny_sweep)
    arms = tables.runs.set_index("run_id")["arm"]
    done = valstat("stats", tiny_sweep, "--json")
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)["unstable_images"]
    assert set(listed) == {"plain", "batchnorm"}
    for arm, images in listed.items():
        part = tables.predictions[tables.predictions["run_id"].map(arms) == arm]
        table = _check_against_loop(part)
        expected = _by_loop(part)
        unstable = [ex for ex, item in expected.items()
                    if item["lost"] + item["gained"] > 0
                    or 0 < item["final_correct"] < item["runs"]]
        assert len(images) == min(12, len(unstable))
        for item in images:
            loop = expected[item["example"]]
            assert item["file"] == f"digits[{item['example']}]"      # built-in: the index
            assert item["flips"] == loop["lost"] + loop["gained"]
            assert item["final_accuracy"] == pytest.approx(loop["final_correct"] / loop["runs"])
            assert item["class_name"] == str(item["label"])
        assert [i["example"] for i in images] == list(table["example"][:len(images)])
