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


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_a_reader_that_stops_early_gets_no_traceback(tmp_path, json_flag):
    """`valstat diagnose ... | head -1`: the reader closes the pipe before valstat has written."""
    history = tmp_path / "history.json"
    history.write_text('{"loss": [1.0, 0.8, 0.7], "accuracy": [0.5, 0.6, 0.7],'
                       ' "val_loss": [1.1, 0.9, 0.8], "val_accuracy": [0.5, 0.6, 0.6]}')
    process = subprocess.Popen([sys.executable, "-m", "valstat", "diagnose", str(history), "--val-size",
                                "30", *json_flag], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()
    error = process.stderr.read().decode()
    process.wait(timeout=120)
    assert "Traceback" not in error and "Error" not in error, error
    assert process.returncode in (0, 141)
