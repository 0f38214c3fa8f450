"""Executors: how the cells of a plan get a process to run in.

::

    python -m bench run --profile cpu --executor warm      # the default: one long-lived worker
    python -m bench run --profile cpu --executor process   # a fresh process per cell
    python -m bench run --profile cpu --executor ray       # warm workers in Ray actors, dynamic
    ray start --head && python -m bench run --profile gpu --executor ray --set ray_address=auto
    python -m bench run --profile gpu --executor submitit --set slurm_partition=gpu   # Slurm

Every executor speaks the same child protocol (:mod:`bench.executors.protocol`): the sweep hands
it a cell spec (JSON naming the saved config, the cell, the device, the mode) and gets a
:class:`~bench.executors.protocol.ChildOutcome` back -- the cell's whole measured row, or how its
process ended (exit code, signal, timeout) -- which the sweep turns into exactly one row. On
this machine the spec goes to the cell's process on its stdin and the result comes back on a
pipe of its own (:mod:`bench.executors.channel`); through Ray or submitit the outcome is the
actor's or task's return value, read the same way. An executor
never writes results: rows are committed by the sweep's atomic writer (:mod:`bench.results`).

- ``process`` (:mod:`bench.executors.process`): ``python -m bench.executors.worker once`` per cell. Every
  cell pays a Python start, the torch import and the data load (~2-4 s on a 2-core CPU).
- ``warm`` (:mod:`bench.executors.warm`): one ``python -m bench.executors.worker serve`` worker per device
  runs cell after cell with torch imported and the data tensors loaded; it is replaced by a fresh
  one after any cell that did not end ``ok`` (failure, OOM, non-finite loss, timeout, crash).
- ``pack = N`` (:mod:`bench.executors.pack`): N ``warm`` (or ``process``) executors share the
  one device, the next cell to the first free one; rows record ``concurrency``.
- ``ray`` (:mod:`bench.executors.ray_cluster`, ``pip install '.[ray]'``): one Ray actor per
  device slot (a GPU, or a node's CPUs; ``pack`` cells per device), each holding a ``warm``
  executor; the next cell goes to whichever actor is free, on this machine or a Ray cluster
  (``ray_address``). A cell whose actor is lost is retried once on a fresh one.
- ``submitit`` (:mod:`bench.executors.slurm`, ``pip install '.[slurm]'``): the cells as one
  Slurm job array through submitit, each task one cell in a fresh ``python -m bench.executors.worker``;
  a preempted task is requeued and its cell restarts from scratch.

Whatever runs the cell, the payload comes back to the sweep, which writes the row (order of
completion when cells run at once); ``kill -9`` of the sweep loses no row already written.

The name comes from ``--executor`` or the profile key ``executor``; :data:`NAMES` are the valid
ones (checked by :func:`bench.config.validate` before anything runs).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from bench.executors.protocol import ChildOutcome, Executor, Job

# name -> "module:class"; imported only when used, so naming the valid executors costs nothing.
_REGISTRY: dict[str, str] = {
    "warm": "bench.executors.warm:WarmExecutor",
    "process": "bench.executors.process:ProcessExecutor",
    "ray": "bench.executors.ray_cluster:RayExecutor",
    "submitit": "bench.executors.slurm:SubmititExecutor",
}
NAMES: tuple[str, ...] = tuple(_REGISTRY)
DEFAULT = "warm"

__all__ = ["NAMES", "DEFAULT", "LOCAL", "ChildOutcome", "Executor", "Job", "make_executor",
           "preflight"]


def _class(name: str) -> type[Executor]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown executor {name!r}; valid: {', '.join(NAMES)}")
    module, _, cls = _REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), cls)


# The executors that run a request on this machine by themselves, and so may be packed.
LOCAL: tuple[str, ...] = ("warm", "process")


def make_executor(name: str, workdir: Path, env: dict[str, str], cfg: Any = None, *,
                  slots: int = 1, device: str = "cpu") -> Executor:
    """An executor by name; ``workdir`` holds its spec/result/log files, ``env`` its children's
    environment, ``cfg`` the sweep's Config (executor settings). ``slots`` > 1 packs a local
    executor: that many of it share ``device``, cells at once (:mod:`bench.executors.pack`;
    ray reads ``pack`` itself). Raises ValueError for an unknown name (config validation
    catches it first)."""
    cls = _class(name)
    if slots > 1 and name in LOCAL:
        from bench.executors.pack import PackedExecutor

        return PackedExecutor(cls, slots, workdir, env, cfg, device)
    return cls(workdir, env, cfg)


def preflight(name: str, cfg: Any) -> None:
    """What the executor needs before the first file is written (its optional package, its
    cluster); raises :class:`bench.config.ConfigError` (exit 2). The module of an optional
    engine imports the engine only here and when it runs, never at import."""
    _class(name).preflight(cfg)
