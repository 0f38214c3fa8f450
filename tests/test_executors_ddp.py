"""torchrun: ranks that pull cells from a shared counter, and ``--ddp`` (one cell, every rank).

The two slow tests launch ``python -m torch.distributed.run --standalone --nproc_per_node 2``
on CPU (gloo). The first uses the stand-in cell of tests/standins.py (``ADAPTBENCH_CELL_IMPL``):
one long cell and several short ones; the second trains a real resnet18 cell data-parallel and compares it
with the same cell trained by one process. The rest are the pure pieces, in this process.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import standins  # tests/ is on sys.path under pytest

from bench import identity, results
from bench.__main__ import main
from bench.executors import ddp
from bench.executors.ranks import Dist, longest_first

REPO = Path(__file__).resolve().parent.parent
SLEEPY_IMPL = standins.IMPL
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            "2", "-m", "bench", "run", "--profile", "smoke", "--device", "cpu"]


def _sets(items: list[str]) -> list[str]:
    return [a for item in items for a in ("--set", item)]


# --- pure pieces -----------------------------------------------------------------------------

def test_the_ranks_slices_of_a_step_are_that_steps_batch() -> None:
    """Same per-epoch permutation on every rank, each a contiguous 1/W of every batch: the
    union of the ranks' step s is the single-process step s, image for image."""
    import torch

    from bench.data import batches

    x = torch.arange(40, dtype=torch.uint8).view(40, 1, 1, 1)
    y = torch.arange(40)
    kw = {"mean": 0.0, "std": 1.0, "seed": 3, "epoch": 1}
    whole = [yb for _, yb in batches(x, y, 8, **kw)]
    ranks = [[yb for _, yb in batches(x, y, 8, shard=(r, 2), **kw)] for r in range(2)]
    assert len(whole) == len(ranks[0]) == len(ranks[1]) == 5
    for step, yb in enumerate(whole):
        assert len(ranks[0][step]) == len(ranks[1][step]) == 4
        assert torch.equal(torch.cat([ranks[0][step], ranks[1][step]]), yb)


def test_global_throughput_is_every_ranks_images_over_the_slowest_window() -> None:
    # Two windows; rank 1 is slower in the first one: the group goes at its pace.
    per_rank = [[(1.0, 100.0), (2.0, 100.0)], [(1.25, 100.0), (1.0, 100.0)]]
    got = ddp.global_windows(per_rank)
    assert got["timed_windows"] == 2
    assert got["train_img_s"] == pytest.approx((200 / 1.25 + 200 / 2.0) / 2)


def test_the_row_of_a_ddp_cell_takes_the_worst_rank_and_the_cause() -> None:
    ok = {"status": "ok", "reason": ""}
    assert ddp.merge_statuses([ok, ok]) == {}
    broken = {"status": "error", "reason": "RuntimeError: Connection closed by peer"}
    oom = {"status": "oom", "reason": "out of memory at batch_size=64"}
    assert ddp.merge_statuses([broken, oom]) == {
        "status": "oom", "reason": "rank 1 of 2: out of memory at batch_size=64"}
    assert ddp.merge_statuses([ok, broken])["reason"].startswith("rank 1 of 2: RuntimeError")
    # A rank killed (the sweep's reason) explains its peer's broken connection, not vice versa.
    killed = {"status": "error", "reason": "killed by SIGKILL (exit -9)"}
    assert ddp.merge_statuses([broken, killed])["reason"] == (
        "rank 1 of 2: killed by SIGKILL (exit -9)")
    reduced = ddp.reduce_rows([{"peak_mem_mib": 10.0, "final_train_loss": 1.0, "test_acc": 0.5},
                               {"peak_mem_mib": 12.0, "final_train_loss": 2.0, "test_acc": 0.5}])
    assert reduced == {"peak_mem_mib": 12.0, "final_train_loss": 1.5}
    with pytest.raises(RuntimeError, match="different accuracies"):
        ddp.reduce_rows([{"test_acc": 0.5}, {"test_acc": 0.25}])


def test_a_version_3_file_reads_with_world_size_empty(tmp_path) -> None:
    """Rows written before ``world_size`` (schema v3) were each trained by one process."""
    from bench import schema

    old_columns = schema.LEGACY_COLUMNS["runs"][2]
    assert "executor" in old_columns and "world_size" not in old_columns
    old = {c: "" for c in old_columns}
    old.update(schema_version="3", cell_hash="h3", dataset="mnist", model="m", strategy="s",
               seed="0", status="ok", mode="full", executor="warm", device_id="cpu | X")
    (tmp_path / "runs.csv").write_text(results.to_csv_text([old], old_columns))
    (row,) = results.read_csv(tmp_path / "runs.csv", "runs")
    assert row["executor"] == "warm" and row["world_size"] == ""


def test_claims_go_longest_first_and_alone_a_rank_takes_all() -> None:
    @dataclass
    class P:
        name: str
        expected_s: float

    plan = [P("a", 1.0), P("b", 9.0), P("c", 1.0), P("d", 3.0)]
    assert [p.name for p in longest_first(plan)] == ["b", "d", "a", "c"]  # ties: plan order
    assert list(Dist().claim(plan)) == plan


def test_ddp_refuses_a_global_batch_the_ranks_cannot_split(tmp_path, monkeypatch,
                                                          capsys) -> None:
    monkeypatch.setenv("WORLD_SIZE", "3")  # as torchrun would set it; nothing is joined
    monkeypatch.setenv("ADAPTBENCH_CELL_IMPL", SLEEPY_IMPL)  # should anything start a cell
    code = main(["run", "--profile", "smoke", "--results-dir", str(tmp_path / "r"), "--device",
                 "cpu", "--ddp", *_sets(["models=resnet18", "batch_size=32"])])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "batch_size (model resnet18)=32" in err and "multiple of 3, e.g. 30, 33" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("executor", ["ray", "submitit"])
def test_an_engine_executor_under_torchrun_is_refused(tmp_path, monkeypatch, capsys,
                                                      executor) -> None:
    """Every rank would submit the whole grid to Ray or Slurm: refused before anything runs."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("ADAPTBENCH_CELL_IMPL", SLEEPY_IMPL)  # should anything start a cell
    code = main(["run", "--profile", "smoke", "--results-dir", str(tmp_path / "r"), "--device",
                 "cpu", "--executor", executor, *_sets(["models=resnet18"])])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"executor '{executor}'" in err and "one of 2 torchrun ranks" in err
    assert "--executor warm or process" in err
    assert not (tmp_path / "r").exists()


def test_plan_ddp_prints_the_hashes_run_ddp_writes_and_checks_the_batch(tmp_path,
                                                                       capsys) -> None:
    """`plan --ddp N` is the plan of `torchrun --nproc_per_node N ... run --ddp`: the cells'
    hashes are those of N ranks training each cell (device key "| ddp xN"), not one process's."""
    import json

    from bench import config
    from bench.identity import device_key

    argv = ["plan", "--profile", "smoke", "--results-dir", str(tmp_path / "r"), "--device",
            "cpu", "--fast", "--json", *_sets(["models=resnet18", "batch_size=32"])]
    assert main([*argv, "--ddp", "2"]) == 0
    planned = json.loads(capsys.readouterr().out)["cells"]
    cfg = config.load("smoke", ["models=resnet18", "batch_size=32"])
    cells = {c.strategy: c for c in config.cells(cfg)}
    assert planned and all(p["cell_hash"] == identity.cell_hash(cfg, cells[p["strategy"]],
                                                               device_key("cpu", 2))
                           for p in planned)
    assert main(argv) == 0  # one process: other hashes
    single = json.loads(capsys.readouterr().out)["cells"]
    assert {p["cell_hash"] for p in single}.isdisjoint(p["cell_hash"] for p in planned)
    for n, needle in ((3, "multiple of 3"), (1, "N >= 2; got 1")):
        assert main([*argv, "--ddp", str(n)]) == 2
        assert needle in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


# --- torchrun ----------------------------------------------------------------------------------

SHORT = ("conv1", "sumrgb", "native1", "pad32")


@pytest.mark.slow
def test_ranks_pull_cells_so_one_long_cell_does_not_hold_back_the_short_ones(
        tmp_path, monkeypatch) -> None:
    """One cell sleeps 6 s, four others 0.2 s (the cost model expects resize224, 64x the
    FLOPs, to be the longest). A static ``i % 2`` split gives each rank half of the cells; the
    ranks pulling from one counter leave the long cell's rank alone with it while the other
    rank runs every short one. A cell done before (resume) is skipped by both ranks."""
    log = tmp_path / "cells.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ADAPTBENCH_CELL_IMPL": SLEEPY_IMPL,
           "ADAPTBENCH_FAKE_LOG": str(log),
           "ADAPTBENCH_FAKE": "resnet18/resize224=sleep:6;*=sleep:0.2"}
    grid = _sets(["models=resnet18", f"strategies=repeat3,resize224,{','.join(SHORT)}",
                  "train_size=64", "test_size=32"])
    rdir = tmp_path / "r"
    for key in ("ADAPTBENCH_CELL_IMPL", "ADAPTBENCH_FAKE_LOG", "ADAPTBENCH_FAKE"):
        monkeypatch.setenv(key, env[key])
    assert main(["run", "--profile", "smoke", "--device", "cpu", "--quiet", "--results-dir",
                 str(rdir), *grid, "--only", "strategy=repeat3"]) == 0  # done before: resume
    proc = subprocess.run([*TORCHRUN, "--quiet", "--results-dir", str(rdir), *grid], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "5 cells to run, 1 already done" in proc.stdout
    ran = [r["cell"] for r in standins.log_records(log)]
    assert sorted(ran) == sorted(f"mnist/resnet18/{s}/seed0" for s in ("repeat3", "resize224",
                                                                       *SHORT)), ran
    by_rank: dict[str, list[str]] = {}
    for rank, label in re.findall(r"\[rank (\d)/2\] \[\d+/6\] (\S+): ok", proc.stdout):
        by_rank.setdefault(rank, []).append(label.split("/")[2])
    assert sorted(map(sorted, by_rank.values())) == [sorted(SHORT), ["resize224"]], proc.stdout
    assert "merged 5 rows from 2 rank files" in proc.stdout
    assert sorted(p.name for p in rdir.glob("runs*.csv")) == ["runs.csv"]
    rows = results.read_csv(rdir / "runs.csv", "runs")
    assert sorted(r["strategy"] for r in rows) == sorted(["repeat3", "resize224", *SHORT])
    assert {r["world_size"] for r in rows} == {"1"}


# A normalizer-free network (timm's test_nfnet: 192k parameters, no BatchNorm, dropout 0):
# nothing in it depends on how many images one process sees, so DDP must match one process.
DDP_GRID = ["models=timm:test_nfnet", "strategies=repeat3", "train_size=512", "test_size=128",
            "batch_size=32", "epochs=1", "optimizer=adamw", "lr=0.003", "deterministic=true",
            "warmup_steps=1", "window_steps=2", "profile_steps=0", "peak_tflops=1.0",
            "cell_timeout_s=200", "contended_retries=0"]


@pytest.mark.slow
def test_ddp_trains_one_cell_with_both_ranks_like_one_process(tmp_path) -> None:
    """One cell, 512 MNIST images, global batch 32 (16 per rank), 1 epoch = 16 steps, trained
    by 2 gloo ranks, against the same cell trained in this process.

    Same initial weights (same seed; DDP broadcasts rank 0's), the same images in every step
    (the ranks' slices of the one permutation), and the gradient DDP averages over the ranks
    is the mean over the whole batch: the runs differ only in the order floats are summed. So
    the bounds are rounding-sized: the mean training loss within 1e-4 nats and the accuracy
    on 128 test images within one image (measured with this grid on the 2-core EPYC, load
    average 4.4: 1.6752937 vs 1.6752932, and both 0.671875). A rank training the wrong images
    (each all 32, or the same 16) moves the loss by far more.

    BatchNorm would loosen this: each rank normalises its own 16 images, not the 32, and
    evaluates with rank 0's running statistics, so a BN model trains a slightly different
    model (resnet18, 256 images, 8 steps, near chance: loss 1.749 vs 1.712, accuracy 0.133
    vs 0.227; docs/scaling.md). That is why this test uses a model without it."""
    from bench import config
    from bench.config import Cell
    from bench.engine import train

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("ADAPTBENCH_CELL_IMPL", None)
    rdir = tmp_path / "r"
    proc = subprocess.run([*TORCHRUN, "--quiet", "--ddp", "--results-dir", str(rdir),
                           *_sets(DDP_GRID)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    (row,) = results.read_csv(rdir / "runs.csv", "runs")  # one row, written by rank 0
    assert row["status"] == "ok", row["reason"]
    assert row["world_size"] == "2" and row["batch_size"] == "32"
    assert row["device_id"].endswith("| ddp x2")
    assert int(row["timed_windows"]) >= 2 and float(row["train_img_s"]) > 0
    hist = results.read_csv(rdir / "history.csv", "history")
    assert [h["step"] for h in hist] == ["16"]  # 512 / 32 global steps, not 512 / 16

    import torch

    threads = torch.get_num_threads()
    try:  # one thread, as each rank had (OMP_NUM_THREADS=1): like for like, and no contention
        cfg = config.load("smoke", [*DDP_GRID, "num_threads=1"])
        single = train.run_cell(cfg, Cell("mnist", "timm:test_nfnet", "repeat3", 0),
                                device="cpu").row
    finally:
        torch.set_num_threads(threads)
    assert single["status"] == "ok", single["reason"]
    assert abs(float(row["final_train_loss"]) - single["final_train_loss"]) < 1e-4, (
        row["final_train_loss"], single["final_train_loss"])
    assert abs(float(row["test_acc"]) - single["test_acc"]) <= 1 / 128 + 1e-9, (
        row["test_acc"], single["test_acc"])
