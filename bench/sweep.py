"""The sweep: plan the selected cells, execute the plan, record one row per cell, resume.

::

    python -m bench plan --profile cpu              # every cell, its estimate, the total ETA
    python -m bench plan --profile cpu --json       # the same plan, machine-readable
    python -m bench run --profile cpu               # runs/cpu/runs.csv, history.csv, ops.csv
    python -m bench run --profile cpu --executor process   # a fresh process per cell
    python -m bench run --profile gpu --executor ray --set ray_address=auto   # a Ray cluster
    python -m bench run --profile auto              # gpu with CUDA, else cpu (says which)
    python -m bench run --profile gpu --only model=vgg16,strategy=resize224 --force
    python -m bench run --profile gpu --shard 2/4   # Slurm array task 2 of 4 -> runs.shard-2-of-4.csv
    torchrun --standalone --nproc_per_node 8 -m bench run --profile gpu   # ranks pull cells
    torchrun --standalone --nproc_per_node 8 -m bench run --profile gpu --ddp  # 8 ranks per cell

The modules, in the order data flows: :mod:`bench.plan.grid` (selection and validation),
:mod:`bench.plan.costmodel` and :mod:`bench.plan.planner` (THE plan, shared by ``plan`` and ``run``),
:mod:`bench.executors` (a process to run each cell in: ``warm``, the default, ``process``,
``ray`` or ``submitit``; the rows are written here, as results arrive),
:mod:`bench.results` (the atomic store), :mod:`bench.progress` (what is printed). This module
only orchestrates them.

**Cells run outside the sweep's process.** A cell that dies without a result is recorded, not
fatal: killed by a signal -> ``error`` (``oom`` when its log says out of memory), past
``cell_timeout_s`` -> ``timeout``. The sweep goes on. A cell whose forward cannot run (the
meta-device check the engine also makes) is recorded ``incompatible`` by the sweep itself,
without running anything (executor ``none`` on its row).

**Resume.** A cell is identified by :func:`bench.config.cell_hash` (the cell, every setting that
affects it, the device identity; not the executor). A rerun skips cells the plan says are done
(see :mod:`bench.plan.planner`); ``error`` and ``timeout`` are retried; ``--force`` reruns the selected
cells, replacing their rows.

**Scale-out.** ``--shard k/n`` (1-based) keeps cells ``i % n == k - 1`` and writes
``runs.shard-k-of-n.csv`` (static: a Slurm array task knows its cells without talking to the
others). Under ``torchrun`` rank 0 makes THE plan and every rank gets it (so resume skips the
same cells everywhere); then each rank pulls the next unclaimed cell from a counter in the
ranks' c10d store, longest expected first (:mod:`bench.executors.ranks`), and runs it on
``cuda:LOCAL_RANK`` (CPU: the cores are split between local ranks) with its own executor,
writing ``runs.rank<r>.csv``; after a barrier (gloo) rank 0 merges the rank files into
``runs.csv`` and deletes them. Together the ranks run each planned cell exactly once. Readers
take every ``runs*.csv``; the newest row per ``cell_hash`` wins. ``--ddp`` instead trains every
cell with all ranks together, DistributedDataParallel, ``batch_size`` the global batch; rank 0
writes the one row (:mod:`bench.executors.ddp`).

**Locks.** Each set of files has its writer's ``fcntl.flock`` (``runs.lock``,
``runs.shard-k-of-n.lock``, ``runs.rank<r>.lock``): a second run on the same files is refused
naming the holder's pid; shards of one grid can share a directory.

**Efficiency.** At its end a run prints the sweep efficiency: the seconds its cells spent
training epochs (sum of ``epochs x epoch_s``) over the sweep's wall time. ``python -m
bench.tools.efficiency`` measures it for every executor side by side.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import REPO_ROOT, executors, identity, progress, results, schema
from bench import config as config_mod
from bench.config import Cell, Config, ConfigError
from bench.executors import Executor, Job, make_executor
from bench.executors.protocol import ChildOutcome, child_env, failure_row, result_row
from bench.executors.ranks import (
    Dist,
    longest_first,
    resolve_device,
)
from bench.identity import device_key, device_suffix, parent_device, parent_provenance
from bench.outpath import results_dir_problem
from bench.plan import fastpath
from bench.plan.grid import (
    parse_only,
    parse_shard,
    resolve_profile,
    select_cells,
    validate_data,
    validate_grid,
)
from bench.plan.planner import (
    TIMED_OUT,
    PlannedCell,
    Timer,
    make_plan,
    plan_json,
    plan_line,
    print_plan,
)
from bench.progress import Reporter, fmt_s
from bench.schema import Mode, Status

DEFAULT_RUNS_ROOT = Path("runs")


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
    publish: bool = False  # rows for results/: refused unless publishable (results.publish)


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
    ddp_world: int = 1  # ranks that train each cell together: the world under --ddp, else 1
    auto_probe_s: float = 0.0  # seconds spent measuring precision / layout "auto" (autotune)


def prepare(opts: SweepOptions, dist: Dist | None = None) -> Prepared:
    """Validate everything; raises ConfigError / StrategyError / DataError (exit 2)."""
    profile, _ = resolve_profile(opts.profile)
    cfg = config_mod.load(profile, opts.overrides)  # an unknown executor is refused here
    if opts.publish:
        from bench.results.publish import publish_problem

        problem = publish_problem(cfg, config_mod.profile_name(profile))
        if problem:
            raise ConfigError(f"--publish: {problem}. Run it without --publish (into runs/) "
                              "to measure it anyway.")
    validate_grid(cfg)
    validate_data(cfg)
    dist = dist or Dist.from_env()
    if opts.ddp and dist.world < 2:
        raise ConfigError(f"--ddp trains each cell with every torchrun rank, but WORLD_SIZE is "
                          f"{os.environ.get('WORLD_SIZE') or 'unset'}; launch it with torchrun "
                          "--nproc_per_node N (N >= 2) -m bench run ... --ddp, or drop --ddp")
    if opts.ddp and cfg.pack != 1:
        # A --ddp cell already holds every rank's device; two at once would share all of them.
        raise ConfigError(f"--ddp trains each cell on every rank's device, and pack={cfg.pack} "
                          "runs several cells at once on one device; use one of them "
                          "(pack=1 under --ddp)")
    if dist.world > 1 and cfg.executor in ("ray", "submitit"):
        # Each rank would hand the whole grid to the engine again: N copies of every cell.
        raise ConfigError(f"executor {cfg.executor!r} schedules the cells over its own cluster, "
                          f"but this is one of {dist.world} torchrun ranks; run it without "
                          "torchrun, or use --executor warm or process under torchrun")
    only = parse_only(opts.only, cfg)
    shard = parse_shard(opts.shard)
    chosen = select_cells(cfg, only, shard)
    if opts.ddp:
        from bench.executors.ddp import check_batch

        for model in sorted({c.model for c in chosen}):  # per_model may change the batch
            bad = check_batch(config_mod.for_model(cfg, model).batch_size, dist.world,
                              f"batch_size (model {model})")
            if bad:
                raise ConfigError(bad)
    config_mod.check_weights(cfg, chosen)  # before any cell: one refusal, not N error rows
    device = resolve_device(opts.device, dist)
    # Every rank plans every cell: which rank runs which is decided while they run (claims).
    mine = list(enumerate(chosen, start=1))
    # A user's runs go to runs/<profile>/ (git-ignored); results/ holds the published runs and
    # changes only when asked for by name (`make publish`, --results-dir results/...).
    results_dir = Path(opts.results_dir or DEFAULT_RUNS_ROOT / config_mod.profile_name(profile))
    suffix = results.shard_suffix(*shard)
    write_suffix = results.rank_suffix(suffix, dist.rank) if dist.world > 1 else suffix
    # Before any cell (and in plan): a runs.csv that is a directory, or a read-only directory,
    # is refused now rather than after the first cell trained.
    names = [results.file_name(kind, sfx) for kind in results.KINDS
             for sfx in dict.fromkeys((suffix, write_suffix))]
    problem = results_dir_problem(results_dir, [*names, "config.toml", "env.json"])
    if problem:
        raise results.ResultsError(problem)
    return Prepared(profile, cfg, chosen, mine, device, dist, results_dir, suffix, write_suffix,
                    dist.world if opts.ddp else 1)


def _make_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise results.ResultsError(f"results directory {path} cannot be created: "
                                   f"{exc.strerror or exc}") from None
    if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
        raise results.ResultsError(f"results directory {path} is not writable")


def _spec(prep: Prepared, cfg_path: Path, cell: Cell, measure_only: bool) -> dict[str, Any]:
    """A request of the child protocol (:mod:`bench.executors.worker`)."""
    return {"config_path": str(cfg_path), "cell": dataclasses.asdict(cell),
            "device": prep.device, "measure_only": measure_only,
            "out_dir": str(prep.results_dir)}


def executor_timer(executor: Executor, prep: Prepared, cfg_path: Path,
                   announce: Any = None) -> Timer:
    """The plan's timer: a few timed steps of a cell in the executor's process."""
    cfg = prep.cfg

    def timer(cell: Cell) -> tuple[float | None, str]:
        if announce is not None:
            announce(f"timing a few steps of {cell.label()} against the budget")
        # Longer than the budget means over budget: no need to wait any longer.
        out = executor.request("estimate", _spec(prep, cfg_path, cell, False),
                               cfg.cell_budget_s + 60)
        if out.payload is not None:  # an estimate's shape (protocol.child_outcome)
            return float(out.payload["estimate_s"]), ""
        if out.timed_out:
            return None, TIMED_OUT
        return None, failure_row(out, cfg.cell_budget_s + 60)["reason"]

    return timer


# --- run ---------------------------------------------------------------------------------------

def run_sweep(opts: SweepOptions) -> int:
    """``python -m bench run``: returns 0 when the sweep ran to its end (failed cells included)."""
    t0 = time.monotonic()
    _, why = resolve_profile(opts.profile)
    if why:
        print(why, flush=True)
    early = _early_worker(opts)
    try:
        return _run_prepared(opts, t0, early)
    finally:
        if early is not None:  # idempotent: _run_locked has closed it when it ran
            early[1].close()
            early[0].cleanup()


def _early_worker(opts: SweepOptions) -> tuple[tempfile.TemporaryDirectory, Executor] | None:
    """The sweep's warm worker, started before this process imports torch (``prepare``
    validates the grid with the strategies, which import it): the two imports then overlap
    instead of following each other, ~2.6 s of a five-cell smoke sweep on a 2-core CPU.

    Only where nothing ``prepare`` decides can change the worker's environment: one process
    (no torchrun, no ``--ddp``) and the ``warm`` executor. A config that ``prepare`` will
    refuse starts nothing here; a worker started for a sweep refused later is killed by the
    caller and has written nothing outside its temporary directory.
    """
    if opts.ddp or os.environ.get("WORLD_SIZE", "1") not in ("", "1"):
        return None
    try:
        profile, _ = resolve_profile(opts.profile)
        cfg = config_mod.load(profile, opts.overrides)
    except Exception:  # noqa: BLE001 - prepare() reports it with its own message
        return None
    if cfg.executor != "warm" or cfg.pack != 1:  # packed slots start once the device is known
        return None
    tmp = tempfile.TemporaryDirectory(prefix="adaptbench-")
    workdir = Path(tmp.name)
    # child_env's device only matters when local ranks split the cores (not here).
    env = {**child_env("cpu", 1), **fastpath.compile_cache_env(workdir)}
    executor = make_executor("warm", workdir, env, cfg)
    executor.prestart()
    return tmp, executor


def _run_prepared(opts: SweepOptions, t0: float,
                  early: tuple[tempfile.TemporaryDirectory, Executor] | None) -> int:
    prep = prepare(opts)
    # The executor's own needs (an optional package, a reachable cluster): refused (exit 2)
    # before the results directory is touched.
    executors.preflight(prep.cfg.executor, prep.cfg)
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
        return _run_locked(prep, opts, t0, early)
    finally:
        for lock in locks:
            lock.release()
        dist.close()


def _run_locked(prep: Prepared, opts: SweepOptions, t0: float,
                early: tuple[tempfile.TemporaryDirectory, Executor] | None = None) -> int:
    cfg, dist = prep.cfg, prep.dist
    old_term = signal.getsignal(signal.SIGTERM)
    # SIGTERM (Slurm, kill) ends the sweep like Ctrl-C: the running cell is killed too.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        with contextlib.ExitStack() as stack:
            if early is not None:  # started before prepare() (see _early_worker)
                workdir, executor = Path(early[0].name), early[1]
            else:
                workdir = Path(stack.enter_context(
                    tempfile.TemporaryDirectory(prefix="adaptbench-")))
                # One on-disk compile cache for the sweep's cells: a second cell of a
                # compiled model loads what the first compiled (fastpath.compile_cache_env).
                env = {**child_env(prep.device, dist.local_world),
                       **fastpath.compile_cache_env(workdir)}
                executor = make_executor(cfg.executor, workdir, env, cfg,
                                         slots=_slots(prep), device=prep.device)
            with executor:
                # A warm worker imports torch and the engine while this process writes its
                # files and plans (~2 s of a small sweep's wall time on a 2-core CPU).
                executor.prestart()
                prep = _measure_auto(prep, 1 if early is not None else _slots(prep, quiet=True),
                                     opts.quiet)
                return _run_with(executor, workdir, prep, opts, t0)
    except KeyboardInterrupt:
        tag = f"[rank {dist.rank}/{dist.world}] " if dist.world > 1 else ""
        print(f"{tag}interrupted: finished cells are recorded in {prep.results_dir}; rerun the "
              "same command to resume", file=sys.stderr, flush=True)
        return 130
    finally:
        signal.signal(signal.SIGTERM, old_term)


def _measure_auto(prep: Prepared, slots: int, quiet: bool) -> Prepared:
    """``prep`` with precision / layout ``"auto"`` decided by measuring, per model, on a CPU
    (:mod:`bench.engine.autotune`; saved in the results directory): the local executors only,
    one process (under torchrun and on ray / submitit the ISA rule stays). Before the plan, so
    the plan, every cell and the saved config agree."""
    cfg = prep.cfg
    if (not prep.device.startswith("cpu") or prep.dist.world > 1
            or cfg.executor not in executors.LOCAL):
        return prep
    if not any("auto" in (m.precision, m.channels_last)
               for m in (config_mod.for_model(cfg, c.model) for c in prep.cells)):
        return prep
    from bench import device as device_mod
    from bench.engine import autotune

    t0 = time.monotonic()
    base = int(os.environ.get("OMP_NUM_THREADS") or 0) or (os.cpu_count() or 1)
    say = None if quiet else (lambda text: print(text, flush=True))
    resolved = autotune.resolve_for_sweep(
        cfg, prep.cells, prep.device, parent_device(prep.device)["device_id"], prep.results_dir,
        device_mod.speed_flags(), max(1, base // max(1, slots)), say)
    return dataclasses.replace(prep, cfg=resolved, auto_probe_s=time.monotonic() - t0)


def _slots(prep: Prepared, quiet: bool = False) -> int:
    """Cells at once on this sweep's device for the local executors (``pack``; ray and
    submitit read their own settings). Says so when it packs, or when ``auto`` does not
    (unless ``quiet``)."""
    from bench.executors import pack

    cfg = prep.cfg
    if cfg.executor not in executors.LOCAL or cfg.pack == 1:
        return 1
    mib: list[float] = []
    if cfg.pack == "auto" and prep.device.startswith("cuda"):
        mib = pack.measured_mib(results.read_dir(prep.results_dir, "runs"), prep.cells,
                                parent_device(prep.device)["device_id"])
    slots, why = pack.resolve(cfg.pack, prep.device, mib)
    if quiet:
        return slots
    if slots > 1:
        print(f"pack: {slots} cells at once on {prep.device} ({pack.sharing(prep.device)}"
              f"{'; ' + why if why else ''}); their rows record concurrency, and their "
              "throughput is not a solo figure", flush=True)
    elif why:
        print(f"pack=auto: one cell at a time ({why})", flush=True)
    return slots


def _run_with(executor: Executor, workdir: Path, prep: Prepared, opts: SweepOptions,
              t0: float) -> int:
    cfg, dist, rdir = prep.cfg, prep.dist, prep.results_dir
    started = results.now_iso()
    lead = dist.rank == 0
    env_name = f"env{prep.suffix}.json"
    # The sweep's own environment, for env.json; the rows' provenance is their cells' own.
    # git is the sweep's: the checkout every cell process imports (PYTHONPATH, child_env).
    git = results.git_info(REPO_ROOT)
    env_info = {**parent_provenance(prep.device), **git}
    cfg_hash = identity.config_hash(cfg)
    toml_text = config_mod.to_toml(cfg)
    if lead:
        print(f"# resolved config (profile {prep.profile}, config_hash {cfg_hash})")
        print(toml_text, flush=True)
        results.atomic_write_text(rdir / "config.toml", toml_text)
    env_doc = {"profile": prep.profile, "command_line": opts.command_line, "argv": sys.argv,
               "cwd": os.getcwd(), "start_time": started, "end_time": None,
               "config_hash": cfg_hash, "device": prep.device, "world_size": dist.world,
               "shard": opts.shard or "", "cells_selected": len(prep.cells),
               "executor": cfg.executor, "auto_probe_s": round(prep.auto_probe_s, 1),
               **env_info,
               "python": sys.version.split()[0], "host": os.uname().nodename}
    if lead:
        results.atomic_write_text(rdir / env_name, json.dumps(env_doc, indent=2) + "\n")

    tag = f"[rank {dist.rank}/{dist.world}] " if dist.world > 1 else ""
    rows: list[dict[str, Any]] = []
    cfg_path = workdir / "config.toml"
    cfg_path.write_text(toml_text)
    reporter = None
    try:  # a KeyboardInterrupt (Ctrl-C, SIGTERM) goes up to _run_locked
        say = None if opts.quiet else (lambda text: print(f"{tag}{text}", flush=True))
        # THE plan (the same function `bench plan` prints): run executes exactly it. Under
        # torchrun rank 0 makes it and every rank gets the same one.
        planned = dist.share(lambda: make_plan(
            cfg, prep.mine, prep.device, results_dir=rdir, force=opts.force,
            timer=executor_timer(executor, prep, cfg_path, say), ddp_world=prep.ddp_world))
        todo = [p for p in planned if not p.done]
        total_s = sum(p.expected_s for p in todo)
        if lead:
            print(f"{len(todo)} cells to run, {len(planned) - len(todo)} already done "
                  f"(resume; --force reruns them); estimated {fmt_s(total_s)} on {prep.device} "
                  f"with the {cfg.executor} executor -> {rdir}", flush=True)
        reporter = Reporter(total_s, len(todo), bar=not opts.quiet and dist.world == 1,
                            prefix=tag, start_lines=not opts.quiet)
        # --ddp: every rank runs every cell, in the plan's order. Else each rank pulls the
        # cells it runs (bench.ranks; the executor reads them lazily, so a rank claims its
        # next cell only when it has room for it); alone, it runs them all in plan order.
        mine = (todo if prep.ddp_world > 1 or dist.world == 1
                else dist.claim(longest_first(todo)))
        _run_cells(mine, prep, cfg_path, executor, reporter, git, cfg_hash, rows)
    finally:
        if reporter is not None:
            reporter.close()
    executor.close()  # the worker's exit is not part of the sweep's figures

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
        # The matmul peaks the cells' MFU is over, with their repeats and spread (the cells
        # measured or reused them in the per-user cache: bench.engine.peaks).
        env_doc["peaks"] = _peaks_of(env_info.get("device_id", ""))
        results.atomic_write_text(rdir / env_name, json.dumps(env_doc, indent=2) + "\n")
        _summary(prep, rdir)
    print(f"{tag}{progress.efficiency_line(progress.training_s(rows), time.monotonic() - t0, cfg.executor)}",
          flush=True)
    return 0


def _peaks_of(device_id: str) -> dict[str, Any]:
    """The cached matmul peaks of ``device_id`` ({} without one, or without torch)."""
    if not device_id:
        return {}
    try:
        from bench.engine import peaks
    except ImportError:  # a stand-in sweep without torch
        return {}
    return peaks.cached_peaks(device_id)


def _raise_interrupt(signum, frame) -> None:  # noqa: ARG001
    raise KeyboardInterrupt


def _run_cells(todo: Iterable[PlannedCell], prep: Prepared, cfg_path: Path, executor: Executor,
               reporter: Reporter, git: dict[str, str], cfg_hash: str,
               rows: list[dict[str, Any]]) -> None:
    """Run the planned cells through :meth:`Executor.run_many`, committing each row here, in
    the sweep's process, as its result arrives (in order of completion when cells run at
    once): a sweep killed at any point has written every row it received, and no other."""

    def jobs() -> Iterator[Job]:
        # Read lazily by the executor: an incompatible cell is recorded when its turn comes,
        # so a one-at-a-time executor writes the rows in plan order.
        for p in todo:
            if p.estimate.incompatible:
                rows.append(_record_incompatible(p, prep, reporter, git, cfg_hash))
                continue
            measure_only = p.mode == Mode.MEASURE_ONLY
            spec = _spec(prep, cfg_path, p.cell, measure_only)
            if prep.ddp_world > 1:  # the cell's own group, met through the sweep's store
                from bench.executors import ddp

                spec["ddp"] = ddp.cell_spec(prep.dist.rank, prep.dist.world, prep.dist.token,
                                            p.cell_hash, prep.cfg.cell_timeout_s)
            yield Job(p, "run", spec, prep.cfg.cell_timeout_s, reporter.child_line)

    def on_start(job: Job) -> None:
        p = job.key
        reporter.start(p.index, p.cell,
                       " (measure-only: over budget)" if p.mode == Mode.MEASURE_ONLY else "")

    def on_done(job: Job, outcome: ChildOutcome) -> None:
        rows.append(_run_one(job.key, prep, outcome, executor, reporter, git, cfg_hash))

    executor.run_many(jobs(), on_done, on_start)


def _record_incompatible(p: PlannedCell, prep: Prepared, reporter: Reporter,
                         git: dict[str, str], cfg_hash: str) -> dict[str, Any]:
    """The engine would stop at the same meta-device check: record it without a process."""
    row = build_row(schema.outcome(Status.INCOMPATIBLE, p.estimate.incompatible, wall_s=0.0),
                    prep, p, {}, git, cfg_hash, executor="none")
    if _writes(prep):
        results.write_cell(prep.results_dir, prep.write_suffix, row, [], [])
    reporter.finish(p.expected_s, f"[{p.index}/{len(prep.cells)}] {p.cell.label()}: "
                                  f"{progress.describe(row)}")
    return row


def _run_one(p: PlannedCell, prep: Prepared, outcome: ChildOutcome, executor: Executor,
             reporter: Reporter, git: dict[str, str], cfg_hash: str) -> dict[str, Any]:
    """Commit the row of one planned cell from its executor's outcome; returns the row."""
    cfg, cell = prep.cfg, p.cell
    label = f"[{p.index}/{len(prep.cells)}] {cell.label()}"
    row, history, ops, provenance = result_row(outcome, cfg.cell_timeout_s)
    if outcome.payload is None:
        _keep_log(outcome, prep.results_dir, p)
    if prep.ddp_world > 1:  # one row for all ranks: a rank that failed fails the cell
        from bench.executors import ddp

        row.update(ddp.merge_statuses(prep.dist.gather(
            {"status": row.get("status"), "reason": row.get("reason") or ""})))
    row = build_row(row, prep, p, provenance, git, cfg_hash, executor=executor.name,
                    concurrency=outcome.concurrency)
    extra = {"cell_hash": p.cell_hash, "dataset": cell.dataset, "model": cell.model,
             "strategy": cell.strategy, "seed": cell.seed, "device_name": row["device_name"]}
    history = [{**h, **extra} for h in history]
    ops = [{**o, **extra} for o in ops]
    if _writes(prep):
        results.write_cell(prep.results_dir, prep.write_suffix, row, history, ops)
    reporter.finish(p.expected_s, f"{label}: {progress.describe(row)}")
    return row


def _writes(prep: Prepared) -> bool:
    """Does this rank write the rows of the cells it runs? Under --ddp only rank 0 does."""
    return prep.ddp_world == 1 or prep.dist.rank == 0


def _keep_log(outcome: ChildOutcome, results_dir: Path, p: PlannedCell) -> None:
    """A crashed cell's log (its process's stderr while it ran) is kept as
    logs/<label>.<cell_hash>.log for the post-mortem."""
    try:
        logs = results_dir / "logs"
        logs.mkdir(exist_ok=True)
        name = f"{p.cell.label().replace('/', '_')}.{p.cell_hash}.log"
        (logs / name).write_text(outcome.log)
    except OSError:
        pass


def build_row(measured: dict[str, Any], prep: Prepared, p: PlannedCell,
              provenance: dict[str, Any], git: dict[str, str], cfg_hash: str, *,
              executor: str, concurrency: int | None = None) -> dict[str, Any]:
    """A planned cell's runs row: what this sweep knows of the cell, handed with the child's
    ``measured`` row and ``provenance`` to :func:`bench.schema.make_row`, the one constructor
    (every column is defined in bench.schema). ``concurrency``: None for a cell that ran
    nothing (its column stays empty)."""
    cfg, cell = prep.cfg, p.cell
    fixed = {"schema_version": results.SCHEMA_VERSION, "cell_hash": p.cell_hash,
             "profile": config_mod.profile_name(prep.profile), "dataset": cell.dataset,
             "model": cell.model, "strategy": cell.strategy, "seed": cell.seed,
             "estimate_s": round(p.estimate.seconds, 1), "executor": executor,
             "world_size": prep.ddp_world, **git, "config_hash": cfg_hash,
             "timestamp": results.now_iso()}
    if concurrency is not None:
        fixed["concurrency"] = concurrency
    defaults = schema.recipe_values(identity.effective(cfg, cell, prep.device))
    defaults["reason"] = ""
    defaults["mode"] = (Mode.MEASURE_ONLY if p.mode == Mode.MEASURE_ONLY
                        and not p.estimate.incompatible else Mode.FULL)
    if not measured.get("input_shape"):  # a cell that never started (incompatible, crashed)
        from bench.data import get_info

        defaults["input_shape"] = get_info(cell.dataset, cfg.data_root or None).shape_text
    # A cell whose process reported no provenance (it died first; a stand-in without torch)
    # is the one case for the sweep's own, and only where its row names none either.
    fallback = {} if provenance else parent_provenance(prep.device)
    return schema.make_row(measured, fixed=fixed, defaults=defaults, provenance=provenance,
                           fallback=fallback, device_suffix=device_suffix(prep.ddp_world))


def _summary(prep: Prepared, rdir: Path) -> None:
    wanted = {identity.cell_hash(prep.cfg, c, device_key(prep.device, prep.ddp_world)): c
              for c in prep.cells}
    rows = {r["cell_hash"]: r for r in results.read_dir(rdir, "runs") if r["cell_hash"] in wanted}
    progress.print_summary(rows, wanted, rdir / results.file_name("runs", prep.suffix),
                           prep.suffix, rdir)


# --- plan --------------------------------------------------------------------------------------

def run_plan(opts: SweepOptions, *, fast: bool, as_json: bool = False,
             ddp_world: int = 0, device_model: str = "") -> int:
    """``python -m bench plan``: every cell with its estimate and the total ETA (or ``--json``).

    ``ddp_world`` N > 0: the plan of ``torchrun --nproc_per_node N -m bench run --ddp``, with
    that run's cell hashes and batch check (each cell is one row trained by N ranks).
    ``device_model``: the device model priced (``plan --device-model``; "" = the fitted one).
    """
    if ddp_world and ddp_world < 2:
        raise ConfigError(f"plan --ddp N takes the ranks that train each cell together, N >= 2; "
                          f"got {ddp_world}")
    _, why = resolve_profile(opts.profile)
    info = sys.stderr if as_json else sys.stdout  # --json: stdout is the document alone
    if why:
        print(why, file=info)
    # Planning a GPU run before renting the GPU: with --fast nothing runs on the device, so
    # the CUDA cost model can answer on a machine without CUDA.
    cuda_elsewhere = fast and opts.device.startswith("cuda") and not _cuda_available()
    if cuda_elsewhere:
        opts = dataclasses.replace(opts, device="cpu")
    if ddp_world:
        opts = dataclasses.replace(opts, ddp=True)
    # As one process (no group is joined), or as rank 0 of the --ddp world being planned.
    prep = prepare(opts, Dist(world=ddp_world or 1, local_world=ddp_world or 1))
    device = "cuda" if cuda_elsewhere else prep.device
    cfg = prep.cfg
    source = ("cost model" if fast else "cost model; cells near the budget timed for a few "
              f"steps by the {cfg.executor} executor")
    if not as_json:
        print(f"plan for profile {prep.profile}: {len(prep.cells)} cells on {device}, "
              f"estimates from {source}", flush=True)
        if cuda_elsewhere:
            print("no CUDA on this machine: the CUDA cost model is calibrated on one H100 (see "
                  "SPEEDS in bench/plan/speeds.py); --device-model prices another "
                  f"({device_model or 'h100'} here)", flush=True)
        print(f"{'#':>4}  {'cell':<48} {'est':>7}  {'mode':<12} {'source':<10} note", flush=True)
    cells = list(enumerate(prep.cells, start=1))
    rdir = None if cuda_elsewhere else prep.results_dir
    show = None if as_json else (lambda p: print(plan_line(p), flush=True))
    if fast:
        planned = make_plan(cfg, cells, device, results_dir=rdir, force=opts.force, on_cell=show,
                            ddp_world=prep.ddp_world, device_model=device_model)
    else:
        executors.preflight(cfg.executor, cfg)
        with tempfile.TemporaryDirectory(prefix="adaptbench-plan-") as tmp:
            workdir = Path(tmp)
            cfg_path = workdir / "config.toml"
            cfg_path.write_text(config_mod.to_toml(cfg))
            with make_executor(cfg.executor, workdir, child_env(prep.device, 1),
                               cfg) as executor:
                planned = make_plan(cfg, cells, device, results_dir=rdir, force=opts.force,
                                    timer=executor_timer(executor, prep, cfg_path),
                                    on_cell=show, ddp_world=prep.ddp_world,
                                    device_model=device_model)
    if as_json:
        print(json.dumps(plan_json(cfg, prep.profile, device, cfg.executor, planned,
                                   device_model), indent=2))
    else:
        print_plan(cfg, prep.profile, device, planned, device_model=device_model)
        if rdir is not None and (rdir / "runs.csv").is_file():
            # How far to trust that ETA: the estimates of the rows already in this directory
            # against what those cells took (bench.tools.calibrate).
            from bench.tools import calibrate

            rows, _ = results.read_current_runs(rdir)
            print(f"last run in {rdir}: {calibrate.estimate_errors(rows).line()} "
                  f"(python -m bench.tools.calibrate {rdir})")
    return 0


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


__all__ = ["SweepOptions", "Prepared", "prepare", "run_sweep", "run_plan", "build_row",
           "executor_timer", "REPO_ROOT", "DEFAULT_RUNS_ROOT"]
