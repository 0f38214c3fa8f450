"""Compatibility matrix: every torchvision (or timm) model × strategy, on the meta device.

    python -m bench doctor                                  # whole zoo × DEFAULT_PRESETS
    python -m bench doctor --source timm                    # timm's zoo (pip install '.[timm]')
    python -m bench doctor --models 'timm:resnet*' resnet18 # patterns of either source
    python -m bench doctor --strategies presets             # ... × every preset
    python -m bench doctor --models vgg16 resnet18 --strategies repeat3 conv1+droppools
    python -m bench doctor --models 'resnet*' --input 1x32x32 --out /tmp/compat.csv

Each cell builds the model under the strategy on the meta device (shapes only: no memory,
no arithmetic), runs a forward on a ``(2, 1, 28, 28)`` batch and records ok / failed; for a
failure, the original error, a plain explanation (which layer, what size reached it, the
smallest input that works, found by searching sizes on meta); parameters; forward GFLOPs per
image (``FlopCounterMode``, 2 FLOPs per multiply-add); the input side the network sees.
RegNet, whose constructor cannot run on meta, is built on the CPU with its weights on meta.

Writes ``runs/compat.csv`` (``--out``; ``--out results/compat.csv`` publishes) and a heatmap beside it (``compat.png``) and prints a
table. Exit code 0 when the matrix was produced (failed cells are results), 2 on bad input.
The default run (80 models × 6 strategies) takes about 2 minutes of CPU time, so about one
minute on an idle 2-core machine with its two worker processes. timm's zoo (``--source timm``:
1,371 architectures in timm 1.0.31, all of which build on meta) costs the same per model,
1.2-1.5 s of CPU time: every 10th architecture (138) × the 6 default strategies took 172-204
CPU-seconds (195-288 s wall, two runs on a shared 2-core AMD EPYC at load 1.4-5.6), so the whole
zoo is ~29-34 CPU-minutes: about half an hour here, ~15 min on an idle 2-core machine.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import os
import re
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

import strategies
from bench.outpath import out_problem
from strategies import NotApplicableError, StrategyError
from strategies._meta import meta_forward
from strategies.explain import ERROR_CLASSES, diagnose, explain_message

COLUMNS = ("model", "strategy", "status", "error_class", "explanation", "min_input_px", "params",
           "gflops_fwd_per_img", "effective_input_px", "error")
DEFAULT_OUT = Path("runs") / "compat.csv"  # results/compat.csv is the published copy
# Heatmap classes: ok first, then failure classes; "build" = the model itself did not build.
CLASSES = ("ok", *ERROR_CLASSES, "build")
_COLOURS = {"ok": "#4daf4a", "channels": "#e41a1c", "too-small": "#ff7f00",
            "exact-size": "#984ea3", "shape": "#a65628", "not-applicable": "#d9d9d9",
            "oom": "#f781bf", "bad-spec": "#999999", "other": "#525252", "build": "#000000"}


# ---------------------------------------------------------------------------------------------
# Checking cells
# ---------------------------------------------------------------------------------------------

def _failed(model: str, spec: str, error_class: str, explanation: str, exc: BaseException,
            **extra: Any) -> dict[str, Any]:
    row = dict.fromkeys(COLUMNS, "")
    row.update(model=model, strategy=spec, status="failed", error_class=error_class,
               explanation=explanation, error=f"{type(exc).__name__}: {_one_line(exc)}", **extra)
    return row


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def check_model(model_name: str, specs: Sequence[str], *, input_px: int = 28, batch: int = 2,
                num_classes: int = 10, in_channels: int = 1) -> list[dict[str, Any]]:
    """One row per strategy for ``model_name`` (the backbone is built once and shared)."""
    try:
        backbone, _ = strategies.build_backbone(model_name, num_classes, device="meta")
    except Exception as exc:  # a model that does not build is a result too
        return [_failed(model_name, spec, "build", f"{model_name} did not build: "
                        f"{_one_line(exc)}", exc) for spec in specs]
    cache: dict[Any, Any] = {}  # min-size searches, shared by the strategies of this model
    rows = []
    for spec in specs:
        rows.append(_check_cell(backbone, model_name, spec, input_px, batch, num_classes, cache,
                                in_channels))
    return rows


def _check_cell(backbone: torch.nn.Module, model_name: str, spec: str, input_px: int, batch: int,
                num_classes: int, cache: dict[Any, Any], in_channels: int = 1) -> dict[str, Any]:
    # The backbone is shared by the strategies of a model: what a strategy replaces is put
    # back afterwards (much cheaper than a deep copy per cell).
    undo: list[tuple[str, torch.nn.Module]] = []
    try:
        return _check_adapted(backbone, model_name, spec, input_px, batch, num_classes, cache,
                              undo, in_channels)
    finally:
        strategies.restore(backbone, undo)


def _check_adapted(backbone: torch.nn.Module, model_name: str, spec: str, input_px: int,
                   batch: int, num_classes: int, cache: dict[Any, Any],
                   undo: list[tuple[str, torch.nn.Module]],
                   in_channels: int = 1) -> dict[str, Any]:
    try:
        model = strategies.adapt(backbone, model_name, spec, input_px=input_px,
                                 in_channels=in_channels, num_classes=num_classes, undo=undo)
    except NotApplicableError as exc:
        return _failed(model_name, spec, "not-applicable", explain_message(exc, model_name), exc)
    except Exception as exc:
        return _failed(model_name, spec, "build", f"the strategy did not apply: {_one_line(exc)}",
                       exc)
    facts = {"params": sum(p.numel() for p in model.parameters()),
             "effective_input_px": model.effective_input_px}
    try:
        with FlopCounterMode(display=False) as counter:
            out = meta_forward(model, (batch, in_channels, input_px, input_px))
        if tuple(out.shape) != (batch, num_classes):
            raise RuntimeError(f"expected logits of shape {(batch, num_classes)}, "
                               f"got {tuple(out.shape)}")
    except Exception as exc:  # a failed forward is a result: explain it
        d = diagnose(model, exc, cache)
        return _failed(model_name, spec, d.error_class, d.explanation, exc,
                       min_input_px=d.min_input_px if d.min_input_px is not None else "", **facts)
    row = dict.fromkeys(COLUMNS, "")
    row.update(model=model_name, strategy=spec, status="ok",
               gflops_fwd_per_img=round(counter.get_total_flops() / batch / 1e9, 6), **facts)
    return row


def _worker_init() -> None:
    torch.set_num_threads(1)  # meta ops do no arithmetic; keep the two workers off each other


def run(models: Sequence[str], specs: Sequence[str], *, input_px: int = 28, batch: int = 2,
        num_classes: int = 10, jobs: int = 1, progress: bool = True,
        in_channels: int = 1) -> list[dict[str, Any]]:
    """Check every model × spec; rows in model order, then spec order."""
    results: dict[str, list[dict[str, Any]]] = {}
    start = time.perf_counter()

    def report(name: str, rows: list[dict[str, Any]]) -> None:
        results[name] = rows
        if progress:
            n_ok = sum(r["status"] == "ok" for r in rows)
            print(f"[{len(results):>3}/{len(models)}] {name:<20} {n_ok}/{len(rows)} ok "
                  f"({time.perf_counter() - start:5.1f} s)", file=sys.stderr, flush=True)

    kwargs = dict(input_px=input_px, batch=batch, num_classes=num_classes,
                  in_channels=in_channels)
    # A worker costs an interpreter start and a torch import (seconds): not worth it for a few.
    if jobs <= 1 or len(models) * len(specs) < 40:
        for name in models:
            report(name, check_model(name, specs, **kwargs))
    else:
        # fork shares the already imported torch (a fresh import costs ~4 s of CPU per worker);
        # safe here because this process has run no tensor op (so started no thread pool).
        # spawn where fork does not exist.
        method = "fork" if "fork" in get_all_start_methods() else "spawn"
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context(method),
                                 initializer=_worker_init) as pool:
            futures = {pool.submit(check_model, name, list(specs), **kwargs): name
                       for name in models}
            pending = dict(futures)
            while pending:
                for future in list(pending):
                    if future.done():
                        report(pending.pop(future), future.result())
                time.sleep(0.05)
    return [row for name in models for row in results[name]]


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------

def write_csv(rows: Iterable[dict[str, Any]], path: Path) -> None:
    """Write ``rows`` with :data:`COLUMNS` atomically (a temp file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def _cell_label(row: dict[str, Any]) -> str:
    if row["status"] == "ok":
        return "ok"
    cls, px = row["error_class"], row["min_input_px"]
    if cls == "exact-size":
        return f"={px}px" if px != "" else "exact"
    if cls in ("too-small", "shape"):
        return f">={px}px" if px != "" else cls
    return {"channels": "channels", "not-applicable": "n/a"}.get(cls, cls)


def render_table(rows: Sequence[dict[str, Any]], specs: Sequence[str],
                 explain: bool = False) -> str:
    """The matrix as text: one line per model, one column per strategy."""
    by_cell = {(r["model"], r["strategy"]): r for r in rows}
    models = list(dict.fromkeys(r["model"] for r in rows))
    name_w = max([len("model"), *map(len, models)])
    widths = [max(len(s), 9) for s in specs]
    lines = ["  ".join([f"{'model':<{name_w}}", *(f"{s:<{w}}" for s, w in zip(specs, widths, strict=True))])]
    lines.append("-" * len(lines[0]))
    for m in models:
        cells = [f"{_cell_label(by_cell[m, s]):<{w}}" for s, w in zip(specs, widths, strict=True)]
        lines.append("  ".join([f"{m:<{name_w}}", *cells]).rstrip())
    lines.append("-" * len(lines[0]))
    totals = [f"{sum(by_cell[m, s]['status'] == 'ok' for m in models)}/{len(models)} ok"
              for s in specs]
    lines.append("  ".join([f"{'':<{name_w}}", *(f"{t:<{w}}" for t, w in zip(totals, widths, strict=True))]))
    lines.append("ok: runs | >=Npx: input too small, N px is the smallest that works | =Npx: "
                 "needs exactly N px | channels: needs a channel adapter | n/a: not applicable")
    if explain:
        lines.append("")
        for r in rows:
            if r["status"] != "ok":
                lines.append(f"{r['model']} × {r['strategy']}: {r['explanation']}")
    return "\n".join(lines)


def plot_heatmap(rows: Sequence[dict[str, Any]], specs: Sequence[str], path: Path,
                 title: str = "") -> None:
    """Model × strategy, coloured by ok / failure class; failed cells show the size they need."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import seaborn as sns
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    by_cell = {(r["model"], r["strategy"]): r for r in rows}
    models = list(dict.fromkeys(r["model"] for r in rows))
    present = [c for c in CLASSES if any(
        (r["status"] == "ok" and c == "ok") or r["error_class"] == c for r in rows)]
    index = {c: i for i, c in enumerate(present)}
    codes = np.array([[index["ok" if by_cell[m, s]["status"] == "ok"
                             else by_cell[m, s]["error_class"]] for s in specs] for m in models])
    labels = np.array([["" if by_cell[m, s]["status"] == "ok" else
                        _cell_label(by_cell[m, s]).replace("px", "").replace(">=", "≥")
                        .replace("channels", "ch") for s in specs] for m in models])
    height = 1.6 + 0.24 * len(models)
    width = 3.0 + 1.15 * len(specs)
    fig, ax = plt.subplots(figsize=(width, height))
    sns.heatmap(codes, ax=ax, cmap=ListedColormap([_COLOURS[c] for c in present]),
                vmin=-0.5, vmax=len(present) - 0.5, cbar=False, annot=labels, fmt="",
                annot_kws={"fontsize": 7}, linewidths=0.5, linecolor="white",
                xticklabels=list(specs), yticklabels=models)
    ax.xaxis.tick_top()
    ax.tick_params(axis="x", rotation=30, labelsize=8, length=0)
    plt.setp(ax.get_xticklabels(), ha="left")
    ax.tick_params(axis="y", labelsize=7, length=0)
    legend = [Patch(color=_COLOURS[c], label=c) for c in present]
    ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
              frameon=False, title="cell", title_fontsize=8)
    ax.set_title(title, fontsize=9, pad=60 if len(specs) > 1 else 30)
    fig.text(0.01, 0.003, "label: smallest input side that works (≥N) or the exact one (=N); "
             "ch: needs a channel adapter; n/a: strategy not applicable", fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

def _split(values: Sequence[str]) -> list[str]:
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def resolve_models(values: Sequence[str], source: str = "torchvision") -> list[str]:
    """Names, comma lists, shell-style patterns (``resnet*``, ``timm:resnet*``) or ``all`` ->
    model names. ``all`` and names or patterns without a prefix mean ``source``'s models
    (``--source timm --models 'resnet*'`` is ``timm:resnet*``); a ``timm:`` one is timm's
    whatever ``source`` is. A missing timm raises the install hint."""
    zoo = strategies.list_models(source)
    chosen: list[str] = []
    for value in _split(values):
        if value != "all" and ":" not in value and source != "torchvision":
            value = f"{source}:{value}"
        prefix, sep, _ = value.partition(":")
        pool = strategies.list_models(prefix) if sep else zoo
        if value == "all":
            chosen += zoo
        elif any(ch in value for ch in "*?["):
            matched = fnmatch.filter(pool, value)
            if not matched:
                listing = (", ".join(pool) if len(pool) <= 100 else
                           f"{len(pool)} {prefix if sep else source} models, listed by "
                           f"`python -m bench list --source {prefix if sep else source}`")
                raise StrategyError(f"no model matches {value!r}; valid models: {listing}")
            chosen += matched
        else:
            strategies.check_model_name(value)
            chosen.append(value)
    if not chosen:
        raise StrategyError("no models given; use --models all or names such as vgg16 resnet18")
    return list(dict.fromkeys(chosen))


def resolve_strategies(values: Sequence[str] | None) -> list[str]:
    """Specs as given (each validated); ``default`` for DEFAULT_PRESETS, ``presets``/``all``
    for every preset. None means ``default``."""
    chosen: list[str] = []
    for value in _split(values or ["default"]):
        if value == "default":
            chosen += list(strategies.DEFAULT_PRESETS)
        elif value in ("all", "presets"):
            chosen += list(strategies.PRESETS)
        else:
            strategies.parse_spec(value)  # raises StrategyError naming the bad part
            chosen.append(value.strip().lower())
    if not chosen:
        raise StrategyError("no strategies given")
    return list(dict.fromkeys(chosen))


def parse_input(text: str) -> tuple[int, int]:
    """``1x28x28`` -> (1, 28): channels and side in px. Square images, 1 to 4 channels (as
    the datasets, :mod:`bench.data.user`)."""
    match = re.fullmatch(r"\s*(\d+)\s*[x×,]\s*(\d+)\s*[x×,]\s*(\d+)\s*", text)
    if not match:
        raise StrategyError(f"bad --input {text!r}: expected CxHxW, e.g. 1x28x28")
    c, h, w = (int(g) for g in match.groups())
    if not 1 <= c <= 4 or h != w or h < 1:
        raise StrategyError(f"bad --input {text!r}: the strategies take square images with 1 "
                            "to 4 channels, CxNxN with N >= 1 (e.g. 1x28x28, 3x32x32)")
    return c, h


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench doctor",
        description="Which torchvision (or timm) models run under which strategies (meta "
                    "device), and why the others fail.")
    parser.add_argument("--models", nargs="+", default=["all"], metavar="MODEL",
                        help="model names, comma lists, patterns like 'resnet*' or "
                             "'timm:resnet*', or all (default: all of --source)")
    parser.add_argument("--source", default="torchvision", choices=["torchvision", "timm"],
                        help="the zoo that 'all' and bare patterns mean (default: %(default)s; "
                             "timm needs pip install '.[timm]')")
    parser.add_argument("--strategies", nargs="+", default=None, metavar="SPEC",
                        help="strategy specs or presets; 'presets' for all of them "
                             f"({', '.join(strategies.PRESETS)}); default: "
                             f"{', '.join(strategies.DEFAULT_PRESETS)}")
    parser.add_argument("--input", default=None, metavar="CxHxW",
                        help="raw input shape, square, 1-4 channels (default: 1x28x28, or the "
                             "--dataset's)")
    parser.add_argument("--dataset", default=None, metavar="NAME",
                        help="take the input shape and class count from a dataset: mnist, "
                             "folder:PATH, npz:PATH, ... (imported first if needed)")
    parser.add_argument("--data-root", default=None, metavar="DIR",
                        help="data folder of --dataset (default: $ADAPTBENCH_DATA or ./data)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="CSV to write (default: %(default)s)")
    parser.add_argument("--png", type=Path, default=None,
                        help="heatmap to write (default: the CSV's path with .png)")
    parser.add_argument("--no-png", action="store_true", help="skip the heatmap")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="worker processes (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=2, help="meta batch size (default: 2)")
    parser.add_argument("--num-classes", type=int, default=10, help="(default: 10)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="print the explanation of every failed cell")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress, no table")
    return parser


def main(argv: list[str] | None = None) -> int:
    from bench import data as data_mod
    from bench.data import DataError

    args = build_parser().parse_args(argv)
    try:
        models = resolve_models(args.models, args.source)
        specs = resolve_strategies(args.strategies)
        in_channels, input_px = parse_input(args.input or "1x28x28")
        if args.jobs < 1 or args.batch < 1 or args.num_classes < 1:
            raise StrategyError("--jobs, --batch and --num-classes must be >= 1")
        if args.dataset:
            if args.input:
                raise StrategyError("give --input or --dataset, not both")
            info = data_mod.get_info(args.dataset, args.data_root)
            in_channels, input_px = info.shape[0], info.shape[1]
            args.num_classes = info.num_classes
        png = None if args.no_png else args.png or args.out.with_suffix(".png")
        for flag, path in (("--out", args.out), ("--png", png)):
            problem = out_problem(path, is_dir=False) if path is not None else ""
            if problem:  # before the matrix is computed, not a traceback after it
                raise StrategyError(f"{flag}: {problem}")
    except (StrategyError, DataError) as exc:
        print(f"doctor: error: {exc}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    rows = run(models, specs, input_px=input_px, batch=args.batch, num_classes=args.num_classes,
               jobs=args.jobs, progress=not args.quiet, in_channels=in_channels)
    wall_s = time.perf_counter() - start
    if all(r["error_class"] == "not-applicable" for r in rows):
        print("doctor: error: no requested strategy applies to the requested models:\n  "
              + "\n  ".join(f"{r['model']} × {r['strategy']}: {r['explanation']}" for r in rows),
              file=sys.stderr)
        return 2
    write_csv(rows, args.out)
    if png is not None:
        title = (f"{args.source} models × strategies, input {in_channels}×{input_px}×{input_px} "
                 f"(meta device, torch {torch.__version__.split('+')[0]})")
        plot_heatmap(rows, specs, png, title)
    if not args.quiet:
        print(render_table(rows, specs, explain=args.verbose or len(rows) <= 30))
        n_ok = sum(r["status"] == "ok" for r in rows)
        print(f"\n{n_ok}/{len(rows)} cells ok; {len(models)} models × {len(specs)} strategies "
              f"in {wall_s:.1f} s -> {args.out}" + (f", {png}" if png else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
