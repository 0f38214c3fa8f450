"""The ``ray`` and ``submitit`` executors on this machine: a local Ray instance (one per module,
its start costs seconds) and submitit's ``local`` cluster, with the stand-in cell of
``tests/standins.py``. Rows are written by the sweep as each cell's result comes back;
a lost Ray actor costs one retry; bad input (engine missing, cluster unreachable) is exit 2
with nothing written. Not tested here: a real multi-node Ray cluster or Slurm.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import standins  # tests/ is on sys.path under pytest

from bench import results

# Built here, with submitit importable: a test below hides submitit to check the refusal, and a
# CellTask class first built then would not be a Checkpointable for the tests after it.
from bench.executors import slurm  # noqa: F401

CELL_IMPL = standins.IMPL
GRID = ["datasets=mnist", "models=resnet18", "seeds=0", "train_size=64", "test_size=32",
        "cell_timeout_s=60"]


def sweep(tmp_path: Path, executor: str, *sets: str) -> int:
    from bench.__main__ import main

    argv = ["run", "--profile", "smoke", "--results-dir", str(tmp_path), "--device", "cpu",
            "--quiet", "--executor", executor]
    for item in [*GRID, *sets]:
        argv += ["--set", item]
    return main(argv)


@pytest.fixture
def stand_in(monkeypatch):
    monkeypatch.setenv("ADAPTBENCH_CELL_IMPL", CELL_IMPL)
    for name in standins.HOOKS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_runs_each_cell_on_the_first_free_actor_and_the_sweep_writes_its_row(
        tmp_path, stand_in, ray_instance) -> None:
    # Two actors (pack=2 on the 2 CPUs); repeat3 is slow, so conv1 and pad32 both finish on
    # the other actor before it: rows arrive, and are written, in order of completion.
    stand_in.setenv("ADAPTBENCH_FAKE", "resnet18/repeat3=sleep:3")
    assert sweep(tmp_path, "ray", "strategies=repeat3,conv1,pad32", "pack=2") == 0
    got = results.read_csv(tmp_path / "runs.csv", "runs")
    assert [r["strategy"] for r in got] == ["conv1", "pad32", "repeat3"]
    assert {r["status"] for r in got} == {"ok"} and {r["executor"] for r in got} == {"ray"}
    by = {r["strategy"]: r for r in got}
    # repeat3 and conv1 started together on the node's two slots; pad32 ran beside repeat3.
    assert by["repeat3"]["concurrency"] == by["conv1"]["concurrency"] == "2"
    assert {h["strategy"] for h in results.read_csv(tmp_path / "history.csv", "history")} == \
        {"repeat3", "conv1", "pad32"}


@pytest.mark.slow
def test_the_ray_actors_serve_request_after_request(tmp_path, stand_in, ray_instance) -> None:
    """The plan's timer asks single requests before the sweep's run_many: the same actors
    answer all of them (a second call once found no free actor and ran nothing)."""
    from bench import config
    from bench.executors import make_executor
    from bench.executors.protocol import child_env

    cfg = config.load("smoke", [*GRID, "executor=ray"])
    (tmp_path / "config.toml").write_text(config.to_toml(cfg))
    spec = {"config_path": str(tmp_path / "config.toml"), "device": "cpu",
            "cell": {"dataset": "mnist", "model": "resnet18", "strategy": "conv1", "seed": 0},
            "measure_only": False, "out_dir": None}
    with make_executor("ray", tmp_path, child_env("cpu", 1), cfg) as ex:
        first = ex.request("estimate", spec, 60)
        second = ex.request("run", spec, 60)
        third = ex.request("run", spec, 60)
    assert first.payload == {"estimate_s": 1.0}
    assert second.payload["row"]["status"] == third.payload["row"]["status"] == "ok"
    assert ex.actors_started == 1 and ray_instance.is_initialized()


@pytest.mark.slow
def test_a_ray_cell_prints_its_epoch_lines_through_the_driver_while_it_runs(
        tmp_path, stand_in, ray_instance) -> None:
    """The warm executor relays a cell's epoch lines as they come; on Ray they once stayed in
    the actor. Now each arrives within a poll (~1 s), before the cell's result."""
    import time

    from bench import config
    from bench.executors import make_executor
    from bench.executors.protocol import Job, child_env

    stand_in.setenv("ADAPTBENCH_FAKE", "resnet18/repeat3=sleep:4")
    cfg = config.load("smoke", [*GRID, "executor=ray"])
    (tmp_path / "config.toml").write_text(config.to_toml(cfg))
    spec = {"config_path": str(tmp_path / "config.toml"), "device": "cpu",
            "cell": {"dataset": "mnist", "model": "resnet18", "strategy": "repeat3", "seed": 0},
            "measure_only": False, "out_dir": None}
    seen: list[tuple[float, str]] = []
    done: list[float] = []
    with make_executor("ray", tmp_path, child_env("cpu", 1), cfg) as ex:
        ex.run_many([Job(None, "run", spec, 60, lambda line: seen.append((time.monotonic(),
                                                                           line)))],
                    lambda _job, outcome: done.append(time.monotonic()))
    assert [line.strip() for _, line in seen] == ["epoch 1/1 fake mnist/resnet18/repeat3/seed0"]
    assert done and done[0] - seen[0][0] > 2.0  # relayed while the cell still slept


@pytest.mark.slow
def test_a_cell_whose_ray_actor_dies_is_retried_once_then_recorded(tmp_path, stand_in,
                                                                   ray_instance) -> None:
    marker = tmp_path / "killed-once"
    stand_in.setenv("ADAPTBENCH_FAKE",
                    f"resnet18/conv1=killparent:{marker};resnet18/pad32=killparent")
    assert sweep(tmp_path / "out", "ray", "strategies=conv1,pad32,repeat3") == 0
    by = {r["strategy"]: r for r in results.read_csv(tmp_path / "out" / "runs.csv", "runs")}
    assert marker.exists()  # conv1 really killed its actor the first time
    assert by["conv1"]["status"] == "ok" and by["repeat3"]["status"] == "ok"
    assert by["pad32"]["status"] == "error" and "lost twice" in by["pad32"]["reason"]
    assert len(by) == 3 and by["conv1"]["concurrency"] == "1"


def test_ray_missing_is_refused_before_anything_is_written(tmp_path, stand_in, capsys) -> None:
    stand_in.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert sweep(tmp_path / "out", "ray", "strategies=conv1") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install '.[ray]'" in err[0]
    assert not (tmp_path / "out").exists()


def test_an_unreachable_ray_address_is_refused_before_any_cell(tmp_path, stand_in,
                                                               capsys) -> None:
    pytest.importorskip("ray")
    stand_in.setenv("ADAPTBENCH_RAY_CONNECT_TIMEOUT_S", "2")
    assert sweep(tmp_path / "out", "ray", "strategies=conv1", "ray_address=127.0.0.1:1") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "127.0.0.1:1" in err[0] and "ray start --head" in err[0]
    assert not (tmp_path / "out").exists()


class _FakeRay:
    """What connect/close ask of Ray: whether it is up, init, shutdown."""

    def __init__(self, up: bool) -> None:
        self.up, self.calls = up, []

    def is_initialized(self) -> bool:
        return self.up

    def init(self, **kwargs) -> None:
        self.calls.append(("init", kwargs.get("address")))
        self.up = True

    def shutdown(self) -> None:
        self.calls.append(("shutdown", None))
        self.up = False


@pytest.mark.parametrize("connected", [False, True])
def test_the_sweep_shuts_down_the_ray_instance_it_started_and_no_other(monkeypatch, tmp_path,
                                                                       connected) -> None:
    """ray_address="": the executor starts Ray for the sweep and shuts it down when it closes
    (Ray's own processes go with it); a process already connected keeps its connection."""
    from bench import config
    from bench.executors import make_executor, ray_cluster

    fake = _FakeRay(up=connected)
    monkeypatch.setitem(sys.modules, "ray", fake)
    cfg = config.load("smoke", ["executor=ray"])
    ray_cluster.RayExecutor.preflight(cfg)
    assert fake.calls == []  # a local instance waits for the first cell
    ray_cluster.connect(cfg.ray_address)  # what the first cell does
    make_executor("ray", tmp_path, {}, cfg).close()
    assert fake.calls == ([] if connected else [("init", None), ("shutdown", None)])
    assert fake.up is connected


@pytest.mark.slow
def test_submitit_runs_the_cells_as_an_array_and_the_sweep_writes_the_rows(tmp_path,
                                                                           stand_in) -> None:
    pytest.importorskip("submitit")
    assert sweep(tmp_path, "submitit", "strategies=conv1,pad32", "slurm_cluster=local") == 0
    got = {r["strategy"]: r for r in results.read_csv(tmp_path / "runs.csv", "runs")}
    assert set(got) == {"conv1", "pad32"} and {r["status"] for r in got.values()} == {"ok"}
    assert {r["executor"] for r in got.values()} == {"submitit"}
    # submitit's files are under the results directory; no task wrote a row of its own
    assert any((tmp_path / "logs" / "submitit").glob("*_result.pkl"))
    assert sorted(p.name for p in tmp_path.glob("runs*.csv")) == ["runs.csv"]


def test_submitit_missing_is_refused_before_anything_is_written(tmp_path, stand_in,
                                                                capsys) -> None:
    stand_in.setitem(sys.modules, "submitit", None)
    assert sweep(tmp_path / "out", "submitit", "strategies=conv1") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install '.[slurm]'" in err[0]
    assert not (tmp_path / "out").exists()


def test_the_extras_pin_the_versions_the_tests_run() -> None:
    """pyproject's ray and slurm extras, and the dev extra (what `make test` installs), name
    one release each, the one the install hints point to."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib

    extras = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())[
        "project"]["optional-dependencies"]
    assert extras["ray"] == ["ray==2.60.0"] and extras["slurm"] == ["submitit==1.5.4"]
    assert {"ray==2.60.0", "submitit==1.5.4"} <= set(extras["dev"])


def test_a_preempted_submitit_task_requeues_the_same_cell_from_scratch() -> None:
    pytest.importorskip("submitit")
    from submitit.helpers import Checkpointable, DelayedSubmission

    from bench.executors.slurm import CellTask

    task, request = CellTask(), {"command": "run", "spec": {"cell": {"model": "resnet18"}}}
    again = task.checkpoint(request)
    assert isinstance(task, Checkpointable) and isinstance(again, DelayedSubmission)
    assert again.function is task and again.args == (request,) and again.kwargs == {}
