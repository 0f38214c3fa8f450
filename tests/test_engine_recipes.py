"""Every recipe option, through the real cell runner (:func:`bench.engine.train.run_cell`) on the CPU.

One tiny cell each (ResNet-18 with a one-channel first conv, 256 MNIST images, 8 steps of 32,
a 2-step timed window and a 2-step profiler window): enough to prove the option reaches the
training loop and the row still comes out ``ok``. Each test also checks what the option should
change -- the optimizer, the learning rate after warm-up, the loss, the evaluation points, the
split evaluated -- by spying on the torch object the engine builds, since eight steps are too
few for the accuracy to tell.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from bench.config import Cell, Config
from bench.engine import train

# contended_retries=0: a busy host re-times a real cell up to twice more (tests/test_engine_contention.py
# checks that); here it would only add minutes and steps on a loaded machine.
TINY = Config(batch_size=32, train_size=256, test_size=100, epochs=1, warmup_steps=1,
              window_steps=2, profile_steps=2, peak_tflops=1.0, contended_retries=0)
STEPS = 256 // 32  # training steps of one TINY epoch
CELL = Cell("mnist", "resnet18", "conv1", 0)


def run(cfg: Config, cell: Cell = CELL) -> train.CellResult:
    """Run one cell on the CPU and insist that it finished ``ok``."""
    res = train.run_cell(cfg, cell, device="cpu")
    assert res.row["status"] == "ok", res.row["reason"]
    assert math.isfinite(res.row["final_train_loss"])
    return res


def _lrs(cfg: Config, total_steps: int) -> list[float]:
    """The learning rate of every step of ``make_schedule(cfg, ...)``, before each step."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=cfg.lr, momentum=0.9)
    sched = train.make_schedule(cfg, opt, total_steps)
    lrs = []
    for _ in range(total_steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


@pytest.mark.slow
def test_adamw_trains_with_adamw(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []

    class SpyAdamW(torch.optim.AdamW):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            built.append("adamw")
            super().__init__(*args, **kwargs)

    class SpySGD(torch.optim.SGD):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            built.append("sgd")
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(torch.optim, "AdamW", SpyAdamW)
    monkeypatch.setattr(torch.optim, "SGD", SpySGD)
    res = run(TINY.replace(optimizer="adamw", lr=1e-3))
    assert built == ["adamw"]
    assert res.row["optimizer"] == "adamw"


@pytest.mark.slow
def test_onecycle_runs_past_the_profiler_window() -> None:
    """OneCycleLR refuses a step past ``total_steps``; the profiler's steps come after training."""
    res = run(TINY.replace(schedule="onecycle"))
    assert "Tried to step" not in res.row["reason"]
    assert res.ops, "the profiler window ran"


def test_onecycle_schedule_rises_to_lr_then_anneals() -> None:
    cfg = Config(lr=1.0, warmup_frac=0.25, schedule="onecycle")
    lrs = _lrs(cfg, 20)
    peak = lrs.index(max(lrs))
    assert max(lrs) == pytest.approx(1.0) and 3 <= peak <= 6
    assert lrs[0] < 0.1 and lrs[-1] < 0.01


@pytest.mark.slow
def test_constant_schedule_holds_lr_after_warmup(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = TINY.replace(schedule="constant", lr=0.03, warmup_frac=0.25)
    lrs = _lrs(cfg, 8)
    assert lrs[:2] == pytest.approx([0.015, 0.03])  # linear warm-up over 2 of 8 steps
    assert lrs[2:] == pytest.approx([0.03] * 6)

    optimizers: list[torch.optim.Optimizer] = []
    real = train.make_schedule

    def spy(cfg: Config, opt: torch.optim.Optimizer, total_steps: int):
        optimizers.append(opt)
        return real(cfg, opt, total_steps)

    monkeypatch.setattr(train, "make_schedule", spy)
    run(cfg)
    # After training and the profiler window the rate is still the peak (cosine ends near 0).
    assert [g["lr"] for g in optimizers[0].param_groups] == pytest.approx([0.03, 0.03])


@pytest.mark.slow
def test_fp16_trains_on_cpu_through_the_grad_scaler(monkeypatch: pytest.MonkeyPatch) -> None:
    """fp16 is accepted on the CPU by design (the cost model prices it): autocast to float16 and
    a CPU GradScaler. Slow: this CPU has no fp16 convolution kernels (``_slow_conv2d``), so the
    cell is cut to two steps of four images."""
    scalers: list[torch.amp.GradScaler] = []
    dtypes: list[torch.dtype | None] = []

    class SpyScaler(torch.amp.GradScaler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.scaled = 0
            scalers.append(self)

        def scale(self, outputs):  # type: ignore[override]
            self.scaled += 1
            return super().scale(outputs)

    real_autocast = torch.autocast

    def spy_autocast(device_type: str, dtype: torch.dtype | None = None, **kwargs: Any):
        dtypes.append(dtype)
        return real_autocast(device_type, dtype=dtype, **kwargs)

    monkeypatch.setattr(torch.amp, "GradScaler", SpyScaler)
    monkeypatch.setattr(torch, "autocast", spy_autocast)
    cfg = TINY.replace(precision="fp16", batch_size=4, train_size=8, test_size=10,
                       warmup_steps=0, profile_steps=0)
    res = run(cfg)
    assert res.row["precision"] == "fp16"
    (scaler,) = scalers
    assert scaler._device == "cpu" and scaler.scaled >= 2  # every step's loss went through it
    assert torch.float16 in dtypes


@pytest.mark.slow
def test_compile_trains_and_reports_compile_time() -> None:
    res = run(TINY.replace(compile=True, profile_steps=0))
    assert res.row["compile"] is True
    # The first step pays the compilation, and the timed windows exclude it.
    assert res.row["compile_s"] > 0
    assert res.row["train_img_s"] > 0


@pytest.mark.slow  # one real (tiny) cell
def test_graphs_and_compile_auto_fall_back_on_the_cpu_and_say_why() -> None:
    res = run(TINY.replace(graphs=True, compile="auto", profile_steps=0))
    row = res.row
    # The row records what ran, not the setting: no capture, no compile on a CPU.
    assert row["graphs"] is False and row["compile"] is False and row["capture_s"] == 0
    assert "graphs: off, CUDA graphs need a CUDA device" in row["fast_path_reason"]
    assert "compile auto: off on CPU" in row["fast_path_reason"]
    assert row["compile_s"] == 0


@pytest.mark.gpu
def test_graphs_auto_captures_a_small_cell_on_cuda() -> None:
    cfg = TINY.replace(graphs="auto", compile="auto", precision="bf16", peak_tflops=0.0)
    row = train.run_cell(cfg, CELL, device="cuda").row
    assert row["status"] == "ok", row["reason"]
    assert row["graphs"] is True and row["capture_s"] > 0, row["fast_path_reason"]
    assert row["test_acc"] > 0.1 and row["train_img_s"] > 0
    eager = train.run_cell(cfg.replace(graphs=False), CELL, device="cuda").row
    # The same step's memory, whether replayed or launched (the capture's peak counts).
    assert 0.7 < row["peak_mem_mib"] / eager["peak_mem_mib"] < 1.5


@pytest.mark.slow
def test_eval_every_steps_adds_evaluation_points() -> None:
    res = run(TINY.replace(eval_every_steps=3, profile_steps=0))
    assert [h["step"] for h in res.history] == [3, 6, STEPS]  # plus the end of the epoch
    assert [h["epoch"] for h in res.history] == [0.375, 0.75, 1]
    assert res.row["test_acc"] == res.history[-1]["test_acc"]


@pytest.mark.slow
def test_val_size_evaluates_history_on_val_and_reports_test(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, float]] = []
    real = train.evaluate

    def spy(model, x, y, *args: Any, **kwargs: Any):
        out = real(model, x, y, *args, **kwargs)
        calls.append((len(y), out[0]))
        return out

    monkeypatch.setattr(train, "evaluate", spy)
    res = run(TINY.replace(val_size=60, test_size=100, profile_steps=0))
    # The epoch's evaluation is on the 60 validation images (first); the 100 test images are
    # evaluated once, for the row. (Other evaluations, e.g. of one batch for its memory, may
    # follow: they touch neither.)
    assert {n for n, _ in calls} == {60, 100} and calls[0][0] == 60
    assert res.history[-1]["test_acc"] == calls[0][1]
    assert [acc for n, acc in calls if n == 100] == [res.row["test_acc"]]


@pytest.mark.slow
def test_label_smoothing_reaches_the_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    smoothing: list[float] = []

    class SpyLoss(torch.nn.CrossEntropyLoss):
        def forward(self, input, target):  # type: ignore[override]
            smoothing.append(self.label_smoothing)
            return super().forward(input, target)

    monkeypatch.setattr(torch.nn, "CrossEntropyLoss", SpyLoss)
    run(TINY.replace(label_smoothing=0.2, profile_steps=0))
    assert len(smoothing) >= STEPS and set(smoothing) == {0.2}


@pytest.mark.slow
def test_deterministic_runs_repeat_the_loss_history_exactly() -> None:
    cfg = TINY.replace(deterministic=True, eval_every_steps=4, profile_steps=0)
    a, b = run(cfg, Cell("mnist", "resnet18", "conv1", 3)), run(cfg, Cell("mnist", "resnet18",
                                                                          "conv1", 3))
    assert len(a.history) == 2
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    assert [h["test_acc"] for h in a.history] == [h["test_acc"] for h in b.history]
    assert a.row["final_train_loss"] == b.row["final_train_loss"]
