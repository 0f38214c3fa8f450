"""Measuring one cell: throughput windows, memory, FLOPs, matmul peaks and a profiler window.

Everything here is about *how* to measure, so that ``train.py`` only says *when*.
Units are in the names: ``_s`` seconds, ``_img_s`` images per second, ``_mib`` MiB (2**20 bytes),
``gflops`` 1e9 floating-point operations, ``tflops`` 1e12 per second.
"""

from __future__ import annotations

import gzip
import json
import os
import resource
import shutil
import statistics
import threading
import time
import warnings
from collections.abc import Callable
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
    """Steady-state throughput from fixed-size windows of steps.

    The first ``warmup_steps`` steps are never timed (allocator growth, cuDNN autotuning,
    compilation). After that, each run of ``window_steps`` consecutive steps is one window,
    bounded by a device synchronisation and a host clock read; ``train_img_s`` is the median
    over windows, with p10/p90 as the spread. :meth:`interrupt` drops a partial window (call it
    before evaluation, so eval time never leaks into training throughput).
    """

    def __init__(self, warmup_steps: int, window_steps: int, device: torch.device,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.warmup_steps = warmup_steps
        self.window_steps = max(1, window_steps)
        self.device = device
        self.clock = clock
        self.steps_seen = 0
        self.window_img_s: list[float] = []
        self.windows: list[tuple[float, float]] = []  # (start, end) clock readings, for audits
        self._start: float | None = None
        self._steps_in_window = 0
        self._images_in_window = 0

    def begin_step(self) -> None:
        """Call before a step; opens a window at the first step past warm-up."""
        if self._start is None and self.steps_seen >= self.warmup_steps:
            synchronize(self.device)
            self._start = self.clock()
            self._steps_in_window = 0
            self._images_in_window = 0

    def end_step(self, images: int) -> bool:
        """Call after a step; returns True when a window just closed (device synchronised)."""
        self.steps_seen += 1
        if self._start is None:
            return False
        self._steps_in_window += 1
        self._images_in_window += images
        if self._steps_in_window < self.window_steps:
            return False
        synchronize(self.device)
        end = self.clock()
        elapsed = end - self._start
        self.windows.append((self._start, end))
        if elapsed > 0:
            self.window_img_s.append(self._images_in_window / elapsed)
        self._start = None
        return True

    def interrupt(self) -> None:
        """Discard an open, partial window."""
        self._start = None

    @property
    def timed_steps(self) -> int:
        return len(self.window_img_s) * self.window_steps

    def summary(self) -> dict[str, float]:
        w = self.window_img_s
        return {
            "train_img_s": statistics.median(w) if w else float("nan"),
            "train_img_s_p10": percentile(w, 10),
            "train_img_s_p90": percentile(w, 90),
            "timed_windows": float(len(w)),
        }


def _rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc; falls back to the high-water mark)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakMemory:
    """Peak memory of a region of code.

    CUDA: ``reset_peak_memory_stats`` on entry, ``max_memory_allocated``/``reserved`` on exit.
    CPU: a sampling thread (every ``interval_s``) records the peak RSS; the figure is the growth
    over the RSS at entry, i.e. what training added (activations, gradients, optimizer state).
    The process high-water mark alone would also count whatever came before (data loading).
    """

    def __init__(self, device: torch.device, interval_s: float = 0.005) -> None:
        self.device = device
        self.interval_s = interval_s
        self.peak_mib = float("nan")
        self.reserved_mib = float("nan")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._base = 0
        self._peak = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._base = self._peak = _rss_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._peak = max(self._peak, _rss_bytes())

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            synchronize(self.device)
            self.peak_mib = torch.cuda.max_memory_allocated(self.device) / MIB
            self.reserved_mib = torch.cuda.max_memory_reserved(self.device) / MIB
        else:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            self._peak = max(self._peak, _rss_bytes())
            self.peak_mib = (self._peak - self._base) / MIB


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def forward_gflops_per_img(model: nn.Module, image_shape: tuple[int, ...] = (1, 28, 28),
                           batch: int = 2) -> float:
    """Forward GFLOPs per image counted by ``FlopCounterMode`` (2 FLOPs per multiply-add).

    Runs on whatever device ``model`` is on: give it a meta-device model to count for free.
    """
    from torch.utils.flop_counter import FlopCounterMode

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x = torch.zeros((batch, *image_shape), device=device)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() / batch / 1e9


def _peak_cache_path() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "adaptbench" / "peaks.json"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return host_cpu_name()


def host_cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def matmul_tflops(device: torch.device, dtype: torch.dtype, n: int | None = None,
                  reps: int | None = None) -> float:
    """Achieved TFLOP/s of a square ``n``×``n`` matmul: the ceiling MFU is measured against.

    Median of ``reps`` timed calls after two warm-ups. On CUDA fp32 the TF32 setting in force
    applies (the harness enables it, as training does).
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


def peak_tflops(device: torch.device, dtype: torch.dtype, refresh: bool = False) -> float:
    """Measured matmul peak in TFLOP/s for (device, dtype), cached on disk per device.

    ``refresh`` measures again. The cache keeps the best value ever measured for the key: a
    peak taken while other work shared the machine is too low (it once made CPU MFU read
    300%), and a later, quieter measurement must be able to replace it.
    """
    key = f"{device_name(device)}|{device.type}|{dtype}|threads={torch.get_num_threads()}"
    path = _peak_cache_path()
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    if key in cache and not refresh:
        return float(cache[key])
    value = max(matmul_tflops(device, dtype), float(cache.get(key, 0.0)))
    cache[key] = value
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=1))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home only costs a re-measurement next time
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


def profile_steps(step: Callable[[], None], device: torch.device, active: int,
                  top_k: int = 15, trace_path: Path | None = None) -> list[dict[str, Any]]:
    """Run ``step`` under ``torch.profiler`` (warm-up 1, ``active`` steps) and return the
    top operators by self time (device time on CUDA, CPU time otherwise).

    These steps are extra: the caller runs them after the timed steps, never among them.
    Times in the rows are totals over the ``active`` steps, in ms; memory in MiB.
    """
    from torch.profiler import ProfilerActivity, profile, schedule

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    captured: list[Any] = []

    def on_ready(prof: Any) -> None:
        # Read the table here: newer torch releases clear events when a cycle ends.
        captured.append(prof.key_averages())
        if trace_path is not None:
            trace_path.parent.mkdir(parents=True, exist_ok=True)
            raw = trace_path.with_suffix("")  # x.json.gz -> x.json
            prof.export_chrome_trace(str(raw))
            with open(raw, "rb") as src, gzip.open(trace_path, "wb") as dst:
                shutil.copyfileobj(src, dst)
            raw.unlink()

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Pp]rofiler clears events.*")
        with profile(activities=activities, schedule=schedule(wait=0, warmup=1, active=active),
                     profile_memory=True, record_shapes=True, on_trace_ready=on_ready) as prof:
            for _ in range(active + 1):
                step()
                prof.step()
    synchronize(device)
    rows = []
    for evt in (captured[-1] if captured else []):
        if evt.key.startswith("ProfilerStep"):
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
