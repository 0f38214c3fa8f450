"""The plan: every selected cell with its hash, estimate, mode and whether it is already done.

::

    python -m bench plan --profile cpu            # the table and the total ETA
    python -m bench plan --profile cpu --json     # the same plan as one JSON document
    python -m bench plan --profile gpu --fast     # cost model only: nothing runs

:func:`make_plan` is the one producer of a plan: ``bench plan`` prints what it returns and
``bench run`` executes exactly the cells it returns that are not done, in its order (under
torchrun the ranks pull them longest expected first, :func:`bench.executors.ranks.longest_first`).

**Modes.** The mode is decided per dataset x model, for all its compatible strategies together
(:func:`group_modes`): with ``cell_budget_s`` set, when the *costliest* of them has a cost-model
estimate (:mod:`bench.plan.costmodel`, FLOPs, instant) above the budget, every one of them runs
measure-only, else every one trains. So the strategies a report compares for one model always
ran in one mode, and the decision depends on FLOPs and the profile only, never on how busy the
machine was while planning: ``plan``, ``plan --fast`` and ``run`` decide the same modes anywhere.

**Estimates.** Where the cost model is within a factor :data:`~bench.plan.costmodel.SURE_FACTOR`
of the budget, the cell is timed for a few steps by the sweep's executor, in a cell process,
never in the planner's: that timing refines the cell's estimate (the ETA) and nothing else.
``plan --fast`` skips it. Timings are shared by the seeds of a cell.

**Done.** A cell whose current row has a final status (:data:`bench.schema.FINAL_STATUSES`) is
done, unless the row contradicts itself (:func:`bench.results.rerun_reason`: an ``ok`` row
without accuracy, a name that is not the cell's; the plan says why it reruns it); a
``measure-only`` row is final only while the cell would still run measure-only (raise
``cell_budget_s`` and it is trained). ``--force`` plans every selected cell as not done.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from bench import config as config_mod
from bench import identity, results
from bench.config import Cell, Config
from bench.identity import device_key
from bench.plan.costmodel import SPEEDS, SURE_FACTOR, CostModel, Estimate
from bench.plan.packing import PackedEta, packed_eta, plan_slots
from bench.plan.speeds import FITTED_MODEL, RATIO_SPREAD
from bench.progress import fmt_s
from bench.schema import Mode

# A timer times a cell for a few steps: (seconds of the cell's work, "") or (None, why not).
# "timed out" as the why means it took longer than the budget: the cell is over budget.
TIMED_OUT = "timed out"
Timer = Callable[[Cell], tuple[float | None, str]]


@dataclass
class PlannedCell:
    index: int  # position in the selected grid (1-based)
    cell: Cell
    cell_hash: str
    estimate: Estimate
    mode: Mode
    done: bool = False  # a final row exists: a run skips it
    mode_basis: str = ""  # what decided the mode: the dataset x model's costliest strategy
    rerun_why: str = ""  # a final row exists but is not trusted (results.rerun_reason)

    @property
    def expected_s(self) -> float:
        """What running it will cost in the mode it will run in, seconds."""
        if self.estimate.incompatible:
            return self.estimate.seconds
        return self.estimate.seconds if self.mode == Mode.FULL else self.estimate.measure_only_s

    @property
    def expected_device_s(self) -> float:
        """Of :attr:`expected_s`, the device's own arithmetic (:class:`Estimate`), seconds."""
        if self.estimate.incompatible:
            return 0.0
        return (self.estimate.device_s if self.mode == Mode.FULL
                else self.estimate.measure_only_device_s)

    def as_json(self) -> dict[str, Any]:
        c = self.cell
        return {"index": self.index, "dataset": c.dataset, "model": c.model,
                "strategy": c.strategy, "seed": c.seed, "cell_hash": self.cell_hash,
                "mode": self.mode, "estimate_s": round(self.estimate.seconds, 3),
                "expected_s": round(self.expected_s, 3), "estimate_source": self.estimate.source,
                "incompatible": self.estimate.incompatible, "done": self.done,
                "mode_basis": self.mode_basis, "rerun_why": self.rerun_why}


def budget_mode(cfg: Config, estimate_s: float) -> Mode:
    """``measure-only`` for a cell estimated above ``cell_budget_s`` (seconds), else ``full``."""
    if cfg.cell_budget_s and estimate_s > cfg.cell_budget_s:
        return Mode.MEASURE_ONLY
    return Mode.FULL


def group_modes(cfg: Config, estimates: Sequence[tuple[Cell, Estimate]]
                ) -> dict[tuple[str, str], tuple[str, str]]:
    """``{(dataset, model): (mode, why)}``: one mode for every compatible strategy of a model.

    ``estimates`` are cost-model estimates (seconds; never timed ones, which move with the
    machine's load). A dataset x model runs measure-only when its costliest compatible cell is
    above ``cell_budget_s``: a comparison of its strategies then never mixes trained cells with
    untrained ones. ``why`` names that costliest cell, its estimate and the budget.
    """
    costliest: dict[tuple[str, str], tuple[float, str]] = {}
    for cell, est in estimates:
        if est.incompatible:
            continue
        key = (cell.dataset, cell.model)
        if key not in costliest or est.seconds > costliest[key][0]:
            costliest[key] = (est.seconds, cell.strategy)
    out = {}
    for key, (seconds, strategy) in costliest.items():
        mode = budget_mode(cfg, seconds)
        budget = (f" {'>' if mode == Mode.MEASURE_ONLY else '<='} cell_budget_s "
                  f"{fmt_s(cfg.cell_budget_s)}" if cfg.cell_budget_s else " (no budget)")
        out[key] = (mode, f"costliest strategy {strategy}: cost model {fmt_s(seconds)}{budget}")
    return out


def needs_timing(cfg: Config, est: Estimate) -> bool:
    """Is the cost model too close to the budget to decide the mode alone?"""
    if not cfg.cell_budget_s or est.incompatible:
        return False
    return cfg.cell_budget_s / SURE_FACTOR <= est.seconds <= cfg.cell_budget_s * SURE_FACTOR


def make_plan(cfg: Config, cells: Sequence[tuple[int, Cell]], device: str, *,
              results_dir: Path | None, force: bool = False, timer: Timer | None = None,
              on_cell: Callable[[PlannedCell], None] | None = None,
              ddp_world: int = 1, device_model: str = "") -> list[PlannedCell]:
    """THE plan of ``cells`` ((1-based index, cell) pairs) on ``device``.

    ``results_dir`` (when it exists) says which cells are done; ``timer`` times the cells whose
    cost-model estimate is near the budget (None: never time, the cost model decides).
    ``on_cell`` sees each planned cell as soon as it is decided (timing can take a while).
    ``ddp_world`` > 1: every cell is trained by that many ranks together (``run --ddp``), a
    hash of its own. ``device_model``: the device model the cost model prices
    (:data:`bench.plan.speeds.DEVICE_MODELS`; "" = the one its constants were fitted on).
    """
    kind = device.split(":")[0]
    hw = device_key(device, ddp_world)
    model = CostModel(kind, device_model)
    have_dir = results_dir is not None and results_dir.is_dir()
    final = results.final_rows(results_dir) if have_dir else {}
    mo_rows = measure_only_hashes(results_dir) if have_dir else set()
    timings: dict[tuple[str, str, str], tuple[float | None, str]] = {}
    planned = []
    # Modes from the whole grid (one seed is enough: seeds share an estimate), so that
    # --only, --shard and torchrun ranks plan a cell in the mode the full sweep gives it.
    grid = {(c.dataset, c.model, c.strategy): c for c in config_mod.cells(cfg)}
    grid.update({(c.dataset, c.model, c.strategy): c for _, c in cells})
    modes = group_modes(cfg, [(c, model.estimate(cfg, c)) for c in grid.values()])
    for index, cell in cells:
        h = identity.cell_hash(cfg, cell, hw)
        est = model.estimate(cfg, cell)
        row = final.get(h)
        why = results.rerun_reason(row, cell) if row is not None and not force else ""
        if row is not None and not force and not why:
            why = auto_mismatch(cfg, cell, kind, row)
        in_done = row is not None and not why
        # A final full row is done whatever the mode: no need to time the cell to know it.
        done_anyway = not force and in_done and h not in mo_rows
        if timer is not None and not done_anyway and needs_timing(cfg, est):
            key = (cell.dataset, cell.model, cell.strategy)
            if key not in timings:
                timings[key] = timer(cell)
            est = _timed(identity.effective(cfg, cell, kind), kind, est, *timings[key])
        # The dataset x model's mode from the cost model; an incompatible cell runs nothing.
        mode, basis = modes.get((cell.dataset, cell.model), (Mode.FULL, ""))
        if est.incompatible:
            mode, basis = Mode.FULL, ""
        is_done = not force and in_done and (h not in mo_rows or mode == Mode.MEASURE_ONLY)
        p = PlannedCell(index, cell, h, est, mode, is_done, basis, why)
        planned.append(p)
        if on_cell is not None:
            on_cell(p)
    return planned


def auto_mismatch(cfg: Config, cell: Cell, kind: str, row: dict[str, str]) -> str:
    """Why a final row of a cell whose precision or layout is ``"auto"`` is not this sweep's
    ("" when it is): the hash keeps ``"auto"``, so a row that resolved it otherwise (by the ISA
    rule of an earlier version, or another measurement) would resume as done and a model's
    strategies would be compared across precisions. Judged only against a measured decision
    (``auto_choices``: the sweep measures before it plans); the ISA rule alone decides nothing."""
    recipe = config_mod.for_model(cfg, cell.model)
    if "auto" not in (recipe.precision, recipe.channels_last):
        return ""
    if cell.model not in config_mod.parse_auto_choices(cfg.auto_choices):
        return ""
    now = identity.effective(cfg, cell, kind)
    ran = (row.get("precision", ""), str(row.get("channels_last", "")).lower())
    want = (str(now.precision), str(now.channels_last).lower())
    if ran == want:
        return ""
    layout = {"true": "channels_last", "false": "NCHW"}
    return (f"its row ran {ran[0]}/{layout.get(ran[1], ran[1])}, this sweep measured "
            f"{want[0]}/{layout.get(want[1], want[1])} for {cell.model} (precision/layout auto)")


def _timed(cfg: Config, kind: str, est: Estimate, seconds: float | None, why: str) -> Estimate:
    """The estimate after timing: the timed seconds plus the device's fixed cost per cell.
    ``cfg`` is the cell's effective config (:func:`bench.identity.effective`)."""
    # The device's share stays the cost model's (a timing measures the whole, not its parts),
    # never more than the timed whole.
    if seconds is not None:
        total = seconds + SPEEDS[(kind, cfg.precision)].start_s
        return replace(est, seconds=total, source="timed", device_s=min(est.device_s, total))
    if why == TIMED_OUT:  # a few steps took longer than the whole budget
        return replace(est, seconds=max(est.seconds, cfg.cell_budget_s * 2), source="timed out")
    return replace(est, source="cost-model (timing failed)")


def measure_only_hashes(results_dir: Path) -> set[str]:
    return {r["cell_hash"] for r in results.read_dir(results_dir, "runs")
            if r["mode"] == Mode.MEASURE_ONLY}


def eta_range(kind: str, eta_s: float) -> tuple[float, float, float] | None:
    """(p10, median, p90) of what ``eta_s`` (a cost-model ETA, seconds) may take, from the
    measured/estimated spread of the rows the device's constants were checked on
    (:data:`bench.plan.speeds.RATIO_SPREAD`); None where there is none."""
    spread = RATIO_SPREAD.get(kind)
    return None if spread is None else tuple(eta_s * r for r in spread)  # type: ignore[return-value]


def print_plan(cfg: Config, profile: str, device: str, planned: list[PlannedCell],
               out: TextIO | None = None, device_model: str = "") -> float:
    """The plan's total line; returns the ETA (seconds) of the cells a run would execute."""
    out = out or sys.stdout
    todo = [p for p in planned if not p.done]
    eta = sum(p.expected_s for p in todo)
    mo = sum(p.mode == Mode.MEASURE_ONLY and not p.estimate.incompatible for p in todo)
    inc = sum(bool(p.estimate.incompatible) for p in todo)
    budget = f", cell_budget_s={cfg.cell_budget_s:g}" if cfg.cell_budget_s else ""
    print(f"TOTAL ETA {fmt_s(eta)} for {len(todo)} cells ({len(todo) - mo - inc} full, "
          f"{mo} measure-only, {inc} incompatible; {len(planned) - len(todo)} already done) "
          f"on {device}{budget}", file=out)
    kind = device.split(":")[0]
    span = eta_range(kind, eta)
    if span is not None and eta > 0:
        p10, mid, p90 = span
        lo, med, hi = RATIO_SPREAD[kind]
        model = device_model or FITTED_MODEL.get(kind, kind)
        print(f"  on {model}: likely {fmt_s(mid)} ({fmt_s(p10)} to {fmt_s(p90)}): measured / "
              f"estimated was x{med:g} (p10 x{lo:g}, p90 x{hi:g}) on the rows the {kind} "
              "constants were checked on (bench/plan/speeds.py)", file=out)
    packed = packed_plan_eta(cfg, todo)
    if packed is not None:
        print(f"  packed, {packed.slots} cells at once (pack={cfg.pack}): ETA "
              f"{fmt_s(packed.eta_s)}, set by the {packed.bound}: the slots' makespan "
              f"{fmt_s(packed.makespan_s)}, the device's arithmetic in turn "
              f"{fmt_s(packed.device_floor_s)}; a floor, not yet checked against a packed "
              "run (bench/plan/packing.py)", file=out)
        return packed.eta_s
    _slots, why = plan_slots(cfg.pack)
    if why and todo:
        print(f"  {why}", file=out)
    return eta


def packed_plan_eta(cfg: Config, todo: Sequence[PlannedCell]) -> PackedEta | None:
    """The :class:`~bench.plan.packing.PackedEta` of the cells a run executes when the profile
    packs (``pack`` > 1), else None."""
    slots, _why = plan_slots(cfg.pack)
    if slots <= 1:
        return None
    return packed_eta([(p.expected_s, p.expected_device_s) for p in todo], slots)


def plan_line(p: PlannedCell) -> str:
    note = ""
    if p.estimate.incompatible:
        note = f"incompatible: {p.estimate.incompatible[:70]}"
    elif p.mode == Mode.MEASURE_ONLY:
        note = f"over budget: measure-only ({fmt_s(p.estimate.measure_only_s)}; {p.mode_basis})"
    if p.done:
        note = "done (skipped by run)" + (f"; {note}" if note else "")
    elif p.rerun_why:
        note = f"rerun: {p.rerun_why}" + (f"; {note}" if note else "")
    return (f"{p.index:>4}  {p.cell.label():<48} {fmt_s(p.estimate.seconds):>7}  "
            f"{p.mode:<12} {p.estimate.source:<10} {note}")


def plan_json(cfg: Config, profile: str, device: str, executor: str,
              planned: list[PlannedCell], device_model: str = "") -> dict[str, Any]:
    """The plan as one JSON-able document (``bench plan --json``); times in seconds."""
    todo = [p for p in planned if not p.done]
    kind = device.split(":")[0]
    eta = sum(p.expected_s for p in todo)
    span = eta_range(kind, eta)
    doc = {"profile": config_mod.profile_name(profile), "device": device,
           "device_id": device_key(device), "executor": executor,
           "cell_budget_s": cfg.cell_budget_s, "config_hash": identity.config_hash(cfg),
           "device_model": device_model or FITTED_MODEL.get(kind, kind),
           "cells_to_run": len(todo), "eta_s": round(eta, 3),
           "eta_range_s": None if span is None else [round(v, 1) for v in span],
           "cells": [p.as_json() for p in planned]}
    packed = packed_plan_eta(cfg, todo)
    if packed is not None:  # eta_s stays the sequential sum, as without packing
        doc["packed"] = {"slots": packed.slots, "eta_s": round(packed.eta_s, 3),
                         "makespan_s": round(packed.makespan_s, 3),
                         "device_floor_s": round(packed.device_floor_s, 3),
                         "bound": packed.bound}
    return doc
