"""One writer per store: a lock file beside the store naming the process that writes it.

The file holds the writer's pid, host and start time. A second writer refuses in one line (or
waits); a lock left by a process that no longer exists on this host is taken over.
"""

from __future__ import annotations

import json
import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path

from valstat.errors import ValstatError

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


def _stale(holder: dict | None) -> bool:
    return holder is not None and holder.get("host") == socket.gethostname() \
        and not _alive(int(holder["pid"]))


class StoreLock:
    """Hold `out_dir/valstat.lock` while writing; `wait`: poll until a live holder lets go."""

    def __init__(self, out_dir: str | Path, wait: bool = False, poll_s: float = 1.0):
        self.path = Path(out_dir) / LOCK_NAME
        self.wait = wait
        self.poll_s = poll_s
        self.held = False

    def acquire(self) -> None:
        mine = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                           "started": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        while True:
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _read(self.path)
                if holder is None or _stale(holder):
                    if holder is None:
                        time.sleep(0.05)          # a writer may be filling it in right now
                        holder = _read(self.path)
                    if holder is None or _stale(holder):
                        self.path.unlink(missing_ok=True)
                        continue
                if not self.wait:
                    raise ValstatError(
                        f"{self.path.parent} is being written by process {holder['pid']} on "
                        f"{holder.get('host', '?')} since {holder.get('started', '?')}; "
                        "wait for it, or pass --wait") from None
                time.sleep(self.poll_s)
                continue
            except OSError as error:
                raise ValstatError(f"cannot create the lock {self.path}: {error.strerror}") from None
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(mine)
            self.held = True
            return

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "StoreLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
