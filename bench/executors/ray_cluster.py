"""The ``ray`` executor: warm workers in Ray actors, one per device slot, cells handed out
dynamically::

    python -m bench run --profile cpu --executor ray                   # a Ray instance here
    ray start --head                                                   # or a cluster ...
    python -m bench run --profile gpu --executor ray --set ray_address=auto   # ... joined
    python -m bench run --profile gpu --executor ray --set pack=4      # 4 small cells per GPU

``pip install '.[ray]'``. Ray is imported by this module only when the executor is used.

**Slots.** One long-lived actor per device slot: per GPU of every node (``num_gpus=1/pack``,
``pack`` actors per GPU) or, on CPU, per node (``pack`` actors sharing its cores, each
``num_cpus`` = its share, and its cells' torch threads with it). Each actor holds a
:class:`~bench.executors.warm.WarmExecutor`, so a cell runs in a warm worker with the same
isolation rules as ``--executor warm`` (reset before every cell, replaced after any cell that
did not end ``ok``). The sweep hands the next cell to whichever actor is free: a slow cell holds
one slot, not the sweep.

**What travels.** A request carries the config's TOML text and the cell; the actor writes its
own files in a temporary directory on its node (the sweep's temporary directory need not exist
there) and returns the request's outcome (:func:`bench.executors.protocol.to_wire`: the
payload -- row, history, ops, provenance -- or how the cell's process ended and its log tail),
which the sweep reads as it reads a local one (:func:`bench.executors.protocol.from_wire`). Rows are
written by the sweep, in its process, as results arrive. The ``ADAPTBENCH_*`` variables of the
sweep (data root, test hooks) are passed to the actors; every node needs the same checkout
(importable ``bench``) and its data. A cell's per-epoch lines stay on its node (the sweep
prints each cell's outcome when it arrives).

**Lost actors.** An actor that dies mid-cell (its process killed, its node lost) is replaced
and the cell retried once on the fresh actor; lost again, the cell is recorded ``error`` with
the reason. A cell whose actor has not answered ``cell_timeout_s`` + 120 s after it started
(a hung node) counts as lost.

**Packing.** With ``pack`` > 1 several cells share a device; each row's ``concurrency`` is the
most cells that ran on its device at once while it ran (1 = alone), and the report never puts
a packed row's throughput beside a solo one.

**Lifetime.** ``ray_address=""`` starts a Ray instance on this machine for the sweep (its CPUs
and GPUs) and shuts it down at the end. Its processes share the sweep's fate: after ``kill -9``
of the sweep its GCS, raylet, actors and their cells were gone within seconds and its two agents
within about a minute (checked by hand on the 2-core CPU); the rows written stay. ``auto`` / ``host:port`` join a running
cluster (checked before anything is written: an unreachable address is exit 2); a process
already connected to Ray (the tests) keeps its connection.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from bench.executors.proctree import start_reaper, stop_reaper
from bench.executors.protocol import (
    BatchExecutor,
    ChildOutcome,
    Job,
    child_outcome,
    from_wire,
    import_engine,
)

INSTALL_HINT = "pip install '.[ray]'"
CONNECT_TIMEOUT_ENV = "ADAPTBENCH_RAY_CONNECT_TIMEOUT_S"  # seconds to reach host:port (10)
LOST_GRACE_S = 120.0  # past cell_timeout_s: the actor's own timeout should have answered

# Whether this process started the Ray instance (then the last executor shuts it down).
_STARTED_HERE: list[bool] = [False]
_REAPER: list[Any] = [None]  # the watchdog of a Ray instance started here (proctree)


def _ray() -> Any:
    """``import ray``, or :class:`~bench.config.ConfigError` naming the extra to install."""
    return import_engine("ray", "ray", INSTALL_HINT)


def _probe(address: str) -> None:
    """host:port must accept a TCP connection within the connect timeout: ``ray.init`` itself
    retries an unreachable address for minutes."""
    from bench.errors import ConfigError

    host, _, port = address.removeprefix("ray://").rpartition(":")
    timeout = float(os.environ.get(CONNECT_TIMEOUT_ENV, "10"))
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConfigError(
            f"ray_address={address!r}: no Ray cluster answers there within {timeout:g} s "
            f"({exc.strerror or exc}); start one with `ray start --head` (its address is "
            "printed), use ray_address=auto on a node of it, or ray_address=\"\" for a Ray "
            "instance on this machine") from None


def connect(address: str) -> None:
    """Connect this process to Ray: a new local instance (``""``) or a running cluster."""
    from bench.errors import ConfigError

    ray = _ray()
    if address not in ("", "auto"):
        _probe(address)  # even when connected already: the address named must answer
    if ray.is_initialized():
        return
    # Quiet: the sweep prints its own progress; Ray's logs stay in its session directory.
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                              "logging_level": "ERROR", "configure_logging": True}
    # ray.init installs its own SIGTERM handler, which aborts the driver (exit -6) instead of
    # ending the sweep the documented way (exit 130, finished rows kept): the sweep's handler
    # is put back.
    term = signal.getsignal(signal.SIGTERM)
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(**kwargs)
            _STARTED_HERE[0] = True
            # Ray's processes do not die with a killed sweep: a watchdog ends them.
            _REAPER[0] = start_reaper()
        if term is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, term)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ConfigError(f"ray_address={address!r}: cannot connect to Ray ({first}); start a "
                          "cluster with `ray start --head`, or use ray_address=\"\" for a Ray "
                          "instance on this machine") from None


def disconnect() -> None:
    """Shut down the Ray instance this process started (a joined cluster keeps running)."""
    if _STARTED_HERE[0] and "ray" in sys.modules:
        stop_reaper(_REAPER[0])
        _REAPER[0] = None
        sys.modules["ray"].shutdown()
        _STARTED_HERE[0] = False


# --- the actor ---------------------------------------------------------------------------------


class CellSlot:
    """The body of one Ray actor: a warm executor on one device slot (``ray.remote`` is
    applied by :class:`RayExecutor`, so that importing this module needs no Ray)."""

    def __init__(self, env: dict[str, str], device: str, share: int, cwd: str) -> None:
        from bench.executors.protocol import child_env
        from bench.executors.warm import WarmExecutor

        if cwd and os.path.isdir(cwd):
            os.chdir(cwd)  # relative paths of the config (./data) mean what they mean there
        self.dir = Path(tempfile.mkdtemp(prefix="adaptbench-ray-"))
        child = child_env(device, share)
        if share == 1 and "OMP_NUM_THREADS" not in env:
            # Ray sets the threads of its workers to their num_cpus; a slot with a device of
            # its own runs its cells with torch's default, as the warm executor does.
            child.pop("OMP_NUM_THREADS", None)
        # Packed CPU slots keep Ray's value, their share of the cores (1 per cell at pack=2).
        child.update(env)
        self.executor = WarmExecutor(self.dir, child)
        self.executor.prestart()
        # The running cell's printed lines (its epochs), until the driver takes them with
        # lines(): the actor runs two calls at once (max_concurrency=2) for that.
        self._lines: collections.deque[str] = collections.deque()

    def where(self) -> dict[str, Any]:
        """Which device this slot is: node, GPU ids (Ray's), host and pid."""
        import ray

        return {"node": ray.get_runtime_context().get_node_id(),
                "gpus": [str(g) for g in ray.get_gpu_ids()], "host": socket.gethostname(),
                "pid": os.getpid()}

    def run(self, command: str, toml_text: str, spec: dict[str, Any],
            timeout_s: float) -> dict[str, Any]:
        """One request of the child protocol on this slot's warm worker; its outcome as
        :func:`~bench.executors.protocol.to_wire` gives it."""
        from bench.executors.protocol import to_wire

        cfg_path = self.dir / "config.toml"
        cfg_path.write_text(toml_text)
        spec = {**spec, "config_path": str(cfg_path)}
        if str(spec.get("device", "")).startswith("cuda"):
            spec["device"] = "cuda:0"  # Ray's CUDA_VISIBLE_DEVICES: the slot's GPU is device 0
        if spec.get("out_dir") and not os.path.isdir(spec["out_dir"]):
            spec["out_dir"] = None  # the results directory is not on this node: no traces
        return to_wire(self.executor.request(command, spec, timeout_s,
                                             on_line=self._lines.append))

    def lines(self) -> list[str]:
        """The lines the running (or just finished) cell printed since the last call."""
        out = []
        while self._lines:
            out.append(self._lines.popleft())
        return out

    def close(self) -> None:
        self.executor.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# --- the driver side ---------------------------------------------------------------------------


@dataclasses.dataclass
class _Slot:
    actor: Any
    options: dict[str, Any]  # what it was created with (a replacement gets the same)
    device: tuple[str, ...] = ()  # (node, gpu ids...): cells on one key share a device


@dataclasses.dataclass
class _Running:
    slot: _Slot
    job: Job
    attempt: int
    started: float
    peak: int = 1  # most cells on its device at once while it ran


class RayExecutor(BatchExecutor):
    """Cells on Ray actors, one per device slot, the next cell to the first free actor."""

    name = "ray"

    def __init__(self, workdir: Path, env: dict[str, str], cfg: Any = None) -> None:
        super().__init__(workdir, env, cfg)
        self.address = getattr(cfg, "ray_address", "")
        self.pack = int(getattr(cfg, "pack", 1))  # never "auto" (preflight)
        self._slots: list[_Slot] = []
        self._device = ""
        self._tomls: dict[str, str] = {}
        self.actors_started = 0  # actors created, replacements included (tests, reports)
        self.retried = 0  # cells retried after a lost actor

    @classmethod
    def preflight(cls, cfg: Any) -> None:
        """Ray importable; a cluster named by ``ray_address`` reachable (joined now: cheap).
        A local instance is started with the first cell, so a plan that times nothing (or a
        sweep with nothing to do) never pays Ray's start-up."""
        if cfg.pack == "auto":  # sized from one device's memory: the local executors' rule
            from bench.errors import ConfigError

            raise ConfigError("pack=auto is for the warm and process executors; give ray the "
                              "cells per device as a positive integer (pack=N)")
        if cfg.ray_address:
            connect(cfg.ray_address)
        else:
            _ray()

    # -- slots --

    def _slot_options(self, device: str) -> list[dict[str, Any]]:
        """Resources of every slot: per GPU (``pack`` per GPU) or per node's CPUs."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        ray = _ray()
        out = []
        for node in ray.nodes():
            if not node.get("Alive"):
                continue
            res = node.get("Resources", {})
            cpus, gpus = float(res.get("CPU", 0)), int(res.get("GPU", 0))
            cuda = device.startswith("cuda")
            n = gpus * self.pack if cuda else (self.pack if cpus >= 1 else 0)
            if n == 0:
                continue
            # Ray takes fractions below 1 and whole numbers above.
            share = cpus / n
            num_cpus = share if share < 1 else float(int(share))
            where = NodeAffinitySchedulingStrategy(node["NodeID"], soft=True)
            for _ in range(n):
                out.append({"num_cpus": num_cpus, "num_gpus": 1 / self.pack if cuda else 0,
                            "scheduling_strategy": where, "max_restarts": 0,
                            "max_concurrency": 2})  # run() and the driver's lines() polls
        if not out:
            from bench.errors import ConfigError

            raise ConfigError(f"the Ray cluster has no {'GPU' if device != 'cpu' else 'CPU'} "
                              f"for device {device}; nodes: "
                              f"{[n.get('Resources', {}) for n in ray.nodes()]}")
        return out

    def _new_actor(self, options: dict[str, Any]) -> Any:
        ray = _ray()
        env = {k: v for k, v in self.env.items()
               if k.startswith("ADAPTBENCH_") or k == "OMP_NUM_THREADS"}
        self.actors_started += 1
        return ray.remote(CellSlot).options(**options).remote(
            env, "cpu" if not self._device.startswith("cuda") else "cuda:0",
            self.pack if not self._device.startswith("cuda") else 1, os.getcwd())

    def _where(self, slot: _Slot) -> None:
        ray = _ray()
        info = ray.get(slot.actor.where.remote())
        slot.device = (info["node"], *info["gpus"])

    def _ensure_slots(self, device: str) -> None:
        if self._slots:
            return
        connect(self.address)
        self._device = device
        self._slots = [_Slot(self._new_actor(o), o) for o in self._slot_options(device)]
        for slot in self._slots:
            self._where(slot)

    def _replace(self, slot: _Slot) -> _Slot:
        ray = _ray()
        try:
            ray.kill(slot.actor)
        except Exception:  # noqa: BLE001 - already gone
            pass
        fresh = _Slot(self._new_actor(slot.options), slot.options, slot.device)
        self._slots = [fresh if s is slot else s for s in self._slots]
        return fresh

    def _toml(self, spec: dict[str, Any]) -> str:
        path = spec["config_path"]
        if path not in self._tomls:
            self._tomls[path] = Path(path).read_text()
        return self._tomls[path]

    # -- running --

    def run_many(self, jobs: Iterable[Job], on_done: Callable[[Job, ChildOutcome], None],
                 on_start: Callable[[Job], None] | None = None) -> None:
        ray = _ray()
        from ray import exceptions as rx

        lost_errors = (rx.RayActorError, rx.WorkerCrashedError, rx.ObjectLostError,
                       rx.OwnerDiedError, rx.NodeDiedError, rx.LocalRayletDiedError)
        source = iter(jobs)
        retries: collections.deque[tuple[Job, int]] = collections.deque()
        free: list[_Slot] = list(self._slots)  # between calls every actor is idle
        running: dict[Any, _Running] = {}
        exhausted = False

        def next_job() -> tuple[Job, int] | None:
            nonlocal exhausted
            if retries:
                return retries.popleft()
            if exhausted:
                return None
            job = next(source, None)
            if job is None:
                exhausted = True
                return None
            return job, 0

        try:
            while True:
                while True:
                    if not self._slots:
                        item = next_job()
                        if item is None:
                            break
                        self._ensure_slots(item[0].spec["device"])
                        free = list(self._slots)
                        retries.appendleft(item)
                        continue
                    if not free:
                        break
                    item = next_job()
                    if item is None:
                        break
                    job, attempt = item
                    slot = free.pop(0)
                    if attempt == 0 and on_start is not None:
                        on_start(job)
                    ref = slot.actor.run.remote(job.command, self._toml(job.spec), job.spec,
                                                job.timeout_s)
                    run = _Running(slot, job, attempt, time.monotonic())
                    running[ref] = run
                    sharing = [r for r in running.values() if r.slot.device == slot.device]
                    for r in sharing:
                        r.peak = max(r.peak, len(sharing))
                if not running:
                    return
                ready, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
                self._relay(running.values(), lost_errors)  # live epoch lines, and the last
                now = time.monotonic()
                for ref, run in list(running.items()):
                    if ref not in ready and now - run.started > run.job.timeout_s + LOST_GRACE_S:
                        ray.kill(run.slot.actor)  # hung: its ref now fails as a lost actor
                for ref in ready:
                    run = running.pop(ref)
                    try:
                        result = ray.get(ref)
                    except lost_errors as exc:
                        fresh = self._replace(run.slot)
                        free.append(fresh)
                        why = _first_line(exc)
                        if run.attempt == 0:
                            self.retried += 1
                            print(f"ray: the actor running {_label(run.job)} was lost ({why}); "
                                  "retrying the cell once on a fresh actor", flush=True)
                            retries.append((run.job, 1))
                            continue
                        on_done(run.job, self._lost(run, why))
                        continue
                    except rx.RayError as exc:  # our own code failed in the actor
                        free.append(run.slot)
                        on_done(run.job, self._lost(run, _first_line(exc), lost=False))
                        continue
                    free.append(run.slot)
                    on_done(run.job, self._outcome(result, run))
        except BaseException:
            # Ctrl-C / SIGTERM: the running cells go with their actors (their warm workers
            # die with them); close() then has only idle actors to end.
            busy = {id(r.slot) for r in running.values()}
            for run in running.values():
                try:
                    ray.kill(run.slot.actor)
                except Exception:  # noqa: BLE001 - already gone
                    pass
            self._slots = [s for s in self._slots if id(s) not in busy]
            raise

    def _relay(self, running: Iterable[_Running], lost_errors: tuple[type, ...]) -> None:
        """Print what the running cells printed since the last poll, through each job's
        ``on_line``, as the warm executor does for a cell on this machine (a second ~1 s after
        the cell printed it). A cell's last lines come before its row: run() has returned, and
        its lines are all in the actor's buffer, when its ref is ready."""
        ray = _ray()
        polls = [(run, run.slot.actor.lines.remote()) for run in running
                 if run.job.on_line is not None]
        for run, ref in polls:
            try:
                lines = ray.get(ref, timeout=30)
            except lost_errors:
                continue  # the actor is gone: its run ref says so
            except Exception:  # noqa: BLE001 - progress is best-effort; results are not
                continue
            for line in lines:
                run.job.on_line(line)  # type: ignore[misc]

    def _outcome(self, result: Any, run: _Running) -> ChildOutcome:
        return from_wire(run.job.command, result, concurrency=run.peak)

    def _lost(self, run: _Running, why: str, *, lost: bool = True) -> ChildOutcome:
        reason = (f"the Ray actor running the cell was lost twice ({why}); a node or process "
                  "of the cluster died, or the cell killed its actor" if lost
                  else f"the Ray actor failed the request: {why}")
        return child_outcome(run.job.command, None, returncode=None, timed_out=False,
                             wall_s=time.monotonic() - run.started, log=reason + "\n",
                             concurrency=run.peak, reason=reason)

    def close(self) -> None:
        if "ray" not in sys.modules:
            return
        ray = sys.modules["ray"]
        if ray.is_initialized():
            slots, self._slots = self._slots, []
            closing = []
            for slot in slots:
                try:
                    closing.append(slot.actor.close.remote())
                except Exception:  # noqa: BLE001 - already gone
                    pass
            try:
                ray.wait(closing, num_returns=len(closing), timeout=30)
            except Exception:  # noqa: BLE001 - a lost actor cannot close
                pass
            for slot in slots:
                try:
                    ray.kill(slot.actor)
                except Exception:  # noqa: BLE001 - already gone
                    pass
        disconnect()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def _label(job: Job) -> str:
    cell = job.spec.get("cell") or {}
    return "/".join(str(cell.get(k, "?")) for k in ("dataset", "model", "strategy")) + \
        f"/seed{cell.get('seed', '?')}"
