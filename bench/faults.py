"""Test-only hooks, each inert unless its environment variable is set (only the tests set them).

They let the fault suite (tests/test_faults.py) and the sweep's tests prove that every failure
of a cell becomes a recorded status, without a real OOM, hang or crash:

- ``ADAPTBENCH_INJECT_FAULT="kind@step[:arg]"`` makes training step ``step`` misbehave:
  ``nan`` (a non-finite loss), ``oom`` (an out-of-memory error), ``slow`` (sleeps ``arg``
  seconds), ``kill`` (SIGKILL to the cell's process), ``hang`` (sleeps until the sweep's
  timeout). The per-cell form ``"resnet18/repeat3=kill@1;resnet18/conv1=oom@1"`` gives each
  named ``model/strategy`` its fault and the other cells none.
- ``ADAPTBENCH_CELL_RLIMIT_AS_MIB="N"`` caps the cell's address space (``setrlimit(RLIMIT_AS)``)
  at N MiB; ``"+N"`` at N MiB above what the process has mapped once torch and the engine are
  imported (the CUDA libraries alone map gigabytes, so a relative cap is what a test can use).
  A soft limit, set just before the cell and lifted after it, so the result is still written;
  per-cell form as above (``"resnet18/pad32=+64"``). A CPU tool: CUDA needs far more address
  space than memory.
- ``ADAPTBENCH_CELL_IMPL="module:function"`` (or ``"/path/file.py:function"``) swaps
  :func:`bench.engine.train.run_cell` for a stand-in with the same signature; that module's
  ``estimate_cell_s``, if it has one, replaces :func:`bench.engine.train.estimate_cell_s` too.

The worker (:mod:`bench.executors.worker`) applies them around each cell
(:func:`scope_to_cell`, :func:`memory_cap`, :func:`load_impl`); the engine asks only
:func:`loss_hook` when it builds its training step.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

IMPL_ENV = "ADAPTBENCH_CELL_IMPL"
FAULT_ENV = "ADAPTBENCH_INJECT_FAULT"
RLIMIT_ENV = "ADAPTBENCH_CELL_RLIMIT_AS_MIB"


# --- faults in the training step ---------------------------------------------------------------

def parse_fault() -> tuple[str, int, float] | None:
    """``(kind, step, arg)`` of ``$ADAPTBENCH_INJECT_FAULT`` (its plain form), or None."""
    text = os.environ.get(FAULT_ENV, "").strip()
    if not text:
        return None
    kind, _, rest = text.partition("@")
    step, _, arg = rest.partition(":")
    return kind, int(step or 0), float(arg or 0)


def _inject(fault: tuple[str, int, float], step: int, loss: Any) -> Any:
    if fault[1] != step:
        return loss
    kind, _, arg = fault
    if kind == "nan":
        return loss * float("nan")
    if kind == "oom":
        import torch

        raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (injected by {FAULT_ENV})")
    if kind == "slow":
        time.sleep(arg)
    elif kind == "kill":
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
    elif kind == "hang":
        time.sleep(10**6)
    return loss


def loss_hook() -> Callable[[Any, int], Any] | None:
    """``hook(loss, step) -> loss`` for :func:`bench.engine.step.build_steps`, or None when
    no fault is asked for (the engine then also keeps its fast paths: a hook needs eager)."""
    fault = parse_fault()
    if fault is None:
        return None
    return lambda loss, step: _inject(fault, step, loss)


# --- around one cell (the worker) --------------------------------------------------------------

def for_cell(value: str, cell: Any) -> str:
    """A hook's value for this cell: ``"SPEC"`` (every cell) or ``"m/s=SPEC;m/s=SPEC"``."""
    if "=" not in value:
        return value.strip()
    me = f"{cell.model}/{cell.strategy}"
    for item in value.split(";"):
        name, _, spec = item.partition("=")
        if name.strip() == me:
            return spec.strip()
    return ""


def scope_to_cell(cell: Any) -> None:
    """Narrow the fault and memory-cap hooks to this cell: their plain form, or unset."""
    for name in (FAULT_ENV, RLIMIT_ENV):
        value = for_cell(os.environ.get(name, ""), cell)
        if value:
            os.environ[name] = value
        else:
            os.environ.pop(name, None)


@contextmanager
def memory_cap() -> Iterator[None]:
    """The soft RLIMIT_AS of ``$ADAPTBENCH_CELL_RLIMIT_AS_MIB`` while the cell runs, lifted
    after it (so its result can still be written); nothing when the variable is unset."""
    text = os.environ.get(RLIMIT_ENV, "")
    if not text:
        yield
        return
    import resource

    limit = int(float(text.lstrip("+")) * 2**20)
    if text.startswith("+"):
        status = Path("/proc/self/status").read_text()
        limit += int(re.search(r"VmSize:\s+(\d+) kB", status).group(1)) * 1024
    old = resource.getrlimit(resource.RLIMIT_AS)
    if old[1] != resource.RLIM_INFINITY:
        limit = min(limit, old[1])
    # Only the soft limit: it is raised again after the cell, so the result can be written.
    resource.setrlimit(resource.RLIMIT_AS, (limit, old[1]))
    print(f"[bench.cell] address space capped at {limit / 2**20:.0f} MiB ({RLIMIT_ENV}={text})",
          file=sys.stderr, flush=True)
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, old)


def impl_spec() -> str:
    """``$ADAPTBENCH_CELL_IMPL``, stripped: "" for the real engine."""
    return os.environ.get(IMPL_ENV, "").strip()


def load_impl(spec: str) -> tuple[Callable[..., Any], Callable[..., float] | None]:
    """The stand-in named by ``spec`` (``module:function`` or ``file.py:function``) and its
    module's ``estimate_cell_s`` (None when it has none: the engine's is used)."""
    target, _, func = spec.rpartition(":")
    if not target or not func:
        raise ValueError(f"{IMPL_ENV}={spec!r}: expected 'module:function' or 'file.py:function'")
    if target.endswith(".py"):
        mod_spec = importlib.util.spec_from_file_location("_adaptbench_cell_impl", target)
        if mod_spec is None or mod_spec.loader is None:
            raise ValueError(f"{IMPL_ENV}: cannot load {target}")
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[mod_spec.name] = module  # dataclasses look their module up there
        mod_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    return getattr(module, func), getattr(module, "estimate_cell_s", None)
