"""The sweep: expand the grid, plan it, run every cell in its own process, record, resume.

::

    python -m bench plan --profile cpu              # every cell, its estimate, the total ETA
    python -m bench run --profile cpu               # runs/cpu/runs.csv, history.csv, ops.csv
    python -m bench run --profile auto              # gpu with CUDA, else cpu (says which)
    python -m bench run --profile gpu --only model=vgg16,strategy=resize224 --force
    python -m bench run --profile gpu --shard 2/4   # Slurm array task 2 of 4 -> runs.shard-2-of-4.csv
    torchrun --standalone --nproc_per_node 8 -m bench run --profile gpu   # cell i on rank i % 8

**One process per cell.** ``python -m bench.cell`` runs the cell (:func:`bench.train.run_cell`)
and writes its result as JSON; the sweep relays the child's stdout (per-epoch lines) and keeps
its stderr as a log. A child that exits without a result is recorded, not fatal: killed by a
signal -> ``error`` (``oom`` when the log says out of memory), past ``cell_timeout_s`` ->
``timeout``. The sweep goes on.

**Resume.** A cell is identified by :func:`bench.config.cell_hash` (the cell, every setting that
affects it, the device kind). A rerun skips cells that already have a row with a final status
(``ok``, ``incompatible``, ``diverged``, ``oom``) in any ``runs*.csv`` of the directory;
``error`` and ``timeout`` are retried. A ``measure-only`` row is final only while the cell would
still run measure-only (raise ``cell_budget_s`` and it is trained). ``--force`` reruns selected
cells, replacing their rows.

**Budget.** With ``cell_budget_s`` set, a cell whose estimate exceeds it runs measure-only
(throughput, memory, FLOPs, profiler; no accuracy) and says so: ``mode=measure-only`` and
``estimate_s`` on the row. Estimates come from a FLOP cost model (:class:`CostModel`: forward
FLOPs on the meta device and a per-device throughput, instant). A cell whose cost-model estimate
is within a factor :data:`SURE_FACTOR` of the budget is timed for real
(:func:`bench.train.estimate_cell_s`, a few steps, in its own short process so it cannot disturb
the cell's memory figures). ``plan`` times every cell that way unless ``--fast``. A cell whose
forward cannot run (the meta-device check the engine also makes) is recorded ``incompatible``
by the sweep itself, without starting a process.

**Scale-out.** ``--shard k/n`` (1-based) keeps cells ``i % n == k - 1`` and writes
``runs.shard-k-of-n.csv``. Under ``torchrun`` rank ``r`` of ``W`` runs cells ``i % W == r`` on
``cuda:LOCAL_RANK`` (CPU: the cores are split between local ranks), writes ``runs.rank<r>.csv``
while it runs; after a barrier (gloo) rank 0 merges the rank files into ``runs.csv`` and deletes
them. Readers take every ``runs*.csv``; the newest row per ``cell_hash`` wins. ``--ddp`` (one
cell data-parallel over the ranks) is not implemented yet and says so.

**Locks.** Each set of files has its writer's ``fcntl.flock`` (``runs.lock``,
``runs.shard-k-of-n.lock``, ``runs.rank<r>.lock``): a second run on the same files is refused
naming the holder's pid; shards of one grid can share a directory.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from bench import config as config_mod
from bench import results
from bench.config import Cell, Config, ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RUNS_ROOT = Path("runs")

# --- the cost model --------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceSpeed:
    """A device as the cost model sees it."""

    tflops: float  # sustained training TFLOP/s on large convolutions
    per_img_s: float  # fixed cost per training image (small-tensor overheads), seconds
    per_step_s: float  # fixed cost per optimizer step (kernel launches, Python), seconds
    start_s: float  # per cell: process start, imports, data, model build, eval, profiler, s
    overlapped: bool  # a step costs max(compute, per_step_s) (async GPU), else their sum


# CPU (2 cores, AVX2), from DESIGN.md: predicts resnet18@28 ~180 img/s (measured 140),
# vgg16@32 ~18 (25), vgg16@224 ~0.5 (0.9), resnet50@28 ~100 (80): within 2x either way.
# CUDA, from a gpu-quick run on one H100 (bf16, channels_last, batch 128, torch 2.11): vgg16 at
# 224 px trained at 3100 img/s (~290 TFLOP/s by 3x forward FLOPs), vgg16_bn at 2150; small
# inputs are launch-bound at ~17-21 ms per step; a cell spent ~8 s starting its process and
# ~9-14 s in run_cell outside the epoch (build, data, eval, profiler window).
SPEEDS: dict[tuple[str, str], DeviceSpeed] = {
    ("cpu", "fp32"): DeviceSpeed(0.05, 2e-3, 0.0, start_s=10.0, overlapped=False),
    ("cpu", "bf16"): DeviceSpeed(0.03, 3e-3, 0.0, start_s=10.0, overlapped=False),
    ("cpu", "fp16"): DeviceSpeed(0.02, 3e-3, 0.0, start_s=10.0, overlapped=False),
    ("cuda", "fp32"): DeviceSpeed(80.0, 0.0, 0.018, start_s=20.0, overlapped=True),
    ("cuda", "bf16"): DeviceSpeed(220.0, 0.0, 0.018, start_s=20.0, overlapped=True),
    ("cuda", "fp16"): DeviceSpeed(220.0, 0.0, 0.018, start_s=20.0, overlapped=True),
}

# The cost model is trusted when it is this far from the budget either way (it is within ~2x
# of measured throughput); in between, the cell is timed for a few steps before deciding.
SURE_FACTOR = 4.0


@dataclass
class Estimate:
    seconds: float  # whole cell, full mode, including process start
    measure_only_s: float  # the cell in measure-only mode
    source: str  # "cost-model" | "timed"
    incompatible: str = ""  # the meta-device error, when the forward cannot run


class CostModel:
    """Seconds per cell from forward FLOPs (meta device) and a :class:`DeviceSpeed`."""

    def __init__(self, device_kind: str) -> None:
        self.device_kind = device_kind
        self._flops: dict[tuple[Any, ...], tuple[float, str]] = {}

    def forward_gflops(self, cell: Cell, num_classes: int,
                       shape: tuple[int, int, int] = (1, 28, 28)) -> tuple[float, str]:
        """(forward GFLOPs per image, "" or why the cell cannot run) from a meta-device build.

        Not applicable strategies and forwards that fail on meta (VGG16 at 28 px) fail for
        real: such a cell is ``incompatible`` and recorded without starting a process.
        """
        key = (cell.model, cell.strategy, num_classes, shape)
        if key not in self._flops:
            self._flops[key] = _meta_gflops(cell, num_classes, shape)
        return self._flops[key]

    def estimate(self, cfg: Config, cell: Cell) -> Estimate:
        from bench.data import get_info

        cfg = config_mod.resolve_auto(config_mod.for_model(cfg, cell.model), self.device_kind)
        info = get_info(cell.dataset, cfg.data_root or None)
        speed = SPEEDS[(self.device_kind, cfg.precision)]
        gflops, incompatible = self.forward_gflops(cell, info.num_classes, info.shape)
        if incompatible:  # recorded by the sweep itself, no process started
            return Estimate(0.0, 0.0, "cost-model", incompatible)
        flop_s = speed.tflops * 1e12
        img_train_s = 3 * gflops * 1e9 / flop_s + speed.per_img_s
        img_eval_s = gflops * 1e9 / flop_s + speed.per_img_s / 3
        compute_s = cfg.batch_size * img_train_s
        step_s = (max(compute_s, speed.per_step_s) if speed.overlapped
                  else compute_s + speed.per_step_s)
        n_train = cfg.train_size or getattr(info, "train_count", 0) or 60_000
        n_test = cfg.test_size or getattr(info, "test_count", 0) or 10_000
        steps = max(1, n_train // cfg.batch_size)
        if cfg.max_steps_per_epoch:
            steps = min(steps, cfg.max_steps_per_epoch)
        eval_s = n_test * img_eval_s + (n_test / (2 * cfg.batch_size)) * speed.per_step_s
        from bench.train import MEMORY_STEPS

        # The profiler's and the memory measurement's steps, and one evaluation batch.
        extra_s = ((cfg.profile_steps + MEMORY_STEPS) * step_s + 2 * cfg.batch_size * img_eval_s
                   + speed.start_s)
        full = cfg.epochs * (steps * step_s + eval_s) + extra_s
        measure_only = cfg.measure_only_steps * step_s + extra_s
        return Estimate(full, measure_only, "cost-model")


def _meta_gflops(cell: Cell, num_classes: int,
                 shape: tuple[int, int, int] = (1, 28, 28)) -> tuple[float, str]:
    import strategies
    from bench.measure import forward_gflops_per_img

    try:
        model = strategies.build(cell.model, cell.strategy, num_classes=num_classes,
                                 device="meta", input_px=shape[1], in_channels=shape[0])
    except strategies.StrategyError as exc:
        return 0.0, str(exc)
    try:
        return forward_gflops_per_img(model, shape), ""
    except RuntimeError as exc:
        try:
            from strategies.explain import explain_error
        except ImportError:
            return 0.0, f"{type(exc).__name__}: {exc}"
        return 0.0, explain_error(exc, cell.model, cell.strategy, input_px=shape[1],
                                  in_channels=shape[0])


# --- grid ------------------------------------------------------------------------------------

def resolve_profile(profile: str) -> tuple[str, str]:
    """``auto`` -> ``gpu`` with CUDA, else ``cpu``; returns (profile, a line saying why)."""
    if profile != "auto":
        return profile, ""
    import torch

    if torch.cuda.is_available():
        return "gpu", f"profile auto -> gpu (CUDA available: {torch.cuda.get_device_name(0)})"
    return "cpu", "profile auto -> cpu (no CUDA device found)"


def validate_grid(cfg: Config) -> None:
    """Every dataset, model and strategy of the grid exists; raise naming the bad one."""
    from bench.data import DATASETS, userdata

    bad = [d for d in cfg.datasets if d not in DATASETS and not userdata.is_user_dataset(d)]
    if bad:
        raise ConfigError(f"unknown dataset {bad[0]!r} in datasets; valid: "
                          f"{', '.join(sorted(DATASETS))}, or your own images as folder:PATH "
                          "or npz:PATH")
    for d in cfg.datasets:
        if userdata.is_user_dataset(d):
            try:
                userdata.parse(d)  # a bad option is a config error; the files come next
            except userdata.UserDataError as exc:
                raise ConfigError(str(exc)) from None
    config_mod.check_models(cfg.models)  # torchvision names and timm:NAME, one lookup
    import strategies

    for spec in cfg.strategies:
        strategies.parse_spec(spec)  # StrategyError names the bad part and the valid ones


def validate_data(cfg: Config) -> None:
    """The data the grid needs: an existing data root, subset and batch sizes that fit each
    dataset, no corrupt cache. Raises DataError / ConfigError (exit 2) naming the bad value.

    Every cell would otherwise fail the same way in its own process, one error row each (and
    a mistyped data root would be created and filled from the network by the first cell).
    """
    from bench import data as data_mod

    root = cfg.data_root or os.environ.get(data_mod.ENV_ROOT, "")
    if root and not Path(root).expanduser().is_dir():
        name = "data_root" if cfg.data_root else f"${data_mod.ENV_ROOT}"
        raise data_mod.DataError(
            f"{name} {root!r} does not exist or is not a directory; fill it with `python -m "
            f"bench data fetch --data-root {root}`, or leave data_root empty for ./data")
    for dataset in cfg.datasets:
        info = data_mod.get_info(dataset, cfg.data_root or None)  # imports a user dataset
        if info.train_count and info.test_count:
            data_mod._check_sizes(info, info.train_count, info.test_count, cfg.train_size,
                                  cfg.test_size, cfg.val_size)
            n_train = cfg.train_size or info.train_count - cfg.val_size
            if cfg.batch_size > n_train:
                raise ConfigError(f"batch_size={cfg.batch_size} is larger than the {dataset} "
                                  f"training set of this grid ({n_train} images): no full batch "
                                  f"to train on; valid: batch_size <= {n_train}")
        status = data_mod.cache_status(dataset, cfg.data_root or None)  # ~0.3 s for MNIST
        if status["status"] == "corrupt":
            raise data_mod.DataError(status["error"])


_ONLY_KEYS = {"dataset": "datasets", "model": "models", "strategy": "strategies", "seed": "seeds"}


def parse_only(texts: list[str] | None, cfg: Config) -> dict[str, set[str]]:
    """``["model=vgg16,strategy=resize224"]`` -> {"model": {"vgg16"}, "strategy": {...}}.

    Repeating a key widens (``model=vgg16,model=resnet18``); different keys narrow. A value
    that is not in the profile's grid is an error naming the grid's values.
    """
    wanted: dict[str, set[str]] = {}
    for text in texts or []:
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            key, sep, value = part.partition("=")
            key, value = key.strip(), value.strip()
            key = {v: k for k, v in _ONLY_KEYS.items()}.get(key, key)
            if not sep or key not in _ONLY_KEYS or not value:
                raise ConfigError(f"bad --only item {part!r}: expected key=value with key one of "
                                  f"{', '.join(_ONLY_KEYS)}")
            grid = [str(v) for v in getattr(cfg, _ONLY_KEYS[key])]
            if value not in grid:
                raise ConfigError(f"--only {key}={value}: {value!r} is not in this profile's "
                                  f"{_ONLY_KEYS[key]}; valid: {', '.join(grid)}")
            wanted.setdefault(key, set()).add(value)
    return wanted


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"2/4"`` -> (2, 4): 1-based shard index and count; ``None`` -> (1, 1)."""
    if not text:
        return 1, 1
    k, sep, n = text.partition("/")
    try:
        index, count = int(k), int(n)
    except ValueError:
        index = count = 0
    if not sep or count < 1 or not 1 <= index <= count:
        raise ConfigError(f"bad --shard {text!r}: expected k/n with 1 <= k <= n, e.g. 2/4")
    return index, count


def select_cells(cfg: Config, only: dict[str, set[str]], shard: tuple[int, int] = (1, 1)
                 ) -> list[Cell]:
    """The grid, narrowed by ``--only``, then every n-th cell for ``--shard k/n``."""
    chosen = [c for c in config_mod.cells(cfg)
              if all(str(getattr(c, key)) in values for key, values in only.items())]
    index, count = shard
    chosen = [c for i, c in enumerate(chosen) if i % count == index - 1]
    if not chosen:
        raise ConfigError("no cells left to run: --only/--shard select nothing from this grid "
                          f"({len(config_mod.cells(cfg))} cells)")
    return chosen


# --- devices and ranks -------------------------------------------------------------------

@dataclass
class Dist:
    """torchrun's view of this process; world 1 without torchrun."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    _pg: bool = False

    @classmethod
    def from_env(cls) -> Dist:
        env = os.environ
        try:
            return cls(rank=int(env.get("RANK", 0)), world=int(env.get("WORLD_SIZE", 1)),
                       local_rank=int(env.get("LOCAL_RANK", 0)),
                       local_world=int(env.get("LOCAL_WORLD_SIZE", env.get("WORLD_SIZE", 1))))
        except ValueError as exc:
            raise ConfigError(f"bad torchrun environment (RANK/WORLD_SIZE/LOCAL_RANK): {exc}"
                              ) from None

    def init(self) -> None:
        """A gloo group, used only to agree on start-up and for the final barrier."""
        if self.world > 1 and not self._pg:
            from datetime import timedelta

            import torch.distributed as td

            # A rank may wait at the barrier for as long as the slowest rank's cells take.
            td.init_process_group("gloo", timeout=timedelta(days=7))
            self._pg = True

    def all_ok(self, ok: bool) -> bool:
        """True when every rank says ok (used after taking the locks)."""
        if not self._pg:
            return ok
        import torch
        import torch.distributed as td

        flag = torch.tensor([1 if ok else 0])
        td.all_reduce(flag, op=td.ReduceOp.MIN)
        return bool(flag.item())

    def barrier(self) -> None:
        if self._pg:
            import torch.distributed as td

            td.barrier()

    def close(self) -> None:
        if self._pg:
            import torch.distributed as td

            td.destroy_process_group()
            self._pg = False


def resolve_device(device: str, dist: Dist) -> str:
    """``auto|cpu|cuda`` -> ``cpu`` or ``cuda:<local rank>``."""
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"unknown device {device!r}; valid: auto, cpu, cuda")
    if device == "cpu":
        return "cpu"
    import torch

    if not torch.cuda.is_available():
        if device == "cuda":
            raise ConfigError("--device cuda requested but CUDA is not available; valid here: "
                              "auto, cpu")
        return "cpu"
    count = torch.cuda.device_count()
    if dist.local_rank >= count:
        raise ConfigError(f"LOCAL_RANK={dist.local_rank} but only {count} CUDA device(s); use "
                          f"--nproc_per_node <= {count}")
    return f"cuda:{dist.local_rank}"


# --- planning ------------------------------------------------------------------------------

@dataclass
class PlannedCell:
    index: int  # position in the selected grid (1-based)
    cell: Cell
    cell_hash: str
    estimate: Estimate
    mode: str  # "full" | "measure-only"
    done: bool = False  # a final row exists: a run skips it

    @property
    def expected_s(self) -> float:
        """What running it will cost in the mode it will run in."""
        if self.estimate.incompatible:
            return self.estimate.seconds
        return self.estimate.seconds if self.mode == "full" else self.estimate.measure_only_s


def budget_mode(cfg: Config, estimate_s: float) -> str:
    if cfg.cell_budget_s and estimate_s > cfg.cell_budget_s:
        return "measure-only"
    return "full"


def needs_timing(cfg: Config, est: Estimate) -> bool:
    """Is the cost model too close to the budget to decide the mode alone?"""
    if not cfg.cell_budget_s or est.incompatible:
        return False
    return cfg.cell_budget_s / SURE_FACTOR <= est.seconds <= cfg.cell_budget_s * SURE_FACTOR


def plan_cells(cfg: Config, cells: list[Cell], device: str, *, timed: bool,
               results_dir: Path | None = None, force: bool = False,
               on_cell=None) -> list[PlannedCell]:
    """Estimate every cell; ``timed`` runs :func:`bench.train.estimate_cell_s` in this process.

    Timing is skipped for cells the cost model already puts beyond :data:`SURE_FACTOR` times
    the budget (timing a hopeless cell would take as long as the budget).
    """
    kind = device.split(":")[0]
    hw = device_key(device)
    model = CostModel(kind)
    done = results.done_hashes(results_dir) if results_dir and results_dir.is_dir() else set()
    mo_rows = _measure_only_hashes(results_dir) if results_dir and results_dir.is_dir() else set()
    timed_cache: dict[tuple[str, str, str], float | str] = {}
    planned = []
    for i, cell in enumerate(cells, start=1):
        est = model.estimate(cfg, cell)
        hopeless = cfg.cell_budget_s and est.seconds > cfg.cell_budget_s * SURE_FACTOR
        if timed and not est.incompatible and not hopeless:
            key = (cell.dataset, cell.model, cell.strategy)
            if key not in timed_cache:
                try:
                    from bench.train import estimate_cell_s

                    timed_cache[key] = float(estimate_cell_s(cfg, cell, device))
                except Exception as exc:  # noqa: BLE001 - fall back to the cost model
                    timed_cache[key] = f"{type(exc).__name__}: {exc}"
            value = timed_cache[key]
            if isinstance(value, float):
                start = SPEEDS[(kind, config_mod.resolve_auto(cfg, kind).precision)].start_s
                est = Estimate(value + start, est.measure_only_s, "timed")
            else:
                est.source = "cost-model (timing failed)"
        mode = budget_mode(cfg, est.seconds)
        h = config_mod.cell_hash(cfg, cell, hw)
        is_done = not force and h in done and (h not in mo_rows or mode == "measure-only")
        p = PlannedCell(i, cell, h, est, mode, is_done)
        planned.append(p)
        if on_cell is not None:
            on_cell(p)
    return planned


def _measure_only_hashes(results_dir: Path) -> set[str]:
    return {r["cell_hash"] for r in results.read_dir(results_dir, "runs")
            if r["mode"] == "measure-only"}


def fmt_s(seconds: float) -> str:
    """``3725`` -> ``1h02m``; ``95`` -> ``1m35s``; ``7.2`` -> ``7s``."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def print_plan(cfg: Config, profile: str, device: str, planned: list[PlannedCell],
               out: TextIO | None = None) -> float:
    """The plan's total line; returns the ETA (seconds) of the cells a run would execute."""
    out = out or sys.stdout
    todo = [p for p in planned if not p.done]
    eta = sum(p.expected_s for p in todo)
    mo = sum(p.mode == "measure-only" and not p.estimate.incompatible for p in todo)
    inc = sum(bool(p.estimate.incompatible) for p in todo)
    budget = f", cell_budget_s={cfg.cell_budget_s:g}" if cfg.cell_budget_s else ""
    print(f"TOTAL ETA {fmt_s(eta)} for {len(todo)} cells ({len(todo) - mo - inc} full, "
          f"{mo} measure-only, {inc} incompatible; {len(planned) - len(todo)} already done) "
          f"on {device}{budget}", file=out)
    return eta


def plan_line(p: PlannedCell) -> str:
    note = ""
    if p.estimate.incompatible:
        note = f"incompatible: {p.estimate.incompatible[:70]}"
    elif p.mode == "measure-only":
        note = f"over budget: measure-only ({fmt_s(p.estimate.measure_only_s)})"
    if p.done:
        note = "done (skipped by run)" + (f"; {note}" if note else "")
    return (f"{p.index:>4}  {p.cell.label():<48} {fmt_s(p.estimate.seconds):>7}  "
            f"{p.mode:<12} {p.estimate.source:<10} {note}")


# --- running one cell ----------------------------------------------------------------------

@dataclass
class ChildOutcome:
    payload: dict[str, Any] | None  # the child's RESULT.json, when it wrote one
    returncode: int | None
    timed_out: bool
    wall_s: float
    stderr_path: Path


def _child_env(dist: Dist, device: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK",
                        "ROLE_RANK", "ROLE_WORLD_SIZE", "GROUP_WORLD_SIZE", "MASTER_ADDR",
                        "MASTER_PORT") and not k.startswith("TORCHELASTIC_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    if device == "cpu" and dist.local_world > 1 and "OMP_NUM_THREADS" not in os.environ:
        # Ranks share the cores: split them rather than oversubscribe.
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // dist.local_world))
    return env


def run_child(command: str, spec: dict[str, Any], workdir: Path, timeout_s: float,
              env: dict[str, str], on_line=None) -> ChildOutcome:
    """Run ``python -m bench.cell <command>`` and wait for it, relaying its stdout lines.

    The child gets its own session, so a timeout kills it and anything it started.
    """
    spec_path, result_path = workdir / "spec.json", workdir / "result.json"
    stderr_path = workdir / "stderr.log"
    spec_path.write_text(json.dumps(spec))
    result_path.unlink(missing_ok=True)
    t0 = time.monotonic()
    with open(stderr_path, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.cell", command, str(spec_path), str(result_path)],
            stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, text=True,
            errors="replace", env=env, start_new_session=True, bufsize=1)
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line.rstrip("\n"))
            lines.put(None)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        timed_out = False
        try:
            deadline = t0 + timeout_s
            eof = False
            while not eof:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    timed_out = True
                    break
                try:
                    line = lines.get(timeout=min(remaining, 1.0))
                except queue.Empty:
                    continue
                if line is None:
                    eof = True
                elif on_line is not None:
                    on_line(line)
            if timed_out:
                _kill_group(proc)
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()) if not timed_out else 30)
            except subprocess.TimeoutExpired:
                timed_out = True  # closed stdout but kept running past the deadline
                _kill_group(proc)
                proc.wait()
        except BaseException:
            _kill_group(proc)
            proc.wait()
            raise
        reader.join(timeout=5)
    payload = None
    if result_path.is_file() and not timed_out:
        try:
            payload = json.loads(result_path.read_text())
        except (OSError, json.JSONDecodeError):
            payload = None
    return ChildOutcome(payload, proc.returncode, timed_out, time.monotonic() - t0, stderr_path)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the child's process group, then SIGKILL after 5 s."""
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=grace or None)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(path: Path, n: int = 20) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-n:]
    except OSError:
        return []


def failure_row(outcome: ChildOutcome, timeout_s: float) -> dict[str, Any]:
    """Status and reason for a child that left no result."""
    tail = _tail(outcome.stderr_path)
    last = next((line.strip() for line in reversed(tail) if line.strip()), "")
    oom = any("out of memory" in line.lower() or "OutOfMemoryError" in line for line in tail)
    if outcome.timed_out:
        return {"status": "timeout",
                "reason": f"killed after cell_timeout_s={timeout_s:g} s without finishing"}
    code = outcome.returncode
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (the kernel's OOM killer sends SIGKILL)" if name == "SIGKILL" else ""
        if oom:
            return {"status": "oom", "reason": f"killed by {name}; out of memory: {last[:300]}"}
        return {"status": "error", "reason": f"killed by {name} (exit {code}){hint}"
                                             + (f"; last log line: {last[:300]}" if last else "")}
    if oom:
        return {"status": "oom", "reason": f"exit code {code}; out of memory: {last[:300]}"}
    return {"status": "error", "reason": f"exit code {code} without a result"
                                         + (f": {last[:400]}" if last else "")}


# --- the sweep -----------------------------------------------------------------------------

@dataclass
class SweepOptions:
    profile: str
    overrides: list[str] = field(default_factory=list)
    results_dir: str | None = None
    only: list[str] = field(default_factory=list)
    force: bool = False
    shard: str | None = None
    quiet: bool = False
    device: str = "auto"
    ddp: bool = False
    command_line: str = ""


@dataclass
class Prepared:
    """Everything decided before the first file is touched."""

    profile: str
    cfg: Config
    cells: list[Cell]  # selected (only + shard), every rank
    mine: list[tuple[int, Cell]]  # (1-based index, cell) run by this rank
    device: str
    dist: Dist
    results_dir: Path
    suffix: str  # "" or ".shard-k-of-n": the merged files
    write_suffix: str  # suffix plus ".rank<r>" under torchrun


def prepare(opts: SweepOptions, dist: Dist | None = None) -> Prepared:
    """Validate everything; raises ConfigError / StrategyError / DataError (exit 2)."""
    profile, _ = resolve_profile(opts.profile)
    cfg = config_mod.load(profile, opts.overrides)
    validate_grid(cfg)
    validate_data(cfg)
    if opts.ddp:
        raise ConfigError("--ddp (one cell data-parallel across ranks) is not implemented yet; "
                          "run without --ddp: under torchrun the ranks split the cells instead")
    dist = dist or Dist.from_env()
    only = parse_only(opts.only, cfg)
    shard = parse_shard(opts.shard)
    chosen = select_cells(cfg, only, shard)
    config_mod.check_weights(cfg, chosen)  # before any cell: one refusal, not N error rows
    device = resolve_device(opts.device, dist)
    mine = [(i, c) for i, c in enumerate(chosen, start=1) if (i - 1) % dist.world == dist.rank]
    # A user's runs go to runs/<profile>/ (git-ignored); results/ holds the published runs and
    # changes only when asked for by name (`make publish`, --results-dir results/...).
    results_dir = Path(opts.results_dir or DEFAULT_RUNS_ROOT / config_mod.profile_name(profile))
    suffix = results.shard_suffix(*shard)
    write_suffix = results.rank_suffix(suffix, dist.rank) if dist.world > 1 else suffix
    return Prepared(profile, cfg, chosen, mine, device, dist, results_dir, suffix, write_suffix)


def _make_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise results.ResultsError(f"results directory {path} cannot be created: "
                                   f"{exc.strerror or exc}") from None
    if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
        raise results.ResultsError(f"results directory {path} is not writable")


class Reporter:
    """Progress: one tqdm bar (ETA weighted by estimates) or plain lines (quiet, torchrun)."""

    def __init__(self, total_s: float, n_cells: int, *, bar: bool, prefix: str = "",
                 start_lines: bool = True) -> None:
        self.prefix = prefix
        self.start_lines = start_lines
        self.n_cells = n_cells
        self.done_cells = 0
        self.bar = None
        if bar:
            from tqdm import tqdm

            self.bar = tqdm(total=max(total_s, 1e-9), unit="s", dynamic_ncols=True,
                            bar_format="{l_bar}{bar}| [{elapsed}<{remaining}] {postfix}")

    def start(self, index: int, cell: Cell, note: str) -> None:
        text = f"cell {self.done_cells + 1}/{self.n_cells}: {cell.label()}{note}"
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


def _describe(row: dict[str, Any]) -> str:
    bits = [str(row.get("status")), f"({row.get('mode')})"]
    acc = row.get("test_acc")
    if isinstance(acc, (int, float)) and acc == acc:
        bits.append(f"acc {acc:.4f}")
    rate = row.get("train_img_s")
    if isinstance(rate, (int, float)) and rate == rate:
        bits.append(f"{rate:.1f} img/s")
    wall = row.get("wall_s")
    if isinstance(wall, (int, float)) and wall == wall:
        bits.append(f"{fmt_s(wall)}")
    if row.get("status") != "ok" and row.get("reason"):
        bits.append(f"- {str(row['reason'])[:120]}")
    return " ".join(bits)


def run_sweep(opts: SweepOptions) -> int:
    """``python -m bench run``: returns 0 when the sweep ran to its end (failed cells included)."""
    _, why = resolve_profile(opts.profile)
    if why:
        print(why, flush=True)
    prep = prepare(opts)
    dist = prep.dist
    dist.init()
    locks = []
    try:
        ok, error = True, None
        try:
            _make_dir(prep.results_dir)
            names = [f"runs{prep.write_suffix}"]
            if dist.world > 1 and dist.rank == 0:
                names.append(f"runs{prep.suffix}")  # rank 0 merges into the shared files
            for name in names:
                locks.append(results.DirLock(prep.results_dir, name).acquire(opts.command_line))
            for kind in results.KINDS:  # refuse corrupt or foreign files before running
                results.read_dir(prep.results_dir, kind)
        except results.ResultsError as exc:
            ok, error = False, exc
        if not dist.all_ok(ok):
            if error is not None:
                raise error
            raise results.ResultsError(
                "another rank could not open or lock the results directory; see its message")
        return _run_locked(prep, opts)
    finally:
        for lock in locks:
            lock.release()
        dist.close()


def _run_locked(prep: Prepared, opts: SweepOptions) -> int:
    cfg, dist, rdir = prep.cfg, prep.dist, prep.results_dir
    kind = prep.device.split(":")[0]
    hw = device_key(prep.device)
    started = results.now_iso()
    lead = dist.rank == 0
    env_name = f"env{prep.suffix}.json"
    env_info = results.environment(prep.device, REPO_ROOT)
    git = {"git_sha": env_info["git_sha"], "git_dirty": env_info["git_dirty"]}
    cfg_hash = config_mod.config_hash(cfg)
    toml_text = config_mod.to_toml(cfg)
    if lead:
        print(f"# resolved config (profile {prep.profile}, config_hash {cfg_hash})")
        print(toml_text, flush=True)
        results.atomic_write_text(rdir / "config.toml", toml_text)
    env_doc = {"profile": prep.profile, "command_line": opts.command_line, "argv": sys.argv,
               "cwd": os.getcwd(), "start_time": started, "end_time": None,
               "config_hash": cfg_hash, "device": prep.device, "world_size": dist.world,
               "shard": opts.shard or "", "cells_selected": len(prep.cells), **env_info,
               "python": sys.version.split()[0], "host": os.uname().nodename}
    if lead:
        results.atomic_write_text(rdir / env_name, json.dumps(env_doc, indent=2) + "\n")

    # Plan this rank's cells: skip finished ones, estimate the rest (cost model; instant).
    done = results.done_hashes(rdir)
    mo_done = _measure_only_hashes(rdir)
    model = CostModel(kind)
    todo: list[PlannedCell] = []
    skipped: list[PlannedCell] = []
    for index, cell in prep.mine:
        est = model.estimate(cfg, cell)
        mode = budget_mode(cfg, est.seconds)
        h = config_mod.cell_hash(cfg, cell, hw)
        p = PlannedCell(index, cell, h, est, mode)
        if not opts.force and h in done and (h not in mo_done or mode == "measure-only"):
            p.done = True
            skipped.append(p)
        else:
            todo.append(p)
    total_s = sum(p.expected_s for p in todo)
    tag = f"[rank {dist.rank}/{dist.world}] " if dist.world > 1 else ""
    print(f"{tag}{len(todo)} cells to run, {len(skipped)} already done (resume; --force reruns "
          f"them); estimated {fmt_s(total_s)} on {prep.device} -> {rdir}", flush=True)

    reporter = Reporter(total_s, len(todo), bar=not opts.quiet and dist.world == 1, prefix=tag,
                        start_lines=not opts.quiet)
    env = _child_env(dist, prep.device)
    interrupted = False
    with tempfile.TemporaryDirectory(prefix="adaptbench-") as tmp:
        workdir = Path(tmp)
        cfg_path = workdir / "config.toml"
        cfg_path.write_text(toml_text)
        old_term = signal.getsignal(signal.SIGTERM)
        # SIGTERM (Slurm, kill) ends the sweep like Ctrl-C: the running child is killed too.
        signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            for p in todo:
                _run_one(p, prep, cfg_path, workdir, env, reporter, git, cfg_hash)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            signal.signal(signal.SIGTERM, old_term)
            reporter.close()
    if interrupted:
        print(f"{tag}interrupted: finished cells are recorded in {rdir}; rerun the same command "
              "to resume", file=sys.stderr, flush=True)
        return 130

    if dist.world > 1:
        dist.barrier()
        if lead:
            sources = sorted({p.name[len("runs"):-len(".csv")]
                              for p in rdir.glob(f"runs{prep.suffix}.rank*.csv")})
            n = results.merge_files(rdir, sources, prep.suffix)
            print(f"merged {n} rows from {len(sources)} rank files into "
                  f"{rdir / results.file_name('runs', prep.suffix)}", flush=True)
        dist.barrier()
    if lead:
        env_doc["end_time"] = results.now_iso()
        results.atomic_write_text(rdir / env_name, json.dumps(env_doc, indent=2) + "\n")
        print_summary(prep, rdir)
    return 0


def _raise_interrupt(signum, frame) -> None:  # noqa: ARG001
    raise KeyboardInterrupt


def _run_one(p: PlannedCell, prep: Prepared, cfg_path: Path, workdir: Path,
             env: dict[str, str], reporter: Reporter, git: dict[str, str], cfg_hash: str
             ) -> None:
    cfg, cell = prep.cfg, p.cell
    spec = {"config_path": str(cfg_path), "cell": {"dataset": cell.dataset, "model": cell.model,
            "strategy": cell.strategy, "seed": cell.seed}, "device": prep.device,
            "measure_only": False, "out_dir": str(prep.results_dir)}
    estimate_s = p.estimate.seconds
    if p.estimate.incompatible:
        # The engine would stop at the same meta-device check: record it without a process.
        row = build_row({"status": "incompatible", "reason": p.estimate.incompatible,
                         "wall_s": 0.0}, prep, p, 0.0, {}, git, cfg_hash)
        results.write_cell(prep.results_dir, prep.write_suffix, row, [], [])
        reporter.finish(p.expected_s, f"[{p.index}/{len(prep.cells)}] {cell.label()}: "
                                      f"{_describe(row)}")
        return
    if needs_timing(cfg, p.estimate):
        reporter.start(p.index, cell, " (timing a few steps against the budget)")
        # Longer than the budget means over budget: no need to wait any longer.
        timing = run_child("estimate", spec, workdir, cfg.cell_budget_s + 60, env)
        if timing.payload and "estimate_s" in timing.payload:
            kind = prep.device.split(":")[0]
            start = SPEEDS[(kind, config_mod.resolve_auto(cfg, kind).precision)].start_s
            estimate_s = float(timing.payload["estimate_s"]) + start
            p.estimate.source = "timed"
        elif timing.timed_out:
            estimate_s = max(estimate_s, cfg.cell_budget_s * 2)
        p.mode = budget_mode(cfg, estimate_s)
    spec["measure_only"] = p.mode == "measure-only" and not p.estimate.incompatible
    note = " (measure-only: over budget)" if spec["measure_only"] else ""
    reporter.start(p.index, cell, note)
    outcome = run_child("run", spec, workdir, cfg.cell_timeout_s, env, reporter.child_line)

    history: list[dict[str, Any]] = []
    ops: list[dict[str, Any]] = []
    provenance: dict[str, Any] = {}
    if outcome.payload is not None:
        row = dict(outcome.payload.get("row") or {})
        history = list(outcome.payload.get("history") or [])
        ops = list(outcome.payload.get("ops") or [])
        provenance = dict(outcome.payload.get("provenance") or {})
    else:
        row = failure_row(outcome, cfg.cell_timeout_s)
        row["wall_s"] = outcome.wall_s
        _keep_log(outcome, prep.results_dir, p)
    row = build_row(row, prep, p, estimate_s, provenance, git, cfg_hash)
    extra = {"cell_hash": p.cell_hash, "dataset": cell.dataset, "model": cell.model,
             "strategy": cell.strategy, "seed": cell.seed, "device_name": row["device_name"]}
    history = [{**h, **extra} for h in history]
    ops = [{**o, **extra} for o in ops]
    results.write_cell(prep.results_dir, prep.write_suffix, row, history, ops)
    reporter.finish(p.expected_s, f"[{p.index}/{len(prep.cells)}] {cell.label()}: "
                                  f"{_describe(row)}")


def _keep_log(outcome: ChildOutcome, results_dir: Path, p: PlannedCell) -> None:
    """A crashed cell's stderr is kept as logs/<cell_hash>.log for the post-mortem."""
    try:
        logs = results_dir / "logs"
        logs.mkdir(exist_ok=True)
        name = f"{p.cell.label().replace('/', '_')}.{p.cell_hash}.log"
        (logs / name).write_text(outcome.stderr_path.read_text(errors="replace"))
    except OSError:
        pass


def build_row(row: dict[str, Any], prep: Prepared, p: PlannedCell, estimate_s: float,
              provenance: dict[str, Any], git: dict[str, str], cfg_hash: str) -> dict[str, Any]:
    """The one place a runs row is completed: the child's measurements plus identity, the
    effective recipe, the estimate and provenance (every column is defined in bench.schema)."""
    from bench import schema

    cfg, cell = prep.cfg, p.cell
    out = dict(row)
    out.update(schema_version=results.SCHEMA_VERSION, cell_hash=p.cell_hash,
               profile=config_mod.profile_name(prep.profile), dataset=cell.dataset,
               model=cell.model, strategy=cell.strategy, seed=cell.seed)
    effective = config_mod.resolve_auto(config_mod.for_model(cfg, cell.model), prep.device)
    for key, value in schema.recipe_values(effective).items():
        out.setdefault(key, value)
    if not out.get("input_shape"):  # a cell that never started (incompatible, crashed)
        from bench.data import get_info

        out["input_shape"] = get_info(cell.dataset, cfg.data_root or None).shape_text
    out.setdefault("reason", "")
    out["mode"] = out.get("mode") or ("measure-only" if p.mode == "measure-only"
                                      and not p.estimate.incompatible else "full")
    out["estimate_s"] = round(estimate_s, 1)
    here = _parent_device(prep.device)
    for key in ("device", "device_name", "device_id"):
        out[key] = provenance.get(key) or out.get(key) or here[key]
    for key in ("host_cpu", "torch_version", "torchvision_version", "cuda_version",
                "cudnn_version"):
        out[key] = provenance.get(key) or _parent_env().get(key, "")
    out.update(git)
    out["config_hash"] = cfg_hash
    out["timestamp"] = results.now_iso()
    return out


_PARENT_ENV: dict[str, str] = {}


def _parent_env() -> dict[str, str]:
    if not _PARENT_ENV:
        _PARENT_ENV.update(host_cpu=results.host_cpu(), **results.software_versions())
    return _PARENT_ENV


def device_key(device: str) -> str:
    """What a cell's hash knows of the hardware: its exact identity (:mod:`bench.device`).

    The same machine resumes its own rows; another machine -- another CPU model, stepping,
    core count or ISA, another GPU or GPU count -- runs every cell itself and adds its rows
    beside them, even with published results in the directory.
    """
    return _parent_device(device)["device_id"]


_DEVICES: dict[str, dict[str, str]] = {}


def _parent_device(device: str) -> dict[str, str]:
    if device not in _DEVICES:
        try:
            _DEVICES[device] = results.device_info(device)
        except Exception:  # noqa: BLE001
            _DEVICES[device] = {"device": device.split(":")[0], "device_name": "unknown",
                                "device_id": f"{device.split(':')[0]} | unknown"}
    return _DEVICES[device]


def print_summary(prep: Prepared, rdir: Path) -> None:
    """A table of the selected cells as recorded, and where the files are."""
    wanted = {config_mod.cell_hash(prep.cfg, c, device_key(prep.device)): c
              for c in prep.cells}
    rows = {r["cell_hash"]: r for r in results.read_dir(rdir, "runs") if r["cell_hash"] in wanted}
    print()
    print(f"{'cell':<48} {'status':<12} {'mode':<12} {'test_acc':>8} {'train_img_s':>11} "
          f"{'peak_mib':>9} {'wall':>7}")
    counts: dict[str, int] = {}
    for h, cell in wanted.items():
        r = rows.get(h)
        if r is None:
            print(f"{cell.label():<48} {'(no row)':<12}")
            counts["missing"] = counts.get("missing", 0) + 1
            continue
        counts[r["status"]] = counts.get(r["status"], 0) + 1
        wall = fmt_s(float(r["wall_s"])) if r["wall_s"] else ""
        print(f"{cell.label():<48} {r['status']:<12} {r['mode']:<12} {_num(r['test_acc'], 4):>8} "
              f"{_num(r['train_img_s'], 1):>11} {_num(r['peak_mem_mib'], 0):>9} {wall:>7}")
    print(", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    print(f"results: {rdir / results.file_name('runs', prep.suffix)} (+ history, ops, "
          f"config.toml, env{prep.suffix}.json)  report: python -m bench report "
          f"{shlex.quote(str(rdir))}", flush=True)


def _num(text: str, digits: int) -> str:
    try:
        return f"{float(text):.{digits}f}"
    except ValueError:
        return text


# --- plan ------------------------------------------------------------------------------------

def run_plan(opts: SweepOptions, *, fast: bool) -> int:
    """``python -m bench plan``: every cell with its estimate and the total ETA."""
    _, why = resolve_profile(opts.profile)
    if why:
        print(why)
    # Planning a GPU run before renting the GPU: with --fast nothing runs on the device, so
    # the CUDA cost model can answer on a machine without CUDA.
    cuda_elsewhere = fast and opts.device.startswith("cuda") and not _cuda_available()
    if cuda_elsewhere:
        opts = dataclasses.replace(opts, device="cpu")
    prep = prepare(opts, Dist())
    device = "cuda" if cuda_elsewhere else prep.device
    cfg = prep.cfg
    rdir = prep.results_dir
    source = "cost model" if fast else "a few timed steps per cell (cost model beyond budget)"
    print(f"plan for profile {prep.profile}: {len(prep.cells)} cells on {device}, "
          f"estimates from {source}", flush=True)
    if cuda_elsewhere:
        print("no CUDA on this machine: the CUDA cost model is calibrated on one H100 (see "
              "SPEEDS in bench/sweep.py); other GPUs scale with their speed", flush=True)
    print(f"{'#':>4}  {'cell':<48} {'est':>7}  {'mode':<12} {'source':<10} note", flush=True)
    planned = plan_cells(cfg, prep.cells, device, timed=not fast,
                         results_dir=None if cuda_elsewhere else rdir, force=opts.force,
                         on_cell=lambda p: print(plan_line(p), flush=True))
    print_plan(cfg, prep.profile, device, planned)
    return 0


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
