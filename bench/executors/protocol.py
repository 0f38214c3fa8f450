"""The child protocol every executor speaks, and what a request that left no result means.

A request is a command and a spec (JSON: the saved config's path, the cell, the device, the
mode; see :mod:`bench.executors.worker`): ``run`` (train and measure the cell; its payload is
``{"row", "history", "ops", "provenance"}``, the whole measured row) or ``estimate`` (time a
few steps; ``{"estimate_s"}``). On this machine it travels to the cell's process on its stdin,
and the payload comes back on a result pipe of its own, written whole at the request's very
end (:mod:`bench.executors.channel`); a Ray actor or a submitit task hands the same
:class:`ChildOutcome` back as its return value (:func:`to_wire`, :func:`from_wire`).

Every executor makes its outcome with :func:`child_outcome`, the one reading of a payload:
one of the command's shape, or none (absent, cut short, not a reply). :func:`result_row` then
turns an outcome into the cell's row -- the child's own, or for a request without a result the
status and reason that :func:`failure_row` reads from its exit code, signal, timeout and log.
"""

from __future__ import annotations

import abc
import math
import os
import signal
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import REPO_ROOT
from bench.schema import Status, outcome

# torchrun's variables: a cell's process is not a rank (it would try to join the group).
_RANK_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK",
              "ROLE_WORLD_SIZE", "GROUP_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


# How much of a failed request's log a Ray actor or submitit task sends back (characters).
LOG_CHARS = 20000


@dataclass
class ChildOutcome:
    """How one request ended; made by :func:`child_outcome` (the payload checked there)."""

    payload: dict[str, Any] | None  # the request's result, when it gave one
    returncode: int | None  # the process's exit status when it ended (None: still alive)
    timed_out: bool
    wall_s: float  # seconds from the request to its end, process start included
    # The request's log (what its process wrote on stderr while it ran), kept when the
    # request left no result; "" otherwise.
    log: str = ""
    # Cells that ran on the same device at once while this one ran, itself included (1 =
    # alone); a packing executor (pack > 1: bench.executors.pack, ray) reports more.
    concurrency: int = 1
    # Why the request has no result when no process of it can say (the executor lost the
    # machine it ran on); empty otherwise. Takes precedence in :func:`failure_row`.
    reason: str = ""


@dataclass
class Job:
    """One request for :meth:`Executor.run_many`: what :meth:`Executor.request` takes, plus the
    caller's handle (``key``, given back with the outcome)."""

    key: Any
    command: str
    spec: dict[str, Any]
    timeout_s: float
    on_line: Callable[[str], None] | None = None


class Executor(abc.ABC):
    """Runs requests of the child protocol; one per sweep, closed at its end.

    ``workdir`` is private to the sweep (its processes' logs); ``env`` is the
    environment of every process the executor starts; ``cfg`` (a :class:`bench.config.Config`)
    carries the settings of executors that have some (``ray_address``, ``pack``, ``slurm_*``).
    """

    name: str = ""

    def __init__(self, workdir: Path, env: dict[str, str], cfg: Any = None) -> None:
        self.workdir = Path(workdir)
        self.env = env
        self.cfg = cfg

    @classmethod  # noqa: B027 - optional: most executors need nothing
    def preflight(cls, cfg: Any) -> None:
        """Refuse, before the sweep writes anything, what would fail every cell: a missing
        optional package, an unreachable cluster. Raises :class:`bench.config.ConfigError`."""

    @abc.abstractmethod
    def request(self, command: str, spec: dict[str, Any], timeout_s: float,
                on_line: Callable[[str], None] | None = None) -> ChildOutcome:
        """Run ``command`` ("run" | "estimate") on ``spec``; kill it after ``timeout_s`` s."""

    def run_many(self, jobs: Iterable[Job], on_done: Callable[[Job, ChildOutcome], None],
                 on_start: Callable[[Job], None] | None = None) -> None:
        """Run every job of ``jobs``; ``on_done(job, outcome)`` as each one ends.

        ``jobs`` is read lazily, one job when there is room for it, so a generator may record
        work of its own between jobs in plan order. ``on_start`` and ``on_done`` are called in
        this (the caller's) thread, so the caller commits each result as it arrives without
        locks. The default runs them one after the other through :meth:`request`; an executor
        with several slots (ray) overrides it and calls ``on_done`` in order of completion.
        """
        for job in jobs:
            if on_start is not None:
                on_start(job)
            on_done(job, self.request(job.command, job.spec, job.timeout_s, job.on_line))

    def prestart(self) -> None:  # noqa: B027 - optional: an executor with nothing to warm
        """Start what the first request will need now, while the sweep still has its own work
        (writing its files, planning): a worker's imports then overlap with it."""

    def close(self) -> None:  # noqa: B027 - optional: an executor that keeps nothing running
        """Stop every process this executor started (idempotent)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class BatchExecutor(Executor):
    """An executor whose unit of work is :meth:`run_many` (ray, submitit): a single request is
    a batch of one."""

    def request(self, command: str, spec: dict[str, Any], timeout_s: float,
                on_line: Callable[[str], None] | None = None) -> ChildOutcome:
        got: list[ChildOutcome] = []
        self.run_many([Job(None, command, spec, timeout_s, on_line)],
                      lambda _job, outcome: got.append(outcome))
        return got[0]

    @abc.abstractmethod
    def run_many(self, jobs: Iterable[Job], on_done: Callable[[Job, ChildOutcome], None],
                 on_start: Callable[[Job], None] | None = None) -> None:
        """As :meth:`Executor.run_many`; every request goes through it."""


def import_engine(module: str, executor: str, install_hint: str) -> Any:
    """``import module`` for an executor that runs on an optional engine (ray, submitit), or a
    :class:`~bench.config.ConfigError` (exit 2) naming the extra to install."""
    import importlib

    from bench.errors import ConfigError

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"executor {executor!r} needs {module}, which cannot be imported here "
                          f"({exc}); {install_hint}, or choose another executor: warm, process"
                          ) from None


def child_env(device: str, local_world: int) -> dict[str, str]:
    """The environment of a cell's process: ours minus torchrun's, unbuffered, repo importable."""
    env = {k: v for k, v in os.environ.items()
           if k not in _RANK_VARS and not k.startswith("TORCHELASTIC_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    if device == "cpu" and local_world > 1 and "OMP_NUM_THREADS" not in os.environ:
        # Ranks share the cores: split them rather than oversubscribe.
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // local_world))
    return env


def child_outcome(command: str, payload: Any, *, returncode: int | None, timed_out: bool,
                  wall_s: float, log: str = "", concurrency: int = 1,
                  reason: str = "") -> ChildOutcome:
    """The one reading of a request's result, whichever way it came back (a result pipe, a
    Ray actor's or a submitit task's return value): ``payload`` counts only when it has the
    shape of ``command``'s -- ``run``: an object with a ``row`` object (history and ops lists,
    provenance an object, where given); ``estimate``: ``estimate_s``, a finite number of
    seconds >= 0 -- and is None otherwise, so that the request fails the way its process
    ended (:func:`failure_row`). ``wall_s`` in seconds; ``log`` is dropped with a payload."""
    if not _well_formed(command, payload):
        payload = None
    return ChildOutcome(payload, returncode, timed_out, float(wall_s),
                        "" if payload is not None else log, concurrency=concurrency,
                        reason=reason)


def _well_formed(command: str, payload: Any) -> bool:
    if not isinstance(payload, dict):
        return False
    if command == "estimate":
        seconds = payload.get("estimate_s")
        return (isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
                and math.isfinite(seconds) and seconds >= 0)
    kinds = {"row": dict, "history": list, "ops": list, "provenance": dict}
    return isinstance(payload.get("row"), dict) and all(
        isinstance(payload[k], kind) for k, kind in kinds.items() if k in payload)


def to_wire(out: ChildOutcome) -> dict[str, Any]:
    """What a Ray actor or a submitit task returns for one request: the outcome as plain
    values, its log cut to its last :data:`LOG_CHARS` characters."""
    return {"payload": out.payload, "returncode": out.returncode, "timed_out": out.timed_out,
            "wall_s": out.wall_s, "log": out.log[-LOG_CHARS:]}


def from_wire(command: str, wire: Any, concurrency: int = 1) -> ChildOutcome:
    """The outcome a Ray actor or submitit task returned (:func:`to_wire`), read by
    :func:`child_outcome` as a local request's is."""
    wire = wire if isinstance(wire, dict) else {}
    code = wire.get("returncode")
    return child_outcome(command, wire.get("payload"),
                         returncode=code if isinstance(code, int) else None,
                         timed_out=bool(wire.get("timed_out")),
                         wall_s=float(wire.get("wall_s") or 0.0), log=str(wire.get("log") or ""),
                         concurrency=concurrency)


def result_row(out: ChildOutcome, timeout_s: float
               ) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]],
                          dict[str, Any]]:
    """A ``run`` request's (row, history, ops, provenance): the child's measured row and
    tables, or, for a request that left no result, :func:`failure_row` with its wall time
    (``wall_s``, s) and nothing else. ``timeout_s`` is the request's limit (s)."""
    if out.payload is None:
        return {**failure_row(out, timeout_s), "wall_s": out.wall_s}, [], [], {}
    p = out.payload
    return (dict(p["row"]), list(p.get("history") or []), list(p.get("ops") or []),
            dict(p.get("provenance") or {}))


def failure_row(result: ChildOutcome, timeout_s: float) -> dict[str, Any]:
    """Status and reason (:func:`bench.schema.outcome`) for a request that left no result."""
    if result.reason:
        return outcome(Status.ERROR, result.reason)
    lines = result.log.splitlines()[-20:]
    last = next((line.strip() for line in reversed(lines) if line.strip()), "")
    oom = any("out of memory" in line.lower() or "OutOfMemoryError" in line for line in lines)
    if result.timed_out:
        return outcome(Status.TIMEOUT,
                       f"killed after cell_timeout_s={timeout_s:g} s without finishing")
    code = result.returncode
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (the kernel's OOM killer sends SIGKILL)" if name == "SIGKILL" else ""
        if oom:
            return outcome(Status.OOM, f"killed by {name}; out of memory: {last[:300]}")
        return outcome(Status.ERROR, f"killed by {name} (exit {code}){hint}"
                       + (f"; last log line: {last[:300]}" if last else ""))
    ended = "a worker finished the request" if code is None else f"exit code {code}"
    if oom:
        return outcome(Status.OOM, f"{ended}; out of memory: {last[:300]}")
    return outcome(Status.ERROR, f"{ended} without a result" + (f": {last[:400]}" if last else ""))
