"""bench.executors.proctree: ending process groups and trees, and the watchdog that ends an
engine's processes (a local Ray instance's) once the sweep that started them is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from bench.executors import proctree

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs Linux /proc")

# An owner that starts a detached-looking grandchild (like Ray's raylet: not in the owner's
# process group, so killing the owner's group does not reach it), prints both pids, then
# waits to be killed.
OWNER = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                         start_new_session=True)
from bench.executors.proctree import start_reaper
reaper = start_reaper()
time.sleep(1.5)  # at least two polls of the watchdog
print(child.pid, reaper.pid, flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    return proctree._start_time(pid) is not None


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


def _start_owner() -> tuple[subprocess.Popen, int, int]:
    owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(proctree.__file__).rsplit(
                                 "/bench/", 1)[0]})
    child, reaper = (int(x) for x in owner.stdout.readline().split())
    return owner, child, reaper


def test_a_killed_owner_takes_its_detached_descendants_along() -> None:
    owner, child, reaper = _start_owner()
    try:
        assert _alive(child)
        owner.kill()  # kill -9: the owner runs no clean-up of its own
        owner.wait()
        assert _wait_gone(child, 10), "the detached grandchild outlived its killed owner"
        assert _wait_gone(reaper, 10), "the watchdog did not exit after reaping"
    finally:
        for pid in (child, reaper):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_stopped_reaper_reaps_nothing() -> None:
    owner, child, reaper = _start_owner()
    try:
        os.kill(reaper, signal.SIGKILL)  # what stop_reaper does, from outside the owner
        assert _wait_gone(reaper, 10)
        owner.kill()
        owner.wait()
        time.sleep(2 * proctree.REAP_POLL_S)
        assert _alive(child)  # the owner ended the engine itself: nothing is the watchdog's
    finally:
        for pid in (child, reaper):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_kill_group_ends_a_process_that_ignores_sigterm() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import signal, time; "
                             "signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); "
                             "time.sleep(60)"], stdout=subprocess.PIPE, start_new_session=True)
    proc.stdout.readline()
    proctree.kill_group(proc, grace_s=0.5)
    assert proc.returncode == -signal.SIGKILL


# A cell-like process (its own session) that starts a helper in a session of its own, prints
# the helper's pid, then waits to be killed.
LEAVER = """
import subprocess, sys, time
helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                          start_new_session=True)
print(helper.pid, flush=True)
time.sleep(120)
"""


def test_kill_session_also_ends_a_descendant_that_left_the_group() -> None:
    proc = subprocess.Popen([sys.executable, "-c", LEAVER], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    helper = int(proc.stdout.readline())
    try:
        assert _alive(helper) and os.getpgid(helper) != proc.pid  # out of the group's reach
        proctree.kill_session(proc, grace_s=0.5)
        assert proc.returncode == -signal.SIGTERM
        assert _wait_gone(helper, 10), "the helper outlived its killed parent"
    finally:
        if _alive(helper):
            os.kill(helper, signal.SIGKILL)
