"""The phases after the accuracy is final, on extra untimed steps: contended windows re-timed
(:func:`remeasure`), then one window for peak memory (MiB) and the profiler's operators, an
evaluation batch's peak, MFU and peak RSS (:func:`profile`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bench.config import Config
from bench.engine import contention, measure
from bench.engine.evaluate import PRECISIONS, evaluate
from bench.engine.state import Run


def extra_steps(run: Run) -> Callable[[], int]:
    """One untimed training step on the next batch, as a function returning its images: what
    the re-measures and the profiler window train (the weights move, the schedule never)."""
    from bench import data as data_mod

    extra = endless_batches(data_mod, run.splits, run.cfg, run.info.mean, run.info.std,
                            run.cell.seed, run.epochs, run.shard)

    def extra_step() -> int:
        xb, yb = next(extra)
        run.train_step(xb, yb, -1, advance_schedule=False)
        return len(yb)

    return extra_step


def remeasure(run: Run) -> None:
    """Contended windows re-timed, after accuracy is final and before the profiler window
    (bench.engine.contention); the load average at the end of timing."""
    run.extra_step = extra_steps(run)
    contention.settle(run.row, run.meter, run.extra_step, device_type=run.dev.type,
                      device=run.dev, threads=run.threads, window_steps=run.cfg.window_steps,
                      retries=run.cfg.contended_retries, distributed=run.group is not None)
    run.row["load_end"] = contention.PROBE.load()


def profile(run: Run) -> None:
    """Memory and the profiler's operators, MFU, peak RSS; the --ddp reduction last.

    One window of extra steps after the timed ones (the CPU memory figure runs under the
    profiler anyway): a settling step, then the measured steps for both; then one
    evaluation batch for its own peak.
    """
    cfg, cell, dev, row, info = run.cfg, run.cell, run.dev, run.row, run.info
    trace = None
    if cfg.profile_steps and cfg.save_trace and run.out_dir is not None:
        trace = (Path(run.out_dir) / "traces"
                 / f"{cell.model}_{cell.strategy}_s{cell.seed}.json.gz")
    mem, run.result.ops = measure.step_window(run.extra_step, dev, cfg.profile_steps,
                                              profile_ops=bool(cfg.profile_steps),
                                              top_k=cfg.profile_top_ops, trace_path=trace)
    row["peak_mem_mib"] = mem.peak_mib
    row["peak_reserved_mib"] = mem.reserved_mib
    eval_xb = run.eval_x[:run.eval_bs]
    with measure.PeakMemory(dev) as mem:
        evaluate(run.model, eval_xb, run.eval_y[:run.eval_bs], run.eval_bs, info.mean,
                 info.std, info.num_classes, cfg, dev, run.eval_step)
    row["eval_peak_mem_mib"] = mem.peak_mib
    if run.train_step.graphed:  # a replay allocates nothing: the capture's peak is the step's
        row["peak_mem_mib"] = max(row["peak_mem_mib"], run.train_step.capture_peak_mib)
        row["eval_peak_mem_mib"] = max(mem.peak_mib, run.eval_step.capture_peak_mib)

    record_mfu(row, cfg, dev)
    row["peak_rss_mib"] = measure.peak_rss_mib()
    if run.group is not None:
        run.group.finish_row(row)  # max memory, mean loss, one accuracy over the ranks


def record_mfu(row: dict[str, Any], cfg: Config, dev: torch.device) -> None:
    """``tflops_achieved`` (3x forward FLOPs x train_img_s) and ``mfu`` against the sustained
    matmul peak of the dtype the cell computes in (fp16 cells against an fp16 peak)."""
    compute_dtype = PRECISIONS[cfg.precision]
    # Training costs about 3x the forward FLOPs (forward, grad wrt activations, grad wrt weights).
    achieved = 3 * row["gflops_fwd_per_img"] * row["train_img_s"] / 1e3
    if cfg.peak_tflops:
        row.update(peak_tflops=cfg.peak_tflops, tflops_achieved=achieved,
                   mfu=achieved / cfg.peak_tflops)
        return
    entry = measure.peak_entry(dev, compute_dtype)
    if achieved > entry["tflops"]:
        # Beating the "peak" means it was measured on a busy machine: measure it again now
        # (the cache keeps the best value seen).
        entry = measure.peak_entry(dev, compute_dtype, refresh=True)
    peak = entry["tflops"]
    row.update(peak_tflops=peak, tflops_achieved=achieved,
               mfu=achieved / peak if peak > 0 else float("nan"),
               peak_fresh_tflops=measure.fresh_peak_check(dev, compute_dtype, int(entry["n"])))


def endless_batches(data_mod, splits, cfg: Config, mean: float, std: float, seed: int,
                     first_epoch: int, shard: tuple[int, int] = (0, 1)):
    epoch = first_epoch
    while True:
        yield from data_mod.batches(splits.train_x, splits.train_y, cfg.batch_size, mean=mean,
                                    std=std, shuffle=True, seed=seed, epoch=epoch, drop_last=True,
                                    shard=shard)
        epoch += 1
