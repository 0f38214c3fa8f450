"""What a cell carries through its phases: :class:`CellResult` (its row, history and ops rows),
:class:`Run` (what each phase of :func:`bench.engine.train.run_cell` leaves for the next) and
:class:`Diverged`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench.config import Cell, Config


@dataclass
class CellResult:
    """What one cell produced: a results row (no provenance), history rows, profiler rows."""

    row: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    ops: list[dict[str, Any]] = field(default_factory=list)


class Diverged(RuntimeError):
    """The training loss became non-finite."""


@dataclass
class Run:
    """One cell on its way through the phases of :func:`bench.engine.train.run_cell`: what each
    phase leaves for the next (set in phase order; a field is None until its phase has run)."""

    cfg: Config  # the effective config; the build phase resolves compile and graphs in it
    cell: Cell
    dev: torch.device
    measure_only: bool
    out_dir: Path | None
    result: CellResult
    # prepare
    threads: int = 0  # torch intra-op threads: the CPU a timed window could use
    info: Any = None  # the dataset's DatasetInfo
    splits: Any = None  # the subsets on the device
    eval_x: Any = None  # what is evaluated after every epoch: the validation split, or test
    eval_y: Any = None
    split_name: str = "test"
    # build
    model: Any = None  # the adapted model (what is evaluated)
    group: Any = None  # this cell's --ddp group (bench/executors/ddp.py), or None
    train_model: Any = None  # the model as trained: under DistributedDataParallel in a group
    shard: tuple[int, int] = (0, 1)  # this rank's slice of every batch
    # budget
    steps_per_epoch: int = 0
    total_steps: int = 0
    epochs: int = 0
    # steps
    eval_bs: int = 0  # evaluation batch, images
    train_step: Any = None
    eval_step: Any = None
    # epochs
    meter: Any = None  # the timed windows (measure.ThroughputMeter)
    step: int = 0  # optimizer steps so far
    first_step_s: float = float("nan")  # the first step, synchronised (compile_s)
    loss_sum: Any = None  # the current epoch's summed loss, on the device
    loss_count: int = 0
    train_s: float = 0.0  # cumulative training seconds, evaluation excluded
    epoch_times: list[float] = field(default_factory=list)  # training seconds per epoch
    eval_rates: list[float] = field(default_factory=list)  # evaluation images/s per point
    best_acc: float = -1.0
    # remeasure, profile
    extra_step: Callable[[], int] | None = None  # one untimed step; returns its images

    @property
    def row(self) -> dict[str, Any]:
        return self.result.row
