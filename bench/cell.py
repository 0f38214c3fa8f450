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

Test hook: ``ADAPTBENCH_CELL_IMPL="module:function"`` (or ``"/path/file.py:function"``) swaps
:func:`bench.train.run_cell` for a stand-in with the same signature; that module's
``estimate_cell_s``, if it has one, replaces :func:`bench.train.estimate_cell_s` too. Only the
tests set it.
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
    sys.exit(main())
