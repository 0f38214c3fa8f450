"""graphs / compile ``auto``: pure decisions from cost-model estimates, their fallbacks, the
estimate that models them, and the compile cache a sweep's cells share. No torch needed."""

from __future__ import annotations

from pathlib import Path

import pytest
import standins  # tests/ is on sys.path under pytest

from bench import config, identity
from bench.config import Cell, ConfigError
from bench.plan import costmodel, fastpath

FLOOR = 0.0091  # the CUDA launch floor of bench.plan.costmodel.SPEEDS, s


def decide(**kw):
    args = dict(device_kind="cuda", graphs="auto", compile="auto", step_compute_s=0.0002,
                launch_floor_s=FLOOR, planned_steps=468)
    args.update(kw)
    return fastpath.decide(**args)


def test_graphs_auto_captures_launch_bound_cuda_steps_only() -> None:
    small = decide()  # resnet18 at 28 px: ~0.2 ms of arithmetic under a 9.1 ms floor
    assert small.graphs and not small.compile and "launch-bound" in small.reason
    big = decide(step_compute_s=0.115)  # vgg16 at 224 px
    assert not big.graphs and "compute-bound" in big.reason
    assert not decide(step_compute_s=FLOOR).graphs  # at the floor: not launch-bound
    cpu = decide(device_kind="cpu", launch_floor_s=0.0)
    assert not cpu.graphs and not cpu.compile and "off on CPU" in cpu.reason


def test_compile_auto_pays_back_its_compile_time() -> None:
    # 23 s compile against a 26.5% saving of the arithmetic: break-even at ~87 s of it.
    breakeven = fastpath.COMPILE_S / fastpath.COMPILE_SAVING
    assert 80 < breakeven < 95
    step = 0.115  # s per vgg16 224 px step at batch 256
    assert not decide(step_compute_s=step, planned_steps=int(breakeven / step) - 5).compile
    on = decide(step_compute_s=step, planned_steps=int(breakeven / step) + 5)
    assert on.compile and on.compile_mode == "default" and "compile auto: on" in on.reason
    assert not decide(device_kind="cpu", step_compute_s=10.0, planned_steps=10**6).compile


def test_explicit_values_and_every_graphs_fallback_say_why() -> None:
    assert decide(graphs=False, compile=False) == fastpath.Decision(False, False, "", "")
    assert decide(graphs=True, compile=False, step_compute_s=1.0).graphs  # explicit: even compute-bound
    cpu = decide(device_kind="cpu", graphs=True, compile=False)
    assert not cpu.graphs and "need a CUDA device" in cpu.reason
    for kw, why in ((dict(precision="fp16"), "grad scaler"),
                    (dict(schedule="onecycle", optimizer="sgd"), "momentum"),
                    (dict(dynamic_shapes=True), "dynamic shapes"),
                    (dict(fault_injection=True), "fault injection"),
                    (dict(distributed=True), "all-reduce")):
        d = decide(graphs=True, compile=False, **kw)
        assert not d.graphs and why in d.reason, kw
    assert decide(graphs=True, compile=False, schedule="onecycle", optimizer="adamw").graphs
    both = decide(graphs=True, compile=True)
    assert not both.graphs and both.compile and both.compile_mode == "reduce-overhead"
    assert "reduce-overhead" in both.reason


def test_resolve_reads_the_numbers_off_the_config() -> None:
    cfg = config.Config(batch_size=256, precision="bf16", graphs="auto", compile="auto")
    # resnet18 repeat3 at 28 px: ~0.057 forward GFLOPs an image.
    small = fastpath.resolve(cfg, "cuda", 0.057, 468)
    compute, floor = fastpath.step_compute_s("cuda", "bf16", 0.057, 256)
    assert compute == pytest.approx(256 * 3 * 0.057e9 / 207e12) and floor == FLOOR
    assert small.graphs and not small.compile
    # vgg16 resize224 (~30.9 GFLOPs) over the gpu profile's 6 epochs at batch 128: compile pays.
    vgg = fastpath.resolve(cfg.replace(batch_size=128), "cuda", 30.9, 6 * 468)
    assert vgg.compile and not vgg.graphs
    assert not fastpath.resolve(cfg.replace(batch_size=128), "cuda", 30.9, 2 * 78).compile


def test_config_takes_auto_for_graphs_and_compile_and_refuses_the_rest() -> None:
    cfg = config.load("smoke", ["graphs=auto", "compile=auto"])
    assert cfg.graphs == "auto" and cfg.compile == "auto"
    assert config.load("smoke", ["graphs=true"]).graphs is True
    with pytest.raises(ConfigError, match=r"'graphs'.*true/false or auto"):
        config.load("smoke", ["graphs=sometimes"])
    cell = Cell("mnist", "resnet18", "repeat3", 0)
    h = identity.cell_hash(cfg, cell, "cuda")
    off = identity.cell_hash(cfg.replace(graphs=False), cell, "cuda")
    assert len({h, off, identity.cell_hash(cfg.replace(graphs=True), cell, "cuda")}) == 3
    # graphs=false is the experiment every earlier row ran: its hash is the one without the key.
    import dataclasses
    import hashlib
    import json

    payload = {k: v for k, v in cfg.replace(graphs=False, compile="auto").to_dict().items()
               if k not in config._NOT_HASHED | {"per_model", "graphs"}}
    payload.update(dataclasses.asdict(cell), device_kind="cuda")
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    assert off == hashlib.sha256(blob).hexdigest()[:16]


@pytest.mark.slow  # meta-device builds of resnet18 and vgg16
def test_the_cost_model_models_the_fast_paths() -> None:
    base = config.load("gpu-quick", ["graphs=false", "compile=false", "train_size=0",
                                     "test_size=0", "epochs=6"])
    cell = Cell("mnist", "resnet18", "repeat3", 0)
    eager = costmodel.CostModel("cuda").estimate(base, cell).seconds
    graphed = costmodel.CostModel("cuda").estimate(base.replace(graphs=True), cell).seconds
    # Every launch-bound step pays the assumed replay floor instead of the eager one: the
    # training steps, the evaluation batches and the memory/profiler steps; plus the capture.
    from bench.plan.steps import EVAL_BATCH_FACTOR, extra_train_steps

    # With a validation split the epochs evaluate it and the test split is scored once.
    v, ev = base.val_size, EVAL_BATCH_FACTOR * 256
    epochs_eval = 6 * v / ev + 10000 / ev if v else 6 * 10000 / ev
    steps = 6 * ((60000 - v) // 256) + epochs_eval + extra_train_steps(base.profile_steps)
    saved = steps * (FLOOR - fastpath.GRAPH_STEP_FLOOR_S)
    assert graphed == pytest.approx(eager - saved + fastpath.GRAPH_CAPTURE_S, abs=0.01)
    assert graphed < eager
    vgg = Cell("mnist", "vgg16", "resize224", 0)
    quick = config.load("gpu-quick", ["graphs=false", "compile=false"])
    for cfg, pays in ((base, True), (quick, False)):  # 6 full epochs; 2 epochs of 10,000
        plain = costmodel.CostModel("cuda").estimate(cfg, vgg).seconds
        compiled = costmodel.CostModel("cuda").estimate(cfg.replace(compile=True), vgg).seconds
        assert (compiled < plain) is pays
    on_cpu = costmodel.CostModel("cpu").estimate(base.replace(graphs="auto", compile="auto",
                                                              precision="fp32"), cell)
    off = costmodel.CostModel("cpu").estimate(base.replace(precision="fp32"), cell)
    assert on_cpu.seconds == off.seconds  # auto is off on the CPU


def test_compile_cache_env_is_one_directory_per_sweep(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(fastpath.SHARED_CACHE_ENV, raising=False)
    monkeypatch.setenv(fastpath.CACHE_ENV, "/tmp/torchinductor_someone")  # inductor's default
    env = fastpath.compile_cache_env(tmp_path)
    assert env[fastpath.CACHE_ENV] == str(tmp_path / "inductor-cache")
    assert env["TORCHINDUCTOR_FX_GRAPH_CACHE"] == "1"
    monkeypatch.setenv(fastpath.SHARED_CACHE_ENV, "/somewhere/else")  # a caller's choice
    assert fastpath.compile_cache_env(tmp_path)[fastpath.CACHE_ENV] == "/somewhere/else"


# --- the sweep hands every cell the same compile cache -----------------------------------------

@pytest.mark.slow  # a real sweep and worker (with a stand-in cell): ~5 s on 2 idle cores
def test_every_cell_of_a_sweep_gets_one_compile_cache(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # The warm executor: one worker runs both cells, so the directory must come from the
    # sweep's environment, not from anything a cell sets (the process executor gets the same).
    from bench import results
    from bench.__main__ import main

    log = tmp_path / "cells.jsonl"
    monkeypatch.setenv("ADAPTBENCH_CELL_IMPL", standins.IMPL)
    monkeypatch.setenv("ADAPTBENCH_FAKE_LOG", str(log))  # each cell's compile cache
    monkeypatch.delenv(fastpath.SHARED_CACHE_ENV, raising=False)
    argv = ["run", "--profile", "smoke", "--results-dir", str(tmp_path), "--device", "cpu",
            "--quiet", "--executor", "warm"]
    for item in ("datasets=mnist", "models=resnet18", "strategies=repeat3,conv1", "seeds=0",
                 "train_size=64", "test_size=32", "cell_timeout_s=60"):
        argv += ["--set", item]
    assert main(argv) == 0
    seen = standins.log_records(log)
    assert len(seen) == len(results.read_csv(tmp_path / "runs.csv", "runs")) == 2
    (cache,) = {r["compile_cache"] for r in seen}  # both cells, one directory
    assert cache.endswith("inductor-cache") and "adaptbench-" in cache


def test_auto_is_one_decision_per_model_from_its_costliest_strategy() -> None:
    # Per cell, resnet18 repeat3 at 28 px is launch-bound (graphs on) and resize224 is not
    # (graphs off): one table would have compared captured with eager steps.
    cfg = identity.effective(
        config.load("gpu-quick", ["models=resnet18", "strategies=repeat3,resize224",
                                  "graphs=auto", "compile=false"]),
        Cell("mnist", "resnet18", "repeat3", 0), "cuda")
    shape, steps = (1, 28, 28), 100
    own = {s: fastpath.costliest_gflops("resnet18", (s,), 10, shape)[0]
           for s in ("repeat3", "resize224")}
    per_cell = {s: fastpath.resolve(cfg, "cuda", g, steps).graphs for s, g in own.items()}
    assert per_cell == {"repeat3": True, "resize224": False}
    per_model = {s: fastpath.resolve_for_model(cfg, "cuda", "resnet18", g, steps, 10, shape)
                 for s, g in own.items()}
    assert {d.graphs for d in per_model.values()} == {False}
    assert all("from its costliest, resize224" in d.reason for d in per_model.values())
    # On CPU nothing is decided from FLOPs, so no strategy is built.
    assert fastpath.resolve_for_model(cfg, "cpu", "resnet18", own["repeat3"], steps, 10,
                                      shape).graphs is False
