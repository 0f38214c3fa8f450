"""Temporary folders of cache writes whose writer is gone (``kill -9``, power loss).

A cache is written to ``<root>/cache/.tmp-<name>-pid<PID>-<random>`` and renamed into place,
so an interrupted write leaves only that folder behind, never a half cache. The folder name
records the writer's process id; the next ``data`` command removes the folders whose process
no longer runs and says so (:func:`remove_stale`).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

# .tmp-<cache name>-pid<PID>-<mkdtemp suffix>  (a write) | .old-<cache name>-<PID> (a swap)
_NAMES = (re.compile(r"^\.tmp-.+-pid(\d+)-[^-]+$"), re.compile(r"^\.old-.+-(\d+)$"))


def temp_prefix(cache_name: str) -> str:
    """The ``mkdtemp`` prefix of a cache write by this process."""
    return f".tmp-{cache_name}-pid{os.getpid()}-"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    except OverflowError:
        return False
    return True


def stale_folders(cache_root: Path) -> list[Path]:
    """Temporary folders under ``cache_root`` whose writing process no longer exists."""
    if not cache_root.is_dir():
        return []
    out = []
    for entry in sorted(cache_root.iterdir()):
        for pattern in _NAMES:
            m = pattern.match(entry.name)
            if m and entry.is_dir() and not entry.is_symlink() and not _alive(int(m.group(1))):
                out.append(entry)
                break
    return out


def remove_stale(cache_root: Path) -> str | None:
    """Remove the stale temporary folders under ``cache_root``; one line saying what went
    (count, MB, names), or None when there were none."""
    found = stale_folders(cache_root)
    if not found:
        return None
    size = 0
    for folder in found:
        size += sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        shutil.rmtree(folder, ignore_errors=True)
    names = ", ".join(f.name for f in found)
    return (f"removed {len(found)} temporary folder(s) of interrupted cache writes "
            f"({size / 1e6:.1f} MB) under {cache_root}: {names}")
