"""Packing: N cells at once on one device, each in a worker process of its own (``pack = N``).

::

    python -m bench run --profile smoke --set pack=2        # two warm workers share the device
    python -m bench run --profile gpu --set pack=auto       # N from the cells' measured memory

A 28-64 px cell uses a sliver of a large GPU, and much of what a cell costs outside its epochs
is host work (imports, model build, evaluation); N cells at once overlap what a sequential
sweep pays N times. :class:`PackedExecutor` holds N *slots*, each a ``warm`` (or ``process``)
executor of its own with its own directory, so every isolation rule of that executor holds per
slot (reset before each cell, a fresh worker after any cell that did not end ``ok``). The sweep
hands the next cell of the plan to the first free slot; results come back to the sweep's
thread, which writes every row (one writer: ``runs.csv`` under the sweep's lock, nothing
interleaves), in order of completion.

**Sharing the device.** CUDA: the N workers are N processes on one GPU, time-sliced by the
driver, or clients of MPS when an MPS control daemon runs (``nvidia-cuda-mps-control -d``;
not started here: it is the machine's, and needs its owner). CPU: each worker gets cores/N
torch threads (``OMP_NUM_THREADS``, which a worker's ``num_threads = 0`` resolves to, as for
torchrun's local ranks); a profile's own ``num_threads`` is kept. The row's ``threads`` says
what the cell ran with.

**Timing.** A packed cell shares the SMs (the cores), the memory bandwidth and the host: its
throughput is not a solo cell's. Each row records ``concurrency``, the most cells that ran on
the device at once while it ran (1 = alone, as the ray executor records it), and the report
never averages or ranks a packed figure against solo ones ("packed xN"); the cost model's
re-fit (:mod:`bench.tools.calibrate`) leaves packed rows out. Accuracy, loss curve and epochs
are the cell's own: under ``deterministic = true`` a packed cell's accuracy equals the solo
one's bit for bit at the same thread count (``tests/test_executors_pack.py``).

**Failures.** A slot whose cell crashes, is killed or times out is that slot's affair (its
executor replaces its worker); the other slots' cells run on, and their rows are written as
they finish. Ctrl-C / SIGTERM of the sweep kills every slot's worker.

**Threads.** Each slot has one long-lived thread that calls its executor, so the workers it
starts keep their parent thread: a worker asks the kernel for SIGKILL when the thread that
started it ends (``PR_SET_PDEATHSIG`` is per thread), which a thread per cell would trigger
after every cell.
"""

from __future__ import annotations

import dataclasses
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from bench.executors.protocol import ChildOutcome, Executor, Job

# pack = "auto" on CUDA: what a worker holds beyond its tensors' peak (the CUDA context,
# cuDNN/cuBLAS workspaces: ~0.5-1 GiB on recent GPUs), the allocator's slack over the peak,
# the share of the device's free memory that is packed at most, and the most workers.
CONTEXT_MIB = 1024.0
SLACK = 1.25
USABLE = 0.9
MAX_AUTO = 8


@dataclasses.dataclass
class _Running:
    job: Job
    started: float  # time.monotonic() s
    peak: int = 1  # most cells on the device at once while it ran


class _Slot:
    """One executor and the thread that calls it; jobs arrive on ``inbox``, events leave on
    the shared ``events`` queue: ``("line", i, text)`` while the job runs, then ``("done", i,
    outcome)`` (or ``("raised", i, exception)`` when the executor itself failed)."""

    def __init__(self, index: int, executor: Executor, events: queue.Queue) -> None:
        self.index = index
        self.executor = executor
        self.inbox: queue.Queue[Job | None] = queue.Queue()
        self.events = events
        self.thread = threading.Thread(target=self._serve, name=f"pack-slot-{index}",
                                       daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            job = self.inbox.get()
            if job is None:
                return
            emit = (lambda line: self.events.put(("line", self.index, line))) \
                if job.on_line is not None else None
            try:
                outcome = self.executor.request(job.command, job.spec, job.timeout_s, emit)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the sweep's thread
                self.events.put(("raised", self.index, exc))
                continue
            self.events.put(("done", self.index, outcome))

    def stop(self) -> None:
        self.inbox.put(None)


class PackedExecutor(Executor):
    """``slots`` executors of class ``inner`` on one device, the next cell to the first free.

    ``env`` is every worker's environment before the slot's own threads (:func:`slot_env`);
    ``device`` the sweep's (``cpu`` splits the cores). Named as ``inner`` is (``warm``,
    ``process``): the ``executor`` column says how a cell got its process, ``concurrency``
    that it shared the device.
    """

    def __init__(self, inner: type[Executor], slots: int, workdir: Path, env: dict[str, str],
                 cfg: Any = None, device: str = "cpu") -> None:
        super().__init__(workdir, env, cfg)
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        self.name = inner.name
        self.inner = inner
        self.slots = slots
        self.device = device
        self._events: queue.Queue[tuple[str, int, Any]] = queue.Queue()
        self._slots: list[_Slot] = []
        self.slot_env = slot_env(env, device, cfg, slots)

    def _ensure(self) -> list[_Slot]:
        if not self._slots:
            for i in range(self.slots):
                sub = self.workdir / f"slot{i}"
                sub.mkdir(parents=True, exist_ok=True)
                self._slots.append(_Slot(i, self.inner(sub, self.slot_env, self.cfg),
                                         self._events))
        return self._slots

    def prestart(self) -> None:
        """Start every slot's worker now (in this thread: they outlive any request)."""
        for slot in self._ensure():
            slot.executor.prestart()

    def request(self, command: str, spec: dict[str, Any], timeout_s: float,
                on_line: Callable[[str], None] | None = None) -> ChildOutcome:
        """One request alone (the plan's timer): slot 0, with the threads of a packed cell."""
        return self._ensure()[0].executor.request(command, spec, timeout_s, on_line)

    def run_many(self, jobs: Iterable[Job], on_done: Callable[[Job, ChildOutcome], None],
                 on_start: Callable[[Job], None] | None = None) -> None:
        """As :meth:`Executor.run_many`, ``slots`` at a time; ``jobs`` is read, and
        ``on_start`` / ``on_done`` / each job's ``on_line`` are called, in this thread only."""
        slots = self._ensure()
        source = iter(jobs)
        free = list(range(len(slots)))
        running: dict[int, _Running] = {}
        exhausted = False
        try:
            while True:
                while free and not exhausted:
                    job = next(source, None)
                    if job is None:
                        exhausted = True
                        break
                    i = free.pop(0)
                    if on_start is not None:
                        on_start(job)
                    running[i] = _Running(job, time.monotonic())
                    for run in running.values():
                        run.peak = max(run.peak, len(running))
                    slots[i].inbox.put(job)
                if not running:
                    return
                try:
                    # A timeout, so that Ctrl-C reaches this thread while every slot is busy.
                    kind, i, value = self._events.get(timeout=1.0)
                except queue.Empty:
                    continue
                if kind == "line":
                    on_line = running[i].job.on_line
                    if on_line is not None:
                        on_line(value)
                    continue
                run = running.pop(i)
                free.append(i)
                free.sort()
                if kind == "raised":
                    raise value
                value.concurrency = run.peak
                on_done(run.job, value)
        except BaseException:
            # Ctrl-C / SIGTERM, or an executor's own failure: the running cells go with their
            # workers (a warm slot's close() kills its worker group; its thread then returns).
            for i in running:
                slots[i].executor.close()
            raise

    def close(self) -> None:
        for slot in self._slots:
            slot.executor.close()
            slot.stop()
        for slot in self._slots:
            slot.thread.join(timeout=5)
        self._slots = []


def cores() -> int:
    """The cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def slot_env(env: dict[str, str], device: str, cfg: Any, slots: int) -> dict[str, str]:
    """A packed worker's environment: ``env``, and on CPU its share of the cores.

    The share is ``OMP_NUM_THREADS``: a cell with ``num_threads = 0`` runs with the worker's
    default thread count, which torch takes from it (the mechanism torchrun's local ranks use,
    :func:`bench.executors.protocol.child_env`); an explicit ``num_threads`` is the profile's
    choice and wins. What the sweep already divided (ranks, or the user's own
    ``OMP_NUM_THREADS``) is divided again by the slots.
    """
    out = dict(env)
    if slots > 1 and not str(device).startswith("cuda"):
        base = int(env.get("OMP_NUM_THREADS") or 0) or cores()
        out["OMP_NUM_THREADS"] = str(max(1, base // slots))
    return out


def auto_slots(free_mib: float, cell_mib: Sequence[float], workers_max: int) -> tuple[int, str]:
    """``pack = "auto"`` on CUDA: (slots, why) from the device's free memory (MiB) and the
    measured tensor peak of every cell to run (MiB; NaN where a cell has none).

    A cell without a measurement packs nothing (1): its size is unknown until it ran once
    alone. Otherwise N workers of the largest cell, each ``peak x SLACK + CONTEXT_MIB``, fit
    in ``USABLE`` of the free memory; at most ``workers_max`` (one core each) and MAX_AUTO.
    """
    if not cell_mib:
        return 1, "no cell to run"
    if any(not math.isfinite(m) or m <= 0 for m in cell_mib):
        return 1, "a cell to run has no measured peak_mem_mib (run it once alone first)"
    need = max(cell_mib) * SLACK + CONTEXT_MIB
    n = int(free_mib * USABLE // need)
    n = max(1, min(n, workers_max, MAX_AUTO))
    return n, (f"{free_mib:.0f} MiB free, the largest cell {max(cell_mib):.0f} MiB at its peak "
               f"(x{SLACK:g} + {CONTEXT_MIB:.0f} MiB a worker), {workers_max} cores")


def resolve(pack: int | str, device: str, cell_mib: Sequence[float] = ()) -> tuple[int, str]:
    """How many cells share ``device`` for ``pack`` (an int, or ``"auto"``), and why.

    ``auto`` on CPU is 1: the cores are what a cell computes with, and N cells on cores/N
    threads each do no more arithmetic than one on all of them. On CUDA it is
    :func:`auto_slots` over the free memory the driver reports now (this call creates a CUDA
    context in the sweep's process, a few hundred MiB, once).
    """
    if pack != "auto":
        return int(pack), ""
    if not str(device).startswith("cuda"):
        return 1, "pack=auto packs CUDA devices only"
    import torch

    free, _total = torch.cuda.mem_get_info(torch.device(device))
    return auto_slots(free / 2**20, cell_mib, cores())


def sharing(device: str) -> str:
    """How the slots share ``device``, in words (printed when a sweep packs)."""
    if not str(device).startswith("cuda"):
        return "cores split between the workers"
    pipe = os.environ.get("CUDA_MPS_PIPE_DIRECTORY", "/tmp/nvidia-mps")
    if os.path.exists(os.path.join(pipe, "control")):
        return "MPS (a control daemon is running)"
    return "time-slicing (no MPS daemon running)"


def measured_mib(rows: Iterable[dict[str, Any]], cells: Iterable[Any],
                 device_id: str) -> list[float]:
    """Each cell's measured tensor peak (MiB, NaN when none): the largest ``peak_mem_mib`` of
    an ``ok`` row of its dataset, model and strategy on ``device_id``, any seed (the seed does
    not change the sizes), from ``rows`` (a results directory's current rows)."""
    peaks: dict[tuple[str, str, str], float] = {}
    for r in rows:
        if r.get("status") != "ok" or r.get("device_id") != device_id:
            continue
        try:
            mib = float(r.get("peak_mem_mib") or "nan")
        except ValueError:
            continue
        if math.isfinite(mib):
            key = (r.get("dataset", ""), r.get("model", ""), r.get("strategy", ""))
            peaks[key] = max(peaks.get(key, 0.0), mib)
    return [peaks.get((c.dataset, c.model, c.strategy), math.nan) for c in cells]
