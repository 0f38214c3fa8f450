"""The ``warm`` executor: one long-lived worker process runs cell after cell.

The worker is ``python -m bench.executors.worker serve TOKEN`` (:func:`bench.executors.worker.serve`): torch, the engine
and the strategies are imported once, and the data tensors of the last cell stay loaded for the
next cell with the same data, so a small cell pays for building its model and little else.

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
  with its worker's whole process group when ``cell_timeout_s`` runs out;
- the worker dies with the sweep (``PR_SET_PDEATHSIG``): ``kill -9`` of the sweep leaves no
  worker behind, and rows already written are never touched by the executor.

Protocol: the sweep writes one JSON request per line on the worker's stdin
(``{"id", "command", "spec", "result", "stderr"}``); the worker points its stderr (fd 2) at the
request's log, runs it, writes the result file atomically, and prints ``TOKEN done ID`` on
stdout. Every other stdout line (per-epoch progress) is relayed. A request that ends without that
line ended the worker: its exit status and log become the row, as for the ``process`` executor.
"""

from __future__ import annotations

import json
import queue
import secrets
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.executors.proctree import kill_group
from bench.executors.protocol import (
    ChildOutcome,
    Executor,
    cell_command,
    pump_lines,
    read_result,
)
from bench.schema import Status


class WarmExecutor(Executor):
    """One worker at a time, started on the first request and replaced after any failure."""

    name = "warm"

    def __init__(self, workdir: Path, env: dict[str, str], cfg: Any = None) -> None:
        super().__init__(workdir, env, cfg)
        self._proc: subprocess.Popen | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._token = secrets.token_hex(8)  # a done line no cell can print by accident
        self._next_id = 0
        self.workers_started = 0  # how many workers this executor started (tests, reports)
        self._log = self.workdir / "worker.log"

    def _start(self) -> subprocess.Popen:
        with open(self._log, "a") as log:
            proc = subprocess.Popen(
                cell_command("serve", self._token), stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=log, text=True, errors="replace", env=self.env,
                start_new_session=True, bufsize=1)
        self._lines = queue.Queue()
        assert proc.stdout is not None
        pump_lines(proc.stdout, self._lines)
        self._proc = proc
        self.workers_started += 1
        return proc

    def prestart(self) -> None:
        if self._proc is None:
            self._start()

    def request(self, command: str, spec: dict[str, Any], timeout_s: float,
                on_line: Callable[[str], None] | None = None) -> ChildOutcome:
        t0 = time.monotonic()
        proc = self._proc if self._proc is not None and self._proc.poll() is None else None
        if proc is None:
            self._retire()
            proc = self._start()
        self._next_id += 1
        spec_path, result_path = self.workdir / "spec.json", self.workdir / "result.json"
        stderr_path = self.workdir / "stderr.log"
        spec_path.write_text(json.dumps(spec))
        result_path.unlink(missing_ok=True)
        stderr_path.write_text("")
        done_line = f"{self._token} done {self._next_id}"
        message = {"id": self._next_id, "command": command, "spec": str(spec_path),
                   "result": str(result_path), "stderr": str(stderr_path)}
        state = "eof"
        try:
            try:
                assert proc.stdin is not None
                proc.stdin.write(json.dumps(message) + "\n")
                proc.stdin.flush()
            except (BrokenPipeError, OSError):
                pass  # the worker is gone: its end of stdout says so below
            deadline = t0 + timeout_s
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    state = "timeout"
                    break
                try:
                    line = self._lines.get(timeout=min(remaining, 1.0))
                except queue.Empty:
                    continue
                if line is None:
                    break
                if line == done_line:
                    state = "done"
                    break
                if on_line is not None:
                    on_line(line)
        except BaseException:  # Ctrl-C / SIGTERM of the sweep: the cell goes with its worker
            self._kill()
            raise
        if state == "timeout":
            self._kill()
            return ChildOutcome(None, proc.returncode, True, time.monotonic() - t0, stderr_path)
        if state == "eof":  # the worker died during the request
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                kill_group(proc)
            self._proc = None
            if not stderr_path.read_text(errors="replace").strip():
                # It died before pointing its stderr at the request's log (start-up).
                stderr_path.write_text(self._log.read_text(errors="replace")[-20000:])
            return ChildOutcome(None, proc.returncode, False, time.monotonic() - t0, stderr_path)
        payload = read_result(result_path)
        if not _healthy(command, payload):
            self._retire()  # a failed cell may have left the process in any state
        # Alive (returncode None): a request that ended without a result says so in its log.
        return ChildOutcome(payload, None, False, time.monotonic() - t0, stderr_path)

    def _kill(self) -> None:
        if self._proc is not None:
            kill_group(self._proc)
            self._proc = None

    def _retire(self) -> None:
        """End the idle worker and anything it started.

        Terminated, not asked to exit: between requests it holds nothing worth keeping (every
        result is already read), and a torch process takes ~1 s to exit on its own -- sweep
        wall time after every failed cell.
        """
        proc, self._proc = self._proc, None
        if proc is None:
            return
        kill_group(proc)
        if proc.stdin is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass

    def close(self) -> None:
        self._retire()


def _healthy(command: str, payload: dict[str, Any] | None) -> bool:
    """May the worker run another cell after this result?"""
    if payload is None:
        return False
    if command == "estimate":
        return "estimate_s" in payload
    return (payload.get("row") or {}).get("status") == Status.OK
