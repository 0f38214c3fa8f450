"""The one-shot GPU script, proven on CPU with --dry-run (the real run needs a lent GPU)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_dry_run_writes_every_file_and_ends_with_the_summary(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.tools.gpu_check", "--dry-run", "--out", str(out),
         "--only", "model=resnet18,strategy=repeat3", "--budget-s", "3000"],
        cwd=REPO, capture_output=True, text=True, timeout=3600)  # no clock: a loaded CI is slow
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    ceilings = json.loads((out / "ceilings.json").read_text())
    assert ceilings["bf16_matmul_tflops"] > 0 and ceilings["copy_gb_s"] > 0
    with open(out / "baseline.csv") as fh:
        (base,) = list(csv.DictReader(fh))
    assert float(base["naive_best_img_s"]) > 0 and float(base["ratio_fp32"]) > 0
    # The speed-path probes ran and, on a CPU, say that they fell back and why.
    probes = {p["probe"]: p for p in json.loads((out / "probes.json").read_text())}
    assert set(probes) == {"graphs", "compile"}
    assert probes["graphs"]["status"] == "ok" and probes["graphs"]["graphs"] is False
    assert "graphs auto: off on CPU" in probes["graphs"]["fast_path_reason"]
    assert probes["graphs"]["eager_img_s"] > 0 and probes["graphs"]["assumed_step_ms"] > 0
    assert probes["compile"]["compile"] is False and probes["compile"]["mfu"] > 0
    assert probes["compile"]["assumed_mfu"] == 0.528 and probes["compile"]["profile"] == "gpu"
    with open(out / "gpu" / "runs.csv") as fh:
        sweep_rows = list(csv.DictReader(fh))
    # gpu-quick covers both datasets; a CPU cell records that no speed path ran.
    assert {r["dataset"] for r in sweep_rows} == {"mnist", "fashion-mnist"}
    row = sweep_rows[0]
    assert row["model"] == "resnet18" and row["status"] == "ok"
    assert float(row["mfu"]) > 0 and row["graphs"] == "false" and row["capture_s"] == "0.0"
    tail = proc.stdout.strip().splitlines()
    assert any("resnet18" in line and "repeat3" in line for line in tail[-4:])
    assert (out / "gpu_check.log").read_text().count("== ") >= 4
    # The dry run's one seed is said to be no published answer (bench/results/publish.py).
    assert "not a published answer: profile gpu cannot be published: seeds = [0]" in proc.stdout

    # The next lease resumes from these rows: the finished cell is not trained again.
    again = tmp_path / "again"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.tools.gpu_check", "--dry-run", "--out", str(again),
         "--only", "model=resnet18,strategy=repeat3", "--skip-baseline", "--skip-probes",
         "--resume-from", str(out / "gpu")],
        cwd=REPO, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "resuming from" in proc.stdout and "0 cells to run, 2 already done" in proc.stdout
    with open(again / "gpu" / "runs.csv") as fh:
        kept = list(csv.DictReader(fh))[0]
    assert kept["timestamp"] == row["timestamp"] and kept["cell_hash"] == row["cell_hash"]


def test_resume_from_needs_a_results_directory(tmp_path: Path, capsys) -> None:
    from bench.tools import gpu_check

    with pytest.raises(SystemExit) as exc:
        gpu_check.main(["--dry-run", "--out", str(tmp_path / "o"), "--resume-from",
                        str(tmp_path)])
    assert exc.value.code == 2
    assert f"--resume-from '{tmp_path}' holds no runs*.csv" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_without_cuda_the_real_run_refuses_cleanly(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    from bench.tools import gpu_check

    assert gpu_check.main(["--out", str(tmp_path)]) == 2


def test_bad_budget_is_refused(tmp_path: Path) -> None:
    from bench.tools import gpu_check

    with pytest.raises(SystemExit) as exc:
        gpu_check.main(["--dry-run", "--budget-s", "0", "--out", str(tmp_path)])
    assert exc.value.code == 2


@pytest.mark.parametrize("channels_last", [True, False])
def test_baseline_sides_share_layout_backend_flags_and_windows(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, channels_last: bool) -> None:
    """The naive pipeline and the harness are timed under the same settings, recorded per side."""
    import torch

    from bench.config import Config
    from bench.engine.train import CellResult
    from bench.tools import gpu_check

    naive_calls: list[dict] = []
    harness_cfgs: list[Config] = []

    def fake_naive(model_name, device, batch_size, steps, warmup, num_workers, data_root,
                   train_size, **settings):
        naive_calls.append(dict(settings, batch_size=batch_size, steps=steps, warmup=warmup))
        return 50.0

    def fake_run_cell(cfg, cell, *, device, measure_only):
        harness_cfgs.append(cfg)
        assert measure_only and cell.strategy == "resize224"
        return CellResult(row={"status": "ok", "reason": "", "train_img_s": 100.0,
                               "channels_last": cfg.channels_last})

    monkeypatch.setattr(gpu_check, "naive_img_s", fake_naive)
    monkeypatch.setattr(gpu_check, "run_cell", fake_run_cell)
    cfg = Config(precision="bf16", channels_last=not channels_last)  # the override wins
    log = gpu_check.Tee(tmp_path / "log")
    for dry_run in (True, False):
        naive_calls.clear()
        harness_cfgs.clear()
        (row,) = gpu_check.baseline(cfg, torch.device("cpu"), dry_run, log, ("resnet18",),
                                    channels_last=channels_last)
        assert len(naive_calls) == 2 and [c.precision for c in harness_cfgs] == ["fp32", "bf16"]
        for call in naive_calls:
            for h in harness_cfgs:
                assert call["channels_last"] is h.channels_last is channels_last
                assert call["cudnn_benchmark"] is (not h.deterministic)
                assert call["window_steps"] == h.window_steps
                assert call["warmup"] == h.warmup_steps
                assert call["steps"] == h.measure_only_steps - h.warmup_steps
                assert call["steps"] % call["window_steps"] == 0
                assert call["batch_size"] == h.batch_size
                # One epoch holds every harness step: an epoch boundary would cut a window.
                assert h.train_size >= h.batch_size * h.measure_only_steps
        if not dry_run:
            assert naive_calls[0]["window_steps"] >= 10
        for side in ("naive", "harness"):
            assert row[f"{side}_channels_last"] is channels_last
            assert row[f"{side}_window_steps"] == naive_calls[0]["window_steps"]
        assert row["naive_cudnn_benchmark"] == row["harness_cudnn_benchmark"]
        assert row["naive_tf32"] == row["harness_tf32"]
        assert row["naive_precision"] == "fp32" and row["same_settings"] is True
        assert row["ratio_fp32"] == row["ratio_bf16"] == 2.0


def test_probes_only_and_skip_probes_exclude_each_other(tmp_path: Path, capsys) -> None:
    from bench.tools import gpu_check

    with pytest.raises(SystemExit) as exc:
        gpu_check.main(["--dry-run", "--out", str(tmp_path / "o"), "--probes-only",
                        "--skip-probes"])
    assert exc.value.code == 2
    assert "--skip-probes and --probes-only exclude each other" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_out_of_budget_keeps_the_rows_and_prints_the_command_that_completes_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    import shlex

    from bench.tools import gpu_check

    calls: list[tuple] = []

    def fake_sweep(profile, sets, results_dir, device, budget_s, extra, log):
        calls.append((profile, budget_s, extra))
        return -1  # what run_sweep returns when it stopped the sweep at the budget

    monkeypatch.setattr(gpu_check, "run_sweep", fake_sweep)
    monkeypatch.setattr(gpu_check, "report", lambda results_dir, timeout_s, log: 0)
    out = tmp_path / "o"
    argv = ["--dry-run", "--out", str(out), "--skip-probes", "--skip-baseline",
            "--only", "model=resnet18,strategy=repeat3", "--set", "seeds=0,1"]
    assert gpu_check.main(argv) == 0  # stopping at the budget is not a failure
    (profile, budget, extra), = calls
    assert profile == "gpu" and extra == ["--only", "model=resnet18,strategy=repeat3"]
    assert 0 < budget <= gpu_check.DEFAULT_BUDGET_S
    lines = capsys.readouterr().out.splitlines()
    i = lines.index("not finished: the budget ran out with the rows above kept; complete it with")
    again = shlex.split(lines[i + 1])
    assert again[1:3] == ["-m", "bench.tools.gpu_check"]
    rest = again[3:]
    for flag in ("--skip-probes", "--skip-baseline", "--dry-run"):
        assert flag in rest
    for key, value in (("--out", str(out)), ("--profile", "gpu"),
                       ("--only", "model=resnet18,strategy=repeat3"), ("--set", "seeds=0,1")):
        assert rest[rest.index(key) + 1] == value
    # The whole call, sweep and report included, is sized to one 9-minute command.
    assert gpu_check.DEFAULT_BUDGET_S + 45 <= 9 * 60


def test_a_budget_spent_before_the_sweep_starts_no_sweep_and_says_how_to_resume(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    from bench.tools import gpu_check

    def no_sweep(*args, **kwargs):
        raise AssertionError("the sweep must not start without time left")

    monkeypatch.setattr(gpu_check, "run_sweep", no_sweep)
    monkeypatch.setattr(gpu_check, "report", lambda results_dir, timeout_s, log: 0)
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path / "o"), "--skip-probes",
                           "--skip-baseline", "--budget-s", "0.001"]) == 0
    out = capsys.readouterr().out
    assert "no time left for the sweep" in out and "--skip-probes --skip-baseline" in out
