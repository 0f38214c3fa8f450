"""The ``process`` executor: a fresh ``python -m bench.executors.worker`` process per request.

The most isolated way to run a cell, and the slowest for small ones: every cell pays a Python
start, the torch import and the data load (~2-4 s on a 2-core CPU) before its own work. The
child gets its own session, so a timeout kills it and anything it started; it asks the kernel
to be killed when the sweep dies (``PR_SET_PDEATHSIG``, see :mod:`bench.executors.worker`).
"""

from __future__ import annotations

import json
import queue
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


class ProcessExecutor(Executor):
    """One process per request; nothing survives from one cell to the next."""

    name = "process"

    def request(self, command: str, spec: dict[str, Any], timeout_s: float,
                on_line: Callable[[str], None] | None = None) -> ChildOutcome:
        return run_child(command, spec, self.workdir, timeout_s, self.env, on_line)


def run_child(command: str, spec: dict[str, Any], workdir: Path, timeout_s: float,
              env: dict[str, str], on_line: Callable[[str], None] | None = None) -> ChildOutcome:
    """Run ``python -m bench.executors.worker <command>`` and wait for it, relaying its stdout lines."""
    spec_path, result_path = workdir / "spec.json", workdir / "result.json"
    stderr_path = workdir / "stderr.log"
    spec_path.write_text(json.dumps(spec))
    result_path.unlink(missing_ok=True)
    t0 = time.monotonic()
    with open(stderr_path, "w") as err:
        proc = subprocess.Popen(
            cell_command(command, str(spec_path), str(result_path)),
            stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, text=True,
            errors="replace", env=env, start_new_session=True, bufsize=1)
        lines: queue.Queue[str | None] = queue.Queue()
        assert proc.stdout is not None
        reader = pump_lines(proc.stdout, lines)
        timed_out = False
        try:
            deadline = t0 + timeout_s
            eof = False
            while not eof:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    timed_out = True
                    break
                try:
                    line = lines.get(timeout=min(remaining, 1.0))
                except queue.Empty:
                    continue
                if line is None:
                    eof = True
                elif on_line is not None:
                    on_line(line)
            if timed_out:
                kill_group(proc)
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()) if not timed_out else 30)
            except subprocess.TimeoutExpired:
                timed_out = True  # closed stdout but kept running past the deadline
                kill_group(proc)
                proc.wait()
        except BaseException:
            kill_group(proc)
            proc.wait()
            raise
        reader.join(timeout=5)
    payload = None if timed_out else read_result(result_path)
    return ChildOutcome(payload, proc.returncode, timed_out, time.monotonic() - t0, stderr_path)
