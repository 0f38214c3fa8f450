"""The ``process`` executor: a fresh ``python -m bench.executors.worker once`` process per request.

The most isolated way to run a cell, and the slowest for small ones: every cell pays a Python
start, the torch import and the data load (~2-4 s on a 2-core CPU) before its own work. The
child gets its own session, so a timeout kills it and anything it started; it asks the kernel
to be killed when the sweep dies (``PR_SET_PDEATHSIG``, see :mod:`bench.executors.worker`).

Its streams (:mod:`bench.executors.channel`): the request on stdin, which is then closed; the
result, one JSON document, on a pipe of its own, written at the very end; per-epoch lines on
stdout, relayed; stderr to ``stderr.log`` in the executor's directory, the request's log.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.executors.channel import CellProcess, reply_payload, request_line
from bench.executors.protocol import ChildOutcome, Executor, child_outcome


class ProcessExecutor(Executor):
    """One process per request; nothing survives from one cell to the next."""

    name = "process"

    def request(self, command: str, spec: dict[str, Any], timeout_s: float,
                on_line: Callable[[str], None] | None = None) -> ChildOutcome:
        return run_child(command, spec, self.workdir, timeout_s, self.env, on_line)


def run_child(command: str, spec: dict[str, Any], workdir: Path, timeout_s: float,
              env: dict[str, str], on_line: Callable[[str], None] | None = None) -> ChildOutcome:
    """Run one request in ``python -m bench.executors.worker once`` and wait for it (at most
    ``timeout_s`` seconds), relaying its stdout lines to ``on_line``.

    Its result counts only once the process has exited in time: one that wrote its result
    and then hung past the deadline timed out, as one that never wrote it.
    """
    t0 = time.monotonic()
    deadline = t0 + timeout_s
    # Any exception (Ctrl-C / SIGTERM of the sweep) kills the child's tree with it.
    with CellProcess("once", env, Path(workdir) / "stderr.log") as child:
        child.send(request_line(1, command, spec))
        child.close_stdin()
        state, line = child.next_reply(deadline, on_line)
        timed_out = state == "timeout" or not child.finish(deadline, on_line)
        child.kill()  # timed out: the process and its tree; else only the pipes are closed
    payload = None if timed_out else reply_payload(line, 1)
    return child_outcome(command, payload, returncode=child.proc.returncode,
                         timed_out=timed_out, wall_s=time.monotonic() - t0,
                         log="" if payload is not None else child.read_log())
