"""One cell: build the adapted model, train it for fixed epochs, measure it, never raise.

``run_cell`` is the whole engine. Order of events in a cell::

    meta-device build + forward   -> params, forward FLOPs, or status "incompatible"
    data on the device (uint8)    -> stratified subsets for scaled-down profiles
    train epochs (timed windows)  -> train_img_s median/p10/p90, history rows
    evaluate after every epoch    -> test_acc, best_acc, time_to_target_s (eval time excluded)
    memory + profiler window      -> peak_mem_mib, ops rows (extra steps after the timed ones),
                                     then one evaluation batch -> eval_peak_mem_mib

In the code these are the phases of ``_train``, one function each, in this order:
``_prepare``, ``_build_model``, ``_budget``, ``_build_steps``, ``_epochs``, ``_summarize``,
then :mod:`bench.engine.profiling`'s ``remeasure`` (contended windows re-timed) and ``profile``;
a :class:`~bench.engine.state.Run` carries what each leaves for the next. The meta check
(:mod:`~bench.engine.meta`), optimizer (:mod:`~bench.engine.optim`), evaluation
(:mod:`~bench.engine.evaluate`), device and seeds (:mod:`~bench.engine.backend`) and the
estimate (:mod:`~bench.engine.estimate`) are modules of their own, importable from here.

Under ``run --ddp`` the cell is one rank of a group (:mod:`bench.executors.ddp`): the model is wrapped in
DistributedDataParallel, each rank trains its slice of every global batch, and throughput,
memory and loss are reduced over the ranks before the row is returned.

A failure inside a cell becomes a status (``incompatible``, ``diverged``, ``oom``, ``error``) on
the row; the sweep's subprocess boundary catches the rest (kills, timeouts).
"""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench import faults
from bench.config import Cell, Config
from bench.engine import contention, measure, profiling
from bench.engine import step as step_mod
from bench.engine.backend import resolve_device, seed_everything
from bench.engine.estimate import estimate_cell_s
from bench.engine.evaluate import evaluate
from bench.engine.meta import Incompatible, inspect_on_meta
from bench.engine.oom import is_oom
from bench.engine.optim import make_optimizer, make_schedule
from bench.engine.state import CellResult, Diverged, Run
from bench.executors import ddp
from bench.identity import effective
from bench.plan import fastpath
from bench.plan.steps import EVAL_BATCH_FACTOR, measure_only_total_steps
from bench.schema import Mode, Status, outcome, recipe_values

# The engine's API, importable from here as before (the executors, tools and tests use
# train.NAME; tests replace train.evaluate and train.make_schedule, which the phases below call).
__all__ = ["CellResult", "Diverged", "Incompatible", "estimate_cell_s", "evaluate",
           "inspect_on_meta", "make_optimizer", "make_schedule", "resolve_device", "run_cell"]
# bench/tools/overhead.py seeds its bare loop exactly as a cell is seeded, by this name.
_seed_everything = seed_everything

def _base_row(cfg: Config, cell: Cell, measure_only: bool) -> dict[str, Any]:
    """The row a cell starts with: ok until a phase says otherwise, its mode and recipe. Where
    it ran (device, host, versions) is the worker's to say (bench.executors.worker)."""
    return outcome(
        Status.OK, "", dataset=cell.dataset, model=cell.model, strategy=cell.strategy,
        seed=cell.seed, mode=Mode.MEASURE_ONLY if measure_only else Mode.FULL,
        **recipe_values(cfg))


def run_cell(cfg: Config, cell: Cell, *, device: str | torch.device = "auto",
             measure_only: bool = False, out_dir: Path | None = None) -> CellResult:
    """Train and measure one cell. Failures become a status on the row; nothing is raised.

    ``measure_only`` trains ``cfg.measure_only_steps`` steps for throughput, memory, FLOPs and
    the profiler, and skips evaluation (accuracy columns stay empty). ``out_dir`` receives the
    profiler trace when ``cfg.save_trace`` is set.
    """
    dev = resolve_device(device)
    # The row records what "auto" chose, and the subset sizes the cell's dataset really has.
    cfg = effective(cfg, cell, dev)
    result = CellResult(row=_base_row(cfg, cell, measure_only))
    t_start = time.perf_counter()
    try:
        _train(cfg, cell, dev, measure_only, out_dir, result)
    except Incompatible as exc:
        result.row.update(outcome(Status.INCOMPATIBLE, str(exc)))
    except Diverged as exc:
        result.row.update(outcome(Status.DIVERGED, str(exc)))
    except Exception as exc:  # noqa: BLE001 - every failure must become a row, not a traceback
        first_line = (str(exc).splitlines() or [""])[0]
        if is_oom(exc):
            result.row.update(outcome(Status.OOM, f"out of memory at batch_size="
                                      f"{cfg.batch_size}: {type(exc).__name__} "
                                      f"{first_line[:300]}".rstrip()))
        else:
            result.row.update(outcome(Status.ERROR, f"{type(exc).__name__}: "
                                      f"{first_line[:500]}" if first_line
                                      else type(exc).__name__))
    finally:
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    result.row["wall_s"] = time.perf_counter() - t_start
    return result


def _train(cfg: Config, cell: Cell, dev: torch.device, measure_only: bool,
           out_dir: Path | None, result: CellResult) -> None:
    """The phases of a cell, in order; each one fills ``result`` (row, history, ops) and
    leaves what the next needs in a :class:`Run`. A failure raises; :func:`run_cell`
    turns it into a status."""
    run = Run(cfg, cell, dev, measure_only, out_dir, result)
    _prepare(run)
    _build_model(run)
    _budget(run)
    _build_steps(run)
    _epochs(run)
    _summarize(run)
    profiling.remeasure(run)
    profiling.profile(run)


def _prepare(run: Run) -> None:
    """Threads, the dataset's shape, the meta-device check (raises :class:`Incompatible`), the
    seeds and the data on the device."""
    import strategies  # noqa: F401 - the registries, before the meta build
    from bench import data as data_mod

    cfg, cell, row = run.cfg, run.cell, run.row
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    run.threads = torch.get_num_threads()  # the CPU a timed window could use: wall x threads
    row.update(threads=run.threads, load_start=contention.PROBE.load())
    # get_info names the valid datasets when this one is unknown.
    info = run.info = data_mod.get_info(cell.dataset, cfg.data_root or None)
    row["input_shape"] = info.shape_text
    row.update(inspect_on_meta(cell, info.num_classes, info.shape))

    seed_everything(cell.seed, cfg.deterministic, run.dev)
    # The subset is drawn with a fixed seed, so every strategy and seed sees the same images
    # and seeds vary only initialisation and batch order.
    splits = run.splits = data_mod.load(cell.dataset, cfg.data_root or None, device=run.dev,
                                        train_size=cfg.train_size, test_size=cfg.test_size,
                                        val_size=cfg.val_size, seed=0)
    row["data_digest"] = splits.digest
    if splits.val_x is not None:
        run.eval_x, run.eval_y, run.split_name = splits.val_x, splits.val_y, "val"
    else:
        run.eval_x, run.eval_y, run.split_name = splits.test_x, splits.test_y, "test"


def _build_model(run: Run) -> None:
    """The adapted model on the device, in its memory layout, in train mode; wrapped in
    DistributedDataParallel when the cell is one rank of a --ddp group."""
    import strategies

    cfg, cell, info = run.cfg, run.cell, run.info
    torch.manual_seed(cell.seed)
    model = strategies.build(cell.model, cell.strategy, num_classes=info.num_classes,
                             weights=cfg.weights or None, device=run.dev,
                             input_px=info.shape[1], in_channels=info.shape[0])
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    run.model = model
    run.group = ddp.active()  # this cell's --ddp group (bench/executors/ddp.py), or None
    run.train_model = run.group.wrap(model) if run.group is not None else model
    run.shard = run.group.shard if run.group is not None else (0, 1)


def _budget(run: Run) -> None:
    """Steps per epoch, total steps and epochs: the recipe's, or, measure-only, just enough
    steps for MIN_TIMED_WINDOWS timed windows."""
    from bench import data as data_mod

    cfg = run.cfg
    n_train = len(run.splits.train_y)
    steps_per_epoch = data_mod.num_batches(n_train, cfg.batch_size, drop_last=True)
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size={cfg.batch_size} is larger than the training set "
                         f"({n_train} images): no full batch to train on")
    if cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    if run.measure_only:
        # At least MIN_TIMED_WINDOWS timed windows: a throughput from one has no spread.
        run.total_steps = measure_only_total_steps(cfg.measure_only_steps, cfg.warmup_steps,
                                                   cfg.window_steps, steps_per_epoch)
        run.epochs = math.ceil(run.total_steps / steps_per_epoch)
    else:
        run.epochs = cfg.epochs
        run.total_steps = run.epochs * steps_per_epoch
    run.steps_per_epoch = steps_per_epoch


def _build_steps(run: Run) -> None:
    """The fast path (graphs, compile) decided for the cell, then the training and evaluation
    steps built on it (a CUDA-graph capture happens here, before any timed step)."""
    from bench import data as data_mod

    cfg, dev, row, model = run.cfg, run.dev, run.row, run.model
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    scaler = torch.amp.GradScaler(dev.type) if cfg.precision == "fp16" else None
    hook = faults.loss_hook()  # test-only (bench/faults.py): None unless a test asks for one
    run.eval_bs = cfg.batch_size * EVAL_BATCH_FACTOR
    # graphs / compile "auto": decided for the cell as planned (all its epochs), so that a
    # measure-only row measures what the full cell trains with (bench.plan.fastpath).
    fast = fastpath.resolve_for_model(
        cfg, dev.type, run.cell.model, row["gflops_fwd_per_img"],
        cfg.epochs * run.steps_per_epoch, run.info.num_classes, tuple(run.info.shape),
        dynamic_shapes=bool(getattr(model, "dynamic_shapes", False)),
        fault_injection=hook is not None, distributed=run.group is not None)
    cfg = run.cfg = cfg.replace(compile=fast.compile, graphs=fast.graphs)
    step_model = (torch.compile(run.train_model, mode=fast.compile_mode) if fast.compile
                  else run.train_model)
    # A graph replays the step on static buffers; the extra memory/profiler steps never move
    # the schedule (advance_schedule=False). Capture happens here, before any timed step.
    steps = step_mod.build_steps(
        model, step_model, lambda for_graphs: make_optimizer(run.cfg, model,
                                                             for_graphs=for_graphs, device=dev),
        lambda opt: make_schedule(run.cfg, opt, run.total_steps), criterion, cfg.precision, dev,
        graphs=fast.graphs,
        sample=(_first_batch(data_mod, run.splits, cfg, run.info.mean, run.info.std)
                if fast.graphs else None),
        eval_batch_size=run.eval_bs, num_classes=run.info.num_classes, grad_clip=cfg.grad_clip,
        scaler=scaler, loss_hook=hook)
    run.train_step, run.eval_step = steps.train, steps.eval
    row.update(compile=fast.compile, graphs=steps.train.graphed, capture_s=steps.capture_s,
               fast_path_reason="; ".join(filter(None, [fast.reason, steps.note])))


def _check_finite(run: Run, where: str) -> None:
    """Raise :class:`Diverged` when the epoch's summed loss is not finite (waits for the
    device: called inside a timed window only at its end)."""
    if not math.isfinite(run.loss_sum.item()):
        raise Diverged(f"non-finite training loss at step {run.step} ({where}); stopped early")


def _record_eval(run: Run, epoch_pos: float) -> None:
    """One evaluation point: a history row, the epoch line, best and time-to-target."""
    row, info = run.row, run.info
    if run.group is not None:
        run.group.sync_buffers(run.model)  # every rank evaluates rank 0's model
    acc, per_class, rate = evaluate(run.model, run.eval_x, run.eval_y, run.eval_bs, info.mean,
                                    info.std, info.num_classes, run.cfg, run.dev, run.eval_step)
    run.eval_rates.append(rate)
    run.best_acc = max(run.best_acc, acc)
    mean_loss = run.loss_sum.item() / max(1, run.loss_count)
    run.result.history.append({
        "epoch": round(epoch_pos, 4), "step": run.step, "train_loss": mean_loss,
        "test_acc": acc, "epoch_s": run.epoch_times[-1] if run.epoch_times else float("nan"),
        "elapsed_s": run.train_s, "per_class_acc": [round(a, 5) for a in per_class],
    })
    print(f"  epoch {epoch_pos:g}: train_loss {mean_loss:.4f} {run.split_name}_acc {acc:.4f} "
          f"train {run.train_s:.1f} s, eval {len(run.eval_y) / rate:.1f} s", flush=True)
    if acc >= run.cfg.target_acc and "time_to_target_s" not in row:
        row["time_to_target_s"] = run.train_s
        row["epochs_to_target"] = round(epoch_pos, 4)


def _epochs(run: Run) -> None:
    """The training epochs: every step timed in windows (batch preparation included), the
    loss checked at each window's end, an evaluation after every epoch (and every
    ``eval_every_steps``) outside the training seconds."""
    from bench import data as data_mod

    cfg, dev, cell, splits = run.cfg, run.dev, run.cell, run.splits
    meter = run.meter = measure.ThroughputMeter(
        cfg.warmup_steps, cfg.window_steps, dev,
        cpu_clock=contention.PROBE.cpu_clock(0) if dev.type == "cpu" else None)
    run.loss_sum = torch.zeros((), device=dev)
    for epoch in range(run.epochs):
        run.loss_sum.zero_()
        run.loss_count = 0
        measure.synchronize(dev)
        t_seg = time.perf_counter()
        epoch_train_s = 0.0
        it = iter(data_mod.batches(splits.train_x, splits.train_y, cfg.batch_size,
                                   mean=run.info.mean, std=run.info.std, shuffle=True,
                                   seed=cell.seed, epoch=epoch, drop_last=True, shard=run.shard))
        for i in range(min(run.steps_per_epoch, run.total_steps - run.step)):
            # A step, as timed, starts here: fetching and normalising its batch is part of it.
            meter.begin_step()
            t_step = time.perf_counter() if run.step == 0 else 0.0
            xb, yb = next(it)
            run.loss_sum += run.train_step(xb, yb, run.step).float()
            run.loss_count += 1
            if run.step == 0:
                measure.synchronize(dev)
                run.first_step_s = time.perf_counter() - t_step
            run.step += 1
            meter.end_step(len(yb))
            if run.step % meter.window_steps == 0:
                _check_finite(run, "training")  # .item() waits for the device: inside the window
            if (cfg.eval_every_steps and not run.measure_only
                    and run.step % cfg.eval_every_steps == 0 and i + 1 < run.steps_per_epoch):
                meter.interrupt()
                measure.synchronize(dev)
                seg = time.perf_counter() - t_seg
                epoch_train_s += seg
                run.train_s += seg
                _record_eval(run, epoch + (i + 1) / run.steps_per_epoch)
                t_seg = time.perf_counter()
        meter.interrupt()
        measure.synchronize(dev)
        seg = time.perf_counter() - t_seg
        epoch_train_s += seg
        run.train_s += seg
        run.epoch_times.append(epoch_train_s)
        _check_finite(run, "end of epoch")
        if not run.measure_only:
            _record_eval(run, epoch + 1)


def _summarize(run: Run) -> None:
    """The row's throughput (over every rank under --ddp), epoch time, loss, final accuracy
    (on the test split), evaluation throughput and compile seconds."""
    cfg, row, meter, info = run.cfg, run.row, run.meter, run.info
    summary = run.group.throughput(meter) if run.group is not None else meter.summary()
    row.update({k: summary[k] for k in contention.THROUGHPUT_COLUMNS})
    row["train_images"] = run.step * cfg.batch_size  # every rank's share under --ddp
    row["timed_windows"] = int(summary["timed_windows"])
    if not meter.window_img_s:
        row["reason"] = (f"no timed window: {run.step} steps <= warmup_steps={cfg.warmup_steps} "
                         f"+ window_steps={cfg.window_steps}; throughput not measured")
    row["epoch_s"] = statistics.median(run.epoch_times) if run.epoch_times else float("nan")
    row["final_train_loss"] = run.loss_sum.item() / max(1, run.loss_count)
    if not run.measure_only and run.result.history:
        row["test_acc"] = _final_test_acc(run.model, run.splits, run.eval_x, run.eval_bs,
                                          info.mean, info.std, info.num_classes, cfg, run.dev,
                                          run.result.history[-1]["test_acc"], run.eval_step)
        row["test_count"] = len(run.splits.test_y)
        row["best_acc"] = run.best_acc
        # The first evaluation pays one-off costs (cuDNN autotuning for a new shape).
        rates = run.eval_rates[1:] if len(run.eval_rates) > 1 else run.eval_rates
        row["eval_img_s"] = statistics.median(rates)
    step_s = cfg.batch_size / row["train_img_s"] if row["train_img_s"] > 0 else float("nan")
    row["compile_s"] = max(0.0, run.first_step_s - step_s) if cfg.compile else 0.0


def _final_test_acc(model, splits, eval_x, eval_bs, mean, std, num_classes, cfg, dev,
                    last_eval_acc: float, eval_step=None) -> float:
    """Final accuracy on the test split (re-evaluated only when a validation split was used)."""
    if eval_x is splits.test_x:
        return last_eval_acc
    acc, _, _ = evaluate(model, splits.test_x, splits.test_y, eval_bs, mean, std, num_classes,
                         cfg, dev, eval_step)
    return acc


def _first_batch(data_mod, splits, cfg: Config, mean: float, std: float
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """A training batch for allocating static buffers and warming up a capture (the weights
    are restored afterwards, so which images it holds does not matter)."""
    return next(iter(data_mod.batches(splits.train_x, splits.train_y, cfg.batch_size, mean=mean,
                                      std=std, shuffle=False, drop_last=True)))


