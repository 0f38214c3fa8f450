"""The profiler's operator table: each operator's self time (ms, totals over the profiled steps),
calls and memory (MiB), read from a profiled window's events as the ``ops.csv`` rows.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

import torch

from bench.engine.windows import MIB

STEP_RANGE = "ProfilerStep"


# torch.profiler's DeviceType for host memory (torch._C._autograd.DeviceType.CPU).
CPU_DEVICE_TYPE = torch._C._autograd.DeviceType.CPU
_HOST_MEMORY_TYPES = (CPU_DEVICE_TYPE, torch._C._autograd.DeviceType.MKLDNN,
                      torch._C._autograd.DeviceType.IDEEP)
# Utility ranges torch.profiler leaves out of its operator tables (profiler_util._filter_name).
_UNLISTED_OPS = frozenset({"[memory]", "[OutOfMemory]", "profiler::_record_function_enter",
                           "profiler::_record_function_enter_new",
                           "profiler::_record_function_exit", "aten::is_leaf",
                           "aten::output_nr", "aten::_version"})


@dataclass
class OpStat:
    """One operator's totals over a profiled window, as :func:`op_rows` reads them
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
        if name in _UNLISTED_OPS or e.device_type() != CPU_DEVICE_TYPE \
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


def op_rows(averages: Any, device: torch.device, top_k: int) -> list[dict[str, Any]]:
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
