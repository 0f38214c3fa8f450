"""Memory of a cell: the process's peak resident set, live tensor bytes, and the peak of a window of
extra steps under one profiler session (MiB, 2**20 bytes).
"""

from __future__ import annotations

import gzip
import resource
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.engine.opstats import CPU_DEVICE_TYPE, STEP_RANGE, cpu_op_stats, op_rows
from bench.engine.windows import MIB, synchronize


def peak_rss_mib() -> float:
    """This process's peak resident set size so far, MiB: Linux's ``VmHWM`` (of this process's
    own address space; reset by ``/proc/self/clear_refs``), else ``ru_maxrss``.

    Not ``ru_maxrss`` on Linux: the kernel carries it across fork and exec, so a cell process
    started by a 1.5 GB sweep reported 1.5 GB whatever it used (a fresh ``python3`` under such
    a parent: ``ru_maxrss`` 1514 MiB, ``VmHWM`` 13 MiB).
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


_PLAIN_TENSOR_TYPES = (torch.Tensor, nn.Parameter)


def live_tensor_bytes(device: torch.device) -> int:
    """Bytes of every tensor storage on ``device`` reachable from Python, each storage once.

    Called at a step boundary, where no autograd graph is alive, this is what training holds
    between steps: weights, gradients, optimizer state, buffers, the device-resident dataset.
    """
    import gc

    seen: dict[tuple[int, int], int] = {}
    # Exact types only: type() never dereferences a dead weak proxy (torch.compile leaves
    # some behind) and never matches tensor subclasses without real storage (FakeTensor).
    objects = [o for o in gc.get_objects() if type(o) in _PLAIN_TENSOR_TYPES]
    for obj in objects:
        try:
            if obj.device.type != device.type:
                continue
            storage = obj.untyped_storage()
            if storage.nbytes() and storage.data_ptr():
                seen[(storage.data_ptr(), storage.nbytes())] = storage.nbytes()
        except (RuntimeError, NotImplementedError, ReferenceError):
            continue  # meta / sparse / freed tensors have no storage of their own
    return sum(seen.values())


class PeakMemory:
    """Peak bytes held by tensors on ``device`` while a region runs, everything live included.

    One meaning on every device: the most tensor memory allocated at any instant of the
    measured region, in MiB, counting what was already held when it started (weights,
    gradients, optimizer state, the dataset on the device).

    - CUDA: the caching allocator's ``max_memory_allocated`` after ``reset_peak_memory_stats``
      (``reserved_mib``: its ``max_memory_reserved``, what the allocator held from the driver).
    - CPU: the tensors live when the region starts (:func:`live_tensor_bytes`) plus the running
      maximum of every allocation and free the CPU allocator reports to ``torch.profiler``
      (``profile_memory``), in order. Exact, not sampled: a spike of a microsecond counts, and
      memory the process reuses is not missed. ``reserved_mib`` stays NaN. The profiler cannot
      see the free of a block allocated before it started (a step's ``zero_grad`` frees the
      previous step's gradients), so for a training step run one settling step first and call
      :meth:`start` after it: blocks freed after that were allocated under the profiler.

    ``record_ops`` also records the operators (on CUDA the profiler then runs too, with device
    activity): :meth:`top_ops` gives the top operators of the steps run under :meth:`step`
    after :meth:`start`, so one window measures memory and operators over the same steps.
    Neither figure depends on time, so they can share the profiler's overhead; the region is
    slowed by it, so measure one that is never a timed window.
    """

    def __init__(self, device: torch.device, *, record_ops: bool = False,
                 start_later: bool = False) -> None:
        self.device = device
        self.record_ops = record_ops
        # The caller calls start() itself (after settling): entering then skips the CPU's
        # live-tensor scan (0.1-0.2 s a call in a warm worker), which start() would redo.
        self.start_later = start_later
        self.peak_mib = float("nan")
        self.reserved_mib = float("nan")
        self._base = 0
        self._since_ns: int | None = None
        self._prof: Any = None
        self._steps = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type != "cuda" or self.record_ops:
            from torch.profiler import ProfilerActivity, profile

            activities = [ProfilerActivity.CPU]
            if self.device.type == "cuda":
                activities.append(ProfilerActivity.CUDA)
            self._prof = profile(activities=activities, profile_memory=True)
            self._prof.__enter__()
        if not self.start_later:
            self.start()
        return self

    def start(self) -> None:
        """Begin the measured region here (what ran before inside ``with`` only settles)."""
        synchronize(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        self._base = live_tensor_bytes(self.device)
        self._since_ns = time.time_ns()

    def step(self, fn: Callable[[], Any]) -> None:
        """Run one measured step; :meth:`top_ops` covers the steps run this way."""
        from torch.autograd.profiler import record_function

        self._steps += 1
        with record_function(f"{STEP_RANGE}#{self._steps}"):
            fn()

    def __exit__(self, *exc: Any) -> None:
        synchronize(self.device)
        if self.device.type == "cuda":
            self.peak_mib = torch.cuda.max_memory_allocated(self.device) / MIB
            self.reserved_mib = torch.cuda.max_memory_reserved(self.device) / MIB
        if self._prof is not None:
            self._prof.__exit__(*exc)
        if self.device.type == "cuda":
            return
        since = self._since_ns or 0
        events = [e for e in self._prof.profiler.kineto_results.events()
                  if e.name() == "[memory]" and e.device_type() == CPU_DEVICE_TYPE
                  and e.start_ns() >= since]
        held = peak = 0
        for event in sorted(events, key=lambda e: e.start_ns()):  # stable: record order kept
            held += event.nbytes()
            peak = max(peak, held)
        self.peak_mib = (self._base + peak) / MIB

    def top_ops(self, top_k: int = 15) -> list[dict[str, Any]]:
        """Top operators by self time over the :meth:`step` steps (:func:`op_rows`);
        empty unless ``record_ops``. Call after the ``with`` block."""
        if not self.record_ops or self._prof is None or not self._steps:
            return []
        if self.device.type == "cpu":
            # Same table, read from the raw events: building torch's FunctionEvent list
            # (``events()``) cost 0.6 s of a 7 s resnet18 cell on a 2-core CPU.
            return op_rows(cpu_op_stats(self._prof.profiler.kineto_results.events()),
                            self.device, top_k)
        from torch.autograd.profiler_util import FunctionEventAvg

        events = self._prof.events()
        # Everything from the first marked step on: the settling step before it is left out;
        # device kernels of the marked steps start after it too (the device was synchronised).
        first = min(e.time_range.start for e in events if e.name.startswith(STEP_RANGE))
        # Averaged per operator as key_averages() does, over this subset of the session.
        stats: dict[tuple[str, str], FunctionEventAvg] = {}
        for e in events:
            if e.time_range.start >= first and not e.is_python_function:
                stats.setdefault((e.key, str(e.device_type)), FunctionEventAvg()).add(e)
        return op_rows(stats.values(), self.device, top_k)

    def export_trace(self, trace_path: Path) -> None:
        """A gzipped Chrome trace of the whole window (the settling step, then the marked steps)."""
        trace_path.parent.mkdir(parents=True, exist_ok=True)
        raw = trace_path.with_suffix("")  # x.json.gz -> x.json
        self._prof.export_chrome_trace(str(raw))
        with open(raw, "rb") as src, gzip.open(trace_path, "wb") as dst:
            shutil.copyfileobj(src, dst)
        raw.unlink()


# Range name of each measured step in a window's profile: torch.profiler's own step name (it
# lists them as "ProfilerStep*"), so a saved trace shows the usual markers.

def step_window(step: Callable[[], None], device: torch.device, steps: int, *,
                profile_ops: bool = True, top_k: int = 15, trace_path: Path | None = None
                ) -> tuple[PeakMemory, list[dict[str, Any]]]:
    """Run ``step`` once to settle, then ``steps`` measured times (at least one), under one
    profiler session; returns the peak memory of the measured steps (:class:`PeakMemory`) and,
    with ``profile_ops``, their top operators by self time (``ops.csv`` rows).

    The settling step is also the profiler's warm-up. Its allocations are recorded, so the
    frees of its blocks in the measured steps are counted (see :class:`PeakMemory`). These
    steps are extra: the caller runs them after the timed steps, never among them.
    """
    with PeakMemory(device, record_ops=profile_ops, start_later=True) as mem:
        step()
        mem.start()
        for _ in range(max(1, steps)):
            mem.step(step)
    ops = mem.top_ops(top_k) if profile_ops else []
    if profile_ops and trace_path is not None:
        mem.export_trace(trace_path)
    return mem, ops
