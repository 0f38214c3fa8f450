"""Ending the processes a run started: one helper for every executor and tool.

A cell's process runs in a session of its own (``start_new_session``), so its whole group --
the cell and anything it spawned -- is signalled at once (:func:`kill_group`), and what left
the group on its way is ended after it (:func:`kill_session`); a process whose children left
its group (submitit's local controllers) is ended tree by tree (:func:`kill_tree`, Linux
``/proc``).
"""

from __future__ import annotations

import os
import signal
import subprocess


def kill_group(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """SIGTERM ``proc``'s process group, then SIGKILL if it has not exited after ``grace_s``
    seconds; returns once it is reaped (or already gone)."""
    for sig, grace in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=grace or None)
            return
        except subprocess.TimeoutExpired:
            continue


def kill_session(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """End ``proc`` and everything it started: its process group (:func:`kill_group`, SIGTERM
    then SIGKILL after ``grace_s`` seconds), then SIGKILL to any descendant that had left the
    group (a helper that called ``setsid``), listed before the group was signalled: once its
    parent is gone such a process is re-parented away and no longer found under ``proc``. Each
    is checked by its start time, so a pid reused meanwhile is never hit."""
    strays = [(p, t) for p in descendants(proc.pid) if (t := _start_time(p)) is not None]
    kill_group(proc, grace_s)
    for pid, started in strays:
        if _start_time(pid) == started:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every descendant, listed before any is killed (so none is missed
    by being re-parented mid-way)."""
    for p in [*descendants(pid), pid]:
        try:
            os.kill(p, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (Linux ``/proc``; elsewhere none: only the controller
    is killed), children before grandchildren."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop(0)
        out.append(child)
        todo += children.get(child, [])
    return out


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None when it is gone:
    with the pid it names one process, never a later one that reused the number."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else fields[19]


def start_reaper(owner_pid: int | None = None) -> subprocess.Popen | None:
    """A watchdog process that kills ``owner_pid``'s descendants once ``owner_pid`` is gone.

    For the engines a sweep starts that do not die with it: a local Ray instance's GCS,
    raylet, agents and workers outlived a ``kill -9`` of the sweep by ~100 s. The watchdog, in
    a session of its own, lists the owner's descendants every :data:`REAP_POLL_S` seconds; when
    the owner has died it SIGKILLs the last list (each process checked by its start time, so a
    reused pid is never hit). Stop it with :func:`stop_reaper` when the owner ends the engine
    itself. Linux only (``/proc``); elsewhere None.
    """
    import sys

    if not os.path.isdir("/proc"):
        return None
    owner = os.getpid() if owner_pid is None else owner_pid
    return subprocess.Popen([sys.executable, "-m", "bench.executors.proctree", str(owner)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def stop_reaper(reaper: subprocess.Popen | None) -> None:
    """End a watchdog of :func:`start_reaper` without it reaping anything."""
    if reaper is not None and reaper.poll() is None:
        reaper.kill()
        reaper.wait()


REAP_POLL_S = 0.5


def _reap(owner: int) -> int:
    """The watchdog's loop: see :func:`start_reaper`."""
    import time

    me = os.getpid()
    born = _start_time(owner)
    last: list[tuple[int, str]] = []
    while born is not None and _start_time(owner) == born:
        last = [(p, t) for p in descendants(owner) if p != me
                and (t := _start_time(p)) is not None]
        time.sleep(REAP_POLL_S)
    for pid, started in last:
        if _start_time(pid) == started:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(_reap(int(sys.argv[1])))
