"""Executors: how the cells of a plan get a process to run in.

::

    python -m bench run --profile cpu --executor warm      # the default: one long-lived worker
    python -m bench run --profile cpu --executor process   # a fresh process per cell

Every executor speaks the same child protocol (:mod:`bench.executors.protocol`): the sweep hands
it a cell spec (a JSON file naming the saved config, the cell, the device, the mode) and gets a
:class:`~bench.executors.protocol.ChildOutcome` back -- the cell's result, or how its process
ended (exit code, signal, timeout) -- which the sweep turns into exactly one row. An executor
never writes results: rows are committed by the sweep's atomic writer (:mod:`bench.results`).

- ``process`` (:mod:`bench.executors.process`): ``python -m bench.cell run`` per cell. Every
  cell pays a Python start, the torch import and the data load (~2-4 s on a 2-core CPU).
- ``warm`` (:mod:`bench.executors.warm`): one ``python -m bench.cell serve`` worker per device
  runs cell after cell with torch imported and the data tensors loaded; it is replaced by a fresh
  one after any cell that did not end ``ok`` (failure, OOM, non-finite loss, timeout, crash).

The name comes from ``--executor`` or the profile key ``executor``; :data:`NAMES` are the valid
ones (checked by :func:`bench.config.validate` before anything runs).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from bench.executors.protocol import ChildOutcome, Executor

# name -> "module:class"; imported only when used, so naming the valid executors costs nothing.
_REGISTRY: dict[str, str] = {
    "warm": "bench.executors.warm:WarmExecutor",
    "process": "bench.executors.process:ProcessExecutor",
}
NAMES: tuple[str, ...] = tuple(_REGISTRY)
DEFAULT = "warm"

__all__ = ["NAMES", "DEFAULT", "ChildOutcome", "Executor", "make_executor"]


def make_executor(name: str, workdir: Path, env: dict[str, str]) -> Executor:
    """An executor by name; ``workdir`` holds its spec/result/log files, ``env`` its children's
    environment. Raises ValueError for an unknown name (config validation catches it first)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown executor {name!r}; valid: {', '.join(NAMES)}")
    module, _, cls = _REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), cls)(workdir, env)
