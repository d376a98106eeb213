"""One writer per store: a locked file beside the store naming the process that writes it.

The writer holds an exclusive `flock` on `valstat.lock` while it writes. The kernel (or the
network file system's lock manager) drops it when the process ends, however it ends, so a file
left by a dead writer is free to take and two processes can never both hold it. The file's
content (pid, host, start time) only names the writer in the message a second writer prints.
Where there is no `flock` (Windows, a file system mounted without locks) the lock is the file's
existence, and a file naming a process that no longer exists on this host is taken over.
"""

from __future__ import annotations

import json
import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path

from valstat.errors import ValstatError

try:
    import fcntl
except ImportError:         # Windows
    fcntl = None

LOCK_NAME = "valstat.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:     # exists, owned by someone else
        return True
    return True


def _read(path: Path) -> dict | None:
    """The lock's content, or None when the file vanished or was half written."""
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
        int(holder["pid"])
        return holder
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _read_settled(path: Path) -> dict | None:
    """_read, once more after a moment when the file was empty or half written (its writer may
    be filling it in right now)."""
    holder = _read(path)
    if holder is None:
        time.sleep(0.05)
        holder = _read(path)
    return holder


def _stale(holder: dict | None) -> bool:
    return holder is not None and holder.get("host") == socket.gethostname() \
        and not _alive(int(holder["pid"]))


def _same_file(descriptor: int, path: Path) -> bool:
    """Whether `descriptor` is still the file at `path` (a releasing writer unlinks it)."""
    try:
        return os.path.samestat(os.fstat(descriptor), os.stat(path))
    except FileNotFoundError:
        return False


class StoreLock:
    """Hold `out_dir/valstat.lock` while writing; `wait`: poll until a live holder lets go."""

    def __init__(self, out_dir: str | Path, wait: bool = False, poll_s: float = 1.0):
        self.path = Path(out_dir) / LOCK_NAME
        self.wait = wait
        self.poll_s = poll_s
        self.held = False
        self._descriptor: int | None = None
        self._flock = fcntl is not None

    def acquire(self) -> None:
        mine = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                           "started": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        while True:
            descriptor = self._take()
            if descriptor is None:
                if not self.wait:
                    holder = _read_settled(self.path) or {}
                    raise ValstatError(
                        f"{self.path.parent} is being written by process "
                        f"{holder.get('pid', '?')} on {holder.get('host', '?')} since "
                        f"{holder.get('started', '?')}; wait for it, or pass --wait")
                time.sleep(self.poll_s)
                continue
            os.ftruncate(descriptor, 0)
            os.write(descriptor, mine.encode("utf-8"))
            self.held = True
            return

    def _take(self) -> int | None:
        """An open descriptor of the lock file, now ours; None while a live writer holds it."""
        while True:
            try:
                flags = os.O_RDWR | os.O_CREAT | (0 if self._flock else os.O_EXCL)
                descriptor = os.open(self.path, flags, 0o644)
            except FileExistsError:                 # no flock: the file's existence is the lock
                holder = _read_settled(self.path)
                if holder is None or _stale(holder):
                    self.path.unlink(missing_ok=True)
                    continue
                return None
            except OSError as error:
                raise ValstatError(f"cannot create the lock {self.path}: {error.strerror}") \
                    from None
            if not self._flock:
                self._descriptor = descriptor
                return descriptor
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(descriptor)
                return None
            except OSError:                          # this file system has no flock
                os.close(descriptor)
                self._flock = False
                continue
            if _same_file(descriptor, self.path):
                self._descriptor = descriptor
                return descriptor
            os.close(descriptor)                     # we locked a file its writer just removed

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)        # unlinked while still locked: see _same_file
            os.close(self._descriptor)
            self._descriptor = None
            self.held = False

    def __enter__(self) -> "StoreLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
