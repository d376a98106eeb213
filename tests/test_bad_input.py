"""Bad input, interruptions and hostile names: one clear line, non-zero exit, nothing lost."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import TINY, count_rows, valstat, write_image_folder
from valstat.store import load_tables, store_path


def assert_one_line_error(result, *fragments):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("valstat: error:")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_data(tmp_path, case):
    root = tmp_path / "data"
    if case == "missing":
        return root
    if case == "file":
        root.write_text("not a folder")
        return root
    root.mkdir()
    if case == "empty":
        return root
    if case == "one_class":
        write_image_folder(root, classes=("only",), per_class=6)
    elif case == "class_without_images":
        write_image_folder(root, classes=("a", "b"), per_class=6)
        (root / "c").mkdir()
        (root / "c" / "notes.txt").write_text("no images here")
    elif case == "all_corrupt_in_a_class":
        write_image_folder(root, classes=("a", "b"), per_class=6)
        for path in (root / "b").iterdir():
            path.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return root


@pytest.mark.parametrize("case, fragment", [
    ("missing", "no such folder"),
    ("file", "not a folder"),
    ("empty", "no class subfolders"),
    ("one_class", "only one class"),
    ("class_without_images", "'c' holds no images"),
    ("all_corrupt_in_a_class", "class 'b' has 0 readable image"),
])
def test_bad_data_folders_are_refused(tmp_path, case, fragment):
    data = make_data(tmp_path, case)
    result = valstat("run", TINY, "--data", data, "--out", tmp_path / "out", "--quiet")
    assert_one_line_error(result, fragment)


@pytest.mark.parametrize("args, fragment", [
    (["--seeds", "0"], "--seeds: must be at least 1"),
    (["--seeds", "-3"], "--seeds: must be at least 1"),
    (["--seeds", "abc"], "--seeds: expected a whole number"),
    (["--epochs", "0"], "--epochs: must be at least 1"),
    (["--folds", "40"], "40 folds are more than the smallest class allows"),
    (["--val-size", "5000"], "val_size 5000 + truth_size 100 = 5220 is too many"),
    (["--val-size", "4"], "smaller than the number of classes (10)"),
    (["--holdout", "2"], "--holdout: must be in [0, 0.9)"),
    (["no_such_experiment"], "experiment file no_such_experiment not found"),
    (["--scheduler", "notanaddress"], "'notanaddress' is not a Dask scheduler address"),
    (["--scheduler", "http://localhost:abc"], "unknown scheme 'http'"),
])
def test_bad_options_are_refused(tmp_path, args, fragment):
    experiment = [] if args[0] == "no_such_experiment" else [TINY]
    result = valstat("run", *experiment, *args, "--out", tmp_path / "out", "--quiet")
    assert_one_line_error(result, fragment)
    assert not store_path(tmp_path / "out").exists()


@pytest.mark.parametrize("text, fragments", [
    ('[training]\nepochz = 3\n', ["unknown key 'epochz'", "[training]", "bad.toml"]),
    ('[training]\nepochs = "three"\n', ["[training] epochs", "bad.toml", "whole number"]),
    ('[schedule]\nmonitor = "val_auc"\n', ["monitor", "val_accuracy, val_loss"]),
    ('colour = "red"\n', ["unknown key 'colour'", "bad.toml"]),
    ('[arms.a]\ntraining = { learning_rat = 1 }\n', ["unknown key 'learning_rat'", "arms.a"]),
    ('[training\n', ["not valid TOML"]),
])
def test_bad_experiment_files_name_the_key_and_file(tmp_path, text, fragments):
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    result = valstat("run", bad, "--out", tmp_path / "out", "--quiet")
    assert_one_line_error(result, *fragments)


@pytest.mark.parametrize("text, fragment", [
    ('[training]\nepochs = -3\n', "[training] epochs of arm 'main' in bad.toml must be at least 1, got -3"),
    ('[sweep]\nseeds = 0\n', "[sweep] seeds in bad.toml must be at least 1"),
    ('[data]\nval_size = 1\n', "[data] val_size of arm 'main' in bad.toml must be at least 2"),
    ('', "bad.toml is empty: it sets nothing to run"),
])
def test_bad_values_in_a_file_name_its_key_not_a_flag(tmp_path, text, fragment):
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    result = valstat("run", "bad.toml", "--out", tmp_path / "out", "--dry-run", cwd=tmp_path)
    assert_one_line_error(result, fragment)
    assert "--" not in result.stderr.split(fragment)[0]   # no flag the user never typed


def test_a_shipped_name_means_the_shipped_experiment_whatever_the_folder_holds(tmp_path):
    (tmp_path / "default").mkdir()              # e.g. left by `valstat run --out default`
    (tmp_path / "augment").write_text("")
    shipped = valstat("run", "augment", "--dry-run", "--seeds", "1", "--out", tmp_path / "o", cwd=tmp_path)
    assert shipped.returncode == 0 and "# from augment.toml (shipped)" in shipped.stdout
    assert "[arms.tutorial.augment]" in shipped.stdout
    bare = valstat("run", "--dry-run", "--seeds", "1", "--out", tmp_path / "o", cwd=tmp_path)
    assert bare.returncode == 0 and "# from default.toml (shipped)" in bare.stdout
    assert_one_line_error(valstat("run", "./default", "--dry-run", cwd=tmp_path), "is a folder, not an experiment TOML file")
    assert_one_line_error(valstat("run", "./augment", "--dry-run", cwd=tmp_path), "augment is empty")


def test_awkward_images_are_converted_and_corrupt_ones_skipped_with_one_warning(tmp_path):
    from PIL import Image

    root = write_image_folder(tmp_path / "data", classes=("a", "b"), per_class=12)
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (40, 17), dtype=np.uint8), "L").save(root / "a" / "gray.png")
    Image.fromarray(rng.integers(0, 255, (9, 31, 4), dtype=np.uint8), "RGBA").save(root / "a" / "rgba.png")
    Image.fromarray(rng.integers(0, 65535, (20, 20), dtype=np.uint16)).save(root / "b" / "deep.png")
    Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(root / "b" / "pic.gif")
    (root / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (root / "b" / "fake.png").write_text("hello")
    os.symlink(root / "b", root / "b" / "loop")           # a symlink loop inside a class
    (root / "中文类").mkdir()
    for index in range(6):
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(
            root / "中文类" / f"图片{index}.bmp")

    from valstat.data import load_dataset

    with pytest.warns(UserWarning, match="skipped 2 unreadable image.*broken.jpg.*fake.png"):
        dataset = load_dataset(str(root), 16)
    assert dataset.class_names == ["a", "b", "中文类"]
    assert dataset.images.shape == (12 + 2 + 12 + 2 + 6, 16, 16, 3)
    assert dataset.images.dtype == np.uint8
    deep = dataset.names.index("b/deep.png")
    assert dataset.images[deep].std() > 10        # 16-bit values scaled, not clipped to white

    result = valstat("run", TINY, "--data", root, "--seeds", "1", "--epochs", "1",
                     "--val-size", "6", "--out", tmp_path / "out", "--quiet", "--workers", "1")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "broken.jpg" in warnings[0] and "Traceback" not in result.stderr


def test_store_of_another_experiment_is_refused_and_left_unchanged(tiny_sweep, tmp_path):
    before = sha(store_path(tiny_sweep))
    result = valstat("run", TINY, "--epochs", "5", "--out", tiny_sweep, "--quiet")
    assert_one_line_error(result, "different experiment config")
    assert sha(store_path(tiny_sweep)) == before


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "overwritten"])
def test_damaged_store_is_refused_and_left_byte_for_byte(tiny_sweep, tmp_path, damage):
    # "overwritten": pages in the middle replaced, header intact; SQLite opens it and only a
    # checked quick_check finds the damage, so `run` must not write new runs into it
    out = tmp_path / "damaged"
    out.mkdir()
    original = store_path(tiny_sweep).read_bytes()
    middle = len(original) // 2
    damaged = {"truncate": original[: len(original) // 3], "garbage": b"x" * 5000,
               "empty": b"", "overwritten": original[:middle] + b"GARBAGE!" * 1024
               + original[middle + 8192:]}[damage]
    store_path(out).write_bytes(damaged)
    before = sha(store_path(out))
    for command in (["run", TINY, "--out", out, "--quiet"], ["stats", out], ["report", out],
                    ["export", out, "--csv", tmp_path / "csv"]):
        result = valstat(*command)
        assert_one_line_error(result, str(store_path(out)))
        assert sha(store_path(out)) == before


def test_sqlite_file_with_other_columns_is_not_a_store(tmp_path):
    out = tmp_path / "other"
    out.mkdir()
    connection = sqlite3.connect(store_path(out))
    connection.executescript("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT); CREATE TABLE runs(run_id TEXT);"
                             "CREATE TABLE epochs(run_id TEXT); CREATE TABLE predictions(run_id TEXT);")
    connection.close()
    before = sha(store_path(out))
    for command in (["stats", out], ["report", out], ["run", TINY, "--out", out, "--dry-run"]):
        result = valstat(*command)
        assert_one_line_error(result, "not a valstat store (table runs has no column arm, fold, seed)")
        assert sha(store_path(out)) == before


@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0,
                    reason="needs root and unshare for a read-only bind mount")
def test_store_in_a_read_only_folder_is_read_not_called_damaged(tiny_sweep, tmp_path):
    # copied as the one file, without the -shm file SQLite's WAL mode needs beside it
    folder = tmp_path / "archive"
    folder.mkdir()
    shutil.copy(store_path(tiny_sweep), store_path(folder))
    script = (f"mount --bind {folder} {folder} && mount -o remount,ro,bind {folder} && "
              f"exec {sys.executable} -m valstat stats {folder}")
    result = subprocess.run(["unshare", "-m", "bash", "-c", script], capture_output=True, text=True)
    if "mount:" in result.stderr:
        pytest.skip(f"no read-only bind mount here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    assert "final val accuracy" in result.stdout and "damaged" not in result.stderr


def test_unwritable_output_folder_is_refused(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    result = valstat("run", TINY, "--out", blocker / "out", "--quiet")
    assert_one_line_error(result, "cannot create output folder")


def test_diverging_run_is_kept_and_the_sweep_continues(tmp_path):
    exploding = tmp_path / "explode.toml"
    exploding.write_text(TINY.read_text() + '\n[arms.explodes]\ntraining = { optimizer = "sgd", '
                         'learning_rate = 1e12 }\n')
    out = tmp_path / "out"
    result = valstat("run", exploding, "--seeds", "1", "--epochs", "3", "--out", out, "--quiet",
                     "--workers", "1")
    assert result.returncode == 0, result.stderr
    runs = load_tables(out).runs.set_index("arm")
    assert runs.loc["explodes", "status"] == "diverged"
    assert runs.loc["explodes", "epochs_run"] >= 1
    assert (runs.drop(index="explodes").status == "finished").all()
    assert "1 diverged" in result.stdout


def _start_sweep(out, seeds):
    # SIG_DFL first: a suite started in the background (`cmd &`) inherits an ignored SIGINT,
    # and Python then never installs its Ctrl-C handler in the child
    return subprocess.Popen(
        [sys.executable, "-m", "valstat.cli", "run", str(TINY), "--seeds", str(seeds),
         "--epochs", "3", "--out", str(out), "--quiet", "--workers", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for_runs(out, count, process, limit=300):
    deadline = time.time() + limit
    while time.time() < deadline:
        assert process.poll() is None, process.communicate()
        if count_rows(out) >= count:
            return
        time.sleep(0.5)
    raise AssertionError("sweep did not store a run in time")


def _assert_complete_without_duplicates(out, runs):
    assert count_rows(out, "runs") == runs
    assert count_rows(out, "epochs") == runs * 3
    assert count_rows(out, "predictions") == runs * 90


def test_ctrl_c_stops_cleanly_keeps_runs_and_says_how_to_resume(tmp_path):
    out = tmp_path / "out"
    # enough runs that the sweep is still going when Ctrl-C comes: with one compiled model per
    # arm and worker a tiny run takes well under a second
    process = _start_sweep(out, seeds=40)
    _wait_for_runs(out, 1, process)
    os.killpg(process.pid, signal.SIGINT)            # what Ctrl-C sends to the terminal's group
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "Traceback" not in stderr
    assert "Run the same command again to resume" in stderr
    kept = len(load_tables(out).runs)
    assert 1 <= kept < 80


def test_sigterm_stops_like_ctrl_c_and_says_how_to_resume(tmp_path):
    out = tmp_path / "out"
    process = _start_sweep(out, seeds=40)
    _wait_for_runs(out, 1, process)
    process.terminate()                              # SIGTERM to the driver, as `timeout` sends
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 143
    assert "Traceback" not in stderr and "leaked semaphore" not in stderr
    assert "Run the same command again to resume" in stderr
    assert 1 <= len(load_tables(out).runs) < 80


def test_kill_9_of_the_driver_then_rerun_resumes_without_duplicates(tmp_path):
    out = tmp_path / "out"
    process = _start_sweep(out, seeds=15)          # still running when the kill comes
    _wait_for_runs(out, 1, process)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    kept = len(load_tables(out).runs)
    assert 1 <= kept < 30
    again = valstat("run", TINY, "--seeds", "15", "--epochs", "3", "--out", out, "--quiet",
                    "--workers", "1")
    assert again.returncode == 0, again.stderr
    assert f"{kept} already stored" in again.stdout
    _assert_complete_without_duplicates(out, 30)


def test_a_default_validation_size_too_large_for_the_folder_says_which_flag_sets_it(tmp_path):
    data = write_image_folder(tmp_path / "few", classes=("a", "b"), per_class=6)
    result = valstat("run", TINY, "--data", data, "--out", tmp_path / "out", "--dry-run")
    assert_one_line_error(result, "validation size", "is too large: only 12 images are available",
                          "choose at most 10 with --val-size")


def test_a_data_folder_that_changed_is_not_mixed_into_its_store(tmp_path):
    from PIL import Image

    data = write_image_folder(tmp_path / "photos", classes=("a", "b"), per_class=12)
    out = tmp_path / "out"
    common = ("--data", data, "--epochs", "1", "--val-size", "6", "--out", out, "--quiet", "--workers", "1")
    assert valstat("run", TINY, "--seeds", "1", *common).returncode == 0
    before = sha(store_path(out))
    write_image_folder(tmp_path / "more", classes=("a",), per_class=3, seed=5)
    for extra in sorted((tmp_path / "more" / "a").iterdir()):
        shutil.copy(extra, data / "a" / f"extra_{extra.name}")
    for command in (("run", TINY, "--seeds", "2", *common), ("run", TINY, "--seeds", "2", *common, "--dry-run")):
        result = valstat(*command)
        assert_one_line_error(result, "holds runs trained on other images")
        assert "27 images (3 added, 0 removed) where the store's runs used 24" in result.stderr
    assert sha(store_path(out)) == before
    # the same names with other pixels are refused too; the original folder is taken again
    for extra in (data / "a").glob("extra_*"):
        extra.unlink()
    first = sorted((data / "b").iterdir())[0]
    with Image.open(first) as image:
        Image.fromarray(255 - np.asarray(image)).save(first)
    assert_one_line_error(valstat("run", TINY, "--seeds", "2", *common), "other pixels")
