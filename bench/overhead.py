"""How much does the harness cost? Engine throughput vs a bare training loop, side by side.

The engine is :func:`bench.train.run_cell` in measure-only mode. The bare loop is what a user
would write: take the next batch from ``bench.data.batches`` (the same generator, the same
uint8 data on the device, the same seed, so the same indexing and normalisation work), then
forward, loss, ``zero_grad``, backward, optimizer step. Everything else is shared: model,
strategy, batch size, optimizer (``bench.train.make_optimizer``), precision (fp32), backend
flags, thread count, warm-up steps excluded, and timing windows of ``--window-steps``
consecutive whole steps (batch preparation included), each bounded by a device sync and a
clock read. What the engine adds on top (LR schedule, loss accumulator, finiteness check, the
meter) is the overhead being measured; none of it is excluded.

Both run in this one process, interleaved, in alternating order (bare, engine, engine, bare,
...) so that drift in the machine's speed hits both alike. Each side's figure for a round is
the median img/s over its windows; the figure reported is the median over rounds; the ratio
is engine / bare (goal: >= 0.97).

    python -m bench.overhead                       # resnet18 repeat3 and vgg16 post-convtranspose
    python -m bench.overhead --cells resnet18:repeat3 --rounds 5 --windows 5

The last line printed is the worst (lowest) engine/bare ratio. Exit codes: 0 measured, 2 bad
input (including ``--window-steps`` under 10: shorter windows are dominated by the clock reads
and syncs at their ends and do not measure steady-state throughput).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from bench import measure
from bench.config import Cell, Config
from bench.train import make_optimizer, resolve_device, run_cell

DEFAULT_CELLS = ("resnet18:repeat3:64", "vgg16:post-convtranspose:16")
MIN_WINDOW_STEPS = 10
SEED = 0


def cell_config(batch_size: int, warmup_steps: int, window_steps: int, windows: int,
                threads: int, data_root: str = "") -> Config:
    """The recipe both sides run: one epoch holds the warm-up and every timed step.

    An epoch boundary ends the engine's open window, so ``train_size`` is sized for
    ``warmup_steps + windows * window_steps`` full batches. No clipping (per_model would clip
    VGG): clipping is recipe, not harness, cost; the bare loop does not clip either.
    """
    if window_steps < MIN_WINDOW_STEPS:
        raise ValueError(f"window_steps={window_steps}: windows shorter than "
                         f"{MIN_WINDOW_STEPS} steps are refused")
    steps = warmup_steps + windows * window_steps
    return Config(batch_size=batch_size, train_size=batch_size * steps, test_size=100,
                  warmup_steps=warmup_steps, window_steps=window_steps,
                  measure_only_steps=steps, max_steps_per_epoch=0, profile_steps=0,
                  grad_clip=0.0, per_model=(), precision="fp32", channels_last=False,
                  compile=False, num_threads=threads, data_root=data_root, peak_tflops=1.0)


def bare_loop_window_img_s(model_name: str, spec: str, cfg: Config, device: torch.device,
                           clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """img/s of each timed window of a plain loop (warm-up excluded), in window order.

    Windows are ``cfg.window_steps`` consecutive whole steps between boundaries, as in
    :class:`bench.measure.ThroughputMeter`: a boundary (device sync, clock read) falls before a
    step fetches its batch, and one boundary closes a window and opens the next. Batches come
    from ``bench.data.batches`` over the same uint8 subset, seed and epoch as the engine's, made
    inside the window as the engine makes them.
    """
    import strategies
    from bench import data as data_mod
    from bench.train import _seed_everything

    info = data_mod.DATASETS["mnist"]
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    _seed_everything(SEED, cfg.deterministic, device)  # the engine's backend flags
    splits = data_mod.load("mnist", cfg.data_root or None, device=device,
                           train_size=cfg.train_size, test_size=cfg.test_size, seed=0)
    torch.manual_seed(SEED)
    model = strategies.build(model_name, spec, num_classes=info.num_classes, device=device)
    model.train()
    opt = make_optimizer(cfg, model)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    total = cfg.measure_only_steps
    it = data_mod.batches(splits.train_x, splits.train_y, cfg.batch_size, mean=info.mean,
                          std=info.std, shuffle=True, seed=SEED, epoch=0, drop_last=True)
    rates: list[float] = []
    start: float | None = None
    images = 0
    for i in range(total + 1):
        timed = i - cfg.warmup_steps  # timed steps before step i; < 0 during warm-up
        if timed >= 0 and timed % cfg.window_steps == 0:
            # A boundary, as the engine's meter has it: one sync and clock read closes the
            # window that ends here and opens the next one.
            measure.synchronize(device)
            now = clock()
            if start is not None:
                rates.append(images / (now - start))
            start, images = now, 0
        if i == total:
            break
        xb, yb = next(it)
        loss = criterion(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        images += len(yb)
    return rates


def bare_loop_img_s(model_name: str, spec: str, cfg: Config, device: torch.device) -> float:
    """Median img/s over the bare loop's windows."""
    return statistics.median(bare_loop_window_img_s(model_name, spec, cfg, device))


def engine_img_s(model_name: str, spec: str, cfg: Config, device: torch.device) -> float:
    """The engine's ``train_img_s`` (median over its windows) for the same cell and recipe."""
    result = run_cell(cfg, Cell("mnist", model_name, spec, SEED), device=device,
                      measure_only=True)
    if result.row["status"] != "ok":
        raise RuntimeError(f"engine cell failed: {result.row['status']}: {result.row['reason']}")
    if result.row.get("reason"):  # e.g. no timed window
        raise RuntimeError(f"engine cell measured nothing: {result.row['reason']}")
    return result.row["train_img_s"]


def parse_cell(text: str) -> tuple[str, str, int]:
    """``model:strategy[:batch_size]`` -> (model, strategy, batch size; default 32)."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"bad cell {text!r}: expected model:strategy[:batch_size]")
    try:
        bs = int(parts[2]) if len(parts) == 3 else 32
    except ValueError:
        raise ValueError(f"bad cell {text!r}: batch size {parts[2]!r} is not an integer") from None
    if bs < 1:
        raise ValueError(f"bad cell {text!r}: batch size must be >= 1")
    return parts[0], parts[1], bs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.overhead", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", nargs="+", default=list(DEFAULT_CELLS),
                        help="model:strategy[:batch_size] (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds per side (default %(default)s)")
    parser.add_argument("--window-steps", type=int, default=MIN_WINDOW_STEPS,
                        help=f"steps per timing window, >= {MIN_WINDOW_STEPS} "
                             "(default %(default)s)")
    parser.add_argument("--windows", type=int, default=3,
                        help="timed windows per run; each run's figure is their median "
                             "(default %(default)s)")
    parser.add_argument("--warmup-steps", type=int, default=2,
                        help="untimed steps at the start of every run (default %(default)s)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads for both sides (default: torch's, now "
                             f"{torch.get_num_threads()})")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    parser.add_argument("--data-root", default="")
    parser.add_argument("--out", type=Path, default=None,
                        help="also write the figures, settings and machine as JSON here "
                             "(e.g. results/cpu/overhead.json)")
    args = parser.parse_args(argv)
    if args.window_steps < MIN_WINDOW_STEPS:
        parser.error(f"--window-steps must be >= {MIN_WINDOW_STEPS}, got {args.window_steps}: "
                     "shorter windows measure the syncs and clock reads at their ends")
    if args.rounds < 1 or args.windows < 1 or args.warmup_steps < 0 or args.threads < 0:
        parser.error(f"--rounds and --windows must be >= 1, --warmup-steps and --threads >= 0; "
                     f"got {args.rounds}, {args.windows}, {args.warmup_steps}, {args.threads}")
    try:
        cells = [parse_cell(text) for text in args.cells]
        device = resolve_device(args.device)
    except ValueError as exc:
        parser.error(str(exc))
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)

    print(f"device: {measure.device_name(device)}, torch {torch.__version__}, {threads} threads; "
          f"{args.rounds} rounds x {args.windows} windows of {args.window_steps} steps after "
          f"{args.warmup_steps} warm-up, per side")
    ratios = []
    record: list[dict[str, object]] = []
    for model_name, spec, bs in cells:
        cfg = cell_config(bs, args.warmup_steps, args.window_steps, args.windows, threads,
                          args.data_root)
        bare: list[float] = []
        engine: list[float] = []
        for r in range(args.rounds):
            # Alternate who goes first, so a trend in machine speed favours neither side.
            order = ("bare", "engine") if r % 2 == 0 else ("engine", "bare")
            for side in order:
                if side == "bare":
                    bare.append(bare_loop_img_s(model_name, spec, cfg, device))
                else:
                    engine.append(engine_img_s(model_name, spec, cfg, device))
        ratio = statistics.median(engine) / statistics.median(bare)
        ratios.append(ratio)
        record.append({"model": model_name, "strategy": spec, "batch_size": bs,
                       "bare_img_s": statistics.median(bare), "engine_img_s":
                       statistics.median(engine), "ratio": ratio, "bare_rounds_img_s": bare,
                       "engine_rounds_img_s": engine})
        print(f"{model_name} {spec} batch {bs}: bare {statistics.median(bare):.1f} img/s "
              f"(rounds {', '.join(f'{v:.1f}' for v in bare)}), engine "
              f"{statistics.median(engine):.1f} img/s "
              f"(rounds {', '.join(f'{v:.1f}' for v in engine)}), ratio {ratio:.3f}")
    print(f"engine/bare throughput ratio (worst cell): {min(ratios):.3f}")
    if args.out is not None:
        from bench import device as device_mod
        from bench import results

        doc = {"command": " ".join(["python -m bench.overhead", *(argv or sys.argv[1:])]),
               "measured_at": results.now_iso(), "device_id": device_mod.device_identity(device),
               "device_name": measure.device_name(device), "torch_version": torch.__version__,
               **results.git_info(), "threads": threads, "rounds": args.rounds,
               "windows": args.windows, "window_steps": args.window_steps,
               "warmup_steps": args.warmup_steps, "cells": record,
               "worst_ratio": min(ratios)}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        results.atomic_write_text(args.out, json.dumps(doc, indent=1) + "\n")
        print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
