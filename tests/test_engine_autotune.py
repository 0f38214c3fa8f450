"""Precision and layout "auto" on CPU: measured once per model, saved, applied to every cell."""

from __future__ import annotations

import json

import pytest

from bench import config, identity
from bench.config import Cell, Config, ConfigError
from bench.engine import autotune
from bench.engine.autotune import PLAIN, Candidate

AMX = ["avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16"]
AVX2 = ["avx2", "fma"]
DEVICE_ID = "cpu | test cpu | 2 logical cores"
BF16_CL = Candidate("bf16", True)


def _cfg(**changes) -> Config:
    base = Config(models=("resnet18",), strategies=("repeat3", "cifarstem"), seeds=(0, 1),
                  precision="auto", channels_last="auto", batch_size=8, per_model=())
    return base.replace(**changes)


def test_candidates_follow_the_isa_and_the_keys_left_auto() -> None:
    names = [c.name for c in autotune.candidates(_cfg(), AMX)]
    assert names == ["fp32 NCHW", "fp32 channels_last", "bf16 NCHW", "bf16 channels_last"]
    # No native bf16: emulated bf16 is never timed (it is ~100x slower).
    assert [c.name for c in autotune.candidates(_cfg(), AVX2)] == ["fp32 NCHW",
                                                                    "fp32 channels_last"]
    # A key the config fixes stays fixed.
    assert [c.name for c in autotune.candidates(_cfg(channels_last=False), AMX)] == [
        "fp32 NCHW", "bf16 NCHW"]
    assert autotune.candidates(_cfg(precision="fp32", channels_last=True), AMX) == [
        Candidate("fp32", True)]


def test_plain_fp32_is_kept_unless_another_is_clearly_faster() -> None:
    assert autotune.decide({PLAIN: 100.0, BF16_CL: 104.9}) == PLAIN
    assert autotune.decide({PLAIN: 100.0, BF16_CL: 106.0}) == BF16_CL
    assert autotune.decide({PLAIN: 100.0, BF16_CL: 80.0}) == PLAIN


class _Prober:
    def __init__(self, rates: dict[Candidate, float]) -> None:
        self.rates, self.calls = rates, []

    def __call__(self, cfg, cell, options, threads):
        self.calls.append((cell, tuple(options), threads))
        return {c: self.rates[c] for c in options}


def _resolve(cfg: Config, tmp_path, prober, device_id: str = DEVICE_ID, flags=AMX) -> Config:
    cells = config.cells(cfg)
    return autotune.resolve_for_sweep(cfg, cells, "cpu", device_id, tmp_path, flags, 2,
                                      prober=prober)


def test_a_measured_choice_overrides_the_isa_rule_for_every_cell_of_the_model(tmp_path) -> None:
    # The ISA rule alone picks bf16 + channels_last on an AMX CPU; here fp32 NCHW measured
    # fastest, so every strategy and seed of the model trains in fp32 NCHW.
    prober = _Prober({PLAIN: 388.0, Candidate("fp32", True): 380.0,
                      Candidate("bf16", False): 300.0, BF16_CL: 317.0})
    cfg = _resolve(_cfg(), tmp_path, prober)
    assert cfg.auto_choices == ("resnet18=fp32/nchw",)
    for cell in config.cells(cfg):
        eff = identity.effective(cfg, cell, "cpu")
        assert (eff.precision, eff.channels_last) == ("fp32", False)
    # One probe for the model, on its costliest strategy (cifarstem keeps the 28 px map whole
    # through the stem: ~13x repeat3's GFLOPs), with the cells' threads.
    assert len(prober.calls) == 1
    cell, options, threads = prober.calls[0]
    assert (cell.model, cell.strategy, threads) == ("resnet18", "cifarstem", 2)
    assert len(options) == 4


def test_the_choice_is_saved_and_a_resumed_sweep_reuses_it_without_probing(tmp_path) -> None:
    first = _Prober({PLAIN: 10.0, Candidate("fp32", True): 10.0,
                     Candidate("bf16", False): 10.0, BF16_CL: 20.0})
    assert _resolve(_cfg(), tmp_path, first).auto_choices == ("resnet18=bf16/channels_last",)
    saved = json.loads((tmp_path / autotune.FILE).read_text())
    (entry,) = saved.values()
    assert entry["choice"] == "bf16/channels_last"
    assert entry["img_s"]["bf16 channels_last"] == 20.0
    # Same directory, same machine: the saved decision, however the machine feels today.
    second = _Prober({PLAIN: 50.0, Candidate("fp32", True): 10.0,
                      Candidate("bf16", False): 10.0, BF16_CL: 10.0})
    assert _resolve(_cfg(), tmp_path, second).auto_choices == ("resnet18=bf16/channels_last",)
    assert second.calls == []
    # Another machine decides for itself (and keeps the first machine's decision beside it).
    assert _resolve(_cfg(), tmp_path, second, device_id="cpu | other").auto_choices == (
        "resnet18=fp32/nchw",)
    assert len(json.loads((tmp_path / autotune.FILE).read_text())) == 2


def test_nothing_is_probed_where_nothing_is_auto_or_on_cuda(tmp_path) -> None:
    prober = _Prober({})
    fixed = _cfg(precision="fp32", channels_last=False)
    assert _resolve(fixed, tmp_path, prober) == fixed
    cfg = _cfg()
    assert autotune.resolve_for_sweep(cfg, config.cells(cfg), "cuda", "cuda | x", tmp_path,
                                      AMX, 2, prober=prober) == cfg
    assert prober.calls == []
    assert not (tmp_path / autotune.FILE).exists()


def test_the_choice_leaves_the_cell_hash_alone(tmp_path) -> None:
    # Rows written before the measurement (or on a rerun that re-measures) still resume.
    cfg = _cfg()
    chosen = cfg.replace(auto_choices=("resnet18=bf16/channels_last",))
    for cell in config.cells(cfg):
        assert identity.cell_hash(cfg, cell, DEVICE_ID) == identity.cell_hash(chosen, cell,
                                                                               DEVICE_ID)


def test_a_bad_auto_choices_entry_is_refused_naming_it_and_the_valid_form() -> None:
    with pytest.raises(ConfigError, match=r"'resnet18=int8/nchw'.*fp32 \| bf16 \| fp16"):
        config.load("smoke", ["auto_choices=resnet18=int8/nchw"])
    with pytest.raises(ConfigError, match="not a recipe key"):
        config.load("smoke", ["per_model=resnet18:auto_choices=x"])
    pinned = config.load("smoke", ["auto_choices=resnet18=fp32/channels_last"])
    eff = identity.effective(pinned.replace(precision="auto", channels_last="auto"),
                             Cell("mnist", "resnet18", "repeat3", 0), "cpu")
    assert (eff.precision, eff.channels_last) == ("fp32", True)


def test_the_real_probe_times_every_candidate_on_the_recipe() -> None:
    cfg = _cfg(grad_clip=1.0)
    options = autotune.candidates(cfg, AVX2)
    rates = autotune.probe(cfg, Cell("mnist", "resnet18", "repeat3", 0), options, threads=1)
    assert set(rates) == set(options)
    assert all(r > 0 for r in rates.values())
