"""timm as a second model source: ``timm:NAME`` builds, adapts, initialises fairly, is refused
clearly when unknown or not installed, runs in the doctor and end to end in a smoke sweep.

Weights are local state dicts only (timm's hub is not reachable here): a stand-in file in a
temporary Hugging Face cache for ``weights="imagenet"``, a plain ``torch.save`` file for a path.
Expected stds are analytic, as in tests/test_strategies_init.py: kaiming_normal_ fan_out relu
gives sqrt(2 / (out * kh * kw)) = 0.0253 on resnet18's 64x1x7x7 stem (PyTorch's default would
give 1 / sqrt(3 * 49) = 0.082).
"""

from __future__ import annotations

import csv
import fnmatch
import math
import re
import sys
from pathlib import Path

import pytest
import timm  # in the dev extra (what `make test` installs): missing means a broken install
import torch
from torch import nn

import strategies
from bench import config
from bench.__main__ import main
from bench.tools import doctor
from strategies import NotApplicableError, StrategyError, build, build_backbone, sources
from strategies._init import family_rule, init_like_family
from strategies._meta import first_conv, meta_forward

CHANNEL_SPECS = ["conv1", "repeat3", "native1", "resize224", "sumrgb"]
STEM_STD = math.sqrt(2 / (64 * 7 * 7))  # kaiming_normal_ fan_out relu on resnet18's stem


def x28(n: int = 2, device: str = "cpu") -> torch.Tensor:
    return torch.randn(n, 1, 28, 28, device=device)


def _close(std: float, expected: float, n: int) -> bool:
    """Within 10% or 4 sampling errors of a std estimated from n draws (test_strategies_init.py)."""
    return abs(std - expected) <= max(0.10, 4 / math.sqrt(2 * n)) * expected


# ------------------------------------------------------------------------------------- build

@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("spec", CHANNEL_SPECS)
def test_timm_resnet18_builds_and_runs(spec: str, device: str) -> None:
    torch.manual_seed(0)
    model = build("timm:resnet18", spec, num_classes=10, device=device)
    assert model.model_name == "timm:resnet18"
    assert type(model.backbone).__module__ == "timm.models.resnet"
    with torch.no_grad():
        out = model.eval()(x28(device=device))
    assert out.shape == (2, 10)
    if device == "cpu":
        assert torch.isfinite(out).all()


def test_native1_asks_timms_constructor_for_one_channel() -> None:
    torch.manual_seed(0)
    model = build("timm:resnet18", "native1")
    assert model.backbone.conv1.weight.shape == (64, 1, 7, 7)
    # Exactly the architecture timm builds for in_chans=1: every parameter's shape matches.
    native = timm.create_model("resnet18", num_classes=10, in_chans=1)
    ours = {k: v.shape for k, v in model.backbone.state_dict().items()}
    assert ours == {k: v.shape for k, v in native.state_dict().items()}
    assert model.init_rules == ["backbone.conv1 (timm constructor, in_chans=1)"]
    # The constructor's draw, which for timm's ResNet is kaiming_normal_ fan_out relu.
    conv = model.backbone.conv1
    assert _close(conv.weight.std().item(), STEM_STD, conv.weight.numel())


def test_native1_covers_every_input_layer_where_conv1_cannot() -> None:
    """Reparameterisable stems (MobileOne) feed the image to parallel branches: conv1 replaces
    one and the other still wants RGB; timm's in_chans=1 builds all of them."""
    model = build("timm:mobileone_s0", "native1", device="meta")
    assert len(model.reinitialized) > 1
    assert meta_forward(model, (2, 1, 64, 64)).shape == (2, 10)
    with pytest.raises(RuntimeError, match="channel"):  # "Invalid channel dimensions" on meta
        meta_forward(build("timm:mobileone_s0", "conv1", device="meta"), (2, 1, 64, 64))


def test_native1_on_torchvision_is_conv1s_layer() -> None:
    torch.manual_seed(3)
    a = build("resnet18", "conv1")
    torch.manual_seed(3)
    b = build("resnet18", "native1")
    assert torch.equal(a.backbone.conv1.weight, b.backbone.conv1.weight)
    assert a.init_rules == b.init_rules == ["backbone.conv1 (ResNet: kaiming_normal_ fan_out relu)"]


@pytest.mark.parametrize("model_name", ["timm:resnet18", "resnet18"])
def test_native1_needs_a_one_channel_dataset(model_name: str) -> None:
    with pytest.raises(NotApplicableError, match=r"native1 .* one input channel.* have 3"):
        build(model_name, "native1", in_channels=3, device="meta")


def test_native1_is_listed_and_described() -> None:
    assert "native1" in strategies.list_strategies("channel")
    text = strategies.describe("native1")
    assert "in_chans=1" in text and "conv1" in text


# -------------------------------------------------------------------------------------- init

@pytest.mark.parametrize(("model_name", "spec", "rule", "fan_out"), [
    ("timm:resnet18", "conv1", "timm ResNet: kaiming_normal_ fan_out relu", 64 * 7 * 7),
    ("timm:resnet18", "conv1+resize32", "timm ResNet: kaiming_normal_ fan_out relu", 64 * 7 * 7),
    ("timm:efficientnet_b0", "conv1", "timm EfficientNet: normal std sqrt(2/fan_out) + bias 0",
     32 * 3 * 3)])
def test_a_created_conv_gets_the_timm_family_init(model_name: str, spec: str, rule: str,
                                                  fan_out: int) -> None:
    torch.manual_seed(0)
    model = build(model_name, spec)
    name, conv = first_conv(model.backbone, in_channels=1)
    assert conv.in_channels == 1
    assert model.init_rules == [f"backbone.{name} ({rule})"]
    expected = math.sqrt(2 / fan_out)
    assert _close(conv.weight.std().item(), expected, conv.weight.numel()), (
        conv.weight.std().item(), expected)
    # The meta build (what fills a row's columns) names the same rule.
    assert build(model_name, spec, device="meta").init_rules == model.init_rules


@pytest.mark.parametrize("model_name", ["resnet18", "efficientnet_b0", "mobilenetv3_small_100"])
def test_the_timm_table_matches_timms_constructor(model_name: str) -> None:
    """The family rule on fresh copies of the first conv and the head draws what timm's
    constructor drew (std within 15%: 8 copies pooled against one native layer)."""
    torch.manual_seed(0)
    native = timm.create_model(model_name, num_classes=10)
    _, conv = first_conv(native)
    head = [m for m in native.modules() if isinstance(m, nn.Linear)][-1]
    for layer in (conv, head):
        copies = [nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size,
                            bias=conv.bias is not None) if layer is conv else
                  nn.Linear(head.in_features, head.out_features) for _ in range(8)]
        for fresh in copies:
            init_like_family(native, fresh)
        ours = torch.cat([c.weight.flatten() for c in copies]).std().item()
        theirs = layer.weight.std().item()
        assert abs(ours - theirs) <= 0.15 * theirs, (model_name, type(layer).__name__, ours,
                                                     theirs)


def test_other_timm_models_keep_pytorchs_default_and_say_so() -> None:
    backbone = build_backbone("timm:vit_tiny_patch16_224", device="meta")[0]
    layer = nn.Conv2d(1, 192, 16, stride=16)
    before = layer.weight.detach().clone()
    assert init_like_family(backbone, layer) == {
        "": "PyTorch default: no init rule known for timm VisionTransformer"}
    assert torch.equal(layer.weight, before)
    assert family_rule(backbone, layer).weight is None


# ------------------------------------------------------------------------------- bad names

def test_unknown_timm_model_is_refused_naming_it() -> None:
    with pytest.raises(StrategyError, match=r"unknown model 'timm:nope'.*timm's \d+ "
                                            r"architectures.*bench list --source timm"):
        build("timm:nope", "repeat3", device="meta")
    with pytest.raises(StrategyError, match=r"'timm:resnet19'.*did you mean timm:resnet18"):
        strategies.check_model_name("timm:resnet19")


def test_a_timm_only_name_without_prefix_points_at_it() -> None:
    with pytest.raises(StrategyError, match=r"unknown model 'resnet50d' \(did you mean "
                                            r"timm:resnet50d"):
        strategies.check_model_name("resnet50d")


@pytest.mark.parametrize("name", ["tv:resnet18", "torchvision:resnet18"])
def test_unknown_source_prefix(name: str) -> None:
    with pytest.raises(StrategyError, match=r"unknown model source .*valid forms: NAME "
                                            r"\(torchvision\), timm:NAME"):
        strategies.check_model_name(name)


def test_list_models_by_source() -> None:
    names = strategies.list_models("timm")
    assert "timm:resnet18" in names and len(names) == len(timm.list_models())
    assert strategies.list_models() == strategies.list_models("torchvision")
    assert strategies.list_models(None) == [*strategies.list_models("torchvision"), *names]
    with pytest.raises(StrategyError, match="unknown model source 'keras'; valid: torchvision"):
        strategies.list_models("keras")


def test_the_grid_refuses_an_unknown_timm_model_before_any_cell(tmp_path: Path,
                                                                 capsys) -> None:
    with pytest.raises(config.ConfigError, match=r"bad model 'timm:nope' in models"):
        config.load("smoke", ["models=timm:nope"])
    rdir = tmp_path / "results"
    code = main(["run", "--profile", "smoke", "--results-dir", str(rdir), "--device", "cpu",
                 "--set", "models=resnet18,timm:nope"])
    assert code == 2
    assert "unknown model 'timm:nope'" in capsys.readouterr().err
    assert not rdir.exists()


# --------------------------------------------------------------------------- missing extra

@pytest.fixture
def no_timm(monkeypatch: pytest.MonkeyPatch) -> None:
    """``import timm`` fails, as on a machine without the extra (None in sys.modules makes the
    import system raise ImportError)."""
    monkeypatch.setitem(sys.modules, "timm", None)


def test_the_extra_pins_the_version_the_hint_names() -> None:
    """pyproject's timm extra, the dev extra (what `make test` installs) and the install hint
    name one release."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    extras = project["project"]["optional-dependencies"]
    pin = f"timm=={sources.TIMM_VERSION}"
    assert extras[sources.TIMM_EXTRA] == [pin]
    assert pin in extras["dev"]


def test_missing_timm_is_a_clear_error(no_timm: None) -> None:
    install = rf"pip install '\.\[{sources.TIMM_EXTRA}\]'"
    with pytest.raises(StrategyError, match=rf"timm: models need the optional timm.*{install}"):
        build("timm:resnet18", "repeat3", device="meta")
    with pytest.raises(config.ConfigError, match=rf"bad model 'timm:resnet18'.*{install}"):
        config.load("smoke", ["models=timm:resnet18"])
    # torchvision keeps working, and list_models(None) lists what is installed.
    assert build("resnet18", "repeat3", device="meta")(x28(device="meta")).shape == (2, 10)
    assert strategies.list_models(None) == strategies.list_models("torchvision")


def test_bench_list_with_and_without_timm(capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert f"timm models ({len(timm.list_models())} architectures" in out
    assert main(["list", "--source", "timm"]) == 0
    assert "timm:resnet18\n" in capsys.readouterr().out
    monkeypatch.setitem(sys.modules, "timm", None)
    assert main(["list"]) == 0
    assert "timm models: not installed; pip install '.[timm]'" in capsys.readouterr().out
    assert main(["list", "--source", "timm"]) == 2
    assert "pip install '.[timm]'" in capsys.readouterr().err


# ----------------------------------------------------------------------------------- weights

def _fake_hf_cache(root: Path, state: dict[str, torch.Tensor]) -> Path:
    """timm/resnet18.a1_in1k as huggingface_hub caches it: refs/main names a snapshot."""
    from safetensors.torch import save_file

    repo = root / "models--timm--resnet18.a1_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abc")
    snapshot = repo / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(snapshot / "model.safetensors"))
    return snapshot / "model.safetensors"


def test_imagenet_weights_offline_name_where_the_file_goes(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("ADAPTBENCH_OFFLINE", "1")
    where = tmp_path / "models--timm--resnet18.a1_in1k" / "snapshots"
    with pytest.raises(StrategyError, match=rf"not cached at {re.escape(str(where))}.*offline.*Fix.*"
                                            r"create_model\('resnet18', pretrained=True\)"):
        build("timm:resnet18", "resize224", weights="imagenet", device="meta")
    with pytest.raises(config.ConfigError, match=r"bad weights 'imagenet' for model "
                                                 r"timm:resnet18.*not cached"):
        config.check_weights(config.load("smoke", ["models=timm:resnet18", "weights=imagenet"]))


def test_imagenet_weights_from_the_hf_cache(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("ADAPTBENCH_OFFLINE", "1")
    torch.manual_seed(0)
    imagenet = timm.create_model("resnet18", num_classes=1000).state_dict()
    _fake_hf_cache(tmp_path, imagenet)
    model = build("timm:resnet18", "native1", weights="imagenet")
    assert model.reinitialized == ["backbone.fc"]  # 10 classes: the head is new
    # native1 with pretrained weights is timm's adapt_input_conv: RGB summed (= sumrgb).
    assert torch.equal(model.backbone.conv1.weight, imagenet["conv1.weight"].sum(1, keepdim=True))
    assert torch.equal(model.backbone.layer4[1].conv2.weight, imagenet["layer4.1.conv2.weight"])
    assert "adapt_input_conv" in model.notes[-1]
    assert build("timm:resnet18", "native1", weights="imagenet",
                 device="meta").reinitialized == ["backbone.fc"]
    config.check_weights(config.load("smoke", ["models=timm:resnet18", "weights=imagenet"]))


def test_a_local_state_dict_loads_with_load_matching(tmp_path: Path) -> None:
    torch.manual_seed(0)
    imagenet_like = build_backbone("timm:resnet18", num_classes=1000)[0]
    path = tmp_path / "timm_resnet18.pt"
    torch.save(imagenet_like.state_dict(), path)
    model = build("timm:resnet18", "sumrgb", weights=str(path))
    assert model.reinitialized == ["backbone.fc"]
    assert torch.equal(model.backbone.conv1.weight,
                       imagenet_like.conv1.weight.sum(1, keepdim=True))
    native = build("timm:resnet18", "native1", weights=str(path))
    assert torch.equal(native.backbone.conv1.weight, model.backbone.conv1.weight)
    assert "adapt_input_conv" in native.notes[-1]
    with pytest.raises(StrategyError, match="do not fit"):
        build("timm:resnet34", "repeat3", weights=str(path))


# ------------------------------------------------------------------------------------ doctor

def test_doctor_resolves_timm_patterns_and_sources() -> None:
    resnet1x = [f"timm:{m}" for m in timm.list_models() if fnmatch.fnmatch(m, "resnet1?")]
    assert "timm:resnet18" in resnet1x
    assert doctor.resolve_models(["timm:resnet1?"]) == resnet1x
    assert doctor.resolve_models(["resnet1?"], "timm") == resnet1x  # --source timm
    assert doctor.resolve_models(["resnet18", "timm:resnet18"]) == ["resnet18", "timm:resnet18"]
    assert doctor.resolve_models(["resnet18"], "timm") == ["timm:resnet18"]
    assert len(doctor.resolve_models(["all"], "timm")) == len(timm.list_models())
    with pytest.raises(StrategyError, match=r"no model matches 'timm:zzz\*'.*bench list "
                                            r"--source timm"):
        doctor.resolve_models(["timm:zzz*"])


def test_doctor_over_timm_models_explains_like_torchvision(tmp_path: Path) -> None:
    out = tmp_path / "compat.csv"
    code = doctor.main(["--models", "timm:resnet18", "timm:vit_tiny_patch16_224", "resnet18",
                        "--strategies", "native1", "repeat3", "resize224", "--out", str(out),
                        "--no-png", "-q", "--jobs", "1"])
    assert code == 0
    rows = {(r["model"], r["strategy"]): r for r in csv.DictReader(out.open())}
    assert len(rows) == 9
    assert all(rows["timm:resnet18", s]["status"] == "ok" for s in ("native1", "repeat3",
                                                                  "resize224"))
    vit = rows["timm:vit_tiny_patch16_224", "repeat3"]
    assert (vit["error_class"], vit["min_input_px"]) == ("exact-size", "224")
    assert "exactly 224×224 px" in vit["explanation"] and "resize224" in vit["explanation"]
    assert rows["timm:vit_tiny_patch16_224", "resize224"]["status"] == "ok"


@pytest.mark.parametrize(("message", "px"), [
    ("Input height (28) doesn't match model (224).", 224),  # timm's PatchEmbed
    ("Input image height (224) doesn't match model (384).", 384),  # timm's Swin-V2-CR
    ("Wrong image height! Expected 224 but got 28!", 224)])  # torchvision's ViT
def test_exact_size_messages_of_both_libraries(message: str, px: int) -> None:
    from strategies.explain import _EXACT, classify

    assert classify(AssertionError(message)) == "exact-size"
    assert int(_EXACT.search(message).group(1)) == px


# ---------------------------------------------------------------------------------- end to end

TINY = ["datasets=mnist", "models=resnet18", "seeds=0", "train_size=64", "test_size=40",
        "batch_size=16", "epochs=1", "warmup_steps=1", "window_steps=1", "profile_steps=0",
        "num_threads=1", "peak_tflops=1", "cell_timeout_s=180", "contended_retries=0"]  # tests/test_faults.py's


@pytest.mark.slow
def test_smoke_sweep_of_timm_resnet18_end_to_end(tmp_path: Path, monkeypatch, capsys) -> None:
    for name in ("ADAPTBENCH_CELL_IMPL", "ADAPTBENCH_INJECT_FAULT",
                 "ADAPTBENCH_CELL_RLIMIT_AS_MIB", "ADAPTBENCH_FAKE", "ADAPTBENCH_FAKE_ESTIMATE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    rdir = tmp_path / "results"
    argv = ["run", "--profile", "smoke", "--results-dir", str(rdir), "--device", "cpu",
            "--quiet"]
    for item in [*TINY, "models=timm:resnet18", "strategies=conv1,repeat3,native1,resize224"]:
        argv += ["--set", item]
    assert main(argv) == 0
    from bench import results

    got = {r["strategy"]: r for r in results.read_csv(rdir / results.file_name("runs"), "runs")}
    assert set(got) == {"conv1", "repeat3", "native1", "resize224"}
    for strategy, row in got.items():
        assert row["model"] == "timm:resnet18"
        assert row["status"] == "ok", (strategy, row.get("error"))
        assert 0.0 <= float(row["test_acc"]) <= 1.0


def test_cifarstem_applies_to_timms_plain_resnet_stem_and_explains_the_deep_one() -> None:
    import strategies

    model = strategies.build("timm:resnet18", "conv1+cifarstem")
    assert tuple(model.backbone.conv1.weight.shape) == (64, 1, 3, 3)
    assert model.init_rules == ["backbone.conv1 (timm ResNet: kaiming_normal_ fan_out relu)"]
    assert tuple(model(torch.zeros(2, 1, 28, 28)).shape) == (2, 10)
    with pytest.raises(strategies.NotApplicableError, match="single-convolution stem"):
        strategies.build("timm:resnet50d", "cifarstem", device="meta")
