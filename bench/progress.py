"""What a sweep prints while it runs and when it ends: the progress bar, one line per cell,
the summary table and the sweep efficiency (training time over wall time)."""

from __future__ import annotations

import math
import shlex
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.config import Cell
from bench.schema import Status


def fmt_s(seconds: float) -> str:
    """``3725`` -> ``1h02m``; ``95`` -> ``1m35s``; ``7.2`` -> ``7s``."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class Reporter:
    """Progress: one tqdm bar (ETA weighted by estimates) or plain lines (quiet, torchrun)."""

    def __init__(self, total_s: float, n_cells: int, *, bar: bool, prefix: str = "",
                 start_lines: bool = True) -> None:
        self.prefix = prefix
        self.start_lines = start_lines
        self.n_cells = n_cells
        self.done_cells = 0
        self.started = 0  # cells started or recorded so far (several may run at once)
        self.bar = None
        if bar:
            from tqdm import tqdm

            self.bar = tqdm(total=max(total_s, 1e-9), unit="s", dynamic_ncols=True,
                            bar_format="{l_bar}{bar}| [{elapsed}<{remaining}] {postfix}")

    def start(self, index: int, cell: Cell, note: str) -> None:
        # Numbered in start order; a cell recorded without starting (finish alone) takes a
        # number too, so one-at-a-time numbering is the plan's.
        self.started = max(self.started, self.done_cells) + 1
        text = f"cell {self.started}/{self.n_cells}: {cell.label()}{note}"
        if self.bar is not None:
            self.bar.set_postfix_str(text)
        elif self.start_lines:
            self.line(f"start {text}")

    def child_line(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(f"    {line}")

    def finish(self, expected_s: float, text: str) -> None:
        self.done_cells += 1
        if self.bar is not None:
            self.bar.update(expected_s)
        self.line(text)

    def line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(f"{self.prefix}{text}", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def describe(row: dict[str, Any]) -> str:
    """One cell's outcome in a few words: status, mode, accuracy, throughput, wall time."""
    bits = [str(row.get("status")), f"({row.get('mode')})"]
    acc = row.get("test_acc")
    if isinstance(acc, (int, float)) and acc == acc:
        bits.append(f"acc {acc:.4f}")
    rate = row.get("train_img_s")
    if isinstance(rate, (int, float)) and rate == rate:
        packed = _packed(row)
        # A cell that shared its device: the figure is not a solo one, and says so.
        bits.append(f"{rate:.1f} img/s" + (f" (packed ×{packed})" if packed > 1 else ""))
    wall = row.get("wall_s")
    if isinstance(wall, (int, float)) and wall == wall:
        bits.append(f"{fmt_s(wall)}")
    if row.get("status") != Status.OK and row.get("reason"):
        bits.append(f"- {str(row['reason'])[:120]}")
    return " ".join(bits)


def training_s(rows: Iterable[dict[str, Any]]) -> float:
    """Seconds spent training epochs: the sum of ``epochs x epoch_s`` (empty values count 0)."""
    total = 0.0
    for row in rows:
        try:
            value = float(row.get("epochs") or 0) * float(row.get("epoch_s") or 0)
        except (TypeError, ValueError):
            continue
        if math.isfinite(value):
            total += value
    return total


def efficiency_line(train_s: float, wall_s: float, executor: str) -> str:
    """``sweep efficiency 0.52 = 7.8 s training / 15.0 s wall (warm executor)``."""
    eff = train_s / wall_s if wall_s > 0 else float("nan")
    return (f"sweep efficiency {eff:.2f} = {train_s:.1f} s training (sum of epochs x epoch_s) / "
            f"{wall_s:.1f} s sweep wall time ({executor} executor)")


def print_summary(rows_by_hash: dict[str, dict[str, str]], wanted: dict[str, Cell],
                  runs_path: Path, suffix: str, rdir: Path) -> None:
    """A table of the selected cells as recorded, and where the files are."""
    print()
    print(f"{'cell':<48} {'status':<12} {'mode':<12} {'test_acc':>8} {'train_img_s':>11} "
          f"{'peak_mib':>9} {'wall':>7}")
    counts: dict[str, int] = {}
    packed = 0
    for h, cell in wanted.items():
        r = rows_by_hash.get(h)
        if r is None:
            print(f"{cell.label():<48} {'(no row)':<12}")
            counts["missing"] = counts.get("missing", 0) + 1
            continue
        counts[r["status"]] = counts.get(r["status"], 0) + 1
        packed += _packed(r) > 1
        wall = fmt_s(float(r["wall_s"])) if r["wall_s"] else ""
        print(f"{cell.label():<48} {r['status']:<12} {r['mode']:<12} {_num(r['test_acc'], 4):>8} "
              f"{_num(r['train_img_s'], 1):>11} {_num(r['peak_mem_mib'], 0):>9} {wall:>7}")
    print(", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    if packed:
        print(f"{packed} of these cells shared the device with others (concurrency > 1): their "
              "train_img_s and wall are packed figures, not solo ones (docs/scaling.md)")
    print(f"results: {runs_path} (+ history, ops, config.toml, env{suffix}.json)  report: "
          f"python -m bench report {shlex.quote(str(rdir))}", flush=True)


def _packed(row: dict[str, Any]) -> int:
    """The row's ``concurrency`` (cells on its device at once; 1 when empty or unreadable)."""
    try:
        return int(float(row.get("concurrency") or 1))
    except (TypeError, ValueError):
        return 1


def _num(text: str, digits: int) -> str:
    try:
        return f"{float(text):.{digits}f}"
    except ValueError:
        return text
