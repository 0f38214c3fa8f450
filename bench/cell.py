"""Child-process entry point: run (or estimate) one cell and write the outcome as JSON.

The sweep starts one fresh process per cell, so that peak memory is the cell's own, and a
crash, an OOM kill or a hang costs one cell, not the sweep::

    python -m bench.cell run SPEC.json RESULT.json       # CellResult -> RESULT.json
    python -m bench.cell estimate SPEC.json RESULT.json  # {"estimate_s": ...} -> RESULT.json

``SPEC.json`` (written by :mod:`bench.sweep`)::

    {"config_path": "/tmp/.../config.toml", "cell": {"dataset": ..., "model": ...,
     "strategy": ..., "seed": 0}, "device": "cpu" | "cuda:0", "measure_only": false,
     "out_dir": "results/cpu" | null}

``RESULT.json``: ``{"row": {...}, "history": [...], "ops": [...], "provenance": {...}}``. It is
written atomically at the very end, so its presence means the child finished. Everything the
child prints on stdout (per-epoch lines) is relayed by the sweep; stderr goes to a log.

The cell dies with the sweep: on Linux it asks the kernel for SIGKILL when its parent dies
(``PR_SET_PDEATHSIG``), so a sweep killed with ``kill -9`` leaves no orphaned cell holding a
GPU or the CPU while the rerun measures.

Test hooks (only the tests set them):

- ``ADAPTBENCH_CELL_IMPL="module:function"`` (or ``"/path/file.py:function"``) swaps
  :func:`bench.train.run_cell` for a stand-in with the same signature; that module's
  ``estimate_cell_s``, if it has one, replaces :func:`bench.train.estimate_cell_s` too.
- ``ADAPTBENCH_INJECT_FAULT="kind@step[:arg]"`` is read by :mod:`bench.train` (``nan``, ``oom``,
  ``slow``, ``kill``, ``hang``). Here it may also name cells:
  ``"resnet18/repeat3=kill@1;resnet18/conv1=oom@1"`` gives each named ``model/strategy`` its
  fault and the other cells none (the child narrows it to the plain form before the cell runs).
- ``ADAPTBENCH_CELL_RLIMIT_AS_MIB="N"`` caps the cell's address space (``setrlimit(RLIMIT_AS)``)
  at N MiB; ``"+N"`` at N MiB above what the process has mapped once torch and the engine are
  imported (the CUDA libraries alone map gigabytes, so a relative cap is what a test can use).
  A soft limit, set just before :func:`~bench.train.run_cell` and lifted after it, so the
  result is still written; per-cell form as above (``"resnet18/pad32=+64"``). A CPU tool:
  CUDA needs far more address space than memory.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

IMPL_ENV = "ADAPTBENCH_CELL_IMPL"
FAULT_ENV = "ADAPTBENCH_INJECT_FAULT"
RLIMIT_ENV = "ADAPTBENCH_CELL_RLIMIT_AS_MIB"


def _load_impl() -> tuple[Callable[..., Any], Callable[..., float]]:
    spec = os.environ.get(IMPL_ENV, "").strip()
    if not spec:
        from bench import train

        return train.run_cell, train.estimate_cell_s
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
    run = getattr(module, func)
    estimate = getattr(module, "estimate_cell_s", None)
    if estimate is None:
        from bench import train

        estimate = train.estimate_cell_s
    return run, estimate


def _jsonable(value: Any) -> Any:
    """Tensors, numpy scalars and paths -> plain JSON values (NaN/inf kept; json allows them)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "item") and callable(value.item):
        try:
            return value.item()
        except (ValueError, RuntimeError):
            pass
    if hasattr(value, "tolist") and callable(value.tolist):
        return value.tolist()
    return str(value)


def _for_cell(value: str, cell: Any) -> str:
    """A test hook's value for this cell: ``"SPEC"`` (every cell) or ``"m/s=SPEC;m/s=SPEC"``."""
    if "=" not in value:
        return value.strip()
    me = f"{cell.model}/{cell.strategy}"
    for item in value.split(";"):
        name, _, spec = item.partition("=")
        if name.strip() == me:
            return spec.strip()
    return ""


def _scope_test_hooks(cell: Any) -> None:
    """Narrow the fault and memory-cap hooks to this cell (see the module docstring)."""
    for name in (FAULT_ENV, RLIMIT_ENV):
        value = _for_cell(os.environ.get(name, ""), cell)
        if value:
            os.environ[name] = value
        else:
            os.environ.pop(name, None)


def _apply_memory_cap() -> tuple[int, int] | None:
    """Lower the soft RLIMIT_AS for the cell; returns the limits to restore afterwards."""
    text = os.environ.get(RLIMIT_ENV, "")
    if not text:
        return None
    import re
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
    return old


def _lift_memory_cap(old: tuple[int, int] | None) -> None:
    if old is not None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, old)


def _die_with_parent() -> None:
    """Linux: the kernel sends this process SIGKILL when the sweep that started it dies.

    Without it, ``kill -9`` of the sweep orphans the running cell, which keeps its GPU (or a
    hung cell sleeps forever) while the rerun measures the same cell. A sweep killed in the
    instant between this process starting and this call still orphans it (rare).
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def write_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(_jsonable(payload)))
    os.replace(tmp, path)


def _load_spec(path: Path):
    from bench import config

    spec = json.loads(Path(path).read_text())
    cfg = config.load(spec["config_path"])
    cell = config.Cell(**spec["cell"])
    return spec, cfg, cell


def _is_oom(exc: BaseException) -> bool:
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


def run(spec_path: Path, result_path: Path) -> int:
    spec, cfg, cell = _load_spec(spec_path)
    run_cell, _ = _load_impl()
    out_dir = Path(spec["out_dir"]) if spec.get("out_dir") else None
    measure_only = bool(spec.get("measure_only"))
    _scope_test_hooks(cell)
    capped = _apply_memory_cap()
    try:
        res = run_cell(cfg, cell, device=spec["device"], measure_only=measure_only,
                       out_dir=out_dir)
        payload = {"row": dict(res.row), "history": list(res.history), "ops": list(res.ops)}
    except Exception as exc:  # noqa: BLE001 - run_cell should not raise; if it does, record it
        traceback.print_exc()
        first = str(exc).splitlines()[0][:500] if str(exc) else ""
        payload = {"row": {"status": "oom" if _is_oom(exc) else "error",
                           "reason": f"{type(exc).__name__}: {first}".rstrip(": ")},
                   "history": [], "ops": []}
    finally:
        _lift_memory_cap(capped)
    payload["provenance"] = _provenance(spec["device"])
    write_json(result_path, payload)
    return 0


def estimate(spec_path: Path, result_path: Path) -> int:
    spec, cfg, cell = _load_spec(spec_path)
    _, estimate_cell_s = _load_impl()
    seconds = float(estimate_cell_s(cfg, cell, spec["device"]))
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"estimate_cell_s returned {seconds!r}")
    write_json(result_path, {"estimate_s": seconds})
    return 0


def _provenance(device: str) -> dict[str, str]:
    """Device, host and library versions as this process saw them.

    Skipped when the cell never imported torch (a test stand-in): the sweep fills them then.
    """
    from bench import results

    if "torch" not in sys.modules:
        return {}
    try:
        return {**results.device_info(device), "host_cpu": results.host_cpu(),
                **results.software_versions()}
    except Exception as exc:  # noqa: BLE001 - provenance must not lose a finished cell
        print(f"[bench.cell] provenance incomplete: {exc}", file=sys.stderr)
        return {}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"run": run, "estimate": estimate}
    if len(argv) != 3 or argv[0] not in commands:
        print("usage: python -m bench.cell run|estimate SPEC.json RESULT.json", file=sys.stderr)
        return 2
    return commands[argv[0]](Path(argv[1]), Path(argv[2]))


if __name__ == "__main__":
    _die_with_parent()  # only as the sweep's child, never when main() is called in-process
    sys.exit(main())
