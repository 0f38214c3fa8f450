"""The cost model's error on a finished run and the speeds fitted to its rows."""

from __future__ import annotations

import math

import pytest

from bench.tools import calibrate


def row(**kw) -> dict:
    base = {"status": "ok", "mode": "full", "device": "cpu", "precision": "fp32", "epochs": "1",
            "batch_size": "32", "test_count": "1000"}
    return {**base, **{k: str(v) for k, v in kw.items()}}


def test_the_error_compares_wall_with_estimate_on_full_ok_rows_only() -> None:
    rows = [row(estimate_s=10, wall_s=20), row(estimate_s=10, wall_s=10),
            row(estimate_s=10, wall_s=5),
            row(estimate_s=100, wall_s=5, mode="measure-only"),  # its estimate is the full cell's
            row(estimate_s=0, wall_s=0, status="incompatible")]
    e = calibrate.estimate_errors(rows)
    assert (e.n, e.median) == (3, 1.0)
    assert (e.estimated_s, e.measured_s) == (30.0, 35.0)
    assert "3 cells took x1.00 their estimate" in e.line()
    assert "no finished" in calibrate.estimate_errors([]).line()


def test_packed_rows_are_neither_compared_with_their_estimate_nor_fitted() -> None:
    """A packed cell shared its device: its wall time and throughput are not one cell's."""
    rows = [row(estimate_s=10, wall_s=10, concurrency=1),
            row(estimate_s=10, wall_s=10),  # older files: no column, ran solo
            row(estimate_s=10, wall_s=40, concurrency=4)]
    e = calibrate.estimate_errors(rows)
    assert (e.n, e.median, e.measured_s) == (2, 1.0, 20.0)
    fitted = [row(gflops_fwd_per_img=0.3, train_img_s=100, epoch_s=20, wall_s=30,
                  estimate_s=1, concurrency=c) for c in (1, 1, 2)]
    (f,) = calibrate.fit(fitted)
    assert f.n == 2


def test_a_cpu_fit_recovers_the_rate_and_overhead_that_made_the_rows() -> None:
    flop_s, per_img = 0.1e12, 4e-3  # the truth the synthetic rows are made from
    rows = []
    for gf in (0.07, 0.3, 0.9, 1.9):
        img_s = 1 / (3 * gf * 1e9 / flop_s + per_img)
        rows.append(row(gflops_fwd_per_img=gf, train_img_s=img_s, epoch_s=2000 / img_s,
                        wall_s=2000 / img_s + 7 + 1000 * (gf * 1e9 / flop_s + per_img / 3),
                        estimate_s=1))
    (f,) = calibrate.fit(rows)
    assert f.tflops == pytest.approx(0.1, rel=1e-6) and f.per_img_s == pytest.approx(4e-3)
    assert f.start_s == pytest.approx(7.0, rel=1e-6) and f.n == 4


def test_a_cuda_fit_separates_the_launch_floor_from_the_compute_rate() -> None:
    rows = []
    for gf, bs in ((0.07, 256), (0.07, 256), (0.28, 256), (31.0, 256), (8.2, 256)):
        step = max(3 * gf * 1e9 * bs / 200e12, 0.01)  # 200 TFLOP/s, 10 ms launch floor
        rows.append(row(device="cuda", precision="bf16", gflops_fwd_per_img=gf,
                        batch_size=bs, train_img_s=bs / step))
    (f,) = calibrate.fit(rows)
    assert f.per_step_s == pytest.approx(0.01) and f.tflops == pytest.approx(200, rel=1e-6)
    assert math.isnan(f.start_s)  # no row had an estimate to compare


def test_the_command_refuses_a_directory_without_runs(tmp_path, capsys) -> None:
    assert calibrate.main([str(tmp_path)]) == 2
    assert "has no runs.csv" in capsys.readouterr().err


def test_plan_prints_how_far_the_last_runs_estimates_were(tmp_path, capsys) -> None:
    import shutil
    from pathlib import Path

    from bench.__main__ import main

    published = Path(__file__).resolve().parent.parent / "results" / "cpu"
    rdir = tmp_path / "cpu"
    shutil.copytree(published, rdir)
    assert main(["plan", "--profile", "cpu", "--fast", "--device", "cpu",
                 "--results-dir", str(rdir)]) == 0
    out = capsys.readouterr().out
    expected = calibrate.estimate_errors(calibrate_rows(rdir)).line()
    assert f"last run in {rdir}: {expected}" in out and "cells took x" in expected


def calibrate_rows(rdir):
    from bench import results

    return results.read_current_runs(rdir)[0]


def test_todays_cost_model_is_checked_against_the_published_rows(capsys) -> None:
    from pathlib import Path

    published = Path(__file__).resolve().parent.parent / "results" / "cpu"
    assert calibrate.main([str(published), "--profile", "cpu", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "today's cost model (cpu, cpu): " in out and "cells took x" in out
