"""Profiles and overrides: what each shipped profile promises, and every bad input refused."""

from __future__ import annotations

import dataclasses

import pytest

from bench import config, sweep
from bench.config import Cell, Config, ConfigError

PROFILES = ("smoke", "cpu", "gpu", "gpu-quick")
BRIEF_PRESETS = ("post-convtranspose", "resize224", "repeat3", "droppools")


def test_the_shipped_profiles_are_listed() -> None:
    assert set(PROFILES) <= set(config.list_profiles())


@pytest.mark.parametrize("name", PROFILES)
def test_every_profile_loads_and_its_grid_exists(name) -> None:
    cfg = config.load(name)
    sweep.validate_grid(cfg)
    assert config.cells(cfg)
    # Every recipe and measurement key is written out: a profile reads as the whole recipe.
    text = config.profile_path(name).read_text()
    for key in config.valid_keys():
        if key != "data_root":
            assert f"\n{key} = " in text, f"{name}.toml does not set {key}"


def _eta(cfg: Config, device_kind: str) -> float:
    model = sweep.CostModel(device_kind)
    total = 0.0
    for cell in config.cells(cfg):
        est = model.estimate(cfg, cell)
        mode = sweep.budget_mode(cfg, est.seconds)
        total += sweep.PlannedCell(0, cell, "", est, mode).expected_s
    return total


def test_smoke_is_tiny() -> None:
    cfg = config.load("smoke")
    assert cfg.epochs == 1 and len(cfg.strategies) == 2 and len(config.cells(cfg)) <= 4
    assert 0 < cfg.train_size <= 1024 and 0 < cfg.test_size <= 512
    assert _eta(cfg, "cpu") < 90


def test_cpu_runs_every_default_preset_within_its_budget() -> None:
    from strategies.presets import DEFAULT_PRESETS

    cfg = config.load("cpu")
    assert set(cfg.models) == {"resnet18", "vgg16"}
    assert set(DEFAULT_PRESETS) <= set(cfg.strategies)
    assert cfg.cell_budget_s > 0 and cfg.train_size > 0 and cfg.precision == "fp32"
    assert _eta(cfg, "cpu") < 18 * 60


def test_gpu_is_the_full_benchmark() -> None:
    from strategies.presets import DEFAULT_PRESETS

    cfg = config.load("gpu")
    assert set(cfg.datasets) == {"mnist", "fashion-mnist"}
    assert set(cfg.models) == {"vgg16", "vgg16_bn", "resnet18", "resnet50"}
    assert set(DEFAULT_PRESETS) <= set(cfg.strategies)
    assert any("+" in s for s in cfg.strategies)  # channel x spatial crosses
    assert len(cfg.seeds) >= 3 and cfg.train_size == cfg.test_size == 0
    assert cfg.precision == "bf16" and cfg.channels_last and cfg.cell_budget_s == 0


def test_gpu_quick_fits_a_lease() -> None:
    cfg, gpu = config.load("gpu-quick"), config.load("gpu")
    assert cfg.models == gpu.models and set(BRIEF_PRESETS) <= set(cfg.strategies)
    assert cfg.datasets == ("mnist",) and len(cfg.seeds) == 1 and cfg.epochs <= 2
    assert cfg.train_size == 0 and cfg.precision == "bf16" and cfg.channels_last
    assert _eta(cfg, "cuda") < 7 * 60
    assert cfg.cell_timeout_s <= 4 * 60  # a hung cell cannot eat the lease


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
    assert config.cell_hash(again, cell, "cpu") == config.cell_hash(cfg, cell, "cpu")
    assert config.config_hash(again) == config.config_hash(cfg)


def test_cell_hash_names_the_experiment_not_the_run() -> None:
    cfg = config.load("smoke")
    cell = Cell("mnist", "resnet18", "repeat3", 0)
    h = config.cell_hash(cfg, cell, "cpu")
    assert config.cell_hash(cfg.replace(cell_timeout_s=5.0, models=("x",)), cell, "cpu") == h
    assert config.cell_hash(cfg.replace(lr=0.01), cell, "cpu") != h
    assert config.cell_hash(cfg, cell, "cuda") != h
    assert config.cell_hash(cfg, dataclasses.replace(cell, seed=1), "cpu") != h


def test_cells_are_in_grid_order() -> None:
    cfg = Config(datasets=("mnist",), models=("a", "b"), strategies=("x", "y"), seeds=(0, 1))
    labels = [c.label() for c in config.cells(cfg)]
    assert labels[:3] == ["mnist/a/x/seed0", "mnist/a/x/seed1", "mnist/a/y/seed0"]
    assert len(labels) == 8
