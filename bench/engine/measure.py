"""Measuring one cell, in one import: the engine's measuring API, gathered from the modules that
own each part.

- :mod:`~bench.engine.windows`  timing windows over whole steps (seconds, images/s)
- :mod:`~bench.engine.memory`   peak memory (MiB) of the process and of a window of extra steps
- :mod:`~bench.engine.opstats`  the profiler's operator table (the ``ops.csv`` rows)
- :mod:`~bench.engine.peaks`    sustained matmul TFLOP/s (MFU's denominator) and copy GB/s

Everything here is about *how* to measure, so that ``train.py`` only says *when*; callers use
``measure.NAME`` (tests replace ``measure.ThroughputMeter`` and ``measure.step_window`` there).
Units are in the names: ``_s`` seconds, ``_img_s`` images per second, ``_mib`` MiB (2**20 bytes),
``gflops`` 1e9 floating-point operations, ``tflops`` 1e12 per second.
"""

from __future__ import annotations

from torch import nn

from bench.engine.memory import PeakMemory, live_tensor_bytes, peak_rss_mib, step_window
from bench.engine.opstats import STEP_RANGE, OpStat, cpu_op_stats, op_rows
from bench.engine.peaks import (
    FRESH_CHECK_MAX_AGE_S,
    PEAK_SIZES,
    PEAK_STABLE,
    copy_gb_s,
    device_name,
    fresh_peak_check,
    matmul_tflops,
    peak_entry,
    peak_key,
    peak_tflops,
    sustained_matmul_tflops,
)
from bench.engine.windows import MIB, ThroughputMeter, percentile, synchronize

__all__ = ["FRESH_CHECK_MAX_AGE_S", "MIB", "PEAK_SIZES", "PEAK_STABLE", "STEP_RANGE", "OpStat",
           "PeakMemory", "ThroughputMeter", "copy_gb_s", "count_params", "cpu_op_stats",
           "device_name", "fresh_peak_check", "live_tensor_bytes", "matmul_tflops", "op_rows",
           "peak_entry", "peak_key", "peak_rss_mib", "peak_tflops", "percentile", "step_window",
           "sustained_matmul_tflops", "synchronize"]


def count_params(model: nn.Module) -> int:
    """The model's parameter count (elements, not bytes)."""
    return sum(p.numel() for p in model.parameters())
