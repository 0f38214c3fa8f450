"""bench.engine.peaks: the matmul and copy ceilings, the cached sustained peak (replaced by a
better one, never lowered) and the per-process fresh check, and MFU against a stale peak."""

from __future__ import annotations

import pytest
import torch

from bench.engine import peaks


def test_the_fresh_peak_check_is_measured_once_per_process(monkeypatch) -> None:
    """A property of the device, not of a cell: a warm worker's second cell reuses the first
    cell's check (it cost >= 0.6 s a cell), until it is older than max_age_s."""
    timed: list[float] = []

    def fake_timed(a, b, device, min_s):
        timed.append(min_s)
        return 0.25

    monkeypatch.setattr(peaks, "_FRESH_CHECKS", {})
    monkeypatch.setattr(peaks, "_timed_matmuls", fake_timed)
    cpu = torch.device("cpu")
    assert peaks.fresh_peak_check(cpu, torch.float32, 64) == 0.25
    assert peaks.fresh_peak_check(cpu, torch.float32, 64) == 0.25
    assert len(timed) == 2  # one warm-up and one timed repeat, for both calls
    peaks.fresh_peak_check(cpu, torch.float64, 64)  # another dtype: its own check
    assert len(timed) == 4
    peaks.fresh_peak_check(cpu, torch.float32, 64, max_age_s=0.0)  # too old: measured again
    assert len(timed) == 6


def test_matmul_and_copy_ceilings_are_positive() -> None:
    dev = torch.device("cpu")
    assert peaks.matmul_tflops(dev, torch.float32, n=128, reps=2) > 0
    assert peaks.copy_gb_s(dev, mib=4, reps=2) > 0


def _small_peak_sizes(monkeypatch) -> None:
    monkeypatch.setattr(peaks, "PEAK_SIZES", {"cpu": (512, 1024)})
    real = peaks.sustained_matmul_tflops
    monkeypatch.setattr(peaks, "sustained_matmul_tflops",
                        lambda d, t, sizes=None, repeat_s=0.1, attempts=2: real(
                            d, t, sizes, repeat_s, attempts))


def test_sustained_peak_keeps_the_best_stable_size() -> None:
    entry = peaks.sustained_matmul_tflops(torch.device("cpu"), torch.float32,
                                            sizes=(64, 256), repeat_s=0.05)
    assert entry["tflops"] > 0 and entry["n"] in (64, 256) and len(entry["repeats"]) == 3
    assert entry["spread"] == (max(entry["repeats"]) - min(entry["repeats"])) / max(
        entry["repeats"])
    assert entry["stable"] == (entry["spread"] <= peaks.PEAK_STABLE)


def test_peak_key_names_identity_dtype_threads() -> None:
    from bench import device

    key = peaks.peak_key(torch.device("cpu"), torch.float16)
    assert key.startswith(device.device_identity("cpu")) and "float16" in key
    assert f"threads={torch.get_num_threads()}" in key
    assert "logical cores" in key  # a 2-core and a 64-core slice never share a peak


def test_a_peak_cached_on_a_busy_machine_is_replaced_by_a_better_one(tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    _small_peak_sizes(monkeypatch)
    cpu = torch.device("cpu")
    key = peaks.peak_key(cpu, torch.float32)
    path = tmp_path / "adaptbench" / "peaks.json"
    path.parent.mkdir()
    path.write_text(json.dumps({key: {"tflops": 1e-9, "n": 128}}))  # measured under load
    assert peaks.peak_tflops(cpu, torch.float32) == 1e-9  # the cache answers ...
    fresh = peaks.peak_tflops(cpu, torch.float32, refresh=True)  # ... until asked again
    assert fresh > 1e-9 and json.loads(path.read_text())[key]["tflops"] == fresh
    # A worse measurement later never lowers the cached best.
    monkeypatch.setattr(peaks, "sustained_matmul_tflops",
                        lambda *a, **k: {"tflops": 1e-12, "n": 128, "spread": 0.0,
                                         "stable": True, "repeats": []})
    assert peaks.peak_tflops(cpu, torch.float32, refresh=True) == fresh


@pytest.mark.slow
def test_a_cell_never_reports_mfu_above_one_against_a_stale_peak(tmp_path, monkeypatch):
    import json

    from bench.config import Cell, Config
    from bench.engine import train

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    _small_peak_sizes(monkeypatch)
    cpu = torch.device("cpu")
    key = peaks.peak_key(cpu, torch.float32)
    (tmp_path / "adaptbench").mkdir()
    (tmp_path / "adaptbench" / "peaks.json").write_text(
        json.dumps({key: {"tflops": 1e-9, "n": 128}}))
    cfg = Config(batch_size=16, train_size=160, test_size=50, warmup_steps=1, window_steps=2,
                 profile_steps=0, peak_tflops=0.0, contended_retries=0)
    row = train.run_cell(cfg, Cell("mnist", "resnet18", "repeat3", 0), device="cpu").row
    assert row["status"] == "ok", row["reason"]
    assert row["peak_tflops"] > 1e-9 and 0 < row["mfu"] <= 1
    assert row["peak_fresh_tflops"] > 0  # the quick re-check the report compares against


def test_a_sweep_reads_the_peaks_of_its_own_device_only(tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    (tmp_path / "adaptbench").mkdir()
    mine, other = "cpu | Some CPU | 2 logical cores | avx2", "cpu | Some CPU | 4 logical cores | avx2"
    cache = {f"{mine}|torch.float32|threads=2": {"tflops": 0.3},
             f"{mine}|torch.bfloat16|threads=1": {"tflops": 1.1},
             f"{other}|torch.float32|threads=4": {"tflops": 0.6},
             "cuda | GPU|torch.float32|threads=2|tf32=True": {"tflops": 400.0}}
    (tmp_path / "adaptbench" / "peaks.json").write_text(json.dumps(cache))
    assert list(peaks.cached_peaks(mine)) == [f"{mine}|torch.bfloat16|threads=1",
                                              f"{mine}|torch.float32|threads=2"]
    assert list(peaks.cached_peaks("cuda | GPU")) == ["cuda | GPU|torch.float32|threads=2|tf32=True"]
    assert peaks.cached_peaks("cpu | nothing") == {}
