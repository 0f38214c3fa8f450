"""Packing (``pack = N``, :mod:`bench.executors.pack`): N cells at once on one device, tested on
CPU with the same mechanism as on a GPU -- N warm workers, each pulling the next cell, here
each on cores/N threads.

The sweep-level tests run the stand-in cell of ``tests/standins.py`` (no torch in the
cell), which stamps when it started and ended: two cells overlap, a packed row records its
``concurrency``, a worker killed mid-cell costs its own cell only. One slow test runs real cells
twice, alone and packed, under ``deterministic = true``: the same accuracy and loss, bit for bit.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import standins

from bench import config, results
from bench.config import Cell, Config, ConfigError
from bench.executors import pack

CELL_IMPL = standins.IMPL
GRID = ["datasets=mnist", "models=resnet18", "seeds=0", "train_size=64", "test_size=32",
        "cell_timeout_s=60"]


def sweep(tmp_path: Path, *sets: str, executor: str = "warm") -> int:
    from bench.__main__ import main

    argv = ["run", "--profile", "smoke", "--results-dir", str(tmp_path / "out"), "--device",
            "cpu", "--quiet", "--executor", executor]
    for item in [*GRID, *sets]:
        argv += ["--set", item]
    return main(argv)


@pytest.fixture
def stamps(tmp_path, monkeypatch) -> Path:
    """The stand-in cell, stamping into the returned directory."""
    monkeypatch.setenv("ADAPTBENCH_CELL_IMPL", CELL_IMPL)
    monkeypatch.delenv("ADAPTBENCH_FAKE", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(pack, "cores", lambda: 2)  # the split is the same on any machine
    out = tmp_path / "stamps"
    out.mkdir()
    monkeypatch.setenv("ADAPTBENCH_FAKE_STAMPS", str(out))
    return out


def _stamp(d: Path, strategy: str) -> dict:
    return json.loads((d / f"{strategy}.json").read_text())


def _rows(tmp_path: Path) -> dict[str, dict]:
    return {r["strategy"]: r for r in results.read_csv(tmp_path / "out" / "runs.csv", "runs")}


# --- sweeps of the stand-in cell -----------------------------------------------------------


@pytest.mark.parametrize("executor", ["warm", "process"])
def test_two_packed_cells_run_at_once_and_their_rows_say_so(tmp_path, stamps, monkeypatch,
                                                            capsys, executor) -> None:
    # Each cell waits for the other to start: one after the other, the first would wait 60 s.
    monkeypatch.setenv("ADAPTBENCH_FAKE",
                       "resnet18/repeat3=meet:conv1;resnet18/conv1=meet:repeat3")
    t0 = time.time()
    assert sweep(tmp_path, "strategies=repeat3,conv1", "pack=2", executor=executor) == 0
    out = capsys.readouterr().out
    assert "pack: 2 cells at once on cpu (cores split between the workers)" in out
    assert "123.5 img/s (packed ×2)" in out  # the stand-in's rate, flagged: not a solo figure
    assert "2 of these cells shared the device with others (concurrency > 1)" in out
    a, b = _stamp(stamps, "repeat3"), _stamp(stamps, "conv1")
    assert a["pid"] != b["pid"]  # two workers
    assert max(a["start"], b["start"]) < min(a["end"], b["end"])  # at once
    assert max(a["end"], b["end"]) - t0 < 50  # neither waited out the 60 s for the other
    assert a["omp_threads"] == b["omp_threads"] == "1"  # 2 cores / 2 workers
    rows = _rows(tmp_path)
    assert {r["status"] for r in rows.values()} == {"ok"}
    assert {r["concurrency"] for r in rows.values()} == {"2"}
    assert {r["executor"] for r in rows.values()} == {executor}


def test_without_pack_the_cells_run_one_after_the_other(tmp_path, stamps, monkeypatch) -> None:
    monkeypatch.setenv("ADAPTBENCH_FAKE", "resnet18/repeat3=sleep:1;resnet18/conv1=sleep:1")
    assert sweep(tmp_path, "strategies=repeat3,conv1") == 0
    a, b = _stamp(stamps, "repeat3"), _stamp(stamps, "conv1")
    assert a["end"] <= b["start"] and a["pid"] == b["pid"]  # one warm worker, in plan order
    assert a["omp_threads"] == ""  # torch's default: the sweep splits nothing
    assert {r["concurrency"] for r in _rows(tmp_path).values()} == {"1"}


def test_a_killed_packed_worker_costs_its_own_cell_only(tmp_path, stamps, monkeypatch) -> None:
    """conv1 kills its worker mid-cell while repeat3 trains on the other slot; repeat3's row is
    written when it finishes, and pad32 runs on a fresh worker in the freed slot (repeat3 waits
    for pad32 to finish: the order does not hang on how fast a loaded machine starts it)."""
    monkeypatch.setenv("ADAPTBENCH_FAKE",
                       "resnet18/repeat3=waitfor:pad32;resnet18/conv1=kill;resnet18/pad32=sleep:0.2")
    assert sweep(tmp_path, "strategies=repeat3,conv1,pad32", "pack=2") == 0
    rows = _rows(tmp_path)
    assert rows["conv1"]["status"] == "error" and "SIGKILL" in rows["conv1"]["reason"]
    assert rows["repeat3"]["status"] == rows["pad32"]["status"] == "ok"
    # In order of completion: the killed cell first, pad32 beside repeat3, repeat3 last.
    got = [r["strategy"] for r in results.read_csv(tmp_path / "out" / "runs.csv", "runs")]
    assert got == ["conv1", "pad32", "repeat3"]
    assert _stamp(stamps, "pad32")["start"] < _stamp(stamps, "repeat3")["end"]
    hist = {h["strategy"] for h in results.read_csv(tmp_path / "out" / "history.csv", "history")}
    assert hist == {"repeat3", "pad32"}


def test_pack_auto_on_cpu_runs_one_cell_at_a_time(tmp_path, stamps, capsys) -> None:
    assert sweep(tmp_path, "strategies=repeat3,conv1", "pack=auto") == 0
    assert {r["concurrency"] for r in _rows(tmp_path).values()} == {"1"}
    assert "pack=auto: one cell at a time (pack=auto packs CUDA devices only)" in \
        capsys.readouterr().out


@pytest.mark.parametrize("value, shown", [("0", "0"), ("-1", "-1"), ("x", "'x'"),
                                          ("1.5", "'1.5'"), ("true", "'true'")])
def test_a_bad_pack_is_refused_naming_the_valid_values(value, shown) -> None:
    with pytest.raises(ConfigError) as err:
        config.load("smoke", [f"pack={value}"])
    assert str(err.value) == (f"bad value {shown} for 'pack'; valid: a positive integer (cells "
                              "sharing one device at once) or auto")


def test_packing_ddp_cells_is_refused_before_anything_runs(tmp_path, capsys) -> None:
    """The plan of a --ddp run goes through the same checks as the run (without torchrun)."""
    from bench.__main__ import main

    code = main(["plan", "--profile", "smoke", "--ddp", "2", "--fast", "--results-dir",
                 str(tmp_path / "out"), "--device", "cpu", "--set", "pack=2"])
    assert code == 2
    assert "pack=2 runs several cells at once on one device" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_pack_auto_survives_the_saved_config() -> None:
    """The cell's process reads the sweep's saved config.toml."""
    cfg = config.load("smoke", ["pack=auto"])
    assert cfg.pack == "auto" and 'pack = "auto"' in config.to_toml(cfg)
    assert config.load("smoke", ["pack=3"]).pack == 3


# --- sizing and threads ------------------------------------------------------------------


def test_auto_slots_fit_the_largest_measured_cell_in_the_free_memory() -> None:
    # (0.9 x 140,000 MiB) // (2,000 x 1.25 + 1,024 = 3,524 MiB) = 35 workers, capped at 8;
    # by 16 cores, by memory at 40,000 MiB a cell.
    assert pack.auto_slots(140_000, [300.0, 2000.0], 16)[0] == pack.MAX_AUTO
    assert pack.auto_slots(140_000, [300.0, 2000.0], 3)[0] == 3
    assert pack.auto_slots(140_000, [40_000.0], 16)[0] == 2  # 126,000 // 51,024
    assert pack.auto_slots(20_000, [40_000.0], 16)[0] == 1  # never below one
    n, why = pack.auto_slots(140_000, [300.0, math.nan], 16)
    assert n == 1 and "no measured peak_mem_mib" in why


def test_measured_memory_comes_from_ok_rows_of_the_same_device_any_seed() -> None:
    rows = [
        {"status": "ok", "device_id": "gpu A", "dataset": "mnist", "model": "resnet18",
         "strategy": "pad32", "seed": "0", "peak_mem_mib": "310.5"},
        {"status": "ok", "device_id": "gpu A", "dataset": "mnist", "model": "resnet18",
         "strategy": "pad32", "seed": "1", "peak_mem_mib": "312.0"},
        {"status": "ok", "device_id": "gpu B", "dataset": "mnist", "model": "vgg16",
         "strategy": "pad32", "seed": "0", "peak_mem_mib": "999"},
        {"status": "oom", "device_id": "gpu A", "dataset": "mnist", "model": "vgg16",
         "strategy": "resize224", "seed": "0", "peak_mem_mib": "80000"},
    ]
    cells = [Cell("mnist", "resnet18", "pad32", 2), Cell("mnist", "vgg16", "pad32", 0)]
    got = pack.measured_mib(rows, cells, "gpu A")
    assert got[0] == 312.0 and math.isnan(got[1])


def test_a_packed_cpu_worker_gets_its_share_of_the_cores(monkeypatch) -> None:
    monkeypatch.setattr(pack, "cores", lambda: 8)
    assert pack.slot_env({}, "cpu", Config(), 4)["OMP_NUM_THREADS"] == "2"
    assert pack.slot_env({}, "cpu", Config(), 16)["OMP_NUM_THREADS"] == "1"
    # What the sweep already divided (torchrun's ranks, the user) is divided again.
    assert pack.slot_env({"OMP_NUM_THREADS": "4"}, "cpu", Config(), 2)["OMP_NUM_THREADS"] == "2"
    assert "OMP_NUM_THREADS" not in pack.slot_env({}, "cuda:0", Config(), 4)
    assert "OMP_NUM_THREADS" not in pack.slot_env({}, "cpu", Config(), 1)


# --- real cells: packing changes no arithmetic ------------------------------------------


@pytest.mark.slow
def test_a_packed_cell_trains_bit_for_bit_as_the_solo_one_under_deterministic(
        tmp_path, monkeypatch) -> None:
    """Two resnet18 smoke cells, alone (one worker, cores/2 threads set with num_threads) and
    packed two at once (two workers, cores/2 threads each from the split): the same test
    accuracy, final loss and per-epoch history, to the last bit."""
    from bench.__main__ import main

    monkeypatch.delenv("ADAPTBENCH_CELL_IMPL", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    threads = max(1, pack.cores() // 2)
    common = ["models=resnet18", "strategies=repeat3,resize32", "seeds=0", "train_size=128",
              "test_size=64", "batch_size=32", "warmup_steps=1", "window_steps=1",
              "profile_steps=0", "contended_retries=0", "peak_tflops=1.0", "deterministic=true"]

    def run(name: str, *sets: str) -> dict[str, dict]:
        argv = ["run", "--profile", "smoke", "--results-dir", str(tmp_path / name), "--device",
                "cpu", "--quiet"]
        for item in [*common, *sets]:
            argv += ["--set", item]
        assert main(argv) == 0
        got = {r["strategy"]: r for r in results.read_csv(tmp_path / name / "runs.csv", "runs")}
        assert {r["status"] for r in got.values()} == {"ok"}, [r["reason"] for r in got.values()]
        return got

    solo = run("solo", f"num_threads={threads}")
    packed = run("packed", "pack=2")
    for strategy in ("repeat3", "resize32"):
        s, p = solo[strategy], packed[strategy]
        assert s["concurrency"] == "1" and p["concurrency"] == "2"
        assert s["threads"] == p["threads"] == str(threads)
        assert s["test_acc"] == p["test_acc"] and s["final_train_loss"] == p["final_train_loss"]

    def history(name: str) -> list[tuple]:
        return sorted((h["strategy"], h["epoch"], h["train_loss"], h["val_acc"] if "val_acc" in h
                       else h["test_acc"])
                      for h in results.read_csv(tmp_path / name / "history.csv", "history"))

    assert history("solo") == history("packed")
