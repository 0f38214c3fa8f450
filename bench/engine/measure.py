"""Measuring one cell: throughput windows, memory, FLOPs, matmul peaks and a profiler window.

Everything here is about *how* to measure, so that ``train.py`` only says *when*.
Units are in the names: ``_s`` seconds, ``_img_s`` images per second, ``_mib`` MiB (2**20 bytes),
``gflops`` 1e9 floating-point operations, ``tflops`` 1e12 per second.
"""

from __future__ import annotations

import bisect
import gzip
import json
import os
import resource
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

MIB = 2**20


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels, so a host clock read afterwards is honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]."""
    if not values:
        return float("nan")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


class ThroughputMeter:
    """Steady-state throughput from windows of whole, consecutive training steps.

    Call :meth:`begin_step` at every step boundary *before* the step fetches its batch, and
    :meth:`end_step` after the step. A window opens at a boundary (device sync, clock read) once
    ``warmup_steps`` steps have run, and closes at the boundary after ``window_steps`` more
    steps; that same sync and clock read opens the next window. So a window spans everything
    the engine does per step -- fetching and normalising the batch, forward, backward,
    optimizer, loss bookkeeping, the finiteness check -- and nothing falls between windows.
    ``train_img_s`` is the median over windows, with p10/p90 as the spread.

    :meth:`interrupt` is a boundary that closes a complete window and drops a partial one;
    call it before evaluation and at the end of each epoch, so eval time never leaks into
    training throughput.

    ``cpu_clock`` (process CPU seconds, :mod:`bench.engine.contention`) is read at the same
    boundaries, so ``window_cpu_s[i]`` is the CPU time the process spent in ``windows[i]``.
    """

    def __init__(self, warmup_steps: int, window_steps: int, device: torch.device,
                 clock: Callable[[], float] = time.perf_counter,
                 cpu_clock: Callable[[], float] | None = None) -> None:
        self.warmup_steps = warmup_steps
        self.window_steps = max(1, window_steps)
        self.device = device
        self.clock = clock
        self.steps_seen = 0
        self.window_img_s: list[float] = []
        self.windows: list[tuple[float, float]] = []  # (start, end) clock readings, for audits
        self.window_images: list[int] = []
        self.cpu_clock = cpu_clock
        self.window_cpu_s: list[float] = []
        self._start: float | None = None
        self._cpu_start = 0.0
        self._steps_in_window = 0
        self._images_in_window = 0

    def _close(self) -> float | None:
        """Close a complete open window at this boundary; returns the clock reading, if any."""
        if self._start is None or self._steps_in_window < self.window_steps:
            return None
        synchronize(self.device)
        end = self.clock()
        elapsed = end - self._start
        self.windows.append((self._start, end))
        if elapsed > 0:
            self.window_img_s.append(self._images_in_window / elapsed)
            self.window_images.append(self._images_in_window)
        if self.cpu_clock is not None:
            cpu = self.cpu_clock()
            self.window_cpu_s.append(cpu - self._cpu_start)
            self._cpu_start = cpu
        return end

    def begin_step(self) -> bool:
        """A step boundary, before the step's batch is fetched. True when a window closed."""
        end = self._close()
        if end is not None:
            self._start = end  # the next window starts at the same sync and clock read
        elif self._start is None and self.steps_seen >= self.warmup_steps:
            synchronize(self.device)
            self._start = self.clock()
            if self.cpu_clock is not None:
                self._cpu_start = self.cpu_clock()
        else:
            return False
        self._steps_in_window = 0
        self._images_in_window = 0
        return end is not None

    def end_step(self, images: int) -> None:
        """Count a finished step of ``images`` images (no sync, no clock read)."""
        self.steps_seen += 1
        if self._start is not None:
            self._steps_in_window += 1
            self._images_in_window += images

    def interrupt(self) -> bool:
        """A boundary after which no step follows at once: close a complete window, drop a
        partial one. True when a window closed."""
        closed = self._close() is not None
        self._start = None
        return closed

    @property
    def timed_steps(self) -> int:
        return len(self.window_img_s) * self.window_steps

    def summary(self) -> dict[str, float]:
        """Median, p10, p90 of the window rates; ``train_img_s_pooled``: all the windows'
        images over all their seconds; ``timed_s``: those seconds."""
        w = self.window_img_s
        timed_s = sum(end - start for start, end in self.windows if end > start)
        return {
            "train_img_s_pooled": (sum(self.window_images) / timed_s if timed_s > 0
                                   else float("nan")),
            "timed_s": timed_s,
            "train_img_s": statistics.median(w) if w else float("nan"),
            "train_img_s_p10": percentile(w, 10),
            "train_img_s_p90": percentile(w, 90),
            "timed_windows": float(len(w)),
        }


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
                  if e.name() == "[memory]" and e.device_type() == _CPU_DEVICE_TYPE
                  and e.start_ns() >= since]
        held = peak = 0
        for event in sorted(events, key=lambda e: e.start_ns()):  # stable: record order kept
            held += event.nbytes()
            peak = max(peak, held)
        self.peak_mib = (self._base + peak) / MIB

    def top_ops(self, top_k: int = 15) -> list[dict[str, Any]]:
        """Top operators by self time over the :meth:`step` steps (:func:`_op_rows`);
        empty unless ``record_ops``. Call after the ``with`` block."""
        if not self.record_ops or self._prof is None or not self._steps:
            return []
        if self.device.type == "cpu":
            # Same table, read from the raw events: building torch's FunctionEvent list
            # (``events()``) cost 0.6 s of a 7 s resnet18 cell on a 2-core CPU.
            return _op_rows(cpu_op_stats(self._prof.profiler.kineto_results.events()),
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
        return _op_rows(stats.values(), self.device, top_k)

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
STEP_RANGE = "ProfilerStep"


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


# torch.profiler's DeviceType for host memory (torch._C._autograd.DeviceType.CPU).
_CPU_DEVICE_TYPE = torch._C._autograd.DeviceType.CPU
_HOST_MEMORY_TYPES = (_CPU_DEVICE_TYPE, torch._C._autograd.DeviceType.MKLDNN,
                      torch._C._autograd.DeviceType.IDEEP)
# Utility ranges torch.profiler leaves out of its operator tables (profiler_util._filter_name).
_UNLISTED_OPS = frozenset({"[memory]", "[OutOfMemory]", "profiler::_record_function_enter",
                           "profiler::_record_function_enter_new",
                           "profiler::_record_function_exit", "aten::is_leaf",
                           "aten::output_nr", "aten::_version"})


@dataclass
class OpStat:
    """One operator's totals over a profiled window, as :func:`_op_rows` reads them
    (times in microseconds, memory in bytes, the units of torch's ``FunctionEventAvg``)."""

    key: str
    count: int = 0
    self_cpu_time_total: float = 0.0
    self_cpu_memory_usage: int = 0


def cpu_op_stats(kineto_events: Any) -> list[OpStat]:
    """Per-operator self CPU time, calls and self host memory of the CPU events from the first
    ``STEP_RANGE`` range on, with torch.profiler's own rules (``key_averages`` over
    ``events()``): an event's parent is the innermost event of its thread whose interval holds
    it; self time is its duration less its children's; its memory is every host allocation
    recorded inside its interval, less its children's; async events (ending on another thread)
    count as calls with no self time or memory; profiler utility ranges are left out.
    """
    events, mem = [], []
    for e in kineto_events:
        name = e.name()
        if name == "[memory]":
            if e.device_type() in _HOST_MEMORY_TYPES:
                mem.append((e.start_ns(), e.nbytes()))
            continue
        if name in _UNLISTED_OPS or e.device_type() != _CPU_DEVICE_TYPE \
                or e.is_python_function():
            continue
        start = e.start_ns()
        events.append([name, start, start + e.duration_ns(), e.start_thread_id(),
                       e.is_async() or e.start_thread_id() != e.end_thread_id(), 0.0, 0])
    mem.sort()
    mem_t = [t for t, _ in mem]
    prefix = [0]
    for _, n in mem:
        prefix.append(prefix[-1] + n)
    NAME, START, END, THREAD, ASYNC, SELF_T, SELF_M = range(7)
    for ev in events:  # total memory in [start, end], both ends included as torch has it
        ev[SELF_M] = (prefix[bisect.bisect_right(mem_t, ev[END])]
                      - prefix[bisect.bisect_left(mem_t, ev[START])])
        ev[SELF_T] = (ev[END] - ev[START]) / 1e3  # us; children subtracted below
    totals = {id(ev): (ev[SELF_T], ev[SELF_M]) for ev in events}
    by_thread: dict[int, list[list[Any]]] = {}
    for ev in events:
        if not ev[ASYNC]:
            by_thread.setdefault(ev[THREAD], []).append(ev)
    for thread_events in by_thread.values():
        thread_events.sort(key=lambda ev: (ev[START], -ev[END]))
        stack: list[list[Any]] = []
        for ev in thread_events:
            while stack and (ev[START] >= stack[-1][END] or ev[END] > stack[-1][END]):
                stack.pop()
            if stack:
                t, m = totals[id(ev)]
                stack[-1][SELF_T] -= t
                stack[-1][SELF_M] -= m
            stack.append(ev)
    starts = [ev[START] for ev in events if ev[NAME].startswith(STEP_RANGE)]
    first = min(starts) if starts else 0
    stats: dict[str, OpStat] = {}
    for ev in events:
        if ev[START] < first:
            continue
        # Numbered step ranges share one key, as torch's tables name them.
        key = f"{STEP_RANGE}*" if ev[NAME].startswith(f"{STEP_RANGE}#") else ev[NAME]
        stat = stats.setdefault(key, OpStat(key))
        stat.count += 1
        if not ev[ASYNC]:
            stat.self_cpu_time_total += ev[SELF_T]
            stat.self_cpu_memory_usage += ev[SELF_M]
    return list(stats.values())


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _peak_cache_path() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "adaptbench" / "peaks.json"


def device_name(device: torch.device) -> str:
    """Short, human-readable device name (see :mod:`bench.device`)."""
    from bench import device as device_mod

    return device_mod.device_name(device)


def matmul_tflops(device: torch.device, dtype: torch.dtype, n: int | None = None,
                  reps: int | None = None) -> float:
    """Achieved TFLOP/s of a square ``n``×``n`` matmul (median of ``reps`` timed calls after two
    warm-ups). On CUDA fp32 the TF32 setting in force applies. A quick probe: the ceiling MFU is
    measured against is :func:`sustained_matmul_tflops`.
    """
    if n is None:
        n = 8192 if device.type == "cuda" else 1024
    if reps is None:
        reps = 20 if device.type == "cuda" else 5
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    times = []
    for i in range(reps + 2):
        synchronize(device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e12


# Matmul sizes tried for the sustained peak: small ones fit the caches, large ones amortise
# the per-call cost; which is best depends on the machine, so each is measured.
PEAK_SIZES = {"cpu": (1024, 2048, 3072), "cuda": (4096, 8192, 16384)}
PEAK_STABLE = 0.05  # three repeats within 5% of each other count as a stable measurement


def _timed_matmuls(a: torch.Tensor, b: torch.Tensor, device: torch.device,
                   min_s: float) -> float:
    """TFLOP/s of back-to-back ``a @ b`` calls over at least ``min_s`` seconds (one repeat)."""
    n = a.shape[0]
    calls = 0
    synchronize(device)
    t0 = time.perf_counter()
    while True:
        torch.mm(a, b)
        calls += 1
        if calls % 4 == 0 or device.type != "cuda":
            synchronize(device)
            elapsed = time.perf_counter() - t0
            if elapsed >= min_s:
                return 2 * n**3 * calls / elapsed / 1e12


def sustained_matmul_tflops(device: torch.device, dtype: torch.dtype,
                            sizes: tuple[int, ...] | None = None, repeat_s: float = 1.0,
                            attempts: int = 3) -> dict[str, Any]:
    """The matmul ceiling MFU is measured against, TFLOP/s: sustained, not a lucky burst.

    For each size, three repeats of back-to-back matmuls lasting ``repeat_s`` seconds each (after
    one warm-up repeat); a size counts when its three repeats agree within
    :data:`PEAK_STABLE`, else it is measured again (up to ``attempts`` times). The peak is the
    best median over sizes. Returns ``{"tflops", "n", "spread", "stable", "repeats"}``:
    ``spread`` is (max - min) / max of the chosen size's repeats.
    """
    sizes = sizes or PEAK_SIZES.get(device.type, PEAK_SIZES["cpu"])
    best: dict[str, Any] = {"tflops": 0.0, "n": 0, "spread": float("nan"), "stable": False,
                            "repeats": []}
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        _timed_matmuls(a, b, device, repeat_s / 4)  # warm-up: threads, clocks, caches
        for _ in range(attempts):
            reps = [_timed_matmuls(a, b, device, repeat_s) for _ in range(3)]
            spread = (max(reps) - min(reps)) / max(reps)
            if spread <= PEAK_STABLE:
                break
        value = statistics.median(reps)
        if value > best["tflops"]:
            best = {"tflops": value, "n": n, "spread": spread, "stable": spread <= PEAK_STABLE,
                    "repeats": reps}
        del a, b
    return best


def peak_key(device: torch.device, dtype: torch.dtype) -> str:
    """Cache key of a peak: exact device identity, dtype, intra-op threads, TF32 state."""
    from bench import device as device_mod

    tf32 = ""
    if device.type == "cuda" and dtype == torch.float32:
        tf32 = f"|tf32={torch.backends.cuda.matmul.allow_tf32}"
    return (f"{device_mod.device_identity(device)}|{dtype}|threads={torch.get_num_threads()}"
            f"{tf32}")


def _read_peak_cache(path: Path) -> dict[str, Any]:
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return cache if isinstance(cache, dict) else {}


def peak_tflops(device: torch.device, dtype: torch.dtype, refresh: bool = False) -> float:
    """Sustained matmul peak in TFLOP/s for (device identity, dtype, threads, TF32), cached.

    Measured once by :func:`sustained_matmul_tflops` and kept in
    ``~/.cache/adaptbench/peaks.json``; ``refresh`` measures again. The cache keeps the best
    value ever measured for the key: a peak taken while other work shared the machine is too
    low (it once made CPU MFU read 300%), and a quieter measurement must be able to replace it.
    """
    return peak_entry(device, dtype, refresh)["tflops"]


def peak_entry(device: torch.device, dtype: torch.dtype, refresh: bool = False
               ) -> dict[str, Any]:
    """:func:`peak_tflops` with its provenance: ``{"tflops", "n", "spread", "stable", ...}``."""
    key = peak_key(device, dtype)
    path = _peak_cache_path()
    cache = _read_peak_cache(path)
    old = cache.get(key)
    if isinstance(old, dict) and old.get("tflops", 0) > 0 and not refresh:
        return old
    entry = sustained_matmul_tflops(device, dtype)
    entry["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if isinstance(old, dict) and old.get("tflops", 0.0) > entry["tflops"]:
        return old
    cache = _read_peak_cache(path)  # re-read: another process may have written meanwhile
    cache[key] = entry
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=1))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home only costs a re-measurement next time
    return entry


# A fresh check newer than this is reused (seconds): see fresh_peak_check.
FRESH_CHECK_MAX_AGE_S = 600.0
# (peak key, matmul size) -> (TFLOP/s, time.monotonic() of the measurement); this process only.
_FRESH_CHECKS: dict[tuple[str, int], tuple[float, float]] = {}


def fresh_peak_check(device: torch.device, dtype: torch.dtype, n: int,
                     seconds: float = 0.5, max_age_s: float = FRESH_CHECK_MAX_AGE_S) -> float:
    """A quick matmul at the cached peak's size, TFLOP/s: is the machine as quiet as when the
    peak was measured? (The report flags rows where the two differ by more than 20%.)

    A property of the device, not of a cell: measured once per process for each
    (:func:`peak_key`, ``n``) and reused while younger than ``max_age_s`` seconds, so a warm
    worker's cells share one check (each ``>= 0.6 s``) instead of paying it per cell; a fresh
    process per cell measures it every time. ``max_age_s=0`` always measures.
    """
    key = (peak_key(device, dtype), int(n))
    cached = _FRESH_CHECKS.get(key)
    now = time.monotonic()
    if cached is not None and now - cached[1] < max_age_s:
        return cached[0]
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    _timed_matmuls(a, b, device, seconds / 5)
    value = _timed_matmuls(a, b, device, seconds)
    _FRESH_CHECKS[key] = (value, time.monotonic())
    return value


def copy_gb_s(device: torch.device, mib: int = 1024, reps: int = 10) -> float:
    """Device-to-device copy bandwidth in GB/s (bytes read + written, 1e9)."""
    nbytes = mib * MIB
    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    times = []
    for i in range(reps + 2):
        synchronize(device)
        t0 = time.perf_counter()
        dst.copy_(src)
        synchronize(device)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return 2 * nbytes / statistics.median(times) / 1e9


def _op_rows(averages: Any, device: torch.device, top_k: int) -> list[dict[str, Any]]:
    """``ops.csv`` rows from profiler key averages: the top ``top_k`` operators by self time
    (device time on CUDA, CPU time otherwise); times in ms (totals over the steps), memory MiB."""
    rows = []
    for evt in averages:
        if evt.key.startswith(STEP_RANGE):
            continue  # the per-step wrapper range, not an operator
        self_dev = getattr(evt, "self_device_time_total", 0.0) or 0.0
        rows.append({
            "op": evt.key,
            "self_cpu_ms": evt.self_cpu_time_total / 1e3,
            "self_device_ms": self_dev / 1e3,
            "calls": evt.count,
            "self_cpu_mem_mib": getattr(evt, "self_cpu_memory_usage", 0) / MIB,
            "self_device_mem_mib": getattr(evt, "self_device_memory_usage", 0) / MIB,
        })
    sort_key = "self_device_ms" if device.type == "cuda" else "self_cpu_ms"
    rows.sort(key=lambda r: r[sort_key], reverse=True)
    return rows[:top_k]
