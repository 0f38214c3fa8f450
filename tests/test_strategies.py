"""strategies/: spec grammar, registry, every preset on the models of the brief, the post's model.

Fast tests build on the meta device (shapes only) or use resnet18; the real-weight VGG16 and
ResNet-50 checks are marked slow (VGG16 alone takes ~7 s to initialise on 2 cores).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

import strategies
from strategies import (
    DEFAULT_PRESETS,
    PRESETS,
    AdaptedModel,
    NotApplicableError,
    StrategyError,
    _registry,
    adapt,
    build,
    build_backbone,
    describe,
    list_strategies,
    parse_spec,
)
from strategies.channels import RepeatChannels
from strategies.explain import explain_error
from strategies.post import post_vgg16
from strategies.spatial import Pad, Resize

BRIEF_PRESETS = ("post-convtranspose", "resize224", "repeat3", "droppools")
MODELS = ("vgg16", "resnet18", "resnet50")
TOO_SMALL = "Output size is too small"


def expected_failure(model: str, preset: str) -> str | None:
    """What the brief says must fail: native 28 px on VGG16, and cifarstem outside ResNets."""
    if model == "vgg16" and preset == "repeat3":
        return TOO_SMALL
    if model == "vgg16" and preset == "cifarstem":
        return "not-applicable"
    return None


@pytest.fixture(scope="module")
def meta_backbones() -> dict[str, nn.Module]:
    return {name: build_backbone(name, device="meta")[0] for name in MODELS}


def x28(n: int = 2, device: str = "cpu") -> torch.Tensor:
    return torch.randn(n, 1, 28, 28, device=device) if device != "meta" else torch.empty(
        n, 1, 28, 28, device="meta")


# --------------------------------------------------------------------------------- spec grammar

@pytest.mark.parametrize(("spec", "canonical"), [
    ("repeat3", "repeat3"),
    ("resize224", "repeat3+resize224"),
    ("droppools", "conv1+droppools"),
    ("post-convtranspose", "convtranspose"),
    ("cifarstem", "conv1+cifarstem"),
    ("conv1+droppools", "conv1+droppools"),
    ("conv1+droppools2", "conv1+droppools2"),
    ("repeat3+resize224", "repeat3+resize224"),
    ("sumrgb+cifarstem", "sumrgb+cifarstem"),
    ("conv1", "conv1"),
    ("sumrgb", "sumrgb"),
    ("resize64", "resize64"),
    ("pad48", "pad48"),
    ("convtranspose", "convtranspose"),
    ("none", "none"),
    ("none+resize224", "none+resize224"),  # not the preset: the model gets one channel
    (" Repeat3+Resize112 ", "repeat3+resize112"),
])
def test_spec_round_trips_to_its_canonical_form(spec: str, canonical: str) -> None:
    parsed = parse_spec(spec)
    assert str(parsed) == canonical
    assert parse_spec(str(parsed)) == parsed
    assert strategies.canonical(canonical) == canonical


def test_presets_expand_and_remember_their_name() -> None:
    spec = parse_spec("resize224")
    assert (spec.channel, spec.spatial, spec.preset) == ("repeat3", "resize224", "resize224")
    assert parse_spec("none+resize224").channel is None
    assert parse_spec("none+resize224") != spec


@pytest.mark.parametrize(("bad", "message"), [
    ("repeat3+", "empty part"),
    ("+resize32", "empty part"),
    ("resize0", "between 1 and"),
    ("resize-5", "between 1 and"),
    ("resize", "needs a size"),
    ("pad", "needs a size"),
    ("resize224+pad32", "two spatial parts"),
    ("conv1+repeat3", "two channel parts"),
    ("resize32+conv1", "channel part first"),
    ("repeat3+resize32+pad32", "at most two parts"),
    ("bogus", "unknown adapter 'bogus'"),
    ("conv2", "did you mean conv1"),
    ("repeat3+convtranspose", "takes no channel part"),
    ("droppools0", "between 1 and"),
    ("resize1+none", "'none' can only be the channel part"),
    ("", "empty strategy"),
])
def test_bad_spec_names_the_bad_part(bad: str, message: str) -> None:
    with pytest.raises(StrategyError, match=re.escape(message)):
        parse_spec(bad)


def test_unknown_adapter_lists_the_valid_choices() -> None:
    with pytest.raises(StrategyError) as info:
        parse_spec("bogus+resize32")
    text = str(info.value)
    for name in ("conv1", "repeat3", "sumrgb", "resize<N>", "pad<N>", "droppools[<K>]",
                 "convtranspose", "cifarstem", *BRIEF_PRESETS):
        assert name in text


def test_strategy_error_is_a_value_error() -> None:
    assert issubclass(StrategyError, ValueError)
    assert issubclass(NotApplicableError, StrategyError)


def test_list_strategies_by_kind() -> None:
    assert list_strategies("channel") == ["conv1", "native1", "repeat3", "sumrgb"]
    spatial = list_strategies("spatial")
    for name in ("resize<N>", "pad<N>", "convtranspose", "droppools[<K>]", "cifarstem"):
        assert name in spatial
    presets = list_strategies("preset")
    assert set(BRIEF_PRESETS) <= set(presets) == set(PRESETS)
    assert list(DEFAULT_PRESETS[:4]) == list(BRIEF_PRESETS)
    assert set(DEFAULT_PRESETS) <= set(PRESETS)
    assert list_strategies() == [*list_strategies("channel"), *spatial, *presets]
    with pytest.raises(StrategyError, match="valid kinds"):
        list_strategies("bogus")


@pytest.mark.parametrize("spec", [*PRESETS, "conv1", "sumrgb+resize64", "droppools3", "none",
                                  "pad40"])
def test_describe_gives_one_plain_sentence(spec: str) -> None:
    text = describe(spec)
    assert text.startswith(spec if spec in PRESETS else str(parse_spec(spec)))
    assert "{n}" not in text and len(text) > 40


def test_unknown_model_names_the_valid_ones() -> None:
    with pytest.raises(StrategyError, match=r"unknown model 'vgg17'.*did you mean.*vgg16"):
        build("vgg17", "repeat3", device="meta")


def test_register_a_new_adapter_like_torchvision_register_model() -> None:
    @strategies.register("spatial", "flip")
    def flip(ctx, _value) -> None:
        """Mirror the image left-right."""
        ctx.add_input_op("flip", Flip())

    class Flip(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flip(-1)

    try:
        assert "flip" in list_strategies("spatial")
        model = build("resnet18", "repeat3+flip", device="meta")
        assert isinstance(model.adapt.flip, Flip)
        assert describe("repeat3+flip").endswith("Mirror the image left-right.")
    finally:
        del _registry._ADAPTERS["flip"]
    with pytest.raises(StrategyError):
        parse_spec("flip")


# ------------------------------------------------------------------ presets × the brief's models

@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_on_meta(meta_backbones: dict[str, nn.Module], model_name: str,
                              preset: str) -> None:
    expected = expected_failure(model_name, preset)
    backbone = copy.deepcopy(meta_backbones[model_name])
    if expected == "not-applicable":
        with pytest.raises(NotApplicableError, match="ResNet family"):
            adapt(backbone, model_name, preset)
        return
    model = adapt(backbone, model_name, preset, num_classes=10)
    if expected:
        with pytest.raises(RuntimeError, match=expected):
            model(x28(device="meta"))
    else:
        assert model(x28(device="meta")).shape == (2, 10)


@pytest.fixture(scope="module")
def resnet18_cpu() -> nn.Module:
    torch.manual_seed(0)
    return build_backbone("resnet18")[0]


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_on_cpu_resnet18(resnet18_cpu: nn.Module, preset: str) -> None:
    model = adapt(copy.deepcopy(resnet18_cpu), "resnet18", preset, num_classes=10)
    assert isinstance(model, AdaptedModel)
    assert model(x28()).shape == (2, 10)
    assert model.model_name == "resnet18" and model.preset == preset
    assert model.spec == PRESETS[preset]


def test_build_end_to_end_on_cpu() -> None:
    torch.manual_seed(0)
    model = build("resnet18", "droppools", num_classes=10)
    assert all(p.device.type == "cpu" for p in model.parameters())
    logits = model(x28())
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    logits.sum().backward()  # trainable end to end, input adaptation included
    assert model.backbone.conv1.weight.grad is not None


@pytest.fixture(scope="module")
def cpu_backbones() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {name: build_backbone(name)[0] for name in ("vgg16", "resnet50")}


@pytest.mark.slow
@pytest.mark.parametrize("model_name", ["vgg16", "resnet50"])
@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_on_cpu_big_models(cpu_backbones: dict[str, nn.Module], model_name: str,
                                        preset: str) -> None:
    expected = expected_failure(model_name, preset)
    backbone = copy.deepcopy(cpu_backbones[model_name])
    if expected == "not-applicable":
        with pytest.raises(NotApplicableError):
            adapt(backbone, model_name, preset)
        return
    model = adapt(backbone, model_name, preset, num_classes=10).eval()
    n = 1 if model.effective_input_px > 100 else 2  # one tiny forward at 224 px
    with torch.no_grad():
        if expected:
            with pytest.raises(RuntimeError, match=expected):
                model(x28(n))
        else:
            assert model(x28(n)).shape == (n, 10)


@pytest.mark.slow
def test_vgg16_reproduces_both_errors_of_the_post(cpu_backbones: dict[str, nn.Module]) -> None:
    vgg = cpu_backbones["vgg16"]
    with pytest.raises(RuntimeError, match=r"expected input\[2, 1, 28, 28\] to have 3 channels, "
                                           r"but got 1 channels instead"):
        adapt(copy.deepcopy(vgg), "vgg16", "none")(x28())
    with pytest.raises(RuntimeError, match=re.escape(
            "Given input size: (512x1x1). Calculated output size: (512x0x0). " + TOO_SMALL)):
        adapt(copy.deepcopy(vgg), "vgg16", "conv1")(x28())


def test_conv1_alone_on_vgg16_fails_like_the_post(meta_backbones: dict[str, nn.Module]) -> None:
    model = adapt(copy.deepcopy(meta_backbones["vgg16"]), "vgg16", "conv1")
    with pytest.raises(RuntimeError, match=TOO_SMALL):
        model(x28(device="meta"))


# -------------------------------------------------------------------------- the post's VGG16

# The write-up's last printout of the model (its first three feature layers), comments removed.
POST_PRINTOUT = """\
    (0): Conv2d(1, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))   # 这里变了
    (1): ReLU(inplace=True)
    (2): ConvTranspose2d(16, 64, kernel_size=(3, 3), stride=(2, 2), bias=False)  # 这里变了
"""


def _post_lines(text: str) -> list[str]:
    lines = [re.sub(r"\s*#.*$", "", line).strip() for line in text.splitlines()]
    return [line for line in lines if re.match(r"\(\d\): ", line)]


def test_post_convtranspose_prints_the_posts_layers() -> None:
    model = build("vgg16", "post-convtranspose", device="meta")
    ours = [f"({i}): {model.backbone.features[i]!r}" for i in range(3)]
    assert ours == _post_lines(POST_PRINTOUT)
    assert model.reinitialized == ["backbone.features.0", "backbone.features.2"]
    assert model.effective_input_px == 57  # (28 - 1) * 2 + 3


def test_post_convtranspose_equals_the_posts_code() -> None:
    with torch.device("meta"):
        literal = post_vgg16(num_classes=10)
    ours = build("vgg16", "post-convtranspose", device="meta")
    assert repr(ours.backbone) == repr(literal)
    assert len(ours.adapt) == 0


def test_convtranspose_elsewhere_is_a_stem_in_front() -> None:
    model = build("resnet18", "post-convtranspose", device="meta")
    stem = model.adapt.stem
    assert isinstance(stem[0], nn.Conv2d) and stem[0].in_channels == 1
    assert isinstance(stem[2], nn.ConvTranspose2d) and stem[2].stride == (2, 2)
    assert stem[2].out_channels == model.backbone.conv1.in_channels == 3
    assert model.reinitialized == ["adapt.stem.0", "adapt.stem.2"]
    assert model.effective_input_px == model.backbone_input_px == 57


# ------------------------------------------------------------------------------- channel adapters

@pytest.mark.parametrize(("model_name", "first"), [
    ("vgg16", "features.0"), ("resnet18", "conv1"), ("vit_b_16", "conv_proj"),
    ("inception_v3", "Conv2d_1a_3x3.conv"), ("efficientnet_b0", "features.0.0"),
    ("regnet_x_400mf", "stem.0"),
])
def test_conv1_finds_the_first_convolution_generically(model_name: str, first: str) -> None:
    model = build(model_name, "conv1", device="meta")
    conv = model.backbone.get_submodule(first)
    assert isinstance(conv, nn.Conv2d) and conv.in_channels == 1
    assert model.reinitialized == [f"backbone.{first}"]


def test_conv1_keeps_the_other_hyper_parameters() -> None:
    before = build_backbone("resnet18", device="meta")[0].conv1
    after = build("resnet18", "conv1", device="meta").backbone.conv1
    for attr in ("out_channels", "kernel_size", "stride", "padding", "dilation", "groups",
                 "padding_mode"):
        assert getattr(after, attr) == getattr(before, attr)
    assert (after.bias is None) == (before.bias is None)


def test_repeat3_is_a_view_and_keeps_the_model_intact() -> None:
    x = x28()
    y = RepeatChannels(3)(x)
    assert y.shape == (2, 3, 28, 28) and y.data_ptr() == x.data_ptr() and y.stride(1) == 0
    model = build("resnet18", "repeat3", device="meta")
    assert model.reinitialized == [] and model.backbone.conv1.in_channels == 3


@pytest.mark.parametrize("spatial", ["", "+resize32", "+cifarstem"])
def test_sumrgb_equals_repeat3_for_the_same_weights(resnet18_cpu: nn.Module,
                                                    spatial: str) -> None:
    backbone = resnet18_cpu
    torch.manual_seed(1)  # cifarstem draws its new conv: same draw for both
    folded = adapt(copy.deepcopy(backbone), "resnet18", "sumrgb" + spatial).eval()
    torch.manual_seed(1)
    tiled = adapt(copy.deepcopy(backbone), "resnet18", "repeat3" + spatial).eval()
    x = x28()
    with torch.no_grad():
        a, b = folded(x), tiled(x)
    assert a.shape == (2, 10)
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-5), (a - b).abs().max()
    assert folded.backbone.conv1.in_channels == 1
    # Folding keeps the weights: only cifarstem's new conv counts as re-initialised.
    assert folded.reinitialized == (["backbone.conv1"] if spatial == "+cifarstem" else [])


def test_sumrgb_is_exact_in_float64() -> None:
    conv = nn.Conv2d(3, 64, 3, padding=1).double()
    folded = nn.Conv2d(1, 64, 3, padding=1).double()
    with torch.no_grad():
        folded.weight.copy_(conv.weight.sum(1, keepdim=True))
        folded.bias.copy_(conv.bias)
    x = torch.randn(2, 1, 28, 28, dtype=torch.float64)
    assert torch.allclose(conv(x.expand(-1, 3, -1, -1)), folded(x), atol=1e-12)


# ------------------------------------------------------------------------------- spatial adapters

def test_resize_and_pad_modules() -> None:
    x = torch.ones(2, 1, 28, 28)
    assert Resize(224)(x).shape == (2, 1, 224, 224)
    padded = Pad(32)(x)
    assert padded.shape == (2, 1, 32, 32)
    assert padded[..., 2:30, 2:30].eq(1).all() and padded.sum() == 28 * 28 * 2
    assert Pad(31)(x)[0, 0].sum(0)[:1].item() == 0  # odd extra pixel goes right/bottom
    with pytest.raises(StrategyError, match="cannot shrink"):
        build("resnet18", "conv1+pad16", device="meta")


@pytest.mark.parametrize(("preset", "px"), [
    ("post-convtranspose", 57), ("resize224", 224), ("repeat3", 28), ("droppools", 28),
    ("resize32", 32), ("pad32", 32),
])
def test_effective_input_px(meta_backbones: dict[str, nn.Module], preset: str, px: int) -> None:
    model = adapt(copy.deepcopy(meta_backbones["vgg16"]), "vgg16", preset)
    assert model.effective_input_px == px


def _pools(model: nn.Module) -> int:
    return sum(isinstance(m, nn.MaxPool2d) for m in model.modules())


@pytest.mark.parametrize(("input_px", "dropped"), [(28, 1), (16, 1), (8, 2), (4, 3), (32, 0)])
def test_droppools_drops_the_fewest_pools(input_px: int, dropped: int) -> None:
    model = build("vgg16", "droppools", device="meta", input_px=input_px)
    assert _pools(model.backbone) == 5 - dropped
    assert model(torch.empty(2, 1, input_px, input_px, device="meta")).shape == (2, 10)
    if dropped:  # one pool fewer is not enough: the count is minimal
        fewer = build("vgg16", f"conv1+droppools{dropped - 1}" if dropped > 1 else "conv1",
                      device="meta", input_px=input_px)
        with pytest.raises(RuntimeError):
            fewer(torch.empty(2, 1, input_px, input_px, device="meta"))


def test_droppools_removes_from_the_end_and_only_what_exists() -> None:
    model = build("vgg16", "conv1+droppools2", device="meta")
    assert [type(model.backbone.features[i]).__name__ for i in (23, 30)] == ["Identity"] * 2
    assert _pools(model.backbone) == 3
    assert _pools(build("resnet18", "droppools", device="meta").backbone) == 1  # fits already
    with pytest.raises(NotApplicableError, match="only 1 MaxPool2d"):
        build("resnet18", "droppools2", device="meta")


def test_cifarstem_on_resnets_only() -> None:
    model = build("resnet18", "cifarstem", device="meta")
    conv = model.backbone.conv1
    assert (conv.in_channels, conv.kernel_size, conv.stride) == (1, (3, 3), (1, 1))
    assert isinstance(model.backbone.maxpool, nn.Identity)
    assert model.reinitialized == ["backbone.conv1"]
    with pytest.raises(NotApplicableError, match=r"cifarstem.*ResNet family.*vgg16 is VGG"):
        build("vgg16", "cifarstem", device="meta")


# ---------------------------------------------------------------------------------------- weights

def test_imagenet_weights_offline_is_a_clear_error(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("ADAPTBENCH_OFFLINE", "1")
    with pytest.raises(StrategyError, match=r"not cached at .*resnet18-.*\.pth.*offline.*Fix"):
        build("resnet18", "resize224", weights="imagenet", device="meta")


def test_state_dict_path_loads_and_reports_the_new_head(tmp_path: Path) -> None:
    torch.manual_seed(0)
    imagenet_like = build_backbone("resnet18", num_classes=1000)[0]
    path = tmp_path / "resnet18.pt"
    torch.save(imagenet_like.state_dict(), path)
    model = build("resnet18", "sumrgb", weights=str(path))
    assert model.reinitialized == ["backbone.fc"]
    assert torch.equal(model.backbone.conv1.weight,
                       imagenet_like.conv1.weight.sum(1, keepdim=True))
    assert torch.equal(model.backbone.layer4[1].conv2.weight, imagenet_like.layer4[1].conv2.weight)
    # conv1 replaces the loaded first layer: it is reported as re-initialised.
    assert build("resnet18", "conv1", weights=str(path)).reinitialized == [
        "backbone.fc", "backbone.conv1"]


def test_adapted_model_checkpoint_round_trips(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build("resnet18", "cifarstem").eval()
    path = tmp_path / "adapted.pt"
    torch.save(model.state_dict(), path)
    torch.manual_seed(1)
    again = build("resnet18", "cifarstem", weights=str(path)).eval()
    x = x28()
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    assert again.reinitialized == []


@pytest.mark.parametrize(("model_name", "head"), [
    ("resnet18", "fc"), ("squeezenet1_1", "classifier.1"),
    pytest.param("googlenet", "fc", marks=pytest.mark.slow),
    pytest.param("inception_v3", "fc", marks=pytest.mark.slow)])
def test_imagenet_weights_from_the_hub_cache(model_name: str, head: str, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The cached-file path, with torchvision's download replaced by a stand-in state dict."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("ADAPTBENCH_OFFLINE", "1")
    weights = torchvision.models.get_model_weights(model_name).DEFAULT
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / Path(weights.url).name).touch()
    torch.manual_seed(0)
    # A checkpoint like torchvision's: auxiliary heads included.
    kwargs = {"aux_logits": True, "init_weights": True} if model_name in (
        "googlenet", "inception_v3") else {}
    imagenet = torchvision.models.get_model(model_name, num_classes=1000, **kwargs).state_dict()
    monkeypatch.setattr(type(weights), "get_state_dict",
                        lambda self, *args, **kw: dict(imagenet))
    model = build(model_name, "sumrgb+resize96", weights="imagenet")
    assert model.reinitialized == [f"backbone.{head}"]
    assert model(x28()).shape == (2, 10)
    name, conv = next((n, m) for n, m in model.backbone.named_modules()
                      if isinstance(m, nn.Conv2d))
    assert torch.equal(conv.weight, imagenet[f"{name}.weight"].sum(1, keepdim=True))


@pytest.mark.parametrize("weights", ["no/such/file.pt", "imagenet1k"])
def test_bad_weights_value(weights: str) -> None:
    with pytest.raises(StrategyError, match="valid values are none"):
        build("resnet18", "repeat3", weights=weights, device="meta")


def test_weights_of_another_model_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "alexnet.pt"
    torch.save(build_backbone("squeezenet1_1")[0].state_dict(), path)
    with pytest.raises(StrategyError, match="do not fit"):
        build("resnet18", "repeat3", weights=str(path))


# ----------------------------------------------------------------------------------- explanations

def test_explain_error_names_layer_and_minimum_size() -> None:
    exc = RuntimeError("Given input size: (512x1x1). Calculated output size: (512x0x0). "
                       "Output size is too small")
    text = explain_error(exc, "vgg16", "repeat3")
    assert "features.30 (MaxPool2d)" in text and "1×1" in text and "0×0" in text
    assert "28 → 14 → 7 → 3 → 1" in text and "32 px" in text


def test_explain_error_channels_and_exact_size() -> None:
    exc = RuntimeError("Given groups=1, weight of size [64, 3, 3, 3], expected input[2, 1, 28, "
                       "28] to have 3 channels, but got 1 channels instead")
    text = explain_error(exc, "vgg16", "none")
    assert "features.0" in text and "repeat3" in text and "conv1" in text
    exc = AssertionError("Wrong image height! Expected 224 but got 28!")
    assert "exactly 224×224" in explain_error(exc, "vit_b_16", "repeat3")


def test_explain_error_never_raises() -> None:
    assert "boom" in explain_error(RuntimeError("boom"), "no-such-model", "repeat3+")
    assert explain_error(NotApplicableError("cifarstem applies to ResNets"), "vgg16",
                         "cifarstem") == "cifarstem applies to ResNets"
    assert isinstance(strategies.explain_error(ValueError(), "vgg16", "repeat3"), str)


def test_build_on_meta_and_attributes() -> None:
    model = build("resnet18", "droppools", device="meta")
    assert all(p.device.type == "meta" for p in model.parameters())
    assert (model.model_name, model.spec, model.preset) == ("resnet18", "conv1+droppools",
                                                            "droppools")
    assert isinstance(model.backbone, nn.Module) and model.num_classes == 10
    assert "spec='conv1+droppools'" in repr(model)


# -- the dataset's channel count and size ---------------------------------------------------------


def test_channel_adapters_follow_the_datasets_channel_count() -> None:
    import torch

    from strategies import NotApplicableError, build

    rgb = build("resnet18", "none+resize64", in_channels=3, input_px=32)
    assert tuple(rgb(torch.zeros(2, 3, 32, 32)).shape) == (2, 10)
    for spec in ("repeat3", "sumrgb"):
        with pytest.raises(NotApplicableError, match="this dataset's images have 3 channels"):
            build("resnet18", spec, in_channels=3, input_px=32)
    with pytest.raises(NotApplicableError, match="already takes 3: nothing to adapt"):
        build("resnet18", "conv1", in_channels=3, input_px=32)
    four = build("resnet18", "conv1", in_channels=4, input_px=32)
    assert tuple(four.backbone.conv1.weight.shape) == (64, 4, 7, 7)
    assert four.init_rules == ["backbone.conv1 (ResNet: kaiming_normal_ fan_out relu)"]
    assert tuple(four(torch.zeros(2, 4, 32, 32)).shape) == (2, 10)


def test_the_post_stem_takes_the_datasets_channels() -> None:
    import torch

    from strategies import build

    model = build("vgg16", "post-convtranspose", in_channels=3, input_px=28, device="meta")
    assert model.backbone.features[0].in_channels == 3
    assert tuple(model(torch.zeros(2, 3, 28, 28, device="meta")).shape) == (2, 10)


def test_droppools_removes_as_many_pools_as_this_size_needs() -> None:
    from strategies import build

    def dropped(px: int) -> int:
        m = build("vgg16", "conv1+droppools", input_px=px, device="meta")
        return sum(type(v).__name__ == "Identity" for v in m.backbone.features)

    # VGG16's five 2x2 pools: 28 px reaches 0 at the fifth, 40 px at the sixth (it has 5),
    # 16 px at the fifth -> the fewest removed that keep a 1 px map.
    assert dropped(28) == 1 and dropped(40) == 0 and dropped(16) == 1 and dropped(8) == 2


def test_flops_are_counted_at_the_models_input_shape() -> None:
    from strategies import build
    from strategies._meta import forward_gflops_per_img

    small = forward_gflops_per_img(build("resnet18", "conv1", input_px=28, device="meta"))
    large = forward_gflops_per_img(build("resnet18", "conv1", input_px=56, device="meta"))
    assert 3.5 < large / small < 4.5  # 4x the pixels, ~4x the arithmetic
