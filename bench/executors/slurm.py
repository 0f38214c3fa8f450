"""The ``submitit`` executor: the sweep's cells as one Slurm job array, through submitit::

    python -m bench run --profile gpu --executor submitit --set slurm_partition=gpu
    python -m bench run --profile smoke --executor submitit --set slurm_cluster=local  # no Slurm

``pip install '.[slurm]'``. submitit is imported by this module only when the executor is used.

The sweep stays where it was started (a login node, or a small job of its own) and submits the
cells it has to run as one array (``map_array``): at most ``slurm_parallelism`` tasks at once,
``gpus_per_node=1`` on CUDA, ``timeout_min`` from ``cell_timeout_s``. Each array task runs one
cell through the child protocol in a fresh ``python -m bench.executors.worker once`` process (as the
``process`` executor does: a task is a new allocation, there is nothing to keep warm), on files
of its own in a temporary directory of its node, and returns the request's outcome to the
sweep (:func:`bench.executors.protocol.to_wire`: the payload -- row, history, ops, provenance
-- or how the cell's process ended and its log tail), which reads it as it reads a local one
(:func:`bench.executors.protocol.from_wire`) and writes the row as each task finishes. Job files and task logs
go to ``slurm_folder`` (default ``logs/submitit`` under the results directory, which must be on
a file system the nodes share).

**Preemption.** A task is a :class:`submitit.helpers.Checkpointable`: when Slurm preempts or
times it out, its ``checkpoint`` requeues the same cell, which then **restarts from scratch**
(a cell keeps no state worth resuming: its figures come from one uninterrupted run). No row is
written by a task, so a preempted cell leaves nothing half-written.

**Concurrency.** On Slurm every task has an allocation of its own (``concurrency`` 1);
``slurm_cluster=local`` runs every task at once as processes of this machine, and each row's
``concurrency`` says how many were running while it ran.

Tested with submitit's ``local`` cluster on a 2-core CPU only, not on a Slurm cluster.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from bench.executors.proctree import kill_tree
from bench.executors.protocol import (
    LOG_CHARS,
    REPO_ROOT,
    BatchExecutor,
    ChildOutcome,
    Job,
    child_outcome,
    from_wire,
    import_engine,
)

INSTALL_HINT = "pip install '.[slurm]'"
POLL_S = 1.0  # seconds between looks at the tasks (submitit rate-limits sacct itself)


def _submitit() -> Any:
    """``import submitit``, or :class:`~bench.config.ConfigError` naming the extra to install."""
    return import_engine("submitit", "submitit", INSTALL_HINT)


def _checkpointable() -> type:
    """submitit's Checkpointable, or a stand-in base when submitit is missing (the module stays
    importable, so the missing package is refused with its install hint, not an ImportError)."""
    try:
        from submitit.helpers import Checkpointable
    except ImportError:
        return object
    return Checkpointable


class CellTask(_checkpointable()):  # type: ignore[misc]
    """One array task: one cell in a fresh ``python -m bench.executors.worker`` process on this node."""

    def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        from bench.executors.process import run_child
        from bench.executors.protocol import child_env, to_wire

        if request.get("driver_pid"):
            _die_with_driver(int(request["driver_pid"]))
        if request.get("cwd") and os.path.isdir(request["cwd"]):
            os.chdir(request["cwd"])  # relative paths of the config (./data) as in the sweep
        workdir = Path(tempfile.mkdtemp(prefix="adaptbench-slurm-"))
        try:
            cfg_path = workdir / "config.toml"
            cfg_path.write_text(request["toml"])
            spec = {**request["spec"], "config_path": str(cfg_path)}
            if str(spec.get("device", "")).startswith("cuda"):
                spec["device"] = "cuda:0"  # the allocation's GPU (CUDA_VISIBLE_DEVICES)
            if spec.get("out_dir") and not os.path.isdir(spec["out_dir"]):
                spec["out_dir"] = None
            env = child_env(spec["device"], 1)
            env.update(request["env"])
            return to_wire(run_child(request["command"], spec, workdir, request["timeout_s"],
                                     env, on_line=print))  # epoch lines: the task's log
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def checkpoint(self, request: dict[str, Any]) -> Any:
        """Preempted or out of time: requeue the same cell, to be run again from scratch."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, request)


def _die_with_driver(driver_pid: int, every_s: float = 0.5) -> None:
    """submitit's local cluster: end this task (SIGKILL) once the sweep is gone.

    The task runs under submitit's local controller, not under the sweep, so the kernel's
    parent-death signal cannot tie it to the sweep; a watcher thread polls the sweep's pid. The
    cell process dies with the task (its own ``PR_SET_PDEATHSIG``), so ``kill -9`` of the sweep
    leaves nothing running, as with the other executors.
    """
    import signal
    import threading

    def watch() -> None:
        while True:
            time.sleep(every_s)
            try:
                os.kill(driver_pid, 0)
            except ProcessLookupError:
                os.kill(os.getpid(), signal.SIGKILL)
            except PermissionError:
                pass  # alive, someone else's: not ours to judge

    threading.Thread(target=watch, name="adaptbench-driver-watch", daemon=True).start()


class SubmititExecutor(BatchExecutor):
    """All the sweep's cells as one job array; rows written by the sweep as tasks finish."""

    name = "submitit"

    def __init__(self, workdir: Path, env: dict[str, str], cfg: Any = None) -> None:
        super().__init__(workdir, env, cfg)
        self._pending: dict[Any, Job] = {}
        self.cluster = ""

    @classmethod
    def preflight(cls, cfg: Any) -> None:
        _submitit()

    def _executor(self, jobs: list[Job]) -> Any:
        submitit = _submitit()
        cfg = self.cfg
        out_dir = jobs[0].spec.get("out_dir") or "."
        folder = Path(getattr(cfg, "slurm_folder", "") or Path(out_dir) / "logs" / "submitit")
        cluster = getattr(cfg, "slurm_cluster", "auto")
        ex = submitit.AutoExecutor(folder=folder, cluster=None if cluster == "auto" else cluster)
        self.cluster = ex.cluster
        timeout_s = max(j.timeout_s for j in jobs)
        params: dict[str, Any] = {
            # The cell's own timeout kills it first; the margin covers start-up and the result.
            "timeout_min": math.ceil((timeout_s + 300) / 60),
            "gpus_per_node": 1 if str(jobs[0].spec.get("device", "")).startswith("cuda") else 0,
            "slurm_array_parallelism": int(getattr(cfg, "slurm_parallelism", 16)),
            "name": "adaptbench",
        }
        if getattr(cfg, "slurm_partition", ""):
            params["slurm_partition"] = cfg.slurm_partition
        ex.update_parameters(**params)
        return ex

    def run_many(self, jobs: Iterable[Job], on_done: Callable[[Job, ChildOutcome], None],
                 on_start: Callable[[Job], None] | None = None) -> None:
        todo = list(jobs)  # an array is submitted whole
        if not todo:
            return
        ex = self._executor(todo)
        tomls: dict[str, str] = {}
        env = {k: v for k, v in self.env.items() if k.startswith("ADAPTBENCH_")}
        requests = []
        for job in todo:
            path = job.spec["config_path"]
            tomls.setdefault(path, Path(path).read_text())
            requests.append({"command": job.command, "toml": tomls[path], "spec": job.spec,
                             "timeout_s": job.timeout_s, "env": env, "cwd": os.getcwd(),
                             # On Slurm a killed driver leaves the array running (scancel it).
                             "driver_pid": os.getpid() if self.cluster == "local" else 0})
        with _importable_repo():
            submitted = ex.map_array(CellTask(), requests)
        started = time.monotonic()
        for job in todo:
            if on_start is not None:
                on_start(job)
        self._pending = dict(zip(submitted, todo, strict=True))
        shared = self.cluster == "local"  # local tasks all run at once on this machine
        peak = {id(sj): 1 for sj in submitted}
        try:
            while self._pending:
                if shared:
                    for sj in self._pending:
                        peak[id(sj)] = max(peak[id(sj)], len(self._pending))
                finished = [sj for sj in self._pending if sj.done()]
                for sj in finished:
                    job = self._pending.pop(sj)
                    on_done(job, self._outcome(sj, job, peak[id(sj)],
                                               time.monotonic() - started))
                if self._pending and not finished:
                    time.sleep(POLL_S)
        except BaseException:
            self.close()  # Ctrl-C / SIGTERM: the array's unfinished tasks are cancelled
            raise

    def _outcome(self, sj: Any, job: Job, concurrency: int, wall_s: float) -> ChildOutcome:
        try:
            result = sj.result()
        except Exception as exc:  # noqa: BLE001 - the task died: its reason becomes the row's
            text = str(exc).strip()
            first = (text.splitlines()[-1] if text else type(exc).__name__)[:300]
            reason = (f"Slurm task {sj.job_id} ended without a result ({type(exc).__name__}: "
                      f"{first}); its logs: {sj.paths.stderr}")
            return child_outcome(job.command, None, returncode=None, timed_out=False,
                                 wall_s=wall_s, log=text[-LOG_CHARS:],
                                 concurrency=concurrency, reason=reason)
        return from_wire(job.command, result, concurrency=concurrency)

    def close(self) -> None:
        pending, self._pending = self._pending, {}
        if self.cluster == "local":
            _kill_local(pending)
            return
        for sj in pending:
            try:
                sj.cancel(check=False)
            except Exception:  # noqa: BLE001 - already finished or gone
                pass


def _kill_local(jobs: Iterable[Any]) -> None:
    """submitit's local cluster: SIGKILL each unfinished task's process tree (its controller,
    the task, the cell), now. Not submitit's ``cancel``: that is a SIGINT, which a sweep started
    in the background by a shell (``bench run ... &``) passes on ignored, so the controllers
    lived on, holding the sweep's stdout, with their tasks and cells. Nothing is lost: the rows
    are the sweep's to write, and a cell stopped here has none."""
    procs = [p for p in (getattr(sj, "_process", None) for sj in jobs) if p is not None]
    for proc in procs:
        if proc.poll() is not None:
            continue
        kill_tree(proc.pid)
        try:
            proc.wait(timeout=5)
        except Exception:  # noqa: BLE001 - reaped elsewhere
            pass



class _importable_repo:
    """``bench`` importable in the tasks: Slurm (and submitit's local cluster) give a task the
    environment of the submission, so the repository goes on PYTHONPATH while submitting."""

    def __enter__(self) -> None:
        self.old = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), self.old]))

    def __exit__(self, *exc: Any) -> None:
        if self.old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = self.old


__all__ = ["SubmititExecutor", "CellTask", "INSTALL_HINT"]
