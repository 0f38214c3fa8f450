"""The results-directory lock: an exclusive ``fcntl.flock`` held for a whole run, naming its holder
when another run asks.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from bench.results.errors import LockError, ResultsError
from bench.results.provenance import now_iso


class DirLock:
    """An exclusive ``fcntl.flock`` on ``<dir>/<name>.lock``, held for the whole run.

    The lock file holds the holder's pid, host and command line, so a refused run can say who
    holds it. The kernel releases a flock when its process dies, so a killed run never leaves a
    stale lock (the file itself stays; it is ignored by git).
    """

    def __init__(self, results_dir: Path, name: str = "runs") -> None:
        self.path = Path(results_dir) / f"{name}.lock"
        self._fd: int | None = None

    def acquire(self, command: str = "") -> DirLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ResultsError(f"results directory {self.path.parent} is not writable: "
                               f"{exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise ResultsError(f"cannot lock {self.path}: {exc}") from None
            holder = _read_holder(fd)
            os.close(fd)
            raise LockError(
                f"results directory {self.path.parent} is in use by another run ({holder}); "
                f"lock file {self.path}. Wait for it to finish, or pass --results-dir for a "
                "separate directory.") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                "started": now_iso()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DirLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    # The holder writes its line right after locking; give it a moment if we raced it.
    for _ in range(5):
        raw = os.pread(fd, 4096, 0).decode(errors="replace").strip()
        if raw:
            try:
                info = json.loads(raw)
                return (f"pid {info.get('pid')} on {info.get('host')}, started "
                        f"{info.get('started')}: {info.get('command')}")
            except json.JSONDecodeError:
                return raw[:200]
        time.sleep(0.05)
    return "holder unknown"
