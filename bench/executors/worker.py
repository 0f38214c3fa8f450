"""Child-process entry point: run (or estimate) cells and send each outcome back as JSON.

A cell runs in a process of its own, never in the sweep's, so that a crash, an OOM kill or a
hang costs one cell, not the sweep. The executor (:mod:`bench.executors`) decides which::

    python -m bench.executors.worker once FD    # one request, then exit (process, submitit)
    python -m bench.executors.worker serve FD   # request after request, cell after cell (warm)

Requests come on stdin, one JSON line each (:func:`bench.executors.channel.request_line`)::

    {"id": 1, "command": "run" | "estimate", "spec": {
        "config_path": "/tmp/.../config.toml", "cell": {"dataset": ..., "model": ...,
        "strategy": ..., "seed": 0}, "device": "cpu" | "cuda:0", "measure_only": false,
        "out_dir": "results/cpu" | null,
        "ddp": {"rank": 0, "world": 2, "master_addr": ..., "master_port": ..., "prefix": ...,
                "timeout_s": ...}}}   # "ddp" only under run --ddp (bench.executors.ddp)

Each request's result goes to file descriptor FD (a pipe the sweep passed), one JSON line
written whole at the request's very end and by nothing else: ``{"id": 1, "payload": P}``,
``P`` being ``{"row": {...}, "history": [...], "ops": [...], "provenance": {...}}`` for
``run``, ``{"estimate_s": ...}`` for ``estimate``, or null when a ``serve`` request failed
before it had one (the traceback is on stderr). ``once`` exits with the error instead, and
closes the pipe after its one line. What the process prints on stdout (per-epoch lines) is
relayed by the sweep as progress and never read as a result; stderr is the process's log.

``serve`` is the warm worker: what it resets before every cell so that each cell's
measurements are its own is in :mod:`bench.executors.warm` and :class:`_Baseline`.

The cell dies with the sweep: on Linux it asks the kernel for SIGKILL when its parent dies
(``PR_SET_PDEATHSIG``), so a sweep killed with ``kill -9`` leaves no orphaned cell holding a
GPU or the CPU while the rerun measures.

Test hooks (a stand-in engine, injected faults, a memory cap) are :mod:`bench.faults`: inert
unless the tests set their variables, applied here around each cell.
"""

from __future__ import annotations

import json
import math
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import faults
from bench.engine.oom import is_oom

_IMPLS: dict[str, tuple[Callable[..., Any], Callable[..., float]]] = {}


def _load_impl() -> tuple[Callable[..., Any], Callable[..., float]]:
    """(run_cell, estimate_cell_s), loaded once per process (a worker reuses them): the
    engine's, or a test's stand-in (:func:`bench.faults.load_impl`)."""
    spec = faults.impl_spec()
    if spec not in _IMPLS:
        run, estimate = faults.load_impl(spec) if spec else (None, None)
        if run is None or estimate is None:
            from bench.engine import train

            run, estimate = run or train.run_cell, estimate or train.estimate_cell_s
        _IMPLS[spec] = (run, estimate)
    return _IMPLS[spec]


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


class _ResultPipe:
    """The writing end of the result pipe (file descriptor ``fd``): one line per request."""

    def __init__(self, fd: int) -> None:
        # Not passed on to what a cell starts (a compiler, a helper): the pipe's end of file
        # must mean that this process is done with it.
        os.set_inheritable(fd, False)
        self.fd = fd

    def send(self, request_id: Any, payload: dict[str, Any] | None) -> None:
        """Write the request's one result line, whole (a large one in several writes)."""
        sys.stdout.flush()  # every progress line of the request is out before its result
        sys.stderr.flush()
        data = memoryview((json.dumps({"id": request_id, "payload": _jsonable(payload)})
                           + "\n").encode())
        while data:
            data = data[os.write(self.fd, data):]

    def close(self) -> None:
        os.close(self.fd)


def _load_spec(spec: dict[str, Any]):
    from bench import config

    cfg = config.load(spec["config_path"])
    cell = config.Cell(**spec["cell"])
    return cfg, cell


def run(spec: dict[str, Any], baseline: _Baseline | None = None) -> dict[str, Any]:
    """Run one cell; its payload. ``baseline`` (a warm worker's) first resets the process."""
    from bench.schema import Status, outcome

    cfg, cell = _load_spec(spec)
    run_cell, _ = _load_impl()
    out_dir = Path(spec["out_dir"]) if spec.get("out_dir") else None
    measure_only = bool(spec.get("measure_only"))
    rss_is_the_cells = baseline.reset(cfg, cell, spec["device"]) if baseline else True
    faults.scope_to_cell(cell)
    _engine_imports()
    with faults.memory_cap():  # the except below still runs under it, as the cell did
        try:
            with _cell_group(spec):
                res = run_cell(cfg, cell, device=spec["device"], measure_only=measure_only,
                               out_dir=out_dir)
            payload = {"row": dict(res.row), "history": list(res.history),
                       "ops": list(res.ops)}
        except Exception as exc:  # noqa: BLE001 - run_cell should not raise; if it does, record it
            traceback.print_exc()
            first = str(exc).splitlines()[0][:500] if str(exc) else ""
            oom = is_oom(exc)
            payload = {"row": outcome(Status.OOM if oom else Status.ERROR,
                                      ("out of memory: " if oom else "")
                                      + f"{type(exc).__name__}: {first}".rstrip(": ")),
                       "history": [], "ops": []}
    if not rss_is_the_cells and "peak_rss_mib" in payload["row"]:
        # The worker's lifetime peak is not this cell's: an empty value, not a wrong one.
        payload["row"]["peak_rss_mib"] = None
    payload["provenance"] = _provenance(spec["device"])
    return payload


def _cell_group(spec: dict[str, Any]) -> Any:
    """The cell's ``--ddp`` group (:mod:`bench.executors.ddp`) when its spec has one, else nothing to join."""
    if not spec.get("ddp"):
        from contextlib import nullcontext

        return nullcontext()
    from bench.executors import ddp

    return ddp.cell_group(spec["ddp"], spec["device"])


def estimate(spec: dict[str, Any], baseline: _Baseline | None = None) -> dict[str, Any]:
    """Time a few steps of the cell; its payload, ``{"estimate_s": seconds}``."""
    cfg, cell = _load_spec(spec)
    _, estimate_cell_s = _load_impl()
    if baseline is not None:
        baseline.reset(cfg, cell, spec["device"])
    seconds = float(estimate_cell_s(cfg, cell, spec["device"]))
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"estimate_cell_s returned {seconds!r}")
    return {"estimate_s": seconds}


COMMANDS: dict[str, Callable[..., dict[str, Any]]] = {"run": run, "estimate": estimate}


def _provenance(device: str) -> dict[str, str]:
    """Device, host and library versions as this process saw them: the row's provenance, gathered
    here only (the engine's row has none).

    Skipped when the cell never imported torch (a test stand-in): the sweep fills them then,
    from the row the stand-in returned and its own (:func:`bench.identity.parent_provenance`).
    """
    from bench import results

    if "torch" not in sys.modules:
        return {}
    try:
        return results.provenance(device)
    except Exception as exc:  # noqa: BLE001 - provenance must not lose a finished cell
        print(f"[bench.cell] provenance incomplete: {exc}", file=sys.stderr)
        return {}


# --- the warm worker ---------------------------------------------------------------------------


class _Baseline:
    """What a warm worker restores before every cell, so that the cell runs as in a fresh process.

    Captured once at start-up (after the engine's imports): the environment (the test hooks
    are narrowed per cell by editing it), torch's thread count and its deterministic, cuDNN and
    TF32 flags. :meth:`reset` puts them back, applies the cell's own settings, frees what the
    previous cell left (garbage, freed heap, torch.compile caches, CUDA's cache) and resets the
    peak counters.
    """

    def __init__(self) -> None:
        self.environ = dict(os.environ)
        self.torch_flags: dict[str, Any] = {}
        if "torch" in sys.modules:
            import torch

            self.torch_flags = {
                "threads": torch.get_num_threads(),
                "deterministic": torch.are_deterministic_algorithms_enabled(),
                "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
                "cudnn_benchmark": torch.backends.cudnn.benchmark,
                "cudnn_deterministic": torch.backends.cudnn.deterministic,
                "cudnn_tf32": torch.backends.cudnn.allow_tf32,
                "matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
                "matmul_precision": torch.get_float32_matmul_precision(),
            }

    def reset(self, cfg: Any, cell: Any, device: str) -> bool:
        """Prepare the process for ``cell``; True when the RSS high-water mark was reset."""
        import gc

        os.environ.clear()
        os.environ.update(self.environ)
        if self.torch_flags:
            import torch

            f = self.torch_flags
            torch.use_deterministic_algorithms(f["deterministic"], warn_only=f["warn_only"])
            torch.backends.cudnn.benchmark = f["cudnn_benchmark"]
            torch.backends.cudnn.deterministic = f["cudnn_deterministic"]
            torch.backends.cudnn.allow_tf32 = f["cudnn_tf32"]
            torch.backends.cuda.matmul.allow_tf32 = f["matmul_tf32"]
            torch.set_float32_matmul_precision(f["matmul_precision"])
            # The engine sets threads only when num_threads is given: 0 must mean the default.
            torch.set_num_threads(getattr(cfg, "num_threads", 0) or f["threads"])
            torch.manual_seed(cell.seed)
            if "torch._dynamo" in sys.modules:
                torch._dynamo.reset()  # a compiled cell's graphs (and the weights they hold)
        gc.collect()
        _malloc_trim()
        if self.torch_flags and device.startswith("cuda"):
            import torch

            if torch.cuda.is_initialized():
                torch.cuda.synchronize()
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
        return _reset_peak_rss()


def _malloc_trim() -> None:
    """glibc: hand freed heap back to the kernel, so a big cell's leftovers are not resident."""
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak_rss() -> bool:
    """Linux: reset this process's VmHWM (what :func:`bench.engine.measure.peak_rss_mib` reads) to its
    current RSS."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _engine_imports() -> None:
    """What every real cell imports anyway (torchvision, the strategies, the data layer).

    Imported before a cell's memory cap is set, in a fresh process as in a worker: the cap is
    about the cell's allocations, and an import that fails under it fails anywhere in the import
    machinery (a ``SystemError`` rather than a ``MemoryError``), which made the capped cell's
    reason depend on timing.
    """
    if faults.impl_spec():
        return  # a test stand-in: nothing heavy to import
    import strategies  # noqa: F401 - torchvision, the registries
    from bench import data  # noqa: F401


def _warm_imports() -> None:
    """The engine's imports, paid once by the worker instead of by each cell; the data of the
    last cell stays loaded for the next one (:func:`bench.data.keep_last_load`)."""
    _engine_imports()
    if "bench.data" in sys.modules:
        sys.modules["bench.data"].keep_last_load(True)


def once(result_fd: int) -> int:
    """One request from stdin, its result on ``result_fd``; an error that leaves no payload
    ends the process with its traceback (exit 1), as any crash does."""
    results = _ResultPipe(result_fd)
    request = json.loads(sys.stdin.readline())
    payload = COMMANDS[request["command"]](request["spec"])
    results.send(request["id"], payload)
    results.close()
    return 0


def serve(result_fd: int) -> int:
    """The warm worker: one request per stdin line, one result line on ``result_fd`` each."""
    results = _ResultPipe(result_fd)
    _load_impl()
    _warm_imports()
    baseline = _Baseline()
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        payload = None
        try:
            payload = COMMANDS[request["command"]](request["spec"], baseline)
        except SystemExit as exc:  # a cell that exits ends its worker, with its exit code
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(exc.code if isinstance(exc.code, int) else 1)
        except Exception:  # noqa: BLE001 - no payload: the sweep records the failure
            traceback.print_exc()
        results.send(request["id"], payload)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    modes = {"once": once, "serve": serve}
    if len(argv) != 2 or argv[0] not in modes or not argv[1].isdigit():
        print("usage: python -m bench.executors.worker once|serve RESULT_FD "
              "(requests on stdin, one JSON line each)", file=sys.stderr)
        return 2
    return modes[argv[0]](int(argv[1]))


if __name__ == "__main__":
    _die_with_parent()  # only as the sweep's child, never when main() is called in-process
    sys.exit(main())
