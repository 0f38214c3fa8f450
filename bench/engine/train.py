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
``_remeasure`` (contended windows re-timed) and ``_profile``; a ``_Run`` carries what each
leaves for the next.

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
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench import faults
from bench.config import Cell, Config
from bench.engine import contention, measure
from bench.engine import step as step_mod
from bench.engine.oom import is_oom
from bench.executors import ddp
from bench.identity import effective
from bench.plan import fastpath
from bench.plan.steps import EVAL_BATCH_FACTOR, measure_only_total_steps
from bench.schema import Mode, Status, outcome, recipe_values
from strategies._meta import forward_gflops_per_img

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
@dataclass
class CellResult:
    """What one cell produced: a results row (no provenance), history rows, profiler rows."""

    row: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    ops: list[dict[str, Any]] = field(default_factory=list)


class Diverged(RuntimeError):
    """The training loss became non-finite."""


class Incompatible(RuntimeError):
    """The strategy cannot run this model at this input size (explained)."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> ``cuda`` when available, else ``cpu``."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; valid: auto, cpu")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r}; valid: auto, cpu, cuda, cuda:N")
    return dev


# --- building -----------------------------------------------------------------------------

def inspect_on_meta(cell: Cell, num_classes: int,
                    shape: tuple[int, int, int]) -> dict[str, Any]:
    """Params, forward GFLOPs/img and effective input size, from a meta-device build for images
    of ``shape`` (channels, height px, width px: the dataset's).

    A forward that fails on meta fails for real: that is raised as :class:`Incompatible`,
    with the plain-language explanation, before any memory is spent.
    """
    import strategies

    try:
        model = strategies.build(cell.model, cell.strategy, num_classes=num_classes,
                                 device="meta", input_px=shape[1], in_channels=shape[0])
    except strategies.StrategyError as exc:
        raise Incompatible(str(exc)) from exc
    try:
        gflops = forward_gflops_per_img(model, shape)
    except RuntimeError as exc:
        from strategies.explain import explain_error

        raise Incompatible(explain_error(exc, cell.model, cell.strategy, input_px=shape[1],
                                         in_channels=shape[0])) from exc
    return {
        "params": measure.count_params(model),
        "gflops_fwd_per_img": gflops,
        "effective_input_px": getattr(model, "effective_input_px", None),
        # Each replaced layer with the init rule it got (strategies/_init.py), e.g.
        # "backbone.conv1 (ResNet: kaiming_normal_ fan_out relu)".
        "reinitialized": ";".join(getattr(model, "init_rules", None)
                                  or getattr(model, "reinitialized", []) or []),
    }


def make_optimizer(cfg: Config, model: nn.Module, *, for_graphs: bool = False,
                   device: torch.device | None = None) -> torch.optim.Optimizer:
    """SGD or AdamW over two groups (no weight decay on biases and norm parameters);
    ``for_graphs``: the capturable form, LR in a tensor on ``device``
    (:func:`bench.engine.step.graph_optimizer`)."""
    # No weight decay on biases and norm parameters: the usual, and it keeps BN models stable.
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if for_graphs:
        return step_mod.graph_optimizer(cfg.optimizer, groups, cfg.lr, cfg.momentum,
                                        cfg.nesterov, device or torch.device("cpu"))
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=cfg.nesterov and cfg.momentum > 0)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def make_schedule(cfg: Config, opt: torch.optim.Optimizer, total_steps: int):
    """Per-step LR multiplier: linear warm-up to ``lr``, then cosine to 0 (or constant)."""
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=cfg.lr, total_steps=max(total_steps, 1),
            pct_start=max(cfg.warmup_frac, 0.01), cycle_momentum=cfg.optimizer == "sgd")
    warmup = int(cfg.warmup_frac * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if cfg.schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _autocast(cfg: Config, device: torch.device):
    if cfg.precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=PRECISIONS[cfg.precision])


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, mean: float,
             std: float, num_classes: int, cfg: Config, device: torch.device,
             eval_step: step_mod.EvalStep | None = None) -> tuple[float, list[float], float]:
    """Accuracy, per-class accuracy and eval throughput (img/s) over the whole split;
    ``eval_step``: count on its static (captured) buffers instead of eagerly."""
    from bench.data import batches

    model.eval()
    correct = torch.zeros(num_classes, dtype=torch.long, device=device)
    measure.synchronize(device)
    t0 = time.perf_counter()
    split = batches(x, y, batch_size, mean=mean, std=std, shuffle=False, drop_last=False)
    if eval_step is not None:
        correct = eval_step.count(split)
    else:
        with _autocast(cfg, device):
            for xb, yb in split:
                hit = model(xb).argmax(1) == yb
                correct += torch.bincount(yb[hit], minlength=num_classes)
    measure.synchronize(device)
    elapsed = time.perf_counter() - t0
    model.train()
    totals = torch.bincount(y, minlength=num_classes).clamp(min=1)
    per_class = (correct.float() / totals.float()).tolist()
    acc = correct.sum().item() / max(1, len(y))
    return acc, per_class, len(y) / elapsed if elapsed > 0 else float("nan")


def _seed_everything(seed: int, deterministic: bool, device: torch.device) -> None:
    torch.manual_seed(seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic
        # TF32 for fp32 matmuls and convs: what a user of an Ampere+ GPU gets by choice.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


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


@dataclass
class _Run:
    """One cell on its way through the phases of :func:`_train`: what each phase leaves for
    the next (set in phase order; a field is None until its phase has run)."""

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


def _train(cfg: Config, cell: Cell, dev: torch.device, measure_only: bool,
           out_dir: Path | None, result: CellResult) -> None:
    """The phases of a cell, in order; each one fills ``result`` (row, history, ops) and
    leaves what the next needs in a :class:`_Run`. A failure raises; :func:`run_cell`
    turns it into a status."""
    run = _Run(cfg, cell, dev, measure_only, out_dir, result)
    _prepare(run)
    _build_model(run)
    _budget(run)
    _build_steps(run)
    _epochs(run)
    _summarize(run)
    _remeasure(run)
    _profile(run)


def _prepare(run: _Run) -> None:
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

    _seed_everything(cell.seed, cfg.deterministic, run.dev)
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


def _build_model(run: _Run) -> None:
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


def _budget(run: _Run) -> None:
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


def _build_steps(run: _Run) -> None:
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


def _check_finite(run: _Run, where: str) -> None:
    """Raise :class:`Diverged` when the epoch's summed loss is not finite (waits for the
    device: called inside a timed window only at its end)."""
    if not math.isfinite(run.loss_sum.item()):
        raise Diverged(f"non-finite training loss at step {run.step} ({where}); stopped early")


def _record_eval(run: _Run, epoch_pos: float) -> None:
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


def _epochs(run: _Run) -> None:
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


def _summarize(run: _Run) -> None:
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


def _extra_steps(run: _Run) -> Callable[[], int]:
    """One untimed training step on the next batch, as a function returning its images: what
    the re-measures and the profiler window train (the weights move, the schedule never)."""
    from bench import data as data_mod

    extra = _endless_batches(data_mod, run.splits, run.cfg, run.info.mean, run.info.std,
                             run.cell.seed, run.epochs, run.shard)

    def extra_step() -> int:
        xb, yb = next(extra)
        run.train_step(xb, yb, -1, advance_schedule=False)
        return len(yb)

    return extra_step


def _remeasure(run: _Run) -> None:
    """Contended windows re-timed, after accuracy is final and before the profiler window
    (bench.engine.contention); the load average at the end of timing."""
    run.extra_step = _extra_steps(run)
    contention.settle(run.row, run.meter, run.extra_step, device_type=run.dev.type,
                      device=run.dev, threads=run.threads, window_steps=run.cfg.window_steps,
                      retries=run.cfg.contended_retries, distributed=run.group is not None)
    run.row["load_end"] = contention.PROBE.load()


def _profile(run: _Run) -> None:
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

    _record_mfu(row, cfg, dev)
    row["peak_rss_mib"] = measure.peak_rss_mib()
    if run.group is not None:
        run.group.finish_row(row)  # max memory, mean loss, one accuracy over the ranks


def _record_mfu(row: dict[str, Any], cfg: Config, dev: torch.device) -> None:
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


def _endless_batches(data_mod, splits, cfg: Config, mean: float, std: float, seed: int,
                     first_epoch: int, shard: tuple[int, int] = (0, 1)):
    epoch = first_epoch
    while True:
        yield from data_mod.batches(splits.train_x, splits.train_y, cfg.batch_size, mean=mean,
                                    std=std, shuffle=True, seed=seed, epoch=epoch, drop_last=True,
                                    shard=shard)
        epoch += 1


def estimate_cell_s(cfg: Config, cell: Cell, device: str | torch.device = "auto",
                    probe_steps: int = 3) -> float:
    """Seconds the cell will take: a few timed steps on random data, scaled to the recipe.

    Training = epochs x steps/epoch x step time; evaluation ~ 1/3 of a training step per image
    (forward only) per epoch. Incompatible cells estimate to 0 (they stop at the meta check).
    """
    import strategies
    from bench import data as data_mod

    dev = resolve_device(device)
    cfg = effective(cfg, cell, dev)
    info = data_mod.get_info(cell.dataset, cfg.data_root or None)
    try:
        inspect_on_meta(cell, info.num_classes, info.shape)
    except Incompatible:
        return 0.0
    model = strategies.build(cell.model, cell.strategy, num_classes=info.num_classes, device=dev,
                             input_px=info.shape[1], in_channels=info.shape[0])
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    bs = cfg.batch_size
    x = torch.randn(bs, *info.shape, device=dev)
    y = torch.randint(0, info.num_classes, (bs,), device=dev)
    autocast = _autocast(cfg, dev)
    times = []
    for i in range(probe_steps + 1):
        measure.synchronize(dev)
        t0 = time.perf_counter()
        with autocast:
            loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        measure.synchronize(dev)
        if i:  # the first step pays allocation and autotuning
            times.append(time.perf_counter() - t0)
    step_s = statistics.median(times)
    n_train = cfg.train_size or getattr(info, "train_count", 60000)
    n_test = cfg.test_size or getattr(info, "test_count", 10000)
    steps = max(1, n_train // bs)
    if cfg.max_steps_per_epoch:
        steps = min(steps, cfg.max_steps_per_epoch)
    train_est = cfg.epochs * steps * step_s
    eval_est = cfg.epochs * (n_test / bs) * step_s / 3
    return train_est + eval_est
