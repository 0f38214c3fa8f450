"""One-shot GPU check: ceilings, the lease-sized profile, the naive baseline, a summary.

Made for a GPU lent for a few minutes: everything in one process tree, results written as it
goes, and a summary table printed last. Steps:

1. Device, versions, and the ceilings MFU is measured against: a large bf16 matmul and an
   fp32 one (TF32 on and off), in TFLOP/s, and a device-to-device copy in GB/s.
2. The speed-path probes (:func:`probes`), in the default configuration, measure-only: resnet18
   ``repeat3`` at 28 px with the profile's recipe (``graphs = "auto"`` captures it: goal
   >= 100,000 img/s) against the same cell eager, and vgg16 ``resize224`` with the full ``gpu``
   profile's recipe and compile on (goal >= 50% MFU; ``auto`` leaves it off at three epochs). Each
   is printed next to what the cost model assumed (:mod:`bench.plan.fastpath`: the replayed-step
   floor and capture time are assumptions until measured here; the compiled MFU and compile
   time come from one unrecorded probe). ``probes.json`` keeps the figures.
3. The naive baseline side by side with the harness: the original write-up's pipeline
   (``DataLoader`` of PIL images with ``Resize(224)`` + ``Grayscale(3)`` + ``ToTensor`` on CPU,
   fp32, an untouched torchvision model) against the harness's ``resize224`` cell on the same
   model and batch. Both sides share every setting that is not the input pipeline: memory
   layout (the profile's ``channels_last``, applied to the model on both), ``cudnn.benchmark``
   and TF32, optimizer, warm-up and timing-window length (windows include fetching the batch).
   The harness runs in fp32 (``ratio_fp32``: same precision on both sides) and in the
   profile's precision (``ratio_<precision>``: harness in that precision against the naive
   pipeline in fp32). ``baseline.csv`` records each side's settings. Printed as ratios.
4. The profile (``--profile``, default ``gpu``: the whole answer) through the normal sweep
   (its executor: warm by default), stopped cleanly at ``--budget-s`` seconds from the start
   (default: a 9-minute call less the stop's grace and the report): completed rows are kept
   and the exact command that completes it is printed (the same ``--out``, ``--skip-probes
   --skip-baseline``); each call resumes the last. ``gpu-quick`` fits one call.
5. ``python -m bench report`` on the rows (summary.md, comparison.csv, charts, index.html).
6. A short table: per cell accuracy, img/s, MFU, peak memory, the speed paths taken.

Compiled code is cached on disk for the whole check (one temporary directory for the probes
and every cell of the sweep, :func:`bench.plan.fastpath.compile_cache_env`), never under ``--out``.

    python -m bench.tools.gpu_check                       # on a GPU: everything, into runs/gpu-check/
    python -m bench.tools.gpu_check --out $OUT --probes-only   # ceilings + probes: about 2 minutes
    python -m bench.tools.gpu_check --out $OUT            # one 9-minute call; prints how to resume
    python -m bench.tools.gpu_check --out $OUT --profile gpu-quick   # the check that fits one call (one seed)
    python -m bench.tools.gpu_check --dry-run             # on CPU: tiny subset, two steps per cell
    python -m bench.tools.gpu_check --out $OUT --resume-from results/gpu --set seeds=0,1,2
                                                    # a later lease: only what is missing

Files written to ``--out``: ``ceilings.json``, ``probes.json``, ``baseline.csv``, ``gpu/`` (runs.csv, history.csv,
ops.csv, env.json, config.toml of the sweep) and ``gpu_check.log`` (this output).
"""

from __future__ import annotations

import argparse
import atexit
import csv
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.config import Cell, Config, load
from bench.engine import measure
from bench.engine.train import resolve_device, run_cell
from bench.executors.proctree import kill_group
from bench.plan import fastpath
from bench.schema import Mode, Status

BASELINE_MODELS = ("vgg16", "resnet50")

# Dry run: the same code paths on CPU, sized to finish in a few minutes on 2 cores.
DRY_RUN_SETS = ("train_size=64", "test_size=40", "val_size=24", "batch_size=4",
                "max_steps_per_epoch=2",
                "warmup_steps=1", "window_steps=1", "epochs=1", "profile_steps=1",
                "precision=fp32", "cell_timeout_s=600", "seeds=0", "measure_only_steps=3")


class Tee:
    """Print to stdout and to a log file (the device tool returns only the output's tail)."""

    def __init__(self, path: Path) -> None:
        self.fh = open(path, "a", buffering=1)

    def __call__(self, *parts: Any) -> None:
        text = " ".join(str(p) for p in parts)
        print(text, flush=True)
        self.fh.write(text + "\n")


def ceilings(device: torch.device, dry_run: bool) -> dict[str, float]:
    """Matmul TFLOP/s (bf16; fp32 with TF32; strict fp32) and copy GB/s on ``device``."""
    n = 512 if dry_run else 8192
    reps = 3 if dry_run else 20
    out = {}
    tf32 = torch.backends.cuda.matmul.allow_tf32
    try:
        out["bf16_matmul_tflops"] = measure.matmul_tflops(device, torch.bfloat16, n, reps)
        torch.backends.cuda.matmul.allow_tf32 = True
        out["tf32_matmul_tflops"] = measure.matmul_tflops(device, torch.float32, n, reps)
        torch.backends.cuda.matmul.allow_tf32 = False
        out["fp32_matmul_tflops"] = measure.matmul_tflops(device, torch.float32, n, reps)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    out["copy_gb_s"] = measure.copy_gb_s(device, mib=16 if dry_run else 1024, reps=reps)
    return out


class _PilMnist(torch.utils.data.Dataset):
    """MNIST as the write-up fed it: one PIL image per sample, transformed on the CPU."""

    def __init__(self, x_uint8: torch.Tensor, y: torch.Tensor, transform) -> None:
        self.x = x_uint8.squeeze(1).cpu().numpy()
        self.y = y.cpu().tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.x[i], mode="L")), self.y[i]


def _backend_settings() -> dict[str, bool]:
    """The global backend flags a training step runs under, read now (both sides record them)."""
    return {"cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "tf32": bool(torch.backends.cuda.matmul.allow_tf32
                         and torch.backends.cudnn.allow_tf32)}


def naive_img_s(model_name: str, device: torch.device, batch_size: int, steps: int,
                warmup: int, num_workers: int, data_root: str, train_size: int, *,
                window_steps: int, channels_last: bool, cudnn_benchmark: bool, tf32: bool,
                recipe: Config) -> float:
    """Training img/s of the write-up's pipeline: DataLoader + Resize(224) + Grayscale(3), fp32.

    Everything but the input pipeline matches the harness's cell, so that the ratio is the
    pipeline's: ``channels_last`` is applied to the model (as ``bench.engine.train`` does), the
    backend flags are set as ``bench.engine.train`` sets them on CUDA (``cudnn_benchmark``, ``tf32``
    for matmuls and convolutions; untouched on CPU, as there), the optimizer is the harness's
    (``make_optimizer(recipe)``), and the first ``warmup`` steps are excluded. ``steps`` (a
    multiple of ``window_steps``) are timed in windows of ``window_steps`` whole steps, each
    including fetching the batch from the ``DataLoader`` and copying it to the device; the
    result is the median over windows, in images per second.
    """
    import torchvision
    from torchvision import transforms

    from bench import data as data_mod
    from bench.engine.train import make_optimizer

    if window_steps < 1 or steps < window_steps or steps % window_steps:
        raise ValueError(f"steps={steps} must be a positive multiple of "
                         f"window_steps={window_steps}")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = cudnn_benchmark
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    splits = data_mod.load("mnist", data_root or None, train_size=train_size, test_size=100)
    tf = transforms.Compose([transforms.Resize(224), transforms.Grayscale(3),
                             transforms.ToTensor()])
    loader = torch.utils.data.DataLoader(_PilMnist(splits.train_x, splits.train_y, tf),
                                         batch_size=batch_size, shuffle=True,
                                         num_workers=num_workers, drop_last=True)
    torch.manual_seed(0)
    model = torchvision.models.get_model(model_name, num_classes=10).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    opt = make_optimizer(recipe, model)
    criterion = nn.CrossEntropyLoss()
    meter = measure.ThroughputMeter(warmup, window_steps, device)
    batches = iter(loader)
    for _ in range(warmup + steps):
        meter.begin_step()  # before the fetch: the pipeline is what is being measured
        try:
            x, y = next(batches)
        except StopIteration:  # another epoch (train_size normally covers all the steps)
            batches = iter(loader)
            x, y = next(batches)
        x, y = x.to(device), y.to(device)
        loss = criterion(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        meter.end_step(len(y))
    meter.interrupt()  # the boundary after the last step: closes the last complete window
    if len(meter.window_img_s) != steps // window_steps:
        raise RuntimeError(f"naive {model_name}: {len(meter.window_img_s)} timed windows, "
                           f"expected {steps // window_steps}")
    return meter.summary()["train_img_s"]


# Baseline sizes: (batch, warm-up steps, steps per timing window, windows), both sides.
BASELINE_SIZES = (128, 5, 10, 2)
DRY_RUN_BASELINE_SIZES = (4, 1, 2, 1)


def baseline(cfg: Config, device: torch.device, dry_run: bool, log: Tee,
             models: tuple[str, ...] = BASELINE_MODELS,
             channels_last: bool | None = None) -> list[dict[str, Any]]:
    """Naive pipeline vs the harness on the same model and batch; rows for baseline.csv.

    Both sides get the same memory layout (``channels_last``; default: the profile's), the
    same ``cudnn.benchmark`` and TF32 flags (as the harness sets them: benchmark unless
    ``cfg.deterministic``, TF32 on CUDA), the same warm-up and the same timing windows
    (``window_steps`` whole steps, batch fetching included; median over windows). Each row
    records what each side ran with (``naive_*`` / ``harness_*`` columns, read back after the
    side ran) and ``same_settings``. Throughputs are in images per second; ``ratio_fp32`` is
    harness fp32 / best naive (fp32), ``ratio_<precision>`` harness in the profile's precision
    / best naive (fp32: ``naive_precision``).
    """
    bs, warmup, window, windows = DRY_RUN_BASELINE_SIZES if dry_run else BASELINE_SIZES
    steps = window * windows
    # One epoch covers warm-up and every timed step: an epoch boundary ends a harness window.
    train_size = 64 if dry_run else bs * (warmup + steps + 2)
    workers = (0, 2) if dry_run else (0, min(8, os.cpu_count() or 1))
    layout = cfg.channels_last if channels_last is None else channels_last
    cudnn_benchmark = not cfg.deterministic  # what bench.engine.train sets on CUDA
    tf32 = device.type == "cuda"  # bench.engine.train enables TF32 on CUDA (what a user chooses)
    rows = []
    for model_name in models:
        row: dict[str, Any] = {"model": model_name, "strategy": "resize224", "batch_size": bs,
                               "device_name": measure.device_name(device)}
        naive_seen: dict[str, Any] = {}
        for w in workers:
            try:
                row[f"naive_w{w}_img_s"] = naive_img_s(
                    model_name, device, bs, steps, warmup, w, cfg.data_root, train_size,
                    window_steps=window, channels_last=layout, cudnn_benchmark=cudnn_benchmark,
                    tf32=tf32, recipe=cfg.replace(batch_size=bs))
            except Exception as exc:  # noqa: BLE001 - report, keep going
                row[f"naive_w{w}_img_s"] = float("nan")
                log(f"  naive {model_name} workers={w} failed: {type(exc).__name__}: {exc}")
            naive_seen = {"channels_last": layout, **_backend_settings()}
        row.update({f"naive_{k}": v for k, v in naive_seen.items()})
        row.update(naive_precision="fp32", naive_window_steps=window, naive_warmup_steps=warmup,
                   naive_timed_steps=steps)
        harness_seen: dict[str, Any] = {}
        for precision in ("fp32", cfg.precision):
            key = f"harness_{precision}_img_s"
            if key in row:
                continue
            # Unclipped like the naive loop: clipping is recipe, not pipeline, cost.
            hcfg = cfg.replace(batch_size=bs, precision=precision, train_size=train_size,
                               channels_last=layout, grad_clip=0.0, per_model=(),
                               test_size=100, warmup_steps=warmup, window_steps=window,
                               measure_only_steps=warmup + steps, profile_steps=0,
                               max_steps_per_epoch=0)
            res = run_cell(hcfg, Cell("mnist", model_name, "resize224", 0), device=device,
                           measure_only=True)
            row[key] = res.row.get("train_img_s", float("nan"))
            if res.row["status"] != Status.OK:
                log(f"  harness {model_name} {precision}: {res.row['status']} {res.row['reason']}")
            harness_seen = {"channels_last": bool(res.row.get("channels_last", layout)),
                            **_backend_settings()}
        row.update({f"harness_{k}": v for k, v in harness_seen.items()})
        row.update(harness_window_steps=window, harness_warmup_steps=warmup,
                   harness_timed_steps=steps)
        row["same_settings"] = naive_seen == harness_seen
        if not row["same_settings"]:
            log(f"  WARNING {model_name}: the sides ran with different settings: naive "
                f"{naive_seen}, harness {harness_seen}")
        naive_best = max(row[f"naive_w{w}_img_s"] for w in workers)
        row["naive_best_img_s"] = naive_best
        row["ratio_fp32"] = row["harness_fp32_img_s"] / naive_best
        row[f"ratio_{cfg.precision}"] = row[f"harness_{cfg.precision}_img_s"] / naive_best
        rows.append(row)
        log(f"  {model_name} resize224 batch {bs}, both sides channels_last={layout}, "
            f"cudnn.benchmark={harness_seen.get('cudnn_benchmark')}, "
            f"tf32={harness_seen.get('tf32')}, {windows} window(s) of {window} steps after "
            f"{warmup} warm-up: naive fp32 "
            + ", ".join(f"workers={w} {row[f'naive_w{w}_img_s']:.0f}" for w in workers)
            + f" img/s | harness fp32 {row['harness_fp32_img_s']:.0f}, {cfg.precision} "
            f"{row[f'harness_{cfg.precision}_img_s']:.0f} img/s | ratio vs best naive (fp32): "
            f"fp32 {row['ratio_fp32']:.2f}x, {cfg.precision} {row[f'ratio_{cfg.precision}']:.2f}x")
    return rows


# The probes: (name, model, strategy, profile whose recipe it uses: "" = the check's own).
# On a dry run vgg16 trains at 32 px: the same compile decision code, a CPU-sized cell.
# (probe, model, strategy, profile whose recipe it takes ("" = the check's), key=value changes).
# The compile probe forces compile on: at the gpu profile's three epochs compile "auto" is off
# for vgg16 resize224 (the saving it predicts is under the compile time), and the probe is
# what measures that prediction. The dry run keeps "auto" (off on CPU).
PROBES = (("graphs", "resnet18", "repeat3", "", {}),
          ("compile", "vgg16", "resize224", "gpu", {"compile": True}))
DRY_RUN_PROBES = (("graphs", "resnet18", "repeat3", "", {}),
                  ("compile", "vgg16", "resize32", "gpu", {}))
GRAPHS_GOAL_IMG_S = 100_000.0
COMPILE_GOAL_MFU = 0.50


def _probe_row(cfg: Config, model: str, strategy: str, device: torch.device,
               **changes: Any) -> dict[str, Any]:
    """One measure-only cell (no profiler), the row as run_cell returns it."""
    pcfg = cfg.replace(profile_steps=0, **changes)
    pcfg = pcfg.replace(measure_only_steps=max(pcfg.measure_only_steps,
                                               pcfg.warmup_steps + 3 * pcfg.window_steps))
    return run_cell(pcfg, Cell("mnist", model, strategy, 0), device=device,
                    measure_only=True).row


def _step_ms(row: dict[str, Any]) -> float:
    rate = row.get("train_img_s") or float("nan")
    return 1e3 * row["batch_size"] / rate if rate == rate and rate > 0 else float("nan")


def probes(profile: str, sets: list[str], device: torch.device, peak: float, dry_run: bool,
           log: Tee) -> list[dict[str, Any]]:
    """Measure the speed paths in the default configuration; rows for probes.json.

    ``graphs``: the resnet18 probe as configured (``graphs = "auto"``) and eager
    (``graphs=false``); the row compares the measured step (ms) with the cost model's assumed
    replayed-step floor. ``compile``: the vgg16 probe with the ``gpu`` profile's recipe
    (``compile = "auto"``); the row compares MFU and compile_s with the assumed figures.
    ``peak``: TFLOP/s for MFU (the ceiling measured in step 1).
    """
    rows = []
    for name, model, strategy, probe_profile, forced in (DRY_RUN_PROBES if dry_run else PROBES):
        cfg = load(probe_profile or profile, sets).replace(peak_tflops=peak, **forced)
        out: dict[str, Any] = {"probe": name, "model": model, "strategy": strategy,
                               "profile": probe_profile or profile,
                               "device_name": measure.device_name(device)}
        row = _probe_row(cfg, model, strategy, device)
        out.update({k: row.get(k) for k in (
            "status", "reason", "batch_size", "precision", "graphs", "compile", "capture_s",
            "compile_s", "train_img_s", "mfu", "fast_path_reason", "peak_mem_mib")})
        out["step_ms"] = _step_ms(row)
        if name == "graphs":
            eager = _probe_row(cfg, model, strategy, device, graphs=False)
            out.update(eager_img_s=eager.get("train_img_s"), eager_step_ms=_step_ms(eager),
                       eager_status=eager.get("status"),
                       assumed_step_ms=1e3 * max(fastpath.GRAPH_STEP_FLOOR_S,
                                                 fastpath.step_compute_s(
                                                     device.type, cfg.precision,
                                                     row.get("gflops_fwd_per_img") or 0.0,
                                                     cfg.batch_size)[0]),
                       assumed_capture_s=fastpath.GRAPH_CAPTURE_S,
                       goal_img_s=GRAPHS_GOAL_IMG_S)
            out["goal_met"] = bool((out["train_img_s"] or 0) >= GRAPHS_GOAL_IMG_S)
            log(f"  graphs: {model} {strategy} batch {out['batch_size']} ({out['profile']} "
                f"recipe): graphs={out['graphs']} {_fmt(out['train_img_s'], '.0f')} img/s = "
                f"{_fmt(out['step_ms'], '.2f')} ms/step measured (capture "
                f"{_fmt(out['capture_s'], '.2f')} s measured, {fastpath.GRAPH_CAPTURE_S:g} s "
                f"assumed) vs {out['assumed_step_ms']:.2f} ms/step assumed by the cost model; "
                f"eager {_fmt(out['eager_img_s'], '.0f')} img/s = "
                f"{_fmt(out['eager_step_ms'], '.2f')} ms/step; goal >= "
                f"{GRAPHS_GOAL_IMG_S:,.0f} img/s: {'met' if out['goal_met'] else 'missed'}")
        else:
            out.update(assumed_mfu=fastpath.COMPILED_MFU, assumed_compile_s=fastpath.COMPILE_S,
                       eager_mfu_published=fastpath.EAGER_MFU, goal_mfu=COMPILE_GOAL_MFU)
            out["goal_met"] = bool((out["mfu"] or 0) >= COMPILE_GOAL_MFU)
            log(f"  compile: {model} {strategy} batch {out['batch_size']} ({out['profile']} "
                f"recipe): compile={out['compile']} MFU {_fmt(out['mfu'], '.1%')} measured vs "
                f"{fastpath.COMPILED_MFU:.1%} assumed (eager {fastpath.EAGER_MFU:.1%} in "
                f"results/gpu), compile_s {_fmt(out['compile_s'], '.1f')} measured vs "
                f"{fastpath.COMPILE_S:g} assumed; goal >= {COMPILE_GOAL_MFU:.0%} MFU: "
                f"{'met' if out['goal_met'] else 'missed'}")
        if out["status"] != Status.OK:
            log(f"  {name} probe: {out['status']} {out['reason']}")
        log(f"    why: {out['fast_path_reason']}")
        rows.append(out)
    return rows


def _fmt(value: Any, spec: str) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "-"
    return "-" if v != v else format(v, spec)


def seed_results(source: Path, results_dir: Path) -> list[str]:
    """Copy an earlier run's CSVs into ``results_dir`` so the sweep resumes from them.

    A lease is too short for a whole profile; successive leases accumulate rows this way (more
    seeds, the cells a recipe change re-hashed). Files already in ``results_dir`` are kept:
    a rerun into the same ``--out`` never overwrites what it wrote itself.
    """
    results_dir.mkdir(parents=True, exist_ok=True)
    copied = []
    for path in sorted(source.glob("*.csv")):
        target = results_dir / path.name
        if path.name.startswith(("runs", "history", "ops")) and not target.exists():
            shutil.copy2(path, target)
            copied.append(path.name)
    return copied


def run_sweep(profile: str, sets: list[str], results_dir: Path, device: str, budget_s: float,
              extra: list[str], log: Tee) -> int:
    """Run the profile through the normal CLI; at the budget, stop it and keep complete rows."""
    cmd = [sys.executable, "-m", "bench", "run", "--profile", profile, "--results-dir",
           str(results_dir), "--device", device, "--quiet", *extra]
    for s in sets:
        cmd += ["--set", s]
    log("  $ " + " ".join(cmd))
    proc = subprocess.Popen(cmd, start_new_session=True)
    try:
        return proc.wait(timeout=max(1.0, budget_s))
    except subprocess.TimeoutExpired:
        log(f"  time budget of {budget_s:.0f} s reached: stopping the sweep; rows already "
            "written are complete (atomic writes), the remaining cells are not run")
        kill_group(proc, grace_s=20.0)
        return -1


# The default --budget-s: a 9-minute call (the device's lease per command is 10 minutes, the
# project sizes a call at 9) less the kill grace of a stopped sweep and the report after it.
CALL_S = 9 * 60.0
DEFAULT_BUDGET_S = CALL_S - 45.0


def resume_command(args: argparse.Namespace) -> str:
    """The command that completes a sweep stopped at the budget: the same --out (its gpu/
    rows are skipped by the sweep), without the probes and the baseline already written."""
    parts = [sys.executable, "-m", "bench.tools.gpu_check", "--out", str(args.out),
             "--profile", args.profile, "--budget-s", f"{args.budget_s:g}", "--skip-probes",
             "--skip-baseline"]
    if args.dry_run:
        parts.append("--dry-run")
    if args.only:
        parts += ["--only", args.only]
    for s in args.sets:
        parts += ["--set", s]
    return shlex.join(parts)


def report(results_dir: Path, timeout_s: float, log: Tee) -> int:
    """``python -m bench report`` on the sweep's rows (summary.md, comparison.csv, charts,
    index.html next to them); its exit code, or -1 when it ran past ``timeout_s``."""
    if not (results_dir / "runs.csv").is_file():
        log("  no runs.csv: nothing to report")
        return 0
    cmd = [sys.executable, "-m", "bench", "report", str(results_dir)]
    log("  $ " + " ".join(cmd))
    try:
        return subprocess.run(cmd, timeout=max(10.0, timeout_s)).returncode
    except subprocess.TimeoutExpired:
        log(f"  the report ran past {timeout_s:.0f} s; run it again later: {shlex.join(cmd)}")
        return -1


def summary_table(runs_csv: Path) -> list[str]:
    if not runs_csv.is_file():
        return ["  (no runs.csv: no cell finished)"]
    with open(runs_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    lines = [f"  {'dataset':<13} {'model':<10} {'strategy':<19} {'status':<12} {'acc':>6} "
             f"{'img/s':>8} {'MFU':>6} {'peak MiB':>9} paths"]

    def num(r: dict[str, str], k: str, fmt: str) -> str:
        try:
            v = float(r.get(k) or "nan")
        except ValueError:
            return "-"
        return "-" if v != v else format(v, fmt)

    for r in rows:
        paths = "+".join(k for k in ("graphs", "compile") if r.get(k) == "true") or "eager"
        lines.append(f"  {r.get('dataset', ''):<13} {r.get('model', ''):<10} "
                     f"{r.get('strategy', ''):<19} "
                     f"{(r.get('status') or '') + ('*' if r.get('mode') == Mode.MEASURE_ONLY else ''):<12} "
                     f"{num(r, 'test_acc', '.4f'):>6} {num(r, 'train_img_s', '.0f'):>8} "
                     f"{num(r, 'mfu', '.1%'):>6} {num(r, 'peak_mem_mib', '.0f'):>9} {paths}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tools.gpu_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.environ.get("OUT") or "runs/gpu-check",
                        help="folder for the files (default: $OUT or runs/gpu-check)")
    parser.add_argument("--profile", default="gpu",
                        help="the profile swept (default gpu, the whole answer: several calls, "
                             "each resuming; gpu-quick fits one)")
    parser.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S,
                        help="stop the sweep cleanly at this many seconds from the start "
                             f"(default {DEFAULT_BUDGET_S:g}: a {CALL_S / 60:g}-minute call)")
    parser.add_argument("--dry-run", action="store_true",
                        help="CPU, tiny subset, two steps per cell: proves the script")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--skip-probes", action="store_true",
                        help="skip the graphs / compile probes")
    parser.add_argument("--probes-only", action="store_true",
                        help="ceilings and the graphs / compile probes only (a short lease)")
    parser.add_argument("--only", default="", help="narrow the sweep, as `bench run --only`")
    parser.add_argument("--set", action="append", default=[], dest="sets", metavar="KEY=VALUE")
    parser.add_argument("--resume-from", default="", metavar="DIR",
                        help="start the sweep from the rows of an earlier run (e.g. results/gpu):"
                             " cells it already finished on this GPU model are skipped")
    args = parser.parse_args(argv)
    if args.skip_probes and args.probes_only:
        parser.error("--skip-probes and --probes-only exclude each other")
    if args.budget_s <= 0:
        parser.error(f"--budget-s must be > 0, got {args.budget_s}")
    if args.resume_from and not any(Path(args.resume_from).glob("runs*.csv")):
        parser.error(f"--resume-from {args.resume_from!r} holds no runs*.csv: give a results "
                     "directory such as results/gpu")

    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = Tee(out / "gpu_check.log")
    device = torch.device("cpu") if args.dry_run else resolve_device("auto")
    if device.type != "cuda" and not args.dry_run:
        log("no CUDA device found: use --dry-run to prove the script on CPU")
        return 2
    sets = list(DRY_RUN_SETS if args.dry_run else ()) + args.sets
    cfg = load(args.profile, sets)
    # One compile cache for the whole check, outside --out (it would come back with the files):
    # the probes (this process) and every cell of the sweep (its children) share it.
    cache = os.environ.get(fastpath.SHARED_CACHE_ENV, "")
    if not cache:
        cache = tempfile.mkdtemp(prefix="adaptbench-inductor-")
        atexit.register(shutil.rmtree, cache, ignore_errors=True)
    os.environ[fastpath.SHARED_CACHE_ENV] = cache
    os.environ.update(fastpath.compile_cache_env(Path(cache)))

    log(f"== adaptbench gpu_check {'(dry run) ' if args.dry_run else ''}on "
        f"{measure.device_name(device)}")
    log(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN "
        f"{torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else '-'}, "
        f"profile {args.profile}, budget {args.budget_s:.0f} s")

    from bench import data as data_mod

    for name in cfg.datasets:  # once, up front: cells must not each rebuild a missing cache
        data_mod.fetch(name, cfg.data_root or None, install=False)

    log("== 1. ceilings")
    ceil = ceilings(device, args.dry_run)
    (out / "ceilings.json").write_text(json.dumps(
        {**ceil, "device_name": measure.device_name(device), "torch": torch.__version__}, indent=1))
    log("  " + ", ".join(f"{k} {v:.4g}" for k, v in ceil.items()))
    peak = ceil["bf16_matmul_tflops"] if cfg.precision in ("bf16", "fp16") else ceil[
        "tf32_matmul_tflops"]

    probe_rows: list[dict[str, Any]] = []
    if not args.skip_probes:
        log("== 2. speed paths (measure-only probes, default configuration): measured vs "
            "assumed")
        probe_rows = probes(args.profile, sets, device, peak, args.dry_run, log)
        (out / "probes.json").write_text(json.dumps(probe_rows, indent=1, default=str))
    if args.probes_only:
        log(f"== summary ({time.perf_counter() - t0:.0f} s): --probes-only, no baseline, no "
            "sweep")
        for r in probe_rows:
            log(f"  {r['probe']}: {r['model']} {r['strategy']} goal "
                f"{'met' if r['goal_met'] else 'missed'}")
        log(f"files: {out}")
        return 0

    base_rows: list[dict[str, Any]] = []
    if not args.skip_baseline:
        log("== 3. naive pipeline vs harness (training img/s, same model, batch, layout, "
            "backend flags and windows)")
        base_rows = baseline(cfg, device, args.dry_run, log,
                             ("resnet18",) if args.dry_run else BASELINE_MODELS)
        if base_rows:
            keys = list(dict.fromkeys(k for r in base_rows for k in r))
            with open(out / "baseline.csv", "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=keys)
                writer.writeheader()
                writer.writerows(base_rows)

    log(f"== 4. sweep: profile {args.profile}")
    remaining = args.budget_s - (time.perf_counter() - t0)
    # Straight into --out: if the caller's own timeout kills this process tree, the rows the
    # sweep already wrote (atomically) are still there to come back.
    results_dir = out / "gpu"
    if args.resume_from:
        seeded = seed_results(Path(args.resume_from), results_dir)
        log(f"  resuming from {args.resume_from}: {', '.join(seeded) or 'nothing new'} copied; "
            "the sweep skips the cells they finished on this GPU model")
    sweep_sets = sets + [f"peak_tflops={peak}"]
    extra = ["--only", args.only] if args.only else []
    if remaining <= 0:  # the probes and the baseline spent the budget: the next call sweeps
        log(f"  no time left for the sweep ({-remaining:.0f} s over the budget): not started")
        rc = -1
    else:
        rc = run_sweep(args.profile, sweep_sets, results_dir, "cpu" if args.dry_run else "auto",
                       remaining, extra, log)

    log("== 5. report")
    report(results_dir, max(20.0, args.budget_s + 40.0 - (time.perf_counter() - t0)), log)

    log(f"== 6. summary ({time.perf_counter() - t0:.0f} s, sweep exit {rc}); * = measure-only")
    log(f"  ceilings: bf16 {ceil['bf16_matmul_tflops']:.0f} TFLOP/s, tf32 "
        f"{ceil['tf32_matmul_tflops']:.0f}, fp32 {ceil['fp32_matmul_tflops']:.0f}, copy "
        f"{ceil['copy_gb_s']:.0f} GB/s; MFU against {peak:.0f} TFLOP/s")
    for r in base_rows:
        log(f"  harness / naive {r['model']} resize224: {r['ratio_fp32']:.2f}x (both fp32), "
            f"{r[f'ratio_{cfg.precision}']:.2f}x (harness {cfg.precision}, naive fp32)")
    for r in probe_rows:
        key, goal = ("train_img_s", f"{GRAPHS_GOAL_IMG_S:,.0f} img/s") if r["probe"] == "graphs" \
            else ("mfu", f"{COMPILE_GOAL_MFU:.0%} MFU")
        log(f"  probe {r['probe']}: {r['model']} {r['strategy']} {key} "
            f"{_fmt(r[key], '.1%' if key == 'mfu' else ',.0f')} (goal {goal}: "
            f"{'met' if r['goal_met'] else 'missed'})")
    for line in summary_table(out / "gpu" / "runs.csv"):
        log(line)
    log(f"files: {out}")
    from bench.results.publish import publish_problem

    unpublishable = publish_problem(cfg, args.profile)
    log(f"  not a published answer: {unpublishable}" if unpublishable else
        "  publishable once complete (maintainers): copy its files into results/gpu and run "
        "`python -m bench report results/gpu --readme README.md` (docs/gpu-check.md)")
    if rc == -1:  # stopped at the budget: the next call finishes what is left
        log("not finished: the budget ran out with the rows above kept; complete it with")
        log(f"  {resume_command(args)}")
    return 0 if rc in (0, -1) else 1


if __name__ == "__main__":
    sys.exit(main())
