"""Timing windows over whole training steps: the host clock read after a device sync, and the
throughput meter that turns steps into windows (seconds, images per second).

Units are in the names: ``_s`` seconds, ``_img_s`` images per second, ``_mib`` MiB (2**20 bytes).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

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
