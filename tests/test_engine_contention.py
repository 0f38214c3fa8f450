"""The contention check: a window that did not get its threads' CPU time is flagged, the cell's
windows are re-timed a bounded number of times, and a cell still contended stays marked.

The CPU clock is injected (bench.engine.contention.PROBE), so no test depends on how busy this
machine really is. One real cell (slow lane) shows the engine judging and re-timing its own
windows; the retry loop's other outcomes run on :func:`bench.engine.contention.settle` alone.
"""

from __future__ import annotations

import math
import time

import pytest
import torch

from bench.config import Cell, Config, ConfigError, validate
from bench.engine import contention, measure, train


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _meter_with_share(share: float, threads: int) -> measure.ThroughputMeter:
    """Six 0.1 s steps after one warm-up step, during which the process got ``share`` of
    ``threads`` cores."""
    wall, cpu = FakeClock(), FakeClock()
    meter = measure.ThroughputMeter(1, 2, torch.device("cpu"), clock=wall, cpu_clock=cpu)
    for _ in range(7):
        meter.begin_step()
        wall.now += 0.1
        cpu.now += 0.1 * threads * share
        meter.end_step(10)
    meter.interrupt()
    return meter


def test_each_window_records_the_cpu_time_it_got() -> None:
    meter = _meter_with_share(0.3, threads=4)
    assert len(meter.window_cpu_s) == len(meter.windows) == 3
    assert all(abs(c - 0.2 * 4 * 0.3) < 1e-9 for c in meter.window_cpu_s)
    s = meter.summary()
    assert abs(s["train_img_s_pooled"] - 100.0) < 1e-9  # 60 images over 0.6 s of windows
    assert abs(s["timed_s"] - 0.6) < 1e-9


@pytest.mark.parametrize(("share", "contended"), [(0.3, True), (0.79, True), (0.95, False)])
def test_a_window_below_the_threshold_is_contended(share: float, contended: bool) -> None:
    meter = _meter_with_share(share, threads=2)
    v = contention.judge(meter.window_cpu_s, meter.windows, 2, "cpu")
    assert abs(v.cpu_share - share) < 1e-9
    assert v.contended is contended


def test_a_few_windows_slowed_by_another_process_make_the_cell_contended() -> None:
    """19 of 22 windows alone on the cores, 3 stretched 30x by another process (the same CPU
    work, a thirtieth of the share): the throughput the report compares by time is pooled over
    the windows, 2.6x below the median, so the check must weigh windows by their seconds too.
    A median of the windows' shares (the rule before) read 1.0 here and passed the cell."""
    wall, cpu = FakeClock(), FakeClock()
    meter = measure.ThroughputMeter(1, 2, torch.device("cpu"), clock=wall, cpu_clock=cpu)
    slow = {5, 11, 17}  # windows stretched by the hog
    for step in range(1 + 22 * 2):
        meter.begin_step()
        window = (step - 1) // 2
        stretch = 30.0 if step >= 1 and window in slow else 1.0
        wall.now += 0.01 * stretch
        cpu.now += 0.01 * 2  # the step's own work on both threads, however long it waited
        meter.end_step(32)
    meter.interrupt()
    s = meter.summary()
    assert len(meter.windows) == 22
    assert s["train_img_s"] == pytest.approx(3200.0)  # the typical window: untouched
    assert s["train_img_s_pooled"] < s["train_img_s"] / 2.5
    v = contention.judge(meter.window_cpu_s, meter.windows, 2, "cpu")
    assert v.contended is True
    # CPU seconds over wall seconds x threads, every window by its length: 0.88 / (2.18 x 2).
    assert v.cpu_share == pytest.approx(22 * 0.04 / ((19 * 0.02 + 3 * 0.6) * 2))


def test_on_cuda_the_host_share_does_not_apply() -> None:
    meter = _meter_with_share(0.1, threads=2)
    v = contention.judge(meter.window_cpu_s, meter.windows, 2, "cuda")
    assert math.isnan(v.cpu_share) and v.contended is False


def test_contended_retries_is_bounded() -> None:
    with pytest.raises(ConfigError, match="contended_retries"):
        validate(Config(contended_retries=6))
    with pytest.raises(ConfigError, match="contended_retries"):
        validate(Config(contended_retries=-1))


class HogProbe(contention.Probe):
    """A CPU hog on the cell's cores, simulated: measurement pass ``i`` gets ``shares[i]`` of
    the threads' CPU time (the last share repeats)."""

    def __init__(self, shares: list[float]) -> None:
        super().__init__(load=lambda: 3.5)
        self.shares = shares
        self.passes: list[int] = []

    def cpu_clock(self, attempt: int):
        self.passes.append(attempt)
        share = self.shares[min(attempt, len(self.shares) - 1)]
        threads = torch.get_num_threads()
        return lambda: share * threads * time.perf_counter()


CFG = Config(batch_size=16, train_size=160, test_size=50, epochs=1, warmup_steps=1,
             window_steps=2, profile_steps=0)
CELL = Cell("mnist", "resnet18", "conv1", 0)


@pytest.mark.slow
def test_a_hogged_cell_is_flagged_and_re_timed_until_it_is_not(monkeypatch) -> None:
    probe = HogProbe([0.3, 1.0])  # the hog stops before the first re-measure
    monkeypatch.setattr(contention, "PROBE", probe)
    row = train.run_cell(CFG.replace(contended_retries=2), CELL, device="cpu").row
    assert row["status"] == "ok", row["reason"]
    assert probe.passes == [0, 1]  # the training's windows, one re-measure, no more
    assert row["remeasured"] == 1
    assert row["contended"] is False
    assert abs(row["cpu_share"] - 1.0) < 1e-3  # the probe adds a real process_time() reading: micro-seconds of jitter
    assert row["timed_windows"] == 4  # the re-measure's windows: as many as the first pass had
    assert row["load_start"] == row["load_end"] == 3.5
    assert row["threads"] == torch.get_num_threads()
    assert row["train_images"] == 10 * 16  # 10 steps of 16: the re-measure's steps are extra
    assert row["train_img_s_pooled"] > 0 and row["timed_s"] > 0


# The retry loop itself, under the injected clock and with a step that trains nothing: what
# the one real cell above shows of the engine, these show of every other way a pass can go.

def _settle(first_share: float, probe: HogProbe, retries: int = 2) -> tuple[dict, list[int]]:
    """contention.settle on a first pass of windows at ``first_share``; returns the row and
    the steps it asked for (each 10 ms of sleep for 16 images: the meter's wall clock and the
    probe's are read a moment apart, which a window of microseconds would make a large share)."""
    threads = torch.get_num_threads()
    steps: list[int] = []

    def step() -> int:
        steps.append(1)
        time.sleep(0.01)
        return 16

    row = {"timed_windows": 3, "test_acc": 0.71, "train_img_s": 100.0}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(contention, "PROBE", probe)
        contention.settle(row, _meter_with_share(first_share, threads), step,
                          device_type="cpu", device=torch.device("cpu"), threads=threads,
                          window_steps=2, retries=retries)
    return row, steps


def test_a_cell_still_contended_after_its_retries_is_kept_and_marked() -> None:
    probe = HogProbe([0.3, 0.4, 0.5])
    row, steps = _settle(0.3, probe)
    assert probe.passes == [1, 2]  # bounded: two re-measures, then it stops
    assert row["remeasured"] == 2
    assert row["contended"] is True
    assert abs(row["cpu_share"] - 0.5) < 0.02  # the least contended pass is the one kept
    assert row["timed_windows"] == 3  # the kept pass re-timed as many windows as the first
    assert len(steps) == 2 * (contention.REMEASURE_WARMUP_STEPS + 3 * 2)
    assert row["train_img_s"] != 100.0  # the kept pass's throughput, not the first one's
    assert row["test_acc"] == 0.71  # accuracy is kept: only timing was re-run


def test_a_quiet_cell_is_measured_once() -> None:
    probe = HogProbe([1.0])
    row, steps = _settle(1.0, probe)
    assert probe.passes == [] and steps == []
    assert row["remeasured"] == 0 and row["contended"] is False
    assert abs(row["cpu_share"] - 1.0) < 1e-9 and row["train_img_s"] == 100.0


def test_no_retries_keeps_a_contended_pass_marked() -> None:
    probe = HogProbe([0.3])
    row, steps = _settle(0.3, probe, retries=0)
    assert probe.passes == [] and steps == []
    assert row["remeasured"] == 0 and row["contended"] is True
    assert abs(row["cpu_share"] - 0.3) < 1e-9
