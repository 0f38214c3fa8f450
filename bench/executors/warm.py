"""The ``warm`` executor: one long-lived worker process runs cell after cell.

The worker is ``python -m bench.executors.worker serve FD``
(:func:`bench.executors.worker.serve`): torch, the engine and the strategies are imported once,
and the data tensors of the last cell stay loaded for the next cell with the same data, so a
small cell pays for building its model and little else.

Isolation stays honest (what :mod:`bench.executors.worker` does before each cell):

- the environment, torch's thread count, deterministic and cuDNN/TF32 flags are restored to the
  worker's start-up values and then set from the cell's config; the seed is the cell's;
- Python garbage and freed heap are collected (``gc``, ``malloc_trim``), torch.compile's caches
  are reset, CUDA's cache is emptied and its peak counters reset, so ``peak_mem_mib`` is measured
  over live tensors that are the cell's own (weights, optimizer state, the cell's data);
- the kernel's resident-set high-water mark is reset (``/proc/self/clear_refs``), so
  ``peak_rss_mib`` is the peak *during this cell* (libraries and the loaded data included, as in a
  fresh process); where it cannot be reset the column is left empty rather than report the
  worker's lifetime peak;
- after any request that did not end ``ok`` -- an error, OOM, non-finite loss, a crash, a
  timeout -- the worker is replaced by a fresh one before the next cell; a hung cell is killed
  with its worker's whole process tree when ``cell_timeout_s`` runs out;
- the worker dies with the sweep (``PR_SET_PDEATHSIG``): ``kill -9`` of the sweep leaves no
  worker behind, and rows already written are never touched by the executor.

Protocol (:mod:`bench.executors.channel`): the sweep writes one request per line on the
worker's stdin (``{"id", "command", "spec"}``, the spec inline); the worker runs it and writes
its result, one line, on the result pipe the sweep gave it, which nothing else writes. Its
stdout lines (per-epoch progress) are relayed as they come; its stderr is one log, of which a
request's part is what was appended while it ran. A request whose result pipe ends without a
result line ended the worker: its exit status and log become the row, as for the ``process``
executor.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.executors.channel import CellProcess, reply_payload, request_line
from bench.executors.protocol import ChildOutcome, Executor, child_outcome
from bench.schema import Status

_START_LOG_CHARS = 20000  # a worker's start-up log kept for a request it died in (characters)


class WarmExecutor(Executor):
    """One worker at a time, started on the first request and replaced after any failure."""

    name = "warm"

    def __init__(self, workdir: Path, env: dict[str, str], cfg: Any = None) -> None:
        super().__init__(workdir, env, cfg)
        self._worker: CellProcess | None = None
        self._next_id = 0
        self.workers_started = 0  # how many workers this executor started (tests, reports)
        self._log = self.workdir / "worker.log"

    def _start(self) -> CellProcess:
        self._worker = CellProcess("serve", self.env, self._log)
        self.workers_started += 1
        return self._worker

    def prestart(self) -> None:
        if self._worker is None:
            self._start()

    def request(self, command: str, spec: dict[str, Any], timeout_s: float,
                on_line: Callable[[str], None] | None = None) -> ChildOutcome:
        t0 = time.monotonic()
        worker = self._worker if self._worker is not None and self._worker.alive() else None
        if worker is None:
            self._retire()
            worker = self._start()
        self._next_id += 1
        log_start = worker.log_size()
        # Any exception (Ctrl-C / SIGTERM of the sweep) kills the worker's tree: the cell goes
        # with its worker.
        with worker:
            worker.send(request_line(self._next_id, command, spec))
            state, line = worker.next_reply(t0 + timeout_s, on_line)
        if state == "timeout":
            self._kill()
            return child_outcome(command, None, returncode=worker.proc.returncode,
                                 timed_out=True, wall_s=time.monotonic() - t0,
                                 log=worker.read_log(log_start))
        if state == "ended":  # the worker died during the request
            worker.wait(timeout_s=30)
            self._worker = None
            log = worker.read_log(log_start)
            if not log.strip():
                # It died before the request reached its cell (start-up): its own log says why.
                log = worker.read_log()[-_START_LOG_CHARS:]
            return child_outcome(command, None, returncode=worker.proc.returncode,
                                 timed_out=False, wall_s=time.monotonic() - t0, log=log)
        payload = reply_payload(line, self._next_id)
        # Alive (returncode None): a request that ended without a result says so in its log.
        out = child_outcome(command, payload, returncode=None, timed_out=False,
                            wall_s=time.monotonic() - t0,
                            log="" if payload is not None else worker.read_log(log_start))
        if not _healthy(command, out.payload):
            self._retire()  # a failed cell may have left the process in any state
        return out

    def _kill(self) -> None:
        if self._worker is not None:
            self._worker.kill()
            self._worker = None

    def _retire(self) -> None:
        """End the idle worker and anything it started.

        Terminated, not asked to exit: between requests it holds nothing worth keeping (every
        result is already read), and a torch process takes ~1 s to exit on its own -- sweep
        wall time after every failed cell.
        """
        self._kill()

    def close(self) -> None:
        self._retire()


def _healthy(command: str, payload: dict[str, Any] | None) -> bool:
    """May the worker run another cell after this result?"""
    if payload is None:
        return False
    if command == "estimate":
        return True  # a well-formed estimate (child_outcome checked its shape)
    return payload["row"].get("status") == Status.OK
