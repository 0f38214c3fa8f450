"""Resume and precision / layout ``"auto"``: the cell hash keeps ``"auto"``, so the plan checks
what a final row resolved it to against what this sweep measured (bench/plan/planner.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import config, identity
from bench.config import Cell
from bench.plan import planner

CELL = Cell("mnist", "resnet18", "repeat3", 0)


def _cfg(*sets: str) -> config.Config:
    return config.load("cpu", ["train_size=64", "test_size=32", "val_size=0", *sets])


def test_a_row_that_resolved_auto_otherwise_is_not_this_sweeps() -> None:
    cfg = _cfg("auto_choices=resnet18=bf16/channels_last")
    row = {"precision": "fp32", "channels_last": "false"}
    why = planner.auto_mismatch(cfg, CELL, "cpu", row)
    assert why == ("its row ran fp32/NCHW, this sweep measured bf16/channels_last for resnet18 "
                   "(precision/layout auto)")
    assert planner.auto_mismatch(cfg, CELL, "cpu",
                                 {"precision": "bf16", "channels_last": "true"}) == ""
    # No measured decision for the model (plan --fast before any probe): the rule decides
    # nothing, and a pinned recipe is in the hash already.
    assert planner.auto_mismatch(_cfg(), CELL, "cpu", row) == ""
    pinned = _cfg("precision=fp32", "channels_last=false", "auto_choices=resnet18=bf16/nchw")
    assert planner.auto_mismatch(pinned, CELL, "cpu",
                                 {"precision": "fp32", "channels_last": "false"}) == ""


def test_the_plan_reruns_such_a_row_and_says_why(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    cfg = _cfg("auto_choices=resnet18=bf16/channels_last", "models=resnet18",
               "strategies=repeat3", "seeds=0")
    h = identity.cell_hash(cfg, CELL, identity.device_key("cpu"))
    rows = {h: {"cell_hash": h, "status": "ok", "mode": "full", "test_acc": "0.9",
                "dataset": "mnist", "model": "resnet18", "strategy": "repeat3", "seed": "0",
                "precision": "fp32", "channels_last": "false"}}
    monkeypatch.setattr(planner.results, "final_rows", lambda _dir: rows)
    monkeypatch.setattr(planner, "measure_only_hashes", lambda _dir: set())
    (planned,) = planner.make_plan(cfg, [(1, CELL)], "cpu", results_dir=tmp_path)
    assert not planned.done and "ran fp32/NCHW" in planned.rerun_why
    rows[h].update(precision="bf16", channels_last="true")
    (planned,) = planner.make_plan(cfg, [(1, CELL)], "cpu", results_dir=tmp_path)
    assert planned.done and planned.rerun_why == ""
