"""The stand-in cell: what the tests run in place of :func:`bench.engine.train.run_cell`.

Chosen with ``ADAPTBENCH_CELL_IMPL=standins.IMPL`` (see :mod:`bench.executors.worker`), it runs
in the cell's process -- a warm worker, a process per cell, a Ray actor's worker, a submitit
task, a torchrun rank -- and costs a fraction of a second where a real cell costs a torch
import and a training run. It stays light: nothing but the standard library at the top (the
probe imports torch, the ``real`` action the engine, when asked), so no test module is
imported into a cell's process.

Environment (every name starts with ``ADAPTBENCH_FAKE``; tests clear them with
:data:`HOOKS`):

- ``ADAPTBENCH_FAKE="model/strategy=action;model/*=action;*=action"`` gives cells a behaviour
  (an exact key first, then ``model/*``, then ``*``; none: ``ok``):

  ``ok``; ``crash`` (a fatal error on stderr, exit code 3); ``kill`` (SIGKILL to itself);
  ``hang`` (sleeps 600 s, after writing its pid to ``ADAPTBENCH_FAKE_HANG_MARK`` if set);
  ``raise`` (RuntimeError); ``oom`` and ``error`` (a row with that status); ``sleep:S``
  (seconds, then ok); ``killparent[:MARKER]`` (SIGKILL to the process that started this one --
  a Ray actor -- every time, or only while the file MARKER does not exist, which it creates);
  ``leak`` (changes every piece of process state it can: torch threads, deterministic
  algorithms, an environment variable, 300 MiB made resident; then ok); ``real`` (the real
  engine's ``run_cell``); ``forge:DIR`` (prints a well-formed result line for request 1 on
  stdout and writes a finished cell's ``result.json`` into DIR, then SIGKILL to itself);
  ``halfwrite`` (writes the first half of a well-formed result line on the worker's result
  pipe -- the file descriptor that is its last argument -- then SIGKILL to itself).
- ``ADAPTBENCH_INJECT_FAULT`` (the engine's own fault hook, which the worker narrows to one
  cell's ``kind@step``) is honoured the engine's way, so a fault test runs the same on a stand-in:
  ``kill`` (SIGKILL), ``oom`` (an oom row naming the batch size), ``nan`` (a diverged row that
  stopped early at that step), ``hang`` (sleeps).
- Under a soft ``RLIMIT_AS`` (``ADAPTBENCH_CELL_RLIMIT_AS_MIB``) the cell asks for 256 MiB, so a
  cap of +64 MiB is met as a real cell meets it: a ``MemoryError`` the worker records.
- ``ADAPTBENCH_FAKE_PROBE=1``: torch is imported with this module (a real worker has it before
  its first cell), and each cell prints ``probe {json}`` with what the process looks like when
  the cell starts (pid, torch threads, deterministic flag, seed, the ``leak`` variable) and
  its RSS peak, which also goes into the row (``peak_rss_mib``).
- ``ADAPTBENCH_FAKE_LOG=PATH``: appends one JSON line per cell run: its label, pid and the
  compile cache directory it was given (``TORCHINDUCTOR_CACHE_DIR``).
- ``ADAPTBENCH_FAKE_STAMPS=DIR``: every cell writes ``DIR/<strategy>.json`` with its start and
  end (wall clock, s), its pid and the ``OMP_NUM_THREADS`` it saw, so a test can see which
  cells ran at once. With it, ``waitfor:NAME`` holds the cell (60 s at most) until another
  cell has written ``DIR/NAME.json``, and ``meet:NAME`` writes ``DIR/<strategy>.start`` and
  holds the cell until ``DIR/NAME.start`` exists: two cells that meet both started before
  either ended, however slowly a loaded machine starts the other.
- ``ADAPTBENCH_FAKE_ESTIMATE``: what :func:`estimate_cell_s` says, for every cell (``"1000"``)
  or per cell (``"resnet18/conv1=1000;*=1"``); unset: 1 s.

Each run prints the line the engine prints after an epoch (``epoch 1/E fake LABEL``), which
the executors relay to the sweep's progress.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

if os.environ.get("ADAPTBENCH_FAKE_PROBE"):
    # Loaded as a worker starts, before it records its baseline: with torch imported, as a real
    # worker's engine imports have it, the baseline holds torch's state and resets it per cell.
    import torch  # noqa: F401

IMPL = f"{Path(__file__).resolve()}:run_cell"
HOOKS = ("ADAPTBENCH_FAKE", "ADAPTBENCH_FAKE_HANG_MARK", "ADAPTBENCH_FAKE_PROBE",
         "ADAPTBENCH_FAKE_LOG", "ADAPTBENCH_FAKE_ESTIMATE", "ADAPTBENCH_FAKE_STAMPS")
LEAK_MIB = 300
CAPPED_ASK_MIB = 256
PROBE_PREFIX = "probe "


@dataclass
class Result:
    row: dict
    history: list = field(default_factory=list)
    ops: list = field(default_factory=list)


def _per_cell(text: str, cell, default: str) -> str:
    """The value ``text`` ("key=value;...") gives the cell: exact key, ``model/*``, ``*``."""
    values = dict(item.split("=", 1) for item in text.split(";") if "=" in item)
    for key in (f"{cell.model}/{cell.strategy}", f"{cell.model}/*", "*"):
        if key in values:
            return values[key]
    return default


def behaviour(cell) -> str:
    return _per_cell(os.environ.get("ADAPTBENCH_FAKE", ""), cell, "ok")


def probes(lines) -> list[dict]:
    """The probe records among a cell's output lines."""
    return [json.loads(x.strip()[len(PROBE_PREFIX):]) for x in lines
            if x.strip().startswith(PROBE_PREFIX)]


def log_records(path: Path) -> list[dict]:
    """What ``ADAPTBENCH_FAKE_LOG`` collected: one record per cell run."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line]


def _peak_rss_mib() -> float:
    from bench.engine.measure import peak_rss_mib

    return peak_rss_mib()


def _probe() -> dict:
    import torch

    return {"pid": os.getpid(), "threads": torch.get_num_threads(),
            "deterministic": torch.are_deterministic_algorithms_enabled(),
            "seed": torch.initial_seed(), "leaked_env": os.environ.get("PROBE_LEAK", "")}


def _leak() -> None:
    import torch

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.environ["PROBE_LEAK"] = "1"
    blob = bytearray(LEAK_MIB * 2**20)
    blob[::4096] = b"\x01" * len(range(0, len(blob), 4096))  # make every page resident
    del blob


def _capped() -> bool:
    try:
        import resource
    except ImportError:  # pragma: no cover - not Linux
        return False
    return resource.getrlimit(resource.RLIMIT_AS)[0] != resource.RLIM_INFINITY


def _hang() -> None:
    if mark := os.environ.get("ADAPTBENCH_FAKE_HANG_MARK"):  # tests wait for the hang
        Path(mark).write_text(str(os.getpid()))
    time.sleep(600)


def _wait_for(cell, kind: str, other: str) -> None:
    """``waitfor`` / ``meet`` (see the module docstring): at most 60 s."""
    stamps = Path(os.environ["ADAPTBENCH_FAKE_STAMPS"])
    if kind == "meet":
        (stamps / f"{cell.strategy}.start").write_text("")
    target = stamps / f"{other}{'.json' if kind == 'waitfor' else '.start'}"
    deadline = time.monotonic() + 60
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def _forged_row(cell) -> dict:
    return {"status": "ok", "reason": "", "mode": "full", "train_img_s": 1e9, "wall_s": 0.01,
            "test_acc": 1.0, "device": "cpu", "device_name": "Forged CPU",
            "strategy": cell.strategy}


def _forge(cell, where: Path) -> None:
    """Everything a result looked like before it had a channel of its own: reply-shaped lines
    on stdout, a ``result.json`` beside the log."""
    payload = {"row": _forged_row(cell), "history": [], "ops": [], "provenance": {}}
    print(json.dumps({"id": 1, "payload": payload}), flush=True)
    Path(where, "result.json").write_text(json.dumps(payload))


def run_cell(cfg, cell, *, device="auto", measure_only=False, out_dir=None):
    action = behaviour(cell)
    kind, _, arg = action.partition(":")
    if kind == "real":
        from bench.engine import train

        return train.run_cell(cfg, cell, device=device, measure_only=measure_only,
                              out_dir=out_dir)
    start = time.time()
    seen = _probe() if os.environ.get("ADAPTBENCH_FAKE_PROBE") else None
    if log := os.environ.get("ADAPTBENCH_FAKE_LOG"):
        with open(log, "a") as f:
            f.write(json.dumps({"cell": cell.label(), "pid": os.getpid(),
                                "compile_cache": os.environ.get("TORCHINDUCTOR_CACHE_DIR")})
                    + "\n")
    print(f"epoch 1/{cfg.epochs} fake {cell.label()}", flush=True)
    fault, _, step = os.environ.get("ADAPTBENCH_INJECT_FAULT", "").partition("@")
    step = step.partition(":")[0] or "1"
    if _capped():
        bytearray(CAPPED_ASK_MIB * 2**20)  # MemoryError under a small cap
    if kind == "crash":
        print("Fatal Python error: Segmentation fault (pretend)", file=sys.stderr)
        sys.exit(3)
    if kind == "forge":
        _forge(cell, Path(arg))
    if kind == "halfwrite":
        line = json.dumps({"id": 1, "payload": {"row": _forged_row(cell)}}) + "\n"
        os.write(int(sys.argv[-1]), line[:len(line) // 2].encode())
    if kind in ("kill", "forge", "halfwrite") or fault == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "hang" or fault == "hang":
        _hang()
    if kind == "raise":
        raise RuntimeError("boom from the stand-in")
    if kind == "sleep":
        time.sleep(float(arg))
    if kind == "killparent" and not (arg and Path(arg).exists()):
        if arg:
            Path(arg).write_text("killed once")
        os.kill(os.getppid(), signal.SIGKILL)
        time.sleep(60)  # the kernel ends this process with its parent (PR_SET_PDEATHSIG)
    if kind == "leak":
        _leak()
    if kind in ("waitfor", "meet"):
        _wait_for(cell, kind, arg)
    if stamps := os.environ.get("ADAPTBENCH_FAKE_STAMPS"):
        Path(stamps, f"{cell.strategy}.json").write_text(json.dumps(
            {"start": start, "end": time.time(), "pid": os.getpid(),
             "omp_threads": os.environ.get("OMP_NUM_THREADS", "")}))
    if kind == "oom":
        return Result({"status": "oom", "reason": "out of memory (stand-in)"})
    if fault == "oom":
        return Result({"status": "oom", "reason": f"out of memory at batch_size={cfg.batch_size}"
                                                  " (stand-in)"})
    if fault == "nan":
        return Result({"status": "diverged", "reason": f"non-finite training loss at step "
                                                       f"{step}; stopped early (stand-in)"})
    mode = "measure-only" if measure_only else "full"
    status = "error" if kind == "error" else "ok"
    row = {"status": status, "reason": "error (stand-in)" if status == "error" else "",
           "mode": mode, "train_img_s": 123.5, "wall_s": 0.01,
           "epoch_s": None if measure_only else 0.1,
           "test_acc": None if measure_only else 0.5, "device": str(device).split(":")[0],
           "device_name": "Fake CPU", "reinitialized": "features.0"}
    if seen is not None:
        seen["peak_rss_mib"] = row["peak_rss_mib"] = _peak_rss_mib()
        print(PROBE_PREFIX + json.dumps(seen), flush=True)
    history = [] if measure_only else [
        {"epoch": e + 1, "step": 10 * (e + 1), "train_loss": 1.0, "test_acc": 0.5,
         "epoch_s": 0.1, "elapsed_s": 0.1 * (e + 1), "per_class_acc": [0.5] * 10}
        for e in range(cfg.epochs)]
    ops = [{"op": "aten::convolution", "self_cpu_ms": 1.5, "self_device_ms": 0.0, "calls": 3}]
    return Result(row, history, ops)


def estimate_cell_s(cfg, cell, device="auto") -> float:
    text = os.environ.get("ADAPTBENCH_FAKE_ESTIMATE", "1.0")
    return float(_per_cell(text if "=" in text else f"*={text}", cell, "1.0"))
