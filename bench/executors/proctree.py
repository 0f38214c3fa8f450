"""Ending the processes a run started: one helper for every executor and tool.

A cell's process runs in a session of its own (``start_new_session``), so its whole group --
the cell and anything it spawned -- is signalled at once (:func:`kill_group`); a process whose
children left its group (submitit's local controllers) is ended tree by tree
(:func:`kill_tree`, Linux ``/proc``).
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
