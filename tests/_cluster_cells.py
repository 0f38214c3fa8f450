"""A stand-in cell for the ray and submitit executor tests (``ADAPTBENCH_CELL_IMPL``): runs in
the cell's process, so it stays light (no torch, no Ray). ``ADAPTBENCH_TEST_CELLS`` gives a
``model/strategy`` a behaviour: ``sleep:S`` (seconds), ``killparent:MARKER`` (SIGKILL the
process that started this one -- the Ray actor -- the first time, when MARKER does not exist
yet; then an ordinary cell), ``killparent`` (every time) or ``kill`` (SIGKILL its own process:
a warm worker dies mid-cell). ``ADAPTBENCH_TEST_STAMPS=DIR``: every cell writes
``DIR/<strategy>.json`` with its start and end (wall clock, s), its pid and the
``OMP_NUM_THREADS`` it saw, so a test can see which cells ran at once; with it, ``waitfor:NAME``
holds the cell (60 s at most) until another cell has written ``DIR/NAME.json``, so two cells
overlap however slowly a loaded machine starts the other; ``meet:NAME`` writes
``DIR/<strategy>.start`` and holds the cell (60 s at most) until ``DIR/NAME.start`` exists: two
cells that meet each other both started before either ended."""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Result:
    row: dict
    history: list = field(default_factory=list)
    ops: list = field(default_factory=list)


def _action(cell) -> str:
    for item in os.environ.get("ADAPTBENCH_TEST_CELLS", "").split(";"):
        key, _, action = item.partition("=")
        if key == f"{cell.model}/{cell.strategy}":
            return action
    return ""


def run_cell(cfg, cell, *, device="auto", measure_only=False, out_dir=None):
    action = _action(cell)
    kind, _, arg = action.partition(":")
    start = time.time()
    # What the engine prints after each epoch: the executor relays it to the sweep's progress.
    print(f"  epoch 0.5: stand-in {cell.model}/{cell.strategy}", flush=True)
    if kind == "sleep":
        time.sleep(float(arg))
    if kind == "killparent" and not (arg and Path(arg).exists()):
        if arg:
            Path(arg).write_text("killed once")
        os.kill(os.getppid(), signal.SIGKILL)
        time.sleep(60)  # the kernel ends this process with its parent (PR_SET_PDEATHSIG)
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "meet":
        Path(os.environ["ADAPTBENCH_TEST_STAMPS"], f"{cell.strategy}.start").write_text("")
    if kind in ("waitfor", "meet"):
        suffix = ".json" if kind == "waitfor" else ".start"
        other = Path(os.environ["ADAPTBENCH_TEST_STAMPS"], f"{arg}{suffix}")
        deadline = time.monotonic() + 60
        while not other.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    if stamps := os.environ.get("ADAPTBENCH_TEST_STAMPS"):
        Path(stamps, f"{cell.strategy}.json").write_text(json.dumps(
            {"start": start, "end": time.time(), "pid": os.getpid(),
             "omp_threads": os.environ.get("OMP_NUM_THREADS", "")}))
    row = {"status": "ok", "reason": "", "mode": "full", "train_img_s": 100.0, "wall_s": 0.01,
           "epoch_s": 0.1, "test_acc": 0.5, "device": "cpu", "device_name": "Fake CPU",
           "train_img_s_p10": 90.0, "train_img_s_p90": 110.0}
    history = [{"epoch": 1, "step": 1, "train_loss": 1.0, "test_acc": 0.5, "epoch_s": 0.1,
                "elapsed_s": 0.1, "per_class_acc": [0.5] * 10}]
    return Result(row, history, [])


def estimate_cell_s(cfg, cell, device="auto") -> float:
    return 1.0
