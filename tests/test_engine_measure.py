"""Measuring primitives: warm-up exclusion, windows, percentiles, memory, FLOPs, the operator table
(the matmul and copy ceilings are in tests/test_engine_peaks.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.engine import measure
from strategies._meta import forward_gflops_per_img


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_warmup_steps_are_never_timed() -> None:
    clock = FakeClock()
    meter = measure.ThroughputMeter(warmup_steps=2, window_steps=2, device=torch.device("cpu"),
                                    clock=clock)
    durations = [10.0, 5.0] + [0.1] * 8  # two slow warm-up steps, then steady 0.1 s steps
    for d in durations:
        meter.begin_step()
        clock.now += d
        meter.end_step(images=10)
    meter.interrupt()  # the boundary after the last step closes the last window
    s = meter.summary()
    assert s["timed_windows"] == 4
    assert abs(s["train_img_s"] - 100.0) < 1e-9  # 20 images per 0.2 s window
    assert meter.timed_steps == 8


def test_interrupt_drops_the_partial_window() -> None:
    clock = FakeClock()
    meter = measure.ThroughputMeter(warmup_steps=0, window_steps=3, device=torch.device("cpu"),
                                    clock=clock)
    for _ in range(2):
        meter.begin_step()
        clock.now += 1.0
        meter.end_step(images=1)
    meter.interrupt()
    clock.now += 100.0  # an evaluation: must not land in any window
    for _ in range(3):
        meter.begin_step()
        clock.now += 1.0
        meter.end_step(images=1)
    meter.interrupt()
    assert meter.window_img_s == [1.0]


def test_spread_is_reported_as_p10_p90() -> None:
    assert measure.percentile([1, 2, 3, 4, 5], 50) == 3
    assert measure.percentile([0, 10], 10) == 1.0
    clock = FakeClock()
    meter = measure.ThroughputMeter(0, 1, torch.device("cpu"), clock=clock)
    for d in [1.0, 0.5, 0.25, 0.2, 0.1]:
        meter.begin_step()
        clock.now += d
        meter.end_step(images=1)
    meter.interrupt()
    s = meter.summary()
    assert s["train_img_s_p10"] < s["train_img_s"] < s["train_img_s_p90"]


def test_work_between_steps_is_inside_the_windows() -> None:
    """Batch preparation between end_step and the next begin_step is part of a step: windows
    are contiguous, so time spent there lowers throughput (the old meter left it out)."""
    clock = FakeClock()
    meter = measure.ThroughputMeter(warmup_steps=1, window_steps=1, device=torch.device("cpu"),
                                    clock=clock)
    for _ in range(6):
        meter.begin_step()
        clock.now += 0.75  # fetching and normalising the batch
        clock.now += 0.25  # forward, backward, optimizer
        meter.end_step(images=10)
    meter.interrupt()
    assert meter.window_img_s == [10.0] * 5  # 10 images per 1.0 s, not per 0.25 s
    assert all(a[1] == b[0] for a, b in zip(meter.windows, meter.windows[1:], strict=False))


def _peak_in_fresh_process(body: str, before: str = "") -> float:
    """``PeakMemory`` of ``body`` (run inside it) after ``before`` (run outside), in a fresh
    process: inside a long test session the allocator may reuse memory that is already
    resident, which hid growth from the old RSS sampler (and must not matter now)."""
    import subprocess
    import sys

    code = ("import time, torch\n"
            "from bench.engine import measure\n"
            + "".join(f"{line}\n" for line in before.splitlines())
            + "with measure.PeakMemory(torch.device('cpu')) as mem:\n"
            + "".join(f"    {line}\n" for line in body.splitlines())
            + "print(mem.peak_mib)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    return float(out.strip().splitlines()[-1])


@pytest.mark.slow
def test_cpu_peak_memory_counts_many_small_tensors_and_a_brief_spike() -> None:
    """256 MiB held as 4,096 tensors of 64 KiB, then a 128 MiB spike freed at once: the peak
    is 384 MiB plus what was live at entry (a few MiB), never a sampled guess."""
    peak = _peak_in_fresh_process(
        "keep = [torch.empty(64 * 1024, dtype=torch.uint8) for _ in range(4096)]\n"
        "spike = torch.empty(128 * 2**20, dtype=torch.uint8)\n"
        "del spike")
    assert 384 <= peak < 384 + 16


@pytest.mark.slow
def test_cpu_peak_memory_counts_what_was_live_before_the_region() -> None:
    """A 64 MiB tensor made before the region is held during it: absolute, like CUDA's
    max_memory_allocated (the old figure was growth over the entry RSS)."""
    peak = _peak_in_fresh_process("x = torch.ones(8 * 2**20, dtype=torch.uint8)",
                                  before="weights = torch.ones(64 * 2**20, dtype=torch.uint8)")
    assert 72 <= peak < 72 + 16


@pytest.mark.slow
def test_cpu_peak_memory_after_a_settling_step_sees_frees_of_older_blocks() -> None:
    """A block made before the profiler started is freed without an event (zero_grad freeing
    the last step's gradients); start() after a settling step re-counts what is live."""
    peak = _peak_in_fresh_process(
        "del old_grads\nmem.start()\nx = torch.ones(8 * 2**20, dtype=torch.uint8)",
        before="old_grads = torch.ones(64 * 2**20, dtype=torch.uint8)")
    assert 8 <= peak < 8 + 16


def test_one_window_gives_peak_memory_and_ops_of_its_measured_steps_only() -> None:
    """Memory and the profiler share one window: a settling step, then the measured steps.
    Each step frees the last step's 16 MiB "gradients" first, spikes 32 MiB, then makes new
    ones: the peak is 32 MiB over what is live, seen only because the settling step's blocks
    were allocated under the profiler (without it the free is missed: 48 MiB). The operator
    table counts the measured steps, not the settling one."""
    import json
    import subprocess
    import sys

    code = (
        "import json, torch\n"
        "from bench.engine import measure\n"
        "state = {'g': torch.ones(16 * 2**20, dtype=torch.uint8)}\n"
        "def step():\n"
        "    state['g'] = None\n"
        "    spike = torch.ones(32 * 2**20, dtype=torch.uint8)\n"
        "    del spike\n"
        "    state['g'] = torch.ones(16 * 2**20, dtype=torch.uint8)\n"
        "mem, ops = measure.step_window(step, torch.device('cpu'), 3)\n"
        "calls = {o['op']: o['calls'] for o in ops}\n"
        "print(json.dumps({'peak': mem.peak_mib, 'ones': calls.get('aten::ones')}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    got = json.loads(out.strip().splitlines()[-1])
    assert 32 <= got["peak"] < 32 + 8
    assert got["ones"] == 2 * 3  # two per step, three measured steps (not four)


def test_peak_rss_is_absolute() -> None:
    assert measure.peak_rss_mib() > 50  # torch alone maps more than that


def test_flop_count_matches_the_arithmetic() -> None:
    # Conv 1->8, 3x3, on 28x28, padding 1: 28*28*8*9 MACs = 56,448 MACs = 112,896 FLOPs.
    model = nn.Conv2d(1, 8, 3, padding=1, bias=False)
    assert abs(forward_gflops_per_img(model) * 1e9 - 112_896) < 1


def test_flops_counted_on_meta_cost_nothing() -> None:
    with torch.device("meta"):
        model = nn.Sequential(nn.Flatten(), nn.Linear(784, 100))
    assert abs(forward_gflops_per_img(model) * 1e9 - 2 * 784 * 100) < 1


def test_a_process_started_by_a_big_parent_reports_its_own_peak_rss() -> None:
    """``ru_maxrss`` survives fork + exec on Linux: a cell process started by a large sweep
    (or test) process reported the parent's peak. ``peak_rss_mib`` must be the child's."""
    import subprocess
    import sys

    blob = bytearray(1200 * 2**20)
    blob[::4096] = b"\x01" * len(range(0, len(blob), 4096))  # resident: the parent's peak
    code = "from bench.engine.measure import peak_rss_mib; print(peak_rss_mib())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    del blob
    child = float(out.split()[-1])
    assert 100 < child < 1000  # torch imported (~0.5 GB here), not the 1.2 GB the parent held


def test_the_cpu_op_table_equals_torch_profilers_own() -> None:
    """The CPU operator table is read from the raw events (fast); it must give what torch's
    FunctionEvent tree and key averages give for the same window: names, calls, self times and
    self memory, on a real training step (nested autograd and optimizer ranges included)."""
    from torch.autograd.profiler_util import FunctionEventAvg
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 26 * 26, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))

    def step() -> None:
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()  # before the first marked step: left out of both tables
        for i in range(2):
            with torch.autograd.profiler.record_function(f"{measure.STEP_RANGE}#{i + 1}"):
                step()
    events = prof.events()
    first = min(e.time_range.start for e in events if e.name.startswith(measure.STEP_RANGE))
    ref: dict[str, FunctionEventAvg] = {}
    for e in events:
        if e.time_range.start >= first and not e.is_python_function:
            ref.setdefault(e.key, FunctionEventAvg()).add(e)
    ours = {s.key: s for s in measure.cpu_op_stats(prof.profiler.kineto_results.events())}
    assert set(ours) == set(ref) and "aten::convolution_backward" in ours
    for key, avg in ref.items():
        got = ours[key]
        assert got.count == avg.count, key
        assert abs(got.self_cpu_time_total - avg.self_cpu_time_total) < 1e-3, key
        assert got.self_cpu_memory_usage == avg.self_cpu_memory_usage, key
    rows = measure.op_rows(ours.values(), torch.device("cpu"), 5)
    assert [r["op"] for r in rows] == [r["op"] for r in measure.op_rows(
        ref.values(), torch.device("cpu"), 5)]
