"""The command layer: help with examples, and no TensorFlow for commands that do not train."""

from __future__ import annotations

import subprocess
import sys

import pytest

from valstat.synthetic import fake_store
from valstat.store import write_tables

PROBE = """
import sys
from valstat.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
heavy = sorted(m for m in ("tensorflow", "keras") if m in sys.modules)
print("HEAVY:" + ",".join(heavy), file=sys.stderr)
sys.exit(code)
"""


def run_probe(*args):
    return subprocess.run([sys.executable, "-c", PROBE, *map(str, args)], capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("store")
    runs, epochs, predictions, meta, _ = fake_store(seeds=2, folds=1, epochs=4, seed=2)
    assert write_tables(out, runs, epochs, predictions, meta) == len(runs)
    return out


@pytest.mark.parametrize("command", [
    ["--help"], ["run", "--help"], ["stats", "STORE"], ["stats", "STORE", "--json"],
    ["export", "STORE", "--csv", "CSV"], ["run", "--seeds", "0"],
])
def test_commands_that_do_not_train_never_import_tensorflow(small_store, tmp_path, command):
    args = [str(small_store) if a == "STORE" else str(tmp_path / "csv") if a == "CSV" else a
            for a in command]
    result = run_probe(*args)
    assert "HEAVY:\n" in result.stderr or result.stderr.rstrip().endswith("HEAVY:"), result.stderr
    if command[0] != "run" or "--help" in command:
        assert result.returncode == 0, result.stderr


def test_help_shows_examples_for_every_command():
    for command in ("run", "stats", "report", "diagnose", "export"):
        result = run_probe(command, "--help")
        assert result.returncode == 0 and "example" in result.stdout, command


def test_stats_and_diagnose_speak_chinese(small_store, tmp_path):
    stats = run_probe("stats", small_store, "--lang", "zh")
    assert stats.returncode == 0 and "最终验证准确率" in stats.stdout and "final val accuracy" not in stats.stdout
    history = tmp_path / "log.csv"
    history.write_text("epoch,val_accuracy\n0,0.5\n1,0.6\n2,0.6\n")
    diagnosis = run_probe("diagnose", history, "--val-size", "10", "--lang", "zh")
    assert diagnosis.returncode == 0 and "结论：" in diagnosis.stdout and "verdict:" not in diagnosis.stdout
