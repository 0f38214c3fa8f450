"""The sweep: grid selection, the cost model, one subprocess per cell, failures, resume, locks.

Most tests run the real sweep and real child processes (``python -m bench.executors.worker``) with
the stand-in cell of tests/standins.py, chosen through ``ADAPTBENCH_CELL_IMPL``: a child then
costs a fraction of a second instead of a torch import and a training run. ``ADAPTBENCH_FAKE``
tells the stand-in how to misbehave for a ``model/strategy`` (``crash``, ``kill``, ``hang``,
``raise``, ``oom``). One slow test runs a real cell; torchrun's ranks are tested in test_executors_ddp.py.

Every sweep-level test runs under both executors where the executor matters (``warm``: one
worker for the sweep, replaced after a failure; ``process``: a process per cell): the failure
classification, timeouts, and the plan that ``run`` executes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import standins  # tests/ is on sys.path under pytest

from bench import config, identity, progress, results, sweep
from bench.config import Cell, Config, ConfigError
from bench.executors import protocol
from bench.plan import costmodel, grid
from bench.plan import planner as plan

FAKE_IMPL = standins.IMPL
REPO = Path(__file__).resolve().parent.parent


# --- helpers ---------------------------------------------------------------------------------

SMALL = ["datasets=mnist", "models=resnet18", "strategies=repeat3,conv1", "seeds=0",
         "train_size=64", "test_size=32", "cell_timeout_s=60"]


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setenv("ADAPTBENCH_CELL_IMPL", FAKE_IMPL)
    for name in standins.HOOKS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


EXECUTORS = ("warm", "process")


def run(tmp_path: Path, *extra: str, overrides=(), profile="smoke", quiet=True,
        executor: str | None = None, command: str = "run") -> int:
    from bench.__main__ import main

    argv = [command, "--profile", profile, "--results-dir", str(tmp_path), "--device", "cpu",
            *(["--quiet"] if quiet and command == "run" else []),
            *(["--executor", executor] if executor else [])]
    for item in [*SMALL, *overrides]:
        argv += ["--set", item]
    return main([*argv, *extra])


def rows(tmp_path: Path, name: str = "runs.csv") -> list[dict]:
    kind = name.split(".")[0]
    return results.read_csv(tmp_path / name, kind)


def by_strategy(tmp_path: Path) -> dict[str, dict]:
    return {r["strategy"]: r for r in rows(tmp_path)}


# --- grid ------------------------------------------------------------------------------------

CFG = Config(datasets=("mnist", "fashion-mnist"), models=("resnet18", "vgg16"),
             strategies=("repeat3", "resize224"), seeds=(0, 1))


def test_only_narrows_and_a_repeated_key_widens() -> None:
    only = grid.parse_only(["model=vgg16,strategy=resize224"], CFG)
    cells = grid.select_cells(CFG, only)
    assert {(c.model, c.strategy) for c in cells} == {("vgg16", "resize224")} and len(cells) == 4
    both = grid.parse_only(["models=vgg16,model=resnet18", "seed=1"], CFG)
    assert len(grid.select_cells(CFG, both)) == 8


@pytest.mark.parametrize("text, match", [
    ("model=alexnet", "not in this profile's models; valid: resnet18, vgg16"),
    ("colour=red", "key one of dataset, model, strategy, seed"),
    ("model", "expected key=value"),
])
def test_bad_only_names_the_valid_values(text, match) -> None:
    with pytest.raises(ConfigError, match=match):
        grid.parse_only([text], CFG)


def test_shards_partition_the_grid() -> None:
    all_cells = config.cells(CFG)
    parts = [grid.select_cells(CFG, {}, (k, 3)) for k in (1, 2, 3)]
    assert sorted(map(Cell.label, sum(parts, []))) == sorted(map(Cell.label, all_cells))
    assert {len(p) for p in parts} <= {5, 6}


@pytest.mark.parametrize("text", ["0/2", "3/2", "1", "a/b", "1/0"])
def test_bad_shard_is_refused(text) -> None:
    with pytest.raises(ConfigError, match="expected k/n"):
        grid.parse_shard(text)


def test_validate_grid_names_bad_datasets_and_models() -> None:
    with pytest.raises(ConfigError, match="unknown dataset 'cifar'.*valid: fashion-mnist, mnist"):
        grid.validate_grid(Config(datasets=("cifar",)))
    with pytest.raises(ConfigError, match="unknown model 'vgg17'.*vgg16"):
        grid.validate_grid(Config(models=("vgg17",)))
    import strategies

    with pytest.raises(strategies.StrategyError):
        grid.validate_grid(Config(strategies=("repeat4",)))


# --- cost model ------------------------------------------------------------------------------

def test_cost_model_orders_cells_by_flops_and_flags_incompatible() -> None:
    model = costmodel.CostModel("cpu")
    cfg = Config(train_size=1000, test_size=500, epochs=1, batch_size=32)
    small = model.estimate(cfg, Cell("mnist", "resnet18", "repeat3", 0))
    big = model.estimate(cfg, Cell("mnist", "resnet18", "resize224", 0))
    assert small.source == "cost-model" and not small.incompatible
    assert 10 < small.seconds < big.seconds
    assert big.measure_only_s < big.seconds
    bad = model.estimate(cfg, Cell("mnist", "vgg16", "repeat3", 0))
    assert bad.incompatible and bad.seconds == 0.0
    # The device matters: a GPU is faster.
    assert costmodel.CostModel("cuda").estimate(cfg, Cell("mnist", "resnet18", "resize224", 0)
                                            ).seconds < big.seconds


def test_budget_decides_the_mode_and_timing_only_near_it() -> None:
    cfg = Config(cell_budget_s=100)
    assert plan.budget_mode(cfg, 99) == "full" and plan.budget_mode(cfg, 101) == "measure-only"
    assert plan.budget_mode(Config(), 1e9) == "full"
    near = costmodel.Estimate(150, 10, "cost-model")
    assert plan.needs_timing(cfg, near)
    assert not plan.needs_timing(cfg, costmodel.Estimate(1000, 10, "cost-model"))
    assert not plan.needs_timing(cfg, costmodel.Estimate(10, 10, "cost-model"))
    assert not plan.needs_timing(Config(), near)


def _plan_modes(strategies: tuple[str, ...], budget: float, timed: dict[str, float]) -> dict:
    """{strategy: mode} of resnet18 on mnist under ``budget`` seconds, a timer saying
    ``timed[strategy]`` seconds (a busy or a quiet machine) for every cell it is asked about."""
    cfg = config.load("cpu").replace(models=("resnet18",), strategies=strategies,
                                     cell_budget_s=budget)
    cells = list(enumerate(config.cells(cfg), 1))
    planned = plan.make_plan(cfg, cells, "cpu", results_dir=None,
                             timer=lambda c: (timed.get(c.strategy, 1.0), ""))
    return {p.cell.strategy: p.mode for p in planned}


def test_every_strategy_of_a_model_gets_one_mode_from_the_cost_model() -> None:
    """A model's strategies are compared in one mode, decided by the costliest one's FLOPs:
    a timed probe on a busy machine (here 10,000 s for one cell) never splits them, and a
    strategy far over the budget takes the cheap ones with it."""
    # Both ~25 s by the cost model, near an 80 s budget (so timed): one probe says 10,000 s.
    assert _plan_modes(("repeat3", "droppools"), 80, {"droppools": 1e4}) == {
        "repeat3": "full", "droppools": "full"}
    # resize224 is ~9 min by the cost model: over a 300 s budget, so repeat3 is measure-only too.
    modes = _plan_modes(("repeat3", "resize224"), 300, {})
    assert modes == {"repeat3": "measure-only", "resize224": "measure-only"}
    cfg = config.load("cpu").replace(models=("resnet18", "vgg16"), strategies=("repeat3",))
    est = costmodel.CostModel("cpu")
    decided = plan.group_modes(cfg, [(c, est.estimate(cfg, c)) for c in config.cells(cfg)])
    # vgg16 repeat3 is incompatible: it decides nothing, and resnet18 says what decided it.
    assert set(decided) == {("mnist", "resnet18")}
    assert decided[("mnist", "resnet18")][1].startswith("costliest strategy repeat3: cost model")


def test_fmt_s() -> None:
    assert [progress.fmt_s(s) for s in (7.2, 95, 3725)] == ["7s", "1m35s", "1h02m"]


# --- failure classification ------------------------------------------------------------------

def outcome(tmp_path, code, log="", timed_out=False) -> protocol.ChildOutcome:
    return protocol.child_outcome("run", None, returncode=code, timed_out=timed_out,
                                  wall_s=1.0, log=log)


def test_failures_become_statuses(tmp_path) -> None:
    assert protocol.failure_row(outcome(tmp_path, -9, timed_out=True), 5)["status"] == "timeout"
    killed = protocol.failure_row(outcome(tmp_path, -9), 5)
    assert killed["status"] == "error" and "SIGKILL" in killed["reason"]
    assert "OOM killer" in killed["reason"]
    oom = protocol.failure_row(outcome(tmp_path, 1, "torch.OutOfMemoryError: CUDA out of memory"), 5)
    assert oom["status"] == "oom"
    crash = protocol.failure_row(outcome(tmp_path, 3, "line\nValueError: bad thing\n"), 5)
    assert crash == {"status": "error",
                     "reason": "exit code 3 without a result: ValueError: bad thing"}


# --- the sweep, end to end with the stand-in cell -------------------------------------------

def test_a_sweep_writes_every_file_with_provenance(tmp_path, fake) -> None:
    assert run(tmp_path) == 0
    runs = by_strategy(tmp_path)
    assert set(runs) == {"repeat3", "conv1"}
    row = runs["repeat3"]
    assert row["status"] == "ok" and row["mode"] == "full" and row["profile"] == "smoke"
    assert row["schema_version"] == str(results.SCHEMA_VERSION) and len(row["cell_hash"]) == 16
    for col in ("device", "device_name", "device_id", "host_cpu", "torch_version", "torchvision_version",
                "git_sha", "config_hash", "timestamp", "estimate_s", "epochs", "batch_size",
                "train_size", "precision"):
        assert row[col] != "", col
    assert row["train_size"] == "64" and row["device"] == "cpu"
    hist = rows(tmp_path, "history.csv")
    assert len(hist) == 2 and hist[0]["device_name"] == "Fake CPU"
    assert json.loads(hist[0]["per_class_acc"]) == [0.5] * 10
    assert len(rows(tmp_path, "ops.csv")) == 2
    saved = config.load(str(tmp_path / "config.toml"))
    assert saved.train_size == 64 and saved.strategies == ("repeat3", "conv1")
    env = json.loads((tmp_path / "env.json").read_text())
    assert env["profile"] == "smoke" and env["end_time"] and "--quiet" in env["command_line"]
    assert env["git_sha"] and env["torch_version"]
    # The matmul peaks of this device the cells' MFU would be over (a dict: {} when none yet).
    assert isinstance(env["peaks"], dict)
    assert all(k.startswith(env["device_id"] + "|") for k in env["peaks"])


def test_resume_skips_final_rows_and_force_replaces_them(tmp_path, fake, capsys) -> None:
    assert run(tmp_path) == 0
    first = by_strategy(tmp_path)
    capsys.readouterr()
    assert run(tmp_path) == 0
    assert "0 cells to run, 2 already done" in capsys.readouterr().out
    assert by_strategy(tmp_path) == first
    assert run(tmp_path, "--force", "--only", "strategy=conv1") == 0
    again = rows(tmp_path)
    assert len(again) == 2 and len(rows(tmp_path, "history.csv")) == 2
    assert by_strategy(tmp_path)["repeat3"] == first["repeat3"]


@pytest.mark.parametrize("change", ["cores", "flags", "stepping"])
def test_rows_of_a_machine_differing_only_in_cores_or_isa_are_not_resumed(
        tmp_path, fake, capsys, change) -> None:
    """Two machines that both say "AMD EPYC" -- one with 2 cores and AVX2, one with 64 cores,
    or with AVX-512 BF16, or another stepping -- are different hardware: the second runs every
    cell itself instead of taking the first one's rows as its own."""
    from bench import device

    assert run(tmp_path) == 0
    capsys.readouterr()
    info = dict(device.cpu_info())
    if change == "cores":
        fake.setattr(device, "logical_cores", lambda: 64)
    elif change == "flags":
        fake.setattr(device, "speed_flags", lambda: ["avx2", "avx512f", "avx512_bf16"])
    else:
        info["stepping"] = str(int(info.get("stepping", "0") or 0) + 1)
        fake.setattr(device, "cpu_info", lambda: info)
    fake.setattr(identity, "_DEVICES", {})
    assert run(tmp_path) == 0
    assert "2 cells to run, 0 already done" in capsys.readouterr().out
    ids = {r["device_id"] for r in rows(tmp_path)}
    assert len(ids) == 2 and len(rows(tmp_path)) == 4


def test_progress_relays_the_childs_lines_and_quiet_does_not(tmp_path, fake, capsys) -> None:
    assert run(tmp_path / "a", quiet=False) == 0
    captured = capsys.readouterr()
    assert "    epoch 1/1 fake mnist/resnet18/repeat3/seed0" in captured.out
    assert "cell 2/2: mnist/resnet18/conv1/seed0" in captured.err  # the bar names the cell
    assert "1 ok" not in captured.out and "2 ok" in captured.out  # the summary table
    assert run(tmp_path / "b") == 0
    out = capsys.readouterr().out
    assert "epoch 1/1 fake" not in out and "start cell" not in out
    assert "[1/2] mnist/resnet18/repeat3/seed0: ok (full)" in out


def test_a_changed_recipe_is_a_new_cell(tmp_path, fake) -> None:
    assert run(tmp_path, "--only", "strategy=conv1") == 0
    assert run(tmp_path, "--only", "strategy=conv1", overrides=["lr=0.01"]) == 0
    assert len(rows(tmp_path)) == 2


@pytest.mark.parametrize("executor", EXECUTORS)
def test_crash_kill_and_exception_are_recorded_and_the_sweep_goes_on(tmp_path, fake,
                                                                     executor) -> None:
    fake.setenv("ADAPTBENCH_FAKE", "resnet18/repeat3=crash;resnet18/conv1=kill;"
                                   "resnet18/sumrgb=raise;resnet18/conv1+pad32=oom")
    grid = ["strategies=repeat3,conv1,sumrgb,conv1+pad32,pad32"]
    assert run(tmp_path, overrides=grid, executor=executor) == 0
    got = by_strategy(tmp_path)
    assert {r["executor"] for r in got.values()} == {executor}
    assert got["repeat3"]["status"] == "error" and "exit code 3" in got["repeat3"]["reason"]
    assert "Segmentation fault" in got["repeat3"]["reason"]
    assert got["conv1"]["status"] == "error" and "SIGKILL" in got["conv1"]["reason"]
    assert got["sumrgb"]["status"] == "error"
    assert got["sumrgb"]["reason"] == "RuntimeError: boom from the stand-in"
    assert got["conv1+pad32"]["status"] == "oom"
    assert got["pad32"]["status"] == "ok"
    assert len(list((tmp_path / "logs").glob("*.log"))) == 2  # the two that left no result
    # error rows are retried on a rerun; the oom and ok rows are final.
    fake.delenv("ADAPTBENCH_FAKE")
    assert run(tmp_path, overrides=grid, executor=executor) == 0
    got = by_strategy(tmp_path)
    assert [got[s]["status"] for s in ("repeat3", "conv1", "sumrgb", "conv1+pad32", "pad32")
            ] == ["ok", "ok", "ok", "oom", "ok"]


@pytest.mark.parametrize("executor", EXECUTORS)
def test_a_hung_cell_times_out(tmp_path, fake, executor) -> None:
    fake.setenv("ADAPTBENCH_FAKE", "resnet18/repeat3=hang")
    t0 = time.monotonic()
    assert run(tmp_path, overrides=["cell_timeout_s=3"], executor=executor) == 0
    assert time.monotonic() - t0 < 40
    got = by_strategy(tmp_path)
    assert got["repeat3"]["status"] == "timeout" and "cell_timeout_s=3" in got["repeat3"]["reason"]
    assert got["conv1"]["status"] == "ok"


def test_over_budget_cells_run_measure_only(tmp_path, fake) -> None:
    # resize224 is far beyond a 1 s budget by the cost model; repeat3 is close enough to be
    # timed by the stand-in's estimate_cell_s, which says 1000 s.
    fake.setenv("ADAPTBENCH_FAKE_ESTIMATE", "1000")
    assert run(tmp_path, overrides=["strategies=repeat3,resize224", "cell_budget_s=20"]) == 0
    got = by_strategy(tmp_path)
    for s in ("repeat3", "resize224"):
        assert got[s]["mode"] == "measure-only" and got[s]["test_acc"] == ""
        assert float(got[s]["estimate_s"]) > 20
    assert float(got["repeat3"]["estimate_s"]) >= 1000  # the timed estimate was used
    # A bigger budget trains the cell for real on the next run; the old row is replaced.
    fake.setenv("ADAPTBENCH_FAKE_ESTIMATE", "1")
    assert run(tmp_path, overrides=["strategies=repeat3", "cell_budget_s=50"]) == 0
    got = by_strategy(tmp_path)
    assert got["repeat3"]["mode"] == "full" and len(rows(tmp_path)) == 2


# --- one plan: what `plan --json` prints is what `run` does ---------------------------------

PLAN_GRID = ["models=resnet18,vgg16", "strategies=repeat3,conv1,resize224", "cell_budget_s=20"]


def plan_json(tmp_path: Path, capsys, executor: str | None = None) -> dict:
    capsys.readouterr()
    assert run(tmp_path, "--json", overrides=PLAN_GRID, executor=executor, command="plan",
               quiet=False) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
@pytest.mark.parametrize("executor", EXECUTORS)
def test_run_executes_exactly_the_plan_that_plan_json_prints(tmp_path, fake, capsys,
                                                              executor) -> None:
    """Every kind of planned cell: done before (skipped), timed near the budget and kept full,
    timed and over budget (measure-only), beyond the budget by the cost model (measure-only,
    never timed), incompatible (recorded by the sweep). The timings are the stand-in's
    estimate_cell_s, run by the executor for plan and run alike."""
    fake.setenv("ADAPTBENCH_FAKE_ESTIMATE", "resnet18/conv1=1000;*=1")
    assert run(tmp_path, "--only", "strategy=repeat3,model=resnet18", overrides=PLAN_GRID,
               executor=executor) == 0
    done_before = rows(tmp_path)
    doc = plan_json(tmp_path, capsys, executor)
    assert doc["profile"] == "smoke" and doc["device"] == "cpu" and doc["executor"] == executor
    cells = doc["cells"]
    assert len(cells) == 6 and doc["cells_to_run"] == 5
    for c in cells:
        assert {"dataset", "model", "strategy", "seed", "cell_hash", "mode", "estimate_s",
                "done"} <= set(c)
    by = {(c["model"], c["strategy"]): c for c in cells}
    assert by[("resnet18", "repeat3")]["done"] and not by[("resnet18", "conv1")]["done"]
    assert by[("resnet18", "conv1")]["mode"] == "measure-only"
    assert by[("resnet18", "conv1")]["estimate_source"] == "timed"
    assert by[("vgg16", "repeat3")]["incompatible"]
    assert {c["mode"] for c in cells} == {"full", "measure-only"}

    capsys.readouterr()
    assert run(tmp_path, overrides=PLAN_GRID, executor=executor) == 0
    assert "5 cells to run, 1 already done" in capsys.readouterr().out
    got = rows(tmp_path)
    assert {(r["cell_hash"], r["mode"]) for r in got} == {(c["cell_hash"], c["mode"])
                                                          for c in cells}
    assert len(got) == 6 and done_before[0] in got  # the done cell's row untouched
    # The estimate on each new row is the plan's (rows round to 0.1 s). A done cell is not
    # timed again by the plan, so its old row keeps the estimate it ran with.
    est = {c["cell_hash"]: c["estimate_s"] for c in cells if not c["done"]}
    new = [r for r in got if r["cell_hash"] in est]
    assert len(new) == 5
    assert all(abs(float(r["estimate_s"]) - est[r["cell_hash"]]) <= 0.05 for r in new), [
        (r["strategy"], r["estimate_s"], est[r["cell_hash"]]) for r in new]
    assert {r["executor"] for r in got if r["status"] == "incompatible"} == {"none"}
    # Nothing is left to plan.
    assert plan_json(tmp_path, capsys, executor)["cells_to_run"] == 0


def test_plan_json_is_the_only_thing_on_stdout_and_fast_never_times(tmp_path, fake,
                                                                    capsys) -> None:
    fake.setenv("ADAPTBENCH_FAKE_ESTIMATE", "1000")
    capsys.readouterr()
    assert run(tmp_path, "--json", "--fast", overrides=PLAN_GRID, command="plan",
               quiet=False) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {c["estimate_source"] for c in doc["cells"]} == {"cost-model"}
    assert not tmp_path.exists() or not list(tmp_path.iterdir())  # a plan writes nothing


def test_a_run_prints_its_sweep_efficiency(tmp_path, fake, capsys) -> None:
    capsys.readouterr()
    assert run(tmp_path) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if "sweep efficiency" in x]
    # The stand-in's two rows say 1 epoch x 0.1 s each.
    assert len(line) == 1 and "0.2 s training" in line[0] and "(warm executor)" in line[0]


def test_shards_write_their_own_files(tmp_path, fake) -> None:
    assert run(tmp_path, "--shard", "1/2") == 0
    assert run(tmp_path, "--shard", "2/2") == 0
    names = sorted(p.name for p in tmp_path.glob("runs*.csv"))
    assert names == ["runs.shard-1-of-2.csv", "runs.shard-2-of-2.csv"]
    assert len(results.read_dir(tmp_path)) == 2
    assert (tmp_path / "env.shard-1-of-2.json").is_file()


def _snapshot(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.is_file()
            and not p.name.endswith(".lock")}


def test_a_busy_results_directory_is_refused_and_untouched(tmp_path, fake, capsys) -> None:
    assert run(tmp_path) == 0
    before = _snapshot(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from bench.results import DirLock; "
         "DirLock(sys.argv[1]).acquire('the other run'); print('locked', flush=True); "
         "time.sleep(60)", str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert run(tmp_path, "--force") == 2
        err = capsys.readouterr().err
        assert f"pid {holder.pid}" in err and "the other run" in err
    finally:
        holder.kill()
        holder.wait()
    assert _snapshot(tmp_path) == before


def test_a_corrupt_runs_file_is_refused_and_untouched(tmp_path, fake, capsys) -> None:
    (tmp_path / "runs.csv").write_text("cell_hash,status\nabc,ok\n")
    before = _snapshot(tmp_path)
    assert run(tmp_path) == 2
    assert "hand" in capsys.readouterr().err
    assert _snapshot(tmp_path) == before


def test_an_unwritable_results_directory_is_refused(tmp_path, fake, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert run(blocker / "sub") == 2
    assert "cannot be created" in capsys.readouterr().err


def test_ddp_without_torchrun_is_refused(tmp_path, fake, capsys) -> None:
    assert run(tmp_path, "--ddp") == 2
    err = capsys.readouterr().err
    assert "WORLD_SIZE is unset" in err and "torchrun" in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir())


# The sweep under torchrun (ranks pulling cells, --ddp) is tests/test_executors_ddp.py.


@pytest.mark.slow
def test_one_real_cell_end_to_end(tmp_path, monkeypatch) -> None:
    """The real engine in a child process: a tiny resnet18 cell on CPU."""
    monkeypatch.delenv("ADAPTBENCH_CELL_IMPL", raising=False)
    code = run(tmp_path, "--only", "strategy=repeat3",
               overrides=["train_size=128", "test_size=64", "batch_size=32", "warmup_steps=1",
                          "window_steps=1", "profile_steps=2", "peak_tflops=1.0"])
    assert code == 0
    (row,) = rows(tmp_path)
    assert row["status"] == "ok", row["reason"]
    assert float(row["test_acc"]) >= 0 and float(row["train_img_s"]) > 0
    assert row["torch_version"] and row["device_name"] and row["host_cpu"]
    assert len(rows(tmp_path, "history.csv")) == 1
    assert (tmp_path / "ops.csv").is_file()  # the profiler's rows; their content is measure's


@pytest.mark.slow
def test_auto_precision_is_measured_once_and_every_row_trains_with_the_choice(
        tmp_path, monkeypatch, capsys) -> None:
    """precision / channels_last "auto" on CPU: timed before the plan, saved beside the rows,
    the rows trained with it, and a rerun of the directory reuses it (bench.engine.autotune)."""
    monkeypatch.delenv("ADAPTBENCH_CELL_IMPL", raising=False)
    overrides = ["train_size=64", "test_size=32", "batch_size=16", "warmup_steps=1",
                 "window_steps=1", "profile_steps=0", "peak_tflops=1.0", "precision=auto",
                 "channels_last=auto", "models=resnet18"]
    assert run(tmp_path, overrides=overrides, quiet=False) == 0
    (choice,) = (e["choice"] for e in json.loads((tmp_path / "auto-choices.json").read_text())
                 .values())
    precision, layout = choice.split("/")
    found = rows(tmp_path)
    assert len(found) == 2
    for row in found:
        assert row["status"] == "ok", row["reason"]
        assert (row["precision"], row["channels_last"]) == (
            precision, str(layout == "channels_last").lower())
    assert "timing fp32 NCHW" in capsys.readouterr().out
    # The probe happens before the sweep's start_time: env.json says how long it took.
    assert json.loads((tmp_path / "env.json").read_text())["auto_probe_s"] > 0
    assert run(tmp_path, "--force", overrides=overrides, quiet=False) == 0
    assert "measured earlier" in capsys.readouterr().out


def test_a_users_run_goes_to_runs_not_to_the_published_results() -> None:
    """`make bench` / `bench run` write a git-ignored runs/<profile>/: the published results/
    (another machine's rows) are neither resumed from nor rewritten unless named."""

    prep = sweep.prepare(sweep.SweepOptions(profile="smoke", device="cpu"))
    assert prep.results_dir == Path("runs") / "smoke"
    ignored = subprocess.run(["git", "check-ignore", "-q", "runs/smoke/runs.csv"],
                             cwd=sweep.REPO_ROOT)
    assert ignored.returncode == 0, "runs/ must be git-ignored"
    explicit = sweep.prepare(sweep.SweepOptions(profile="smoke", device="cpu",
                                                results_dir="results/cpu"))
    assert explicit.results_dir == Path("results") / "cpu"


def test_the_warm_worker_starts_before_the_sweep_imports_torch(tmp_path, fake) -> None:
    """prepare() imports torch (the strategies validate the grid): the worker is already
    importing its own by then, and that one worker runs the cells."""
    from bench.executors import warm

    started: list[str] = []
    real_start, real_prepare = warm.WarmExecutor._start, sweep.prepare

    def start(self):
        started.append("worker")
        return real_start(self)

    def prepare(opts, dist=None):
        started.append("prepare")
        return real_prepare(opts, dist)

    fake.setattr(warm.WarmExecutor, "_start", start)
    fake.setattr(sweep, "prepare", prepare)
    assert run(tmp_path, executor="warm") == 0
    assert started == ["worker", "prepare"], started
    assert {r["status"] for r in rows(tmp_path)} == {"ok"} and len(rows(tmp_path)) == 2
    started.clear()
    assert run(tmp_path / "p", executor="process") == 0  # nothing to start early
    assert started == ["prepare"]
