"""Faults: a benchmark people publish from must never lose or invent a row.

Each test injects one fault and checks what is left on disk: every finished cell keeps its row,
byte for byte; no row appears twice or half-written; a failed cell is a row whose status and
reason say what happened; a rerun redoes exactly the cells that have no final row.

How the faults are made (test hooks, all in :mod:`bench.faults`):

- ``ADAPTBENCH_INJECT_FAULT="model/strategy=kind@step;..."`` -- the real engine misbehaves at a
  training step of the named cells only: ``kill`` (SIGKILL to itself), ``oom`` (a
  ``torch.cuda.OutOfMemoryError``), ``nan`` (non-finite loss), ``hang``.
- ``ADAPTBENCH_CELL_RLIMIT_AS_MIB="model/strategy=+64"`` -- the named cell's process gets a soft
  ``RLIMIT_AS`` 64 MiB above what it has mapped after its imports.
- ``ADAPTBENCH_CELL_IMPL`` -- the stand-in cell of tests/standins.py, for the faults that are
  about the sweep's files rather than the training (full disk, two sweeps, edited CSVs).

**Executors.** The faults that concern the process a cell runs in -- a cell killed, out of
memory, non-finite, memory-capped; the sweep killed with ``kill -9`` or SIGTERM mid-cell -- run
against every executor (``warm``: one worker replaced after each failure; ``process``: a process
per cell; ``ray`` and ``submitit``, which wrap those workers in an actor or a task, with the
stand-in cell and one real cell: there only the relay of each outcome is theirs to prove). The faults of the results files and the data cache (full disk, edited CSVs, two
sweeps or two shards on one directory, a corrupt cache) happen in the sweep's own process,
whatever the executor: they run once, on the default (``warm``), to keep the suite's time down.

Real cells are smoke-sized: resnet18, 64 training and 40 test images, batch 16, one thread.
Bad checksums, truncated ``.gz`` files and hostile pickles in the data sources are the data
layer's faults, covered by tests/test_data.py (see the README table); here a corrupt cache is
met by the sweep.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import standins  # tests/ is on sys.path under pytest

from bench import config, identity, results
from bench.__main__ import main
from bench.executors import proctree

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
FAKE_IMPL = standins.IMPL
EXECUTORS = ("warm", "process")
# The in-cell faults also run through the engines' executors where their package is installed
# (CI installs both): ray on a local instance, submitit on its local cluster.
CELL_FAULT_EXECUTORS = (*EXECUTORS, "ray", "submitit")
HOOKS = ("ADAPTBENCH_CELL_IMPL", "ADAPTBENCH_INJECT_FAULT", "ADAPTBENCH_CELL_RLIMIT_AS_MIB",
         *standins.HOOKS)

# A smoke-sized recipe: 4 steps per epoch, every step after the first one timed.
TINY = ["datasets=mnist", "models=resnet18", "seeds=0", "train_size=64", "test_size=40",
        "batch_size=16", "epochs=1", "warmup_steps=1", "window_steps=1", "profile_steps=0",
        "num_threads=1", "peak_tflops=1", "cell_timeout_s=180", "contended_retries=0"]


def argv(rdir: Path, strategies: str, *extra: str, overrides: tuple[str, ...] = (),
         command: str = "run") -> list[str]:
    out = [command, "--profile", "smoke", "--results-dir", str(rdir), "--device", "cpu"]
    out += ["--quiet"] if command == "run" else ["--fast"]
    for item in [*TINY, f"strategies={strategies}", *overrides]:
        out += ["--set", item]
    return [*out, *extra]


def clean_env(mp: pytest.MonkeyPatch) -> None:
    for name in HOOKS:
        mp.delenv(name, raising=False)
    mp.setenv("OMP_NUM_THREADS", "1")


def rows(rdir: Path, kind: str = "runs", suffix: str = "") -> list[dict[str, str]]:
    return results.read_csv(rdir / results.file_name(kind, suffix), kind)


def by_strategy(rdir: Path) -> dict[str, dict[str, str]]:
    got = rows(rdir)
    assert len({r["cell_hash"] for r in got}) == len(got), "a cell has two rows"
    return {r["strategy"]: r for r in got}


def snapshot(rdir: Path) -> dict[str, bytes]:
    """Every file's bytes; the lock file is left out (a refused run rewrites its holder line)."""
    return {str(p.relative_to(rdir)): p.read_bytes() for p in sorted(rdir.rglob("*"))
            if p.is_file() and not p.name.endswith(".lock")}


@pytest.fixture
def env(monkeypatch):
    clean_env(monkeypatch)
    return monkeypatch


@pytest.fixture(scope="module")
def fake_base(tmp_path_factory) -> Path:
    """Two finished cells (stand-in engine): repeat3 and conv1."""
    rdir = tmp_path_factory.mktemp("fake_base") / "results"
    with pytest.MonkeyPatch.context() as mp:
        clean_env(mp)
        mp.setenv("ADAPTBENCH_CELL_IMPL", FAKE_IMPL)
        assert main(argv(rdir, "repeat3,conv1")) == 0
    return rdir


@pytest.fixture
def fake_copy(fake_base, tmp_path, env) -> Path:
    rdir = tmp_path / "results"
    shutil.copytree(fake_base, rdir)
    env.setenv("ADAPTBENCH_CELL_IMPL", FAKE_IMPL)
    return rdir


# --- faults inside cells: one real sweep, five cells, four faults ----------------------------

FAULTY = {"repeat3": "kill@1", "conv1": "oom@1", "sumrgb": "nan@1"}
CAPPED = "pad32"  # the memory-capped cell; resize32 (same 32 px input, no fault) runs after it
GRID = "repeat3,conv1,sumrgb,pad32,resize32"
EPOCHS = 2  # 8 steps per cell: a cell that stops at step 2 stopped early


# The engines' executors wrap the local ones (a Ray actor, a submitit task, each starting the
# same worker): through them a fault only has to come back as the cell left it. So there the
# faulty cells are the stand-in (tests/standins.py), which meets the same fault hooks the way
# the engine does, and one cell, resize32, is the real engine: what the engine makes of each
# fault is checked on the local executors, the relay of every outcome on all four.
RELAY_ONLY = ("ray", "submitit")


def relay_only(mp: pytest.MonkeyPatch, executor: str, real: str = "") -> None:
    """On an engine's executor, cells are the stand-in (``real``: one that is not)."""
    if executor in RELAY_ONLY:
        mp.setenv("ADAPTBENCH_CELL_IMPL", FAKE_IMPL)
        if real:
            mp.setenv("ADAPTBENCH_FAKE", f"resnet18/{real}=real")


@pytest.fixture(scope="module", params=CELL_FAULT_EXECUTORS)
def faulty_sweep(request, tmp_path_factory) -> tuple[int, Path]:
    """The five-cell sweep with its four faults, once per executor."""
    rdir = tmp_path_factory.mktemp(f"faulty-{request.param}") / "results"
    with pytest.MonkeyPatch.context() as mp:
        clean_env(mp)
        relay_only(mp, request.param, real="resize32")
        mp.setenv("ADAPTBENCH_INJECT_FAULT",
                  ";".join(f"resnet18/{s}={f}" for s, f in FAULTY.items()))
        mp.setenv("ADAPTBENCH_CELL_RLIMIT_AS_MIB", f"resnet18/{CAPPED}=+64")
        code = main(argv(rdir, GRID, "--executor", request.param,
                         overrides=(f"epochs={EPOCHS}",)))
    return code, rdir


@pytest.mark.slow
def test_faulty_cells_cost_one_row_each_and_the_sweep_runs_to_its_end(faulty_sweep) -> None:
    code, rdir = faulty_sweep
    assert code == 0  # failed cells are results, not errors
    cfg = config.load(str(rdir / "config.toml"))
    from bench.identity import device_key

    expected = [identity.cell_hash(cfg, c, device_key("cpu")) for c in config.cells(cfg)]
    got = rows(rdir)
    executor = json.loads((rdir / "env.json").read_text())["executor"]
    # One row per cell, none invented, none lost; in plan order where cells ran one at a
    # time, in the order they finished where they ran at once (submitit's local cluster).
    assert sorted(r["cell_hash"] for r in got) == sorted(expected)
    if {r["concurrency"] for r in got} == {"1"}:
        assert [r["cell_hash"] for r in got] == expected
        assert [r["strategy"] for r in got] == GRID.split(",")
    else:
        assert executor == "submitit"
    assert by_strategy(rdir)["resize32"]["status"] == "ok"
    assert {r["executor"] for r in got} == {executor}  # every row says what ran it
    # Failed cells leave no history or profiler rows behind.
    ok_hash = by_strategy(rdir)["resize32"]["cell_hash"]
    assert {r["cell_hash"] for r in rows(rdir, "history")} == {ok_hash}


@pytest.mark.slow
def test_kill_9_of_a_cell_is_an_error_row_naming_the_signal(faulty_sweep) -> None:
    _, rdir = faulty_sweep
    row = by_strategy(rdir)["repeat3"]
    assert row["status"] == "error"
    assert "killed by SIGKILL" in row["reason"]
    # A cell that left no result keeps its stderr for the post-mortem.
    assert list((rdir / "logs").glob(f"*repeat3*{row['cell_hash']}.log"))
    assert row["device"] == "cpu" and row["torch_version"]  # provenance all the same


@pytest.mark.slow
def test_cuda_oom_is_recorded_and_the_batch_size_is_never_changed(faulty_sweep) -> None:
    _, rdir = faulty_sweep
    got = by_strategy(rdir)
    assert got["conv1"]["status"] == "oom"
    assert "out of memory at batch_size=16" in got["conv1"]["reason"]
    # No silent retry with a smaller batch: every row, and the saved config, say 16.
    assert {r["batch_size"] for r in got.values()} == {"16"}
    assert config.load(str(rdir / "config.toml")).batch_size == 16
    assert [s for s in got if got[s]["status"] == "ok"] == ["resize32"]  # later cells ran


@pytest.mark.slow
def test_a_memory_capped_cell_is_recorded_and_the_sweep_goes_on(faulty_sweep) -> None:
    _, rdir = faulty_sweep
    got = by_strategy(rdir)
    capped = got[CAPPED]
    assert capped["status"] in ("oom", "error")
    assert "memory" in capped["reason"].lower(), capped["reason"]
    # The child lifted its cap after the cell and wrote its result (no crash log kept).
    assert not capped["reason"].startswith("exit code")
    assert not list((rdir / "logs").glob(f"*{CAPPED}*"))
    # The same input size without the cap trains fine, right after it.
    assert got["resize32"]["status"] == "ok" and got["resize32"]["effective_input_px"] == "32"


@pytest.mark.slow
def test_non_finite_loss_is_diverged_and_stops_early(faulty_sweep) -> None:
    _, rdir = faulty_sweep
    row = by_strategy(rdir)["sumrgb"]
    assert row["status"] == "diverged"
    assert "non-finite training loss at step" in row["reason"]
    assert "stopped early" in row["reason"]
    stopped_at = int(re.search(r"at step (\d+)", row["reason"]).group(1))
    assert stopped_at <= 3 < EPOCHS * 64 // 16  # 8 steps in the recipe; no evaluation reached
    assert not [h for h in rows(rdir, "history") if h["cell_hash"] == row["cell_hash"]]
    assert row["test_acc"] == ""


# --- kill -9 of the sweep itself -------------------------------------------------------------

def _stat(pid: int, thread: int | None = None) -> list[str] | None:
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # [0] state, [1] ppid, [11] utime, [12] stime


def _cell_children(pid: int) -> list[int]:
    """The cell processes among ``pid``'s descendants (a Ray cell runs under the raylet the
    sweep started, in an actor, not as the sweep's child)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))):
            parents.setdefault(int(stat[1]), []).append(int(entry.name))
    found, todo = [], list(parents.get(pid, []))
    while todo:
        child = todo.pop(0)
        todo += parents.get(child, [])
        try:
            if b"bench.executors.worker" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
        except OSError:
            pass
    return found


def _alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def _wait_for_hung_cell(sweep: subprocess.Popen, rdir: Path, done_rows: int,
                        timeout_s: float = 240) -> int:
    """The pid of the sweep's cell once ``done_rows`` rows exist and the cell stopped using CPU."""
    deadline = time.monotonic() + timeout_s
    last: tuple[int, int] | None = None
    still_since = 0.0
    while time.monotonic() < deadline:
        assert sweep.poll() is None, "the sweep ended before the hung cell"
        time.sleep(0.25)
        if not (rdir / "runs.csv").is_file() or len(rows(rdir)) < done_rows:
            continue
        children = _cell_children(sweep.pid)
        # The main thread only: the engine's memory sampler thread keeps ticking.
        stat = _stat(children[0], thread=children[0]) if children else None
        if stat is None:
            continue
        ticks = (children[0], int(stat[11]) + int(stat[12]))
        if ticks != last:
            last, still_since = ticks, time.monotonic()
        elif stat[0] == "S" and time.monotonic() - still_since > 2.5:  # the injected hang
            return children[0]
    raise AssertionError("the hung cell was never seen")


@pytest.mark.slow
@pytest.mark.parametrize("executor", CELL_FAULT_EXECUTORS)
def test_kill_9_of_the_sweep_mid_cell_then_rerun_loses_nothing(tmp_path, env, capsys,
                                                                executor) -> None:
    rdir = tmp_path / "results"
    log = tmp_path / "sweep.log"
    relay_only(env, executor)  # local executors: a real cell hangs in the engine
    child_env = {**os.environ, "ADAPTBENCH_INJECT_FAULT": "resnet18/sumrgb=hang@1"}
    with open(log, "w") as out:
        sweep = subprocess.Popen([sys.executable, "-m", "bench",
                                  *argv(rdir, "repeat3,sumrgb", "--executor", executor)],
                                 cwd=REPO, env=child_env, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    cell = None
    try:
        try:
            cell = _wait_for_hung_cell(sweep, rdir, done_rows=1)
        except AssertionError:
            raise AssertionError(log.read_text()[-3000:]) from None
        before = (rdir / "runs.csv").read_bytes()
        history_before = (rdir / "history.csv").read_bytes()
        # Every process the sweep started, the engine's own included (a local Ray instance's
        # GCS, raylet and agents lived ~100 s past a kill -9 before the watchdog).
        started = [(p, proctree._start_time(p)) for p in proctree.descendants(sweep.pid)]
        os.kill(sweep.pid, signal.SIGKILL)
        assert sweep.wait(timeout=30) == -signal.SIGKILL
        # The orphaned cell dies with its sweep (PR_SET_PDEATHSIG): nothing left running.
        deadline = time.monotonic() + 15
        while _alive(cell) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(cell), "the hung cell outlived the killed sweep"
        deadline = time.monotonic() + 20
        left = started
        while left and time.monotonic() < deadline:
            left = [(p, t) for p, t in left if t is not None and proctree._start_time(p) == t]
            time.sleep(0.2)
        assert not left, "processes of the killed sweep still run: " + "; ".join(
            Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
            for p, _ in left if Path(f"/proc/{p}").exists())
    finally:
        for pid in (sweep.pid, cell):
            if pid and _alive(pid):
                os.kill(pid, signal.SIGKILL)
        sweep.wait()

    # What the kill left: the finished row byte for byte, no half row, no temporary file.
    assert (rdir / "runs.csv").read_bytes() == before
    assert (rdir / "history.csv").read_bytes() == history_before
    assert [r["strategy"] for r in rows(rdir)] == ["repeat3"]
    assert not list(rdir.glob(".*.tmp"))

    # The rerun takes the lock the dead sweep held and redoes only the interrupted cell (what
    # resume does is the sweep's, whatever engine ran the cells: the stand-in runs it).
    env.setenv("ADAPTBENCH_CELL_IMPL", FAKE_IMPL)
    capsys.readouterr()
    assert main(argv(rdir, "repeat3,sumrgb")) == 0
    assert "1 cells to run, 1 already done" in capsys.readouterr().out
    after = (rdir / "runs.csv").read_bytes()
    assert after.startswith(before)  # the old row untouched, the new one appended
    got = by_strategy(rdir)
    assert sorted(got) == ["repeat3", "sumrgb"] and got["sumrgb"]["status"] == "ok"
    hist = rows(rdir, "history")
    assert sorted(h["strategy"] for h in hist) == ["repeat3", "sumrgb"]


@pytest.mark.slow
@pytest.mark.parametrize("executor", CELL_FAULT_EXECUTORS)
def test_sigterm_of_the_sweep_kills_the_cell_and_keeps_finished_rows(fake_copy,
                                                                     executor) -> None:
    """Slurm's and kill's way to stop a run: exit 130, the cell's process group killed too."""
    rdir = fake_copy
    before = snapshot(rdir)
    # The stand-in writes this file when it reaches its hang: a cell process existing is not
    # enough (the warm worker starts before the sweep has planned anything).
    mark = rdir.parent / f"hang-{executor}.pid"
    env = {**os.environ, "ADAPTBENCH_FAKE": "resnet18/sumrgb=hang",
           "ADAPTBENCH_FAKE_HANG_MARK": str(mark)}
    sweep = subprocess.Popen([sys.executable, "-m", "bench",
                              *argv(rdir, "repeat3,conv1,sumrgb", "--executor", executor)],
                             cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cell = None
    try:
        deadline = time.monotonic() + 120
        while not mark.is_file() or not (children := _cell_children(sweep.pid)):
            assert sweep.poll() is None and time.monotonic() < deadline, sweep.communicate()
            time.sleep(0.1)
        cell = children[0]
        sweep.send_signal(signal.SIGTERM)
        _, err = sweep.communicate(timeout=60)
    finally:
        for pid in (sweep.pid, cell):
            if pid and _alive(pid):
                os.kill(pid, signal.SIGKILL)
        sweep.wait()
    assert sweep.returncode == 130, err[-2000:]
    assert "interrupted: finished cells are recorded" in err and "rerun" in err
    assert not _alive(cell)
    after = snapshot(rdir)
    assert after["runs.csv"] == before["runs.csv"]  # no row for the cell that was stopped
    assert sorted(by_strategy(rdir)) == ["conv1", "repeat3"]


# --- the results files: full disk, unwritable directory --------------------------------------

def _fd_name(fd: int) -> str:
    try:
        return Path(os.readlink(f"/proc/self/fd/{fd}")).name
    except OSError:
        return ""


def _failing(call: str, err: int, target: str):
    """os.<call> that fails with ``err`` for the temporary file of ``<target>.csv`` only."""
    real = getattr(os, call)
    prefix = f".{target}.csv."

    def hit(name: str) -> bool:
        return name.startswith(prefix) and name.endswith(".tmp")

    def fake(*args, **kwargs):
        first = args[0]
        name = _fd_name(first) if isinstance(first, int) else Path(first).name
        if hit(name):
            raise OSError(err, os.strerror(err))
        return real(*args, **kwargs)

    return fake


@pytest.mark.parametrize("call, err, target", [
    ("write", errno.ENOSPC, "history"),  # the first file a cell writes
    ("fsync", errno.ENOSPC, "runs"),  # the commit marker, after history and ops went in
    ("replace", errno.ENOSPC, "runs"),
    ("open", errno.EROFS, "runs"),  # the directory became read-only
    ("open", errno.EACCES, "ops"),  # ... or unwritable for this user
])
def test_a_full_or_unwritable_disk_stops_the_sweep_and_keeps_runs_csv(
        fake_copy, env, capsys, call, err, target) -> None:
    rdir = fake_copy
    before = snapshot(rdir)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, call, _failing(call, err, target))
        assert main(argv(rdir, "repeat3,conv1,sumrgb")) == 2
    msg = capsys.readouterr().err
    assert f"could not write {rdir / (target + '.csv')}: {os.strerror(err)}" in msg
    assert "previous version of the file is unchanged" in msg and "Traceback" not in msg
    assert snapshot(rdir)["runs.csv"] == before["runs.csv"]
    assert not list(rdir.glob(".*.tmp"))
    # Rows written before the commit marker failed belong to no run: readers ignore them.
    assert {r["strategy"] for r in results.read_dir(rdir, "history")} == {"repeat3", "conv1"}
    assert {r["strategy"] for r in results.read_dir(rdir, "ops")} == {"repeat3", "conv1"}
    # Space freed: the rerun records the missing cell once, and its stale rows are replaced.
    assert main(argv(rdir, "repeat3,conv1,sumrgb")) == 0
    assert sorted(by_strategy(rdir)) == ["conv1", "repeat3", "sumrgb"]
    assert sorted(h["strategy"] for h in rows(rdir, "history")) == ["conv1", "repeat3", "sumrgb"]
    assert sorted(o["strategy"] for o in rows(rdir, "ops")) == ["conv1", "repeat3", "sumrgb"]


# --- the data cache ----------------------------------------------------------------------------

REAL_CACHE = REPO / "data" / "cache" / "mnist"


@pytest.mark.skipif(not (REAL_CACHE / "manifest.json").is_file(), reason="run `make data` first")
def test_a_corrupt_data_cache_is_refused_before_any_cell_and_left_as_it_is(
        fake_copy, tmp_path, capsys) -> None:
    root = tmp_path / "data"
    shutil.copytree(REAL_CACHE, root / "cache" / "mnist")
    target = root / "cache" / "mnist" / "train_y.npy"
    blob = bytearray(target.read_bytes())
    blob[-1] = (blob[-1] + 1) % 10  # one label
    target.write_bytes(bytes(blob))
    cache_before = snapshot(root)
    results_before = snapshot(fake_copy)
    code = main(argv(fake_copy, "repeat3,conv1,sumrgb", overrides=(f"data_root={root}",)))
    msg = capsys.readouterr().err
    assert code == 2
    assert f"{target} is corrupt" in msg and "--rebuild" in msg  # what is wrong, and the fix
    assert snapshot(root) == cache_before and snapshot(fake_copy) == results_before


# --- two sweeps on one directory ------------------------------------------------------------

def _lock_holder(rdir: Path) -> int | None:
    try:
        return json.loads((rdir / "runs.lock").read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return None


def _sweep_process(rdir: Path, strategies: str, *extra: str, overrides=()) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bench",
                             *argv(rdir, strategies, *extra, overrides=overrides)],
                            cwd=REPO, env=dict(os.environ), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_a_second_sweep_on_a_busy_directory_is_refused(tmp_path, env, capsys) -> None:
    rdir = tmp_path / "results"
    env.setenv("ADAPTBENCH_CELL_IMPL", FAKE_IMPL)
    env.setenv("ADAPTBENCH_FAKE", "resnet18/repeat3=hang")  # holds the lock for cell_timeout_s
    first = _sweep_process(rdir, "repeat3,conv1", overrides=("cell_timeout_s=6",))
    try:
        deadline = time.monotonic() + 120
        while _lock_holder(rdir) != first.pid:
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.1)
        env.delenv("ADAPTBENCH_FAKE")
        assert main(argv(rdir, "repeat3,conv1", "--force")) == 2
        msg = capsys.readouterr().err
        assert f"in use by another run (pid {first.pid}" in msg and "--results-dir" in msg
        out, err = first.communicate(timeout=120)
    finally:
        first.kill()
        first.wait()
    assert first.returncode == 0, err[-2000:]
    got = by_strategy(rdir)
    assert got["repeat3"]["status"] == "timeout" and got["conv1"]["status"] == "ok"
    env_json = json.loads((rdir / "env.json").read_text())
    assert "--force" not in env_json["command_line"]  # the refused run wrote nothing


@pytest.mark.slow
def test_two_shards_at_once_share_a_directory_safely(tmp_path, env) -> None:
    rdir = tmp_path / "results"
    env.setenv("ADAPTBENCH_CELL_IMPL", FAKE_IMPL)
    grid = "repeat3,conv1,sumrgb,pad32"
    procs = [_sweep_process(rdir, grid, "--shard", f"{k}/2") for k in (1, 2)]
    outs = [p.communicate(timeout=180) for p in procs]
    for proc, (_, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err[-2000:]
    assert [len(rows(rdir, suffix=f".shard-{k}-of-2")) for k in (1, 2)] == [2, 2]
    merged = results.read_dir(rdir)
    assert sorted(r["strategy"] for r in merged) == sorted(grid.split(","))


# --- hand-edited and mixed-schema results files ----------------------------------------------

def _edit(rdir: Path, how: str) -> str:
    """Damage one file the way a person or another version would; returns the file's name."""
    path = rdir / "runs.csv"
    header, *lines = path.read_text().splitlines()
    cols = header.split(",")
    cells = lines[-1].split(",")
    if how == "old schema":  # a column this version added is missing
        i = cols.index("estimate_s")
        path.write_text("\n".join(",".join(c for j, c in enumerate(line.split(","))
                                          if j != i) for line in [header, *lines]) + "\n")
    elif how == "half a row":  # a copy cut short
        text = path.read_text()
        path.write_text(text[: len(text) - len(lines[-1]) // 2 - 1])
    elif how == "mixed schema_version":
        cells[cols.index("schema_version")] = "0"
        path.write_text("\n".join([header, *lines[:-1], ",".join(cells)]) + "\n")
    elif how == "edited status":
        cells[cols.index("status")] = "done"
        path.write_text("\n".join([header, *lines[:-1], ",".join(cells)]) + "\n")
    elif how == "emptied cell_hash":
        cells[cols.index("cell_hash")] = ""
        path.write_text("\n".join([header, *lines[:-1], ",".join(cells)]) + "\n")
    elif how == "not UTF-8":
        path.write_bytes(path.read_bytes().replace(b"resnet18", b"resnet\xe918", 1))
    elif how == "foreign shard file":
        path = rdir / "runs.shard-1-of-2.csv"
        path.write_text("model,strategy,accuracy\nresnet18,repeat3,0.99\n")
    elif how == "history with an extra column":
        path = rdir / "history.csv"
        h_header, *h_lines = path.read_text().splitlines()
        path.write_text("\n".join([h_header + ",note", *(x + "," for x in h_lines)]) + "\n")
    return path.name


EDITS = ["old schema", "half a row", "mixed schema_version", "edited status", "emptied cell_hash",
         "not UTF-8", "foreign shard file", "history with an extra column"]
# What the report tolerates because it reads columns by name; it then says nothing. Plan reads
# runs*.csv only.
REPORT_TOLERATES = PLAN_IGNORES = {"history with an extra column"}


@pytest.mark.parametrize("how", EDITS)
def test_an_edited_results_file_is_named_by_resume_and_report(fake_copy, capsys, how) -> None:
    rdir = fake_copy
    name = _edit(rdir, how)
    before = snapshot(rdir)
    for command in ("run", "plan"):
        code = main(argv(rdir, "repeat3,conv1,sumrgb", command=command))
        err = capsys.readouterr().err
        assert snapshot(rdir) == before  # resume refused: nothing rewritten, nothing appended
        if command == "plan" and how in PLAN_IGNORES:
            assert code == 0
            continue
        assert code == 2, (command, err)
        assert err.startswith("error: ") and name in err and "Traceback" not in err
    if how in REPORT_TOLERATES:
        return
    from bench import report

    code = report.main([str(rdir), "--out", str(rdir.parent / "report")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and name in err and "Traceback" not in err
    assert snapshot(rdir) == before
