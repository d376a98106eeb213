"""The store lock: one writer at a time, a dead writer's file taken over, never by two at once."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import dead_pid
from valstat import lock
from valstat.errors import ValstatError
from valstat.lock import LOCK_NAME, StoreLock

HOLD = """
import sys, time
from valstat.lock import StoreLock
held = StoreLock(sys.argv[1]); held.acquire()
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""                                   # ends without release(), as a killed writer would


def write_stale(folder, pid=None):
    (folder / LOCK_NAME).write_text(json.dumps({"pid": pid or dead_pid(),
                                                "host": socket.gethostname(),
                                                "started": "2026-01-02T03:04:05+00:00"}))


def hold_in_subprocess(folder, seconds):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), str(seconds)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    return holder


def test_a_live_writer_in_another_process_is_named_and_refused(tmp_path):
    holder = hold_in_subprocess(tmp_path, 30)
    try:
        written = json.loads((tmp_path / LOCK_NAME).read_text())
        with pytest.raises(ValstatError) as refused:
            StoreLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    assert written["pid"] == holder.pid
    assert str(refused.value) == (
        f"{tmp_path} is being written by process {holder.pid} on {socket.gethostname()} since "
        f"{written['started']}; wait for it, or pass --wait")


def test_the_lock_of_a_killed_writer_is_free_and_the_new_writer_names_itself(tmp_path):
    holder = hold_in_subprocess(tmp_path, 30)
    holder.kill()
    holder.wait()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == holder.pid   # left behind
    with StoreLock(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK_NAME).exists()


def test_wait_polls_until_the_writer_ends(tmp_path):
    holder = hold_in_subprocess(tmp_path, 1.5)
    started = time.monotonic()
    with StoreLock(tmp_path, wait=True, poll_s=0.1):
        waited = time.monotonic() - started
        assert holder.poll() is not None          # the holder had ended
    holder.wait()
    assert waited >= 1.0


def contend(folder, writers, rounds, prepare):
    """`writers` threads try the lock at one instant, `rounds` times; the most that held it at once
    and the rounds in which nobody got it."""
    barrier = threading.Barrier(writers)
    state = {"holding": 0, "most": 0, "held": 0}
    guard = threading.Lock()
    empty_rounds = []

    def writer():
        for round_ in range(rounds):
            barrier.wait()
            try:
                with StoreLock(folder):
                    with guard:
                        state["holding"] += 1
                        state["held"] += 1
                        state["most"] = max(state["most"], state["holding"])
                    time.sleep(0.002)
                    with guard:
                        state["holding"] -= 1
            except ValstatError:
                pass
            if barrier.wait() == 0:
                if state["held"] == 0:
                    empty_rounds.append(round_)
                state["held"] = 0
                prepare()
            barrier.wait()

    prepare()
    threads = [threading.Thread(target=writer) for _ in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return state["most"], empty_rounds


def test_writers_that_take_over_one_stale_file_at_once_never_hold_it_together(tmp_path):
    pid = dead_pid()
    most, empty_rounds = contend(tmp_path, writers=6, rounds=150,
                                 prepare=lambda: write_stale(tmp_path, pid))
    assert most == 1
    assert empty_rounds == []               # and a stale file never keeps everyone out


@pytest.fixture
def no_flock(monkeypatch):
    def refuse(descriptor, operation):
        raise OSError(errno.ENOLCK, "No locks available")
    monkeypatch.setattr(lock.fcntl, "flock", refuse)


def test_without_flock_the_file_is_the_lock_and_a_dead_writers_file_is_taken_over(
        tmp_path, no_flock):
    with StoreLock(tmp_path):
        with pytest.raises(ValstatError, match=f"process {os.getpid()} on"):
            StoreLock(tmp_path).acquire()
    assert not (tmp_path / LOCK_NAME).exists()
    write_stale(tmp_path)
    with StoreLock(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
