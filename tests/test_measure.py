"""Measuring primitives: warm-up exclusion, windows, percentiles, memory, FLOPs."""

from __future__ import annotations

import torch
from torch import nn

from bench import measure


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
    s = meter.summary()
    assert s["train_img_s_p10"] < s["train_img_s"] < s["train_img_s_p90"]


def test_cpu_peak_memory_sees_a_transient_allocation() -> None:
    # In a fresh process: inside a long test session the allocator may reuse memory that is
    # already resident, which hides the growth this test is about.
    import subprocess
    import sys

    code = (
        "import time, torch\n"
        "from bench import measure\n"
        "with measure.PeakMemory(torch.device('cpu'), interval_s=0.001) as mem:\n"
        "    block = torch.ones(64 * 2**20, dtype=torch.uint8)\n"
        "    time.sleep(0.05)\n"
        "    del block\n"
        "print(mem.peak_mib)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert float(out.strip().splitlines()[-1]) > 40


def test_flop_count_matches_the_arithmetic() -> None:
    # Conv 1->8, 3x3, on 28x28, padding 1: 28*28*8*9 MACs = 56,448 MACs = 112,896 FLOPs.
    model = nn.Conv2d(1, 8, 3, padding=1, bias=False)
    assert abs(measure.forward_gflops_per_img(model) * 1e9 - 112_896) < 1


def test_flops_counted_on_meta_cost_nothing() -> None:
    with torch.device("meta"):
        model = nn.Sequential(nn.Flatten(), nn.Linear(784, 100))
    assert abs(measure.forward_gflops_per_img(model) * 1e9 - 2 * 784 * 100) < 1


def test_matmul_and_copy_ceilings_are_positive() -> None:
    dev = torch.device("cpu")
    assert measure.matmul_tflops(dev, torch.float32, n=128, reps=2) > 0
    assert measure.copy_gb_s(dev, mib=4, reps=2) > 0


def test_a_peak_cached_on_a_busy_machine_is_replaced_by_a_better_one(tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cpu = torch.device("cpu")
    key = (f"{measure.device_name(cpu)}|cpu|{torch.float32}|"
           f"threads={torch.get_num_threads()}")
    path = tmp_path / "adaptbench" / "peaks.json"
    path.parent.mkdir()
    path.write_text(json.dumps({key: 1e-9}))  # measured while something else ran
    assert measure.peak_tflops(cpu, torch.float32) == 1e-9  # the cache answers ...
    fresh = measure.peak_tflops(cpu, torch.float32, refresh=True)  # ... until asked again
    assert fresh > 1e-9 and json.loads(path.read_text())[key] == fresh
    # A worse measurement later never lowers the cached best.
    monkeypatch.setattr(measure, "matmul_tflops", lambda *a, **k: 1e-12)
    assert measure.peak_tflops(cpu, torch.float32, refresh=True) == fresh


def test_a_cell_never_reports_mfu_above_one_against_a_stale_peak(tmp_path, monkeypatch):
    import json

    from bench import train
    from bench.config import Cell, Config

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cpu = torch.device("cpu")
    key = (f"{measure.device_name(cpu)}|cpu|{torch.float32}|"
           f"threads={torch.get_num_threads()}")
    (tmp_path / "adaptbench").mkdir()
    (tmp_path / "adaptbench" / "peaks.json").write_text(json.dumps({key: 1e-9}))
    cfg = Config(batch_size=16, train_size=160, test_size=50, warmup_steps=1, window_steps=2,
                 profile_steps=0, peak_tflops=0.0)
    row = train.run_cell(cfg, Cell("mnist", "resnet18", "repeat3", 0), device="cpu").row
    assert row["status"] == "ok", row["reason"]
    assert row["peak_tflops"] > 1e-9 and 0 < row["mfu"] <= 1
