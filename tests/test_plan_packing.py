"""The planner prices packing (``pack = N``): the slots' makespan, floored by the device's
arithmetic, which cells sharing one device take in turn (bench/plan/packing.py)."""

from __future__ import annotations

import json

import pytest

from bench import config
from bench.config import Cell
from bench.plan import costmodel, packing


def test_makespan_deals_cells_as_the_packed_executor_does() -> None:
    # Plan order, each cell to the first slot to come free: the long first cell holds slot 0
    # while the three short ones go through slot 1 in turn.
    assert packing.makespan([10, 1, 1, 1], 2) == 10
    # Sorted longest first the same cells would end at 10 too; in the order 1, 1, 1, 10 the
    # long one starts late, at 1 on slot 1 (slot 0 has run 1 and 1 by then): 11.
    assert packing.makespan([1, 1, 1, 10], 2) == 11
    assert packing.makespan([3, 3, 3, 3], 4) == 3
    assert packing.makespan([], 3) == 0
    with pytest.raises(ValueError, match="slots must be >= 1, got 0"):
        packing.makespan([1], 0)


def test_one_slot_is_the_plain_sum_and_arithmetic_floors_a_packed_eta() -> None:
    one = packing.packed_eta([(20.0, 1.0), (30.0, 2.0)], 1)
    assert one.eta_s == one.sequential_s == 50.0
    # Host-bound cells (20 s each, 1 s of device arithmetic): eight slots overlap them.
    light = packing.packed_eta([(20.0, 1.0)] * 16, 8)
    assert (light.eta_s, light.makespan_s, light.device_floor_s) == (40.0, 40.0, 16.0)
    assert light.bound == "slots"
    # Compute-bound cells (90 s, 80 s of it arithmetic) gain almost nothing from sharing.
    heavy = packing.packed_eta([(90.0, 80.0)] * 4, 4)
    assert (heavy.eta_s, heavy.makespan_s, heavy.device_floor_s) == (320.0, 90.0, 320.0)
    assert heavy.bound == "device"
    assert heavy.sequential_s == 360.0


def test_pack_auto_is_priced_as_one_slot_with_its_reason() -> None:
    assert packing.plan_slots(3) == (3, "")
    slots, why = packing.plan_slots("auto")
    assert slots == 1 and "decided at run time" in why and "--set pack=N" in why


def test_the_cost_model_splits_off_the_devices_arithmetic() -> None:
    cfg = config.load("gpu", [])
    model = costmodel.CostModel("cuda", "h200")
    small = model.estimate(cfg, Cell("mnist", "resnet18", "repeat3", 0))
    big = model.estimate(cfg, Cell("mnist", "vgg16", "resize224", 0))
    # A 28 px cell is almost all host work (the launch floor, the fixed cost per cell); a 224 px
    # VGG is mostly arithmetic: its training FLOPs alone at the sustained rate.
    assert 0 < small.device_s < 0.05 * small.seconds
    flops = model.forward_gflops(Cell("mnist", "vgg16", "resize224", 0), 10, (1, 28, 28))[0]
    per_img_s = flops * 1e9 / (costmodel.device_speed("cuda", "bf16", "h200").tflops * 1e12)
    from bench.plan.steps import EVAL_BATCH_FACTOR, extra_train_steps

    # Training (3x the forward) over every step, the memory/profiler steps included; the
    # validation split each epoch, the test split once, one evaluation batch for its memory.
    steps = cfg.epochs * ((60000 - cfg.val_size) // 256) + extra_train_steps(cfg.profile_steps)
    evaluated = cfg.epochs * cfg.val_size + 10000 + EVAL_BATCH_FACTOR * 256
    assert big.device_s == pytest.approx(3 * per_img_s * 256 * steps + per_img_s * evaluated,
                                         rel=1e-9)
    assert big.device_s < big.seconds
    assert 0 < small.measure_only_device_s <= small.device_s


def test_on_a_cpu_every_second_is_the_devices() -> None:
    cfg = config.load("cpu", [])
    est = costmodel.CostModel("cpu").estimate(cfg, Cell("mnist", "resnet18", "repeat3", 0))
    assert est.device_s == est.seconds and est.measure_only_device_s == est.measure_only_s
    eta = packing.packed_eta([(est.seconds, est.device_s)] * 10, 2)
    assert eta.eta_s == pytest.approx(eta.sequential_s) and eta.bound == "device"


def test_plan_prints_and_writes_the_packed_eta(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.__main__ import main

    args = ["plan", "--profile", "smoke", "--device", "cpu", "--fast", "--results-dir",
            "/nonexistent-results"]
    assert main(args + ["--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert "packed" not in plain  # pack = 1: the document is as it was
    assert main(args + ["--json", "--set", "pack=2"]) == 0
    doc = json.loads(capsys.readouterr().out)
    packed = doc["packed"]
    assert doc["eta_s"] == pytest.approx(plain["eta_s"], abs=1e-3)  # the sequential sum stays
    assert packed["slots"] == 2 and packed["eta_s"] <= doc["eta_s"]
    assert packed["eta_s"] == max(packed["makespan_s"], packed["device_floor_s"])
    assert main(args + ["--set", "pack=2"]) == 0
    text = capsys.readouterr().out
    assert "packed, 2 cells at once (pack=2): ETA" in text
    assert main(args + ["--set", "pack=auto"]) == 0
    assert "pack=auto is decided at run time" in capsys.readouterr().out
