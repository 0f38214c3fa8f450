"""A layer a strategy creates gets its model family's init (docs/methodology.md, fair
initialisation), so ``conv1`` on a random model is the model built natively with one channel.

Expected stds are analytic, from torchvision's constructors: ResNet/VGG ``kaiming_normal_``
fan_out relu and EfficientNet ``kaiming_normal_`` fan_out (leaky_relu a=0: the same gain sqrt 2)
give sqrt(2 / (out * kh * kw)); DenseNet's plain ``kaiming_normal_`` gives sqrt(2 / (in * kh *
kw)). PyTorch's default (kaiming-uniform a=sqrt(5)) gives 1 / sqrt(3 * in * kh * kw): 3.3x
ResNet's on the 7x7 stem, 2.3x EfficientNet's, 0.4x DenseNet's. An empirical std of n weights
is checked within 10% of the expected one, or 4 sampling errors (1 / sqrt(2 n) each) where that
is more: EfficientNet's 32x1x3x3 stem has 288 weights, a 4.2% sampling error, so 10% would be
a 2.4-sigma test that a change in the order of the draws could fail (seed 0 draws +9.8%).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torchvision
from torch import nn

import strategies
from strategies import NotApplicableError, adapt, build, build_backbone, restore
from strategies._init import FAMILY_RULES, family_of, family_rule, init_like_family
from strategies._meta import first_conv

MODELS = ["resnet18", "resnet50", "vgg16", "vgg16_bn", "densenet121", "efficientnet_b0"]
SPECS = ["conv1", "conv1+cifarstem", "conv1+resize32"]

_BACKBONES: dict[str, nn.Module] = {}


def _backbone(model_name: str) -> nn.Module:
    """One CPU backbone per model for the whole module, given back unchanged by each test with
    :func:`strategies.restore`. Its own weights are left uninitialised (built on meta, then
    ``to_empty``): what is tested is the layers the strategy creates, which adapt draws on the
    CPU whatever the rest holds, and drawing VGG16's 134 M weights takes 3 to 7 s here.
    ``test_the_build_path_records_the_rule`` goes through :func:`strategies.build` itself."""
    if model_name not in _BACKBONES:
        meta = build_backbone(model_name, num_classes=10, device="meta")[0]
        _BACKBONES[model_name] = meta.to_empty(device="cpu")
    return _BACKBONES[model_name]


# model -> (the start of the rule's record, the fan its std divides 2 by)
_RULES = {"resnet18": ("ResNet: kaiming_normal_ fan_out", "out"),
          "resnet50": ("ResNet: kaiming_normal_ fan_out", "out"),
          "vgg16": ("VGG: kaiming_normal_ fan_out", "out"),
          "vgg16_bn": ("VGG: kaiming_normal_ fan_out", "out"),
          "densenet121": ("DenseNet: kaiming_normal_ fan_in", "in"),
          "efficientnet_b0": ("EfficientNet: kaiming_normal_ fan_out", "out")}


def _expected_std(model_name: str, conv: nn.Conv2d) -> tuple[str, float]:
    rule, fan = _RULES[model_name]
    channels = conv.out_channels if fan == "out" else conv.in_channels
    return rule, math.sqrt(2 / (channels * conv.kernel_size[0] * conv.kernel_size[1]))


def _close(std: float, expected: float, n: int) -> bool:
    return abs(std - expected) <= max(0.10, 4 / math.sqrt(2 * n)) * expected


def _default_std(conv: nn.Module) -> float:
    """PyTorch's default conv init: kaiming_uniform_(a=sqrt(5)) = U(+-1/sqrt(fan_in))."""
    return 1 / math.sqrt(3 * nn.init._calculate_fan_in_and_fan_out(conv.weight)[0])


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("model_name", MODELS)
def test_new_first_conv_gets_the_family_init(model_name: str, spec: str) -> None:
    if "cifarstem" in spec and not model_name.startswith("resnet"):
        # Not skipped silently: the strategy itself refuses the family.
        with pytest.raises(NotApplicableError, match="ResNet family"):
            build(model_name, spec, num_classes=10, device="meta")
        return
    backbone, undo = _backbone(model_name), []
    torch.manual_seed(0)
    model = adapt(backbone, model_name, spec, num_classes=10, undo=undo)
    try:
        name, conv = first_conv(model.backbone, in_channels=1)
        assert conv.in_channels == 1
        if "cifarstem" in spec:  # the spatial part's 3x3 stride-1 stem survives the channel part
            assert (conv.kernel_size, conv.stride) == ((3, 3), (1, 1))
        rule, expected = _expected_std(model_name, conv)
        std = conv.weight.std().item()
        assert _close(std, expected, conv.weight.numel()), (
            f"{model_name} {spec}: {name} std {std:.4f}, the family rule ({rule}) gives "
            f"{expected:.4f}, PyTorch's default {_default_std(conv):.4f}")
        if conv.bias is not None:  # VGG: bias 0
            assert torch.count_nonzero(conv.bias) == 0
        # The record: the path as before, and beside it the rule the layer got.
        path = f"backbone.{name}"
        assert model.reinitialized == [path]
        assert model.init_rules == [f"{path} ({family_rule(backbone, conv).text})"]
        assert model.init_rules[0].startswith(f"{path} ({rule}")
    finally:
        restore(backbone, undo)


@pytest.mark.parametrize(("model_name", "spec", "rule", "fan_out"), [
    ("resnet18", "cifarstem", "ResNet: kaiming_normal_ fan_out relu", 64 * 3 * 3),
    ("efficientnet_b0", "resize32", "EfficientNet: kaiming_normal_ fan_out (gain sqrt 2) + bias 0",
     32 * 3 * 3)], ids=["resnet18-cifarstem", "efficientnet_b0-resize32"])
def test_the_build_path_records_the_rule(model_name: str, spec: str, rule: str,
                                         fan_out: int) -> None:
    torch.manual_seed(0)
    model = build(model_name, spec, num_classes=10)
    name, conv = first_conv(model.backbone, in_channels=1)
    assert model.reinitialized == [f"backbone.{name}"]
    assert model.init_rules == [f"backbone.{name} ({rule})"]
    expected = math.sqrt(2 / fan_out)
    assert _close(conv.weight.std().item(), expected, conv.weight.numel())
    # The meta build (what fills a row's columns) names the same rule.
    assert build(model_name, spec, device="meta").init_rules == model.init_rules


def test_post_convtranspose_keeps_pytorchs_default_init_on_vgg16() -> None:
    """The one documented exception: the post's exact stem, drawn as the post's code draws it."""
    backbone, undo = _backbone("vgg16"), []
    torch.manual_seed(5)
    model = adapt(backbone, "vgg16", "post-convtranspose", undo=undo)
    try:
        torch.manual_seed(5)  # the post's two lines, after the same backbone
        f0 = nn.Conv2d(1, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))
        f2 = nn.ConvTranspose2d(16, 64, kernel_size=(3, 3), stride=(2, 2), padding=(0, 0),
                                bias=False)
        ours = model.backbone.features
        assert torch.equal(ours[0].weight, f0.weight) and torch.equal(ours[0].bias, f0.bias)
        assert torch.equal(ours[2].weight, f2.weight)
        assert model.reinitialized == ["backbone.features.0", "backbone.features.2"]
        assert all("(PyTorch default: the post's exact stem" in r for r in model.init_rules)
    finally:
        restore(backbone, undo)


def test_convtranspose_stem_elsewhere_gets_the_family_init() -> None:
    backbone, undo = _backbone("resnet18"), []
    torch.manual_seed(0)
    model = adapt(backbone, "resnet18", "post-convtranspose", undo=undo)
    restore(backbone, undo)
    conv = model.adapt.stem[0]
    # kaiming_normal_ fan_out relu: sqrt(2 / 144) = 0.118 (PyTorch's default: 0.192); 144
    # weights, a sampling error of ~6%. (For the ConvTranspose2d, whose fans torch.nn.init takes
    # from its (16, 3, 3, 3) weight, the two rules happen to nearly agree: 0.118 vs 0.111.)
    assert _close(conv.weight.std().item(), math.sqrt(2 / 144), conv.weight.numel())
    assert model.init_rules == ["adapt.stem.0 (ResNet: kaiming_normal_ fan_out relu)",
                                "adapt.stem.2 (ResNet: kaiming_normal_ fan_out relu - its "
                                "Conv2d rule)"]


def test_unknown_family_keeps_the_default_and_says_so() -> None:
    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)

    layer = nn.Conv2d(1, 8, 3)
    before = layer.weight.detach().clone()
    assert family_of(Tiny()) is None
    assert init_like_family(Tiny(), layer) == {"": "PyTorch default: no init rule known for Tiny"}
    assert torch.equal(layer.weight, before)


# Small members of every family in the table, checked against the constructors themselves.
_FAMILY_MODELS = ["resnet18", "vgg11", "densenet121", "efficientnet_b0", "mobilenet_v2",
                  "mobilenet_v3_small", "mnasnet0_5", "regnet_x_400mf", "squeezenet1_1",
                  "convnext_tiny", "googlenet", "inception_v3", "vit_b_32", "swin_t", "maxvit_t",
                  "alexnet", "shufflenet_v2_x0_5"]


def test_every_family_in_the_table_has_a_model_checked() -> None:
    built = {torchvision.models.get_model_builder(m).__module__ for m in _FAMILY_MODELS}
    assert {cls.__module__ for cls in FAMILY_RULES} <= built


@pytest.mark.slow
@pytest.mark.parametrize("model_name", _FAMILY_MODELS)
def test_the_table_matches_torchvisions_constructor(model_name: str) -> None:
    """The family rule on a fresh copy of the model's first conv and last Linear draws what the
    constructor drew (std within 15%: 8 fresh copies pooled against one native layer)."""
    torch.manual_seed(0)
    native = strategies.build_backbone(model_name, num_classes=10)[0]
    _, conv = first_conv(native)
    linears = [m for m in native.modules() if isinstance(m, nn.Linear)]
    # ViT zeroes its head and Xavier-inits its MLP: no single Linear rule, left at the default.
    layers = [conv] + (linears[-1:] if model_name != "vit_b_32" else [])
    for layer in layers:
        copies = [copy.deepcopy(layer) for _ in range(8)]
        for fresh in copies:
            fresh.reset_parameters()  # as built: PyTorch's default
            init_like_family(native, fresh)
        ours = torch.cat([c.weight.flatten() for c in copies]).std().item()
        theirs = layer.weight.std().item()
        assert abs(ours - theirs) <= 0.15 * theirs, (model_name, type(layer).__name__, ours,
                                                     theirs)
        if layer.bias is not None:
            assert (torch.count_nonzero(layer.bias) == 0) == all(
                torch.count_nonzero(c.bias) == 0 for c in copies), (model_name, layer)


def test_the_familyinit_control_is_the_post_stem_with_vgg_init() -> None:
    """``post-convtranspose-familyinit`` builds the same stem as ``post-convtranspose`` with
    VGG's rule (kaiming_normal_ fan_out relu, zero bias), so a reader can tell the stem's
    effect from the init's; ``post-convtranspose`` itself stays at PyTorch's default."""
    backbone, undo = _backbone("vgg16"), []
    torch.manual_seed(0)
    control = adapt(backbone, "vgg16", "post-convtranspose-familyinit", undo=undo)
    try:
        f0, f2 = control.backbone.features[0], control.backbone.features[2]
        assert (type(f0), type(f2)) == (nn.Conv2d, nn.ConvTranspose2d)
        assert (f0.out_channels, f2.in_channels, f2.out_channels, f2.stride) == (16, 16, 64, (2, 2))
        rule, expected = _expected_std("vgg16", f0)  # sqrt(2 / (16 * 9)) = 0.118
        assert _close(f0.weight.std().item(), expected, f0.weight.numel())
        assert not _close(f0.weight.std().item(), _default_std(f0), f0.weight.numel())
        assert torch.count_nonzero(f0.bias) == 0
        # torch.nn.init reads a ConvTranspose2d's (16, 64, 3, 3) weight with fan_out 16 * 9:
        # the same 0.118 (PyTorch's default would give 1 / sqrt(3 * 64 * 9) = 0.024).
        assert _close(f2.weight.std().item(), math.sqrt(2 / (16 * 9)), f2.weight.numel())
        assert all(r.startswith("backbone.features.") and f"({rule}" in r
                   for r in control.init_rules)
    finally:
        restore(backbone, undo)
    torch.manual_seed(0)
    post = adapt(backbone, "vgg16", "post-convtranspose", undo=undo)
    try:
        f0, f2 = post.backbone.features[0], post.backbone.features[2]
        assert _close(f0.weight.std().item(), _default_std(f0), f0.weight.numel())
        assert _close(f2.weight.std().item(), _default_std(f2), f2.weight.numel())
        assert torch.count_nonzero(f0.bias) > 0
    finally:
        restore(backbone, undo)
