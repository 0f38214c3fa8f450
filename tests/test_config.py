"""Profiles and overrides: what each shipped profile promises, and every bad input refused."""

from __future__ import annotations

import dataclasses

import pytest

from bench import config, identity
from bench.config import Cell, Config, ConfigError
from bench.plan import costmodel, grid
from bench.plan import planner as plan

PROFILES = ("smoke", "cpu", "gpu", "gpu-crosses", "gpu-quick")
BRIEF_PRESETS = ("post-convtranspose", "resize224", "repeat3", "droppools")


def test_the_shipped_profiles_are_listed() -> None:
    assert set(PROFILES) <= set(config.list_profiles())


@pytest.mark.parametrize("name", PROFILES)
def test_every_profile_loads_and_its_grid_exists(name) -> None:
    cfg = config.load(name)
    grid.validate_grid(cfg)
    assert config.cells(cfg)
    # Every recipe and measurement key is written out: a profile reads as the whole recipe.
    text = config.profile_path(name).read_text()
    for key in config.valid_keys():
        if key != "data_root":
            assert f"\n{key} = " in text, f"{name}.toml does not set {key}"


def _eta(cfg: Config, device_kind: str, device_model: str = "") -> float:
    model = costmodel.CostModel(device_kind, device_model)
    total = 0.0
    for cell in config.cells(cfg):
        est = model.estimate(cfg, cell)
        mode = plan.budget_mode(cfg, est.seconds)
        total += plan.PlannedCell(0, cell, "", est, mode).expected_s
    return total


def test_smoke_is_tiny() -> None:
    cfg = config.load("smoke")
    assert cfg.epochs == 1 and len(cfg.strategies) == 2 and len(config.cells(cfg)) <= 4
    assert 0 < cfg.train_size <= 1024 and 0 < cfg.test_size <= 512
    assert _eta(cfg, "cpu") < 90


def test_cpu_runs_every_default_preset_within_its_budget() -> None:
    from bench.plan import planner
    from strategies.presets import DEFAULT_PRESETS

    cfg = config.load("cpu")
    assert set(cfg.models) == {"resnet18", "vgg16"}
    # resize224 alone is left to the GPU: with it, every strategy of both models ran
    # measure-only (one mode per model, decided by the costliest strategy).
    assert set(DEFAULT_PRESETS) - set(cfg.strategies) == {"resize224"}
    assert cfg.cell_budget_s > 0 and cfg.train_size > 0 and cfg.precision == "auto"
    # Three seeds with a validation split, sized on the 2-core AVX2 machine the cost model's
    # CPU constants were fitted on: 35m12s estimated, 29m34s likely (bench/plan/speeds.py).
    assert len(cfg.seeds) >= 3 and cfg.val_size > 0
    assert _eta(cfg, "cpu") < 36 * 60
    cells = list(enumerate(config.cells(cfg), 1))
    plan = planner.make_plan(cfg, cells, "cpu", results_dir=None)
    assert {p.mode for p in plan if not p.estimate.incompatible} == {"full"}  # every one trains


@pytest.mark.slow
def test_gpu_is_the_full_benchmark() -> None:
    from strategies.presets import DEFAULT_PRESETS

    cfg = config.load("gpu")
    assert set(cfg.datasets) == {"mnist", "fashion-mnist"}
    assert set(cfg.models) == {"vgg16", "vgg16_bn", "resnet18", "resnet50"}
    assert set(DEFAULT_PRESETS) <= set(cfg.strategies)
    assert len(cfg.seeds) >= 3 and cfg.train_size == cfg.test_size == 0
    assert cfg.precision == "bf16" and cfg.channels_last and cfg.cell_budget_s == 0
    assert cfg.val_size > 0 and cfg.epochs <= 3  # scored on validation, few epochs
    assert cfg.graphs == cfg.compile == "auto"
    # Not one 9-minute call (bench/configs/gpu.toml says why): the 8 calls its comment names
    # (7 before graphs and compile were decided per model, not per cell).
    assert 9 * 60 < _eta(cfg, "cuda", "h200") <= 8 * 9 * 60
    assert cfg.cell_timeout_s <= 9 * 60  # a hung cell cannot eat a call


@pytest.mark.slow
def test_gpu_crosses_is_the_rest_of_the_grid_with_the_same_settings() -> None:
    """The channel x spatial crosses, split off as a grid of their own; everything but the
    strategies is gpu's, so the two halves' rows compare."""
    gpu, crosses = config.load("gpu"), config.load("gpu-crosses")
    assert crosses.strategies and all("+" in s for s in crosses.strategies)
    assert not set(crosses.strategies) & set(gpu.strategies)
    assert crosses.replace(strategies=gpu.strategies) == gpu
    assert _eta(crosses, "cuda", "h200") <= 7 * 9 * 60


def test_gpu_quick_fits_a_lease() -> None:
    cfg, gpu = config.load("gpu-quick"), config.load("gpu")
    assert cfg.models == gpu.models and set(BRIEF_PRESETS) <= set(cfg.strategies)
    # The brief's grid on both datasets, two epochs, and the speed paths decided per cell.
    assert set(cfg.datasets) == {"mnist", "fashion-mnist"} and len(cfg.seeds) == 1
    assert cfg.epochs >= 2 and cfg.graphs == "auto" and cfg.compile == "auto"
    assert cfg.precision == "bf16" and cfg.channels_last
    assert _eta(cfg, "cuda") < 8 * 60
    assert _eta(cfg, "cuda", "h200") < 9 * 60  # one 9-minute call on the lent H200
    assert cfg.cell_timeout_s <= 4 * 60  # a hung cell cannot eat the lease


def test_the_cost_model_trains_on_what_val_size_leaves_and_tests_once_at_the_end() -> None:
    cfg = config.load("gpu-quick", ["train_size=0", "test_size=10000", "val_size=0"])
    cell = next(c for c in config.cells(cfg) if c.model == "resnet50"
                and c.strategy == "resize224")
    model = costmodel.CostModel("cuda")
    whole = model.estimate(cfg, cell).seconds
    # 50,000 of the 60,000 training images held out: a sixth of the training steps, the
    # held-out images evaluated each epoch and the test split once more at the end.
    held = model.estimate(cfg.replace(val_size=50_000), cell).seconds
    assert held < whole * 0.75
    # Ten held out: the same training, the test split evaluated once instead of every epoch.
    tiny_val = model.estimate(cfg.replace(val_size=10), cell).seconds
    assert held < tiny_val < whole


def test_overrides_are_typed_and_lists_split_on_commas() -> None:
    cfg = config.load("smoke", ["epochs=3", "models=resnet18, resnet50", "seeds=1,2",
                                "channels_last=true", "lr=0.1"])
    assert cfg.epochs == 3 and cfg.models == ("resnet18", "resnet50") and cfg.seeds == (1, 2)
    assert cfg.channels_last is True and cfg.lr == 0.1


@pytest.mark.parametrize("override, match", [
    ("epoch=2", r"unknown config key 'epoch'; valid keys: .*epochs"),
    ("epochs=two", r"bad value 'two' for 'epochs'"),
    ("precision=fp8", r"valid: fp32, bf16, fp16"),
    ("epochs=0", r"epochs must be > 0"),
    ("seeds=1,1", r"seeds lists a value twice"),
    ("noequals", r"expected key=value"),
    ("per_model=vgg16", r"bad per_model entry 'vgg16': expected pattern:key=value"),
    ("per_model=vgg16:epoch=2", r"'epoch' is not a recipe key; valid: .*grad_clip"),
    ("per_model=vgg16:train_size=10", r"'train_size' is not a recipe key"),
    ("per_model=vgg16:grad_clip=-1", r"grad_clip must be >= 0, got -1.0"),
    ("per_model=vgg16:precision=fp8", r"bad value 'fp8' for 'precision'; valid: fp32"),
])
def test_bad_overrides_name_the_bad_value_and_the_valid_ones(override, match) -> None:
    with pytest.raises(ConfigError, match=match):
        config.load("smoke", [override])


def test_unknown_profile_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown profile 'gpu-fast'.*smoke"):
        config.load("gpu-fast")


def test_unknown_table_is_refused(tmp_path) -> None:
    path = tmp_path / "p.toml"
    path.write_text("[grid]\nmodels = ['resnet18']\n[training]\nepochs = 1\n")
    with pytest.raises(ConfigError, match=r"unknown table \[training\].*grid, recipe"):
        config.load(str(path))


def test_the_saved_config_loads_back_identical(tmp_path) -> None:
    cfg = config.load("cpu", ["lr=0.0123456789", "weights=imagenet"])
    path = tmp_path / "config.toml"
    path.write_text(config.to_toml(cfg))
    again = config.load(str(path))
    assert again == cfg
    cell = config.cells(cfg)[0]
    assert identity.cell_hash(again, cell, "cpu") == identity.cell_hash(cfg, cell, "cpu")
    assert identity.config_hash(again) == identity.config_hash(cfg)


def test_cell_hash_names_the_experiment_not_the_run() -> None:
    cfg = config.load("smoke")
    cell = Cell("mnist", "resnet18", "repeat3", 0)
    h = identity.cell_hash(cfg, cell, "cpu")
    assert identity.cell_hash(cfg.replace(cell_timeout_s=5.0, models=("x",)), cell, "cpu") == h
    assert identity.cell_hash(cfg.replace(peak_tflops=775.3), cell, "cpu") == h  # mfu's denominator
    assert identity.cell_hash(cfg.replace(lr=0.01), cell, "cpu") != h
    assert identity.cell_hash(cfg, cell, "cuda") != h
    assert identity.cell_hash(cfg, dataclasses.replace(cell, seed=1), "cpu") != h


def test_cells_are_in_grid_order() -> None:
    cfg = Config(datasets=("mnist",), models=("a", "b"), strategies=("x", "y"), seeds=(0, 1))
    labels = [c.label() for c in config.cells(cfg)]
    assert labels[:3] == ["mnist/a/x/seed0", "mnist/a/x/seed1", "mnist/a/y/seed0"]
    assert len(labels) == 8


def test_per_model_changes_only_the_models_it_matches() -> None:
    cfg = config.load("smoke", ["per_model=vgg??:grad_clip=1.0, resnet*:lr=0.05, vgg16:lr=0.01"])
    vgg, vgg_bn, resnet = (config.for_model(cfg, m) for m in ("vgg16", "vgg16_bn", "resnet50"))
    assert (vgg.grad_clip, vgg.lr) == (1.0, 0.01)  # later entries win
    assert (vgg_bn.grad_clip, vgg_bn.lr) == (cfg.grad_clip, cfg.lr)  # "vgg??" is plain VGG only
    assert (resnet.grad_clip, resnet.lr) == (cfg.grad_clip, 0.05)
    assert vgg.per_model == ()  # the effective recipe carries no further changes


def test_shipped_profiles_clip_vgg_only() -> None:
    for name in PROFILES:
        cfg = config.load(name)
        for model in ("vgg16", "vgg16_bn"):
            assert config.for_model(cfg, model).grad_clip == 1.0, (name, model)
        for model in ("resnet18", "resnet50"):
            assert config.for_model(cfg, model).grad_clip == 0.0, (name, model)


def test_cell_hash_follows_the_effective_recipe() -> None:
    cfg = config.load("smoke", ["per_model="])
    vgg, resnet = Cell("mnist", "vgg16", "droppools", 0), Cell("mnist", "resnet18", "repeat3", 0)
    clipped = cfg.replace(per_model=("vgg*:grad_clip=1.0",))
    # A VGG-only entry re-runs VGG cells and leaves the others' results valid for resume ...
    assert identity.cell_hash(clipped, vgg, "cpu") != identity.cell_hash(cfg, vgg, "cpu")
    assert identity.cell_hash(clipped, resnet, "cpu") == identity.cell_hash(cfg, resnet, "cpu")
    # ... and the same recipe reached either way is the same experiment.
    assert (identity.cell_hash(clipped, vgg, "cpu")
            == identity.cell_hash(cfg.replace(grad_clip=1.0), vgg, "cpu"))


def test_a_cell_trains_with_its_models_recipe(monkeypatch) -> None:
    from bench.engine import train

    seen = {}

    def fake_train(cfg, cell, dev, measure_only, out_dir, result):
        seen[cell.model] = (cfg.grad_clip, cfg.lr)

    monkeypatch.setattr(train, "_train", fake_train)
    cfg = config.load("smoke", ["per_model=vgg*:grad_clip=1.0,resnet18:lr=0.07"])
    for model in ("vgg16", "resnet18"):
        row = train.run_cell(cfg, Cell("mnist", model, "droppools", 0), device="cpu").row
        assert row["lr"] == seen[model][1]
    assert seen == {"vgg16": (1.0, cfg.lr), "resnet18": (0.0, 0.07)}


# Every float key and its valid range, as the refusal states it.
FLOAT_RANGES = {
    "lr": ">= 0", "momentum": "in [0, 1)", "weight_decay": ">= 0", "warmup_frac": "in [0, 1)",
    "label_smoothing": "in [0, 1]", "grad_clip": ">= 0", "target_acc": "in (0, 1]",
    "cell_budget_s": ">= 0", "cell_timeout_s": "> 0", "peak_tflops": ">= 0",
}


def test_every_float_key_has_a_stated_range() -> None:
    floats = {k for k, v in Config().to_dict().items() if isinstance(v, float)}
    assert floats == set(FLOAT_RANGES)


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("key", sorted(FLOAT_RANGES))
def test_non_finite_floats_are_refused_naming_key_value_and_range(key, bad) -> None:
    # NaN compares false with everything, so `lr < 0` used to let lr=nan through to every cell.
    expected = f"{key} must be a finite number {FLOAT_RANGES[key]}, got {float(bad)!r}"
    with pytest.raises(ConfigError) as info:
        config.load("smoke", [f"{key}={bad}"])
    assert str(info.value) == expected


def test_non_finite_floats_are_refused_in_profiles_and_per_model(tmp_path) -> None:
    path = tmp_path / "p.toml"
    path.write_text("[recipe]\nlr = nan\n")  # TOML has nan and inf literals
    with pytest.raises(ConfigError, match=r"^lr must be a finite number >= 0, got nan$"):
        config.load(str(path))
    with pytest.raises(ConfigError, match=r"^grad_clip must be a finite number >= 0, got inf$"):
        config.load("smoke", ["per_model=vgg*:grad_clip=inf"])


@pytest.mark.parametrize("override, match", [
    ("label_smoothing=1.5", r"^label_smoothing must be in \[0, 1\], got 1.5$"),
    ("target_acc=0", r"^target_acc must be in \(0, 1\], got 0.0$"),
    ("momentum=1", r"^momentum must be in \[0, 1\), got 1.0$"),
    ("cell_budget_s=-1", r"^cell_budget_s must be >= 0, got -1.0$"),
])
def test_floats_out_of_range_name_the_range(override, match) -> None:
    with pytest.raises(ConfigError, match=match):
        config.load("smoke", [override])


def test_floats_at_the_edges_of_their_ranges_are_accepted() -> None:
    cfg = config.load("smoke", ["lr=0", "momentum=0", "label_smoothing=1", "target_acc=1",
                                "warmup_frac=0", "cell_timeout_s=1e9", "peak_tflops=1e300"])
    assert (cfg.label_smoothing, cfg.target_acc, cfg.cell_timeout_s) == (1.0, 1.0, 1e9)


# -- precision = "auto", channels_last = "auto" ---------------------------------------------------


@pytest.mark.parametrize("flags, precision, channels_last", [
    (["avx2", "fma"], "fp32", False),  # this kind of machine: bf16 would be emulated
    (["avx2", "fma", "avx512f"], "fp32", True),
    (["avx2", "avx512f", "avx512_bf16", "avx512_vnni"], "bf16", True),
    (["avx2", "amx_tile", "amx_bf16", "avx512f"], "bf16", True),
])
def test_auto_resolves_to_what_the_cpu_runs_natively(flags, precision, channels_last) -> None:
    from bench import device

    auto = device.auto_recipe("cpu", flags)
    assert (auto["precision"], auto["channels_last"]) == (precision, channels_last)
    assert "CPU: bf16" in auto["why"]


def test_auto_is_a_value_of_both_keys_and_the_row_records_the_choice(monkeypatch) -> None:
    from bench import device
    from bench.engine import train

    cfg = config.load("smoke", ["precision=auto", "channels_last=auto", "models=resnet18",
                                "strategies=cifarstem+droppools9", "train_size=64",
                                "test_size=40", "batch_size=16"])
    assert (cfg.precision, cfg.channels_last) == ("auto", "auto")
    monkeypatch.setattr(device, "speed_flags", lambda: ["avx2", "avx512f", "avx512_bf16"])
    resolved = config.resolve_auto(cfg, "cpu")
    assert (resolved.precision, resolved.channels_last) == ("bf16", True)
    assert config.resolve_auto(cfg.replace(precision="fp16"), "cpu").precision == "fp16"
    (cell,) = config.cells(cfg)
    row = train.run_cell(cfg, cell, device="cpu").row  # incompatible: stops at the meta check
    assert row["status"] == "incompatible"
    assert (row["precision"], row["channels_last"]) == ("bf16", True)
    # the hash keeps "auto": device_id (flags included) decides the resolution
    assert identity.cell_hash(cfg, cell, "x") != identity.cell_hash(resolved, cell, "x")


def test_a_bad_auto_value_names_the_choices() -> None:
    with pytest.raises(config.ConfigError, match=r"'maybe' for 'channels_last'.*true/false or auto"):
        config.load("smoke", ["channels_last=maybe"])
    with pytest.raises(config.ConfigError, match="valid: fp32, bf16, fp16, auto"):
        config.load("smoke", ["precision=fp8"])


def test_a_timed_estimate_adds_the_fixed_cost_of_the_models_own_precision(monkeypatch) -> None:
    """The planner's timed estimate adds the per-cell fixed cost of the precision the cell
    really trains with: a per_model precision counts (it was read off the base config)."""
    from bench.plan import planner
    from bench.plan.costmodel import Estimate
    from bench.plan.speeds import DeviceSpeed

    speeds = {("cpu", "fp32"): DeviceSpeed(0.05, 0.0, 0.0, start_s=10.0, overlapped=False),
              ("cpu", "bf16"): DeviceSpeed(0.05, 0.0, 0.0, start_s=99.0, overlapped=False)}
    monkeypatch.setattr(planner, "SPEEDS", speeds)
    monkeypatch.setattr(planner, "needs_timing", lambda cfg, est: True)  # time every cell
    cfg = config.load("smoke", ["models=resnet18,vgg16", "strategies=repeat3", "precision=fp32",
                                "per_model=vgg16:precision=bf16"])
    cells = [(i, c) for i, c in enumerate(config.cells(cfg), 1)]
    plan = planner.make_plan(cfg, cells, "cpu", results_dir=None,
                             timer=lambda cell: (5.0, ""))
    seconds = {p.cell.model: p.estimate.seconds for p in plan if p.estimate.source == "timed"}
    assert seconds == {"resnet18": 15.0, "vgg16": 104.0}
    assert isinstance(plan[0].estimate, Estimate)
