"""How each torchvision (and timm) family initialises a layer: the one owner of that knowledge.

A layer a strategy creates gets the initialisation the model's own torchvision constructor gives
a layer of that type, so that ``conv1`` on a random model *is* the model built natively with one
input channel, and strategies differ by architecture, not by the scale of a fresh layer
(PyTorch's default Conv2d init, kaiming-uniform a=sqrt(5), draws ResNet's 7x7 stem with std
0.082 where ResNet's constructor draws 0.025).

The table below transcribes the ``for m in self.modules()`` loops of the constructors in
torchvision 0.29 (``torchvision/models/*.py``), found by the backbone's class. Conv2d / Linear:

- ResNet: kaiming_normal_ fan_out relu / PyTorch default.
- VGG: kaiming_normal_ fan_out relu, bias 0 / normal 0.01, bias 0.
- DenseNet: kaiming_normal_ (fan_in, gain sqrt 2) / bias 0.
- EfficientNet (v1 and v2): kaiming_normal_ fan_out (gain sqrt 2), bias 0 /
  uniform +-1/sqrt(out_features), bias 0.
- MobileNetV2, MobileNetV3: kaiming_normal_ fan_out (gain sqrt 2), bias 0 / normal 0.01, bias 0.
- MNASNet: kaiming_normal_ fan_out relu, bias 0 / kaiming_uniform_ fan_out sigmoid, bias 0.
- RegNet: normal std sqrt(2 / fan_out) (= kaiming_normal_ fan_out relu) / normal 0.01, bias 0.
- SqueezeNet: kaiming_uniform_ (fan_in, gain sqrt 2), bias 0 / (has no Linear).
- ConvNeXt: trunc_normal_ 0.02, bias 0 / the same.
- GoogLeNet: trunc_normal_ 0.01 in [-2, 2] / the same.
- Inception3: trunc_normal_ 0.1 in [-2, 2] (or the layer's ``stddev``) / the same.
- VisionTransformer: trunc_normal_ sqrt(1 / fan_in), bias 0 (``conv_proj``) / no single rule.
- SwinTransformer: PyTorch default / trunc_normal_ 0.02, bias 0.
- MaxVit: normal 0.02, bias 0 / the same.
- AlexNet, ShuffleNetV2: no init loop: PyTorch default for both.

Notes:

- "PyTorch default" means the constructor sets nothing for that layer type, so the family's
  rule *is* PyTorch's default (the layer keeps what its own ``reset_parameters`` drew). A bias
  the constructor does not mention (ResNet, DenseNet, RegNet, GoogLeNet, Inception3) likewise
  keeps PyTorch's default: those families build their convolutions without one.
- BatchNorm / GroupNorm: every family that mentions them sets weight 1 and bias 0, which is
  PyTorch's default too; recorded, nothing drawn.
- ``ConvTranspose2d``: no torchvision classifier has one, so no constructor names it; it gets its
  family's Conv2d rule (it is a convolution, and its scale should match its neighbours'), with
  the fans ``torch.nn.init`` computes from its weight's shape.
- The rule of the *random-init* model (GoogLeNet/Inception3 with ``init_weights=True``, which
  ``_model`` passes); when ImageNet weights are loaded the fresh layer gets the same rule.
- ViT: the rule of its only convolution, the patch projection ``conv_proj``. SqueezeNet's final
  classifier conv (normal 0.01) is not a layer any strategy recreates.
- A backbone of no family in the table gets PyTorch's default, and the record says so.

timm families (``timm:NAME`` models; timm 1.0.31, ``timm/models/*.py``), matched by class path
so that timm need not be imported, recorded as ``"timm ResNet: ..."``. Conv2d / Linear:

- ResNet (``resnet.py``, every resnet*/resnext*/seresnet*/ecaresnet*/wide_resnet*/resnet*d
  variant): ``init_weights`` draws every Conv2d kaiming_normal_ fan_out relu / sets nothing on
  the Linear head (PyTorch default). Its ``zero_init_last`` zeroes the last BatchNorm of each
  residual branch: no strategy creates one of those.
- EfficientNet and MobileNetV3 (``_efficientnet_builder._init_weight_goog``): normal std
  sqrt(2 / fan_out), fan_out = kh * kw * out_channels // groups, bias 0 (for the groups=1
  layers strategies create this is kaiming_normal_ fan_out relu) / uniform
  +-1/sqrt(out_features), bias 0.
- Any other timm model: PyTorch's default, recorded as ``"PyTorch default: no init rule known
  for timm VisionTransformer"`` (the fallback every unknown family gets). timm's inits are per
  model file (trunc_normal_ 0.02, lecun_normal, ...); adding a family is one entry in
  :data:`TIMM_FAMILY_RULES` plus a test against its constructor.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torchvision
from torch import nn

Layer = nn.Module
_M = torchvision.models


@dataclass(frozen=True)
class Rule:
    """One family's initialisation of one layer type: ``text`` for the record, ``weight``
    (None: keep PyTorch's default draw) and whether the bias is set to 0."""

    text: str
    weight: Callable[[Layer], None] | None = None
    zero_bias: bool = False

    def apply(self, layer: Layer) -> None:
        if self.weight is not None:
            self.weight(layer)
        bias = getattr(layer, "bias", None)
        if self.zero_bias and isinstance(bias, nn.Parameter):
            nn.init.zeros_(bias)


def _kaiming_normal(mode: str, nonlinearity: str = "leaky_relu") -> Callable[[Layer], None]:
    return lambda m: nn.init.kaiming_normal_(m.weight, mode=mode, nonlinearity=nonlinearity)


def _normal(std: float) -> Callable[[Layer], None]:
    return lambda m: nn.init.normal_(m.weight, mean=0.0, std=std)


def _trunc_normal(std: float) -> Callable[[Layer], None]:
    return lambda m: nn.init.trunc_normal_(m.weight, mean=0.0, std=std, a=-2.0, b=2.0)


def _inception(m: Layer) -> None:
    # Inception3 reads a per-layer ``stddev`` attribute (set on two aux-head layers), else 0.1.
    std = float(getattr(m, "stddev", 0.1))
    nn.init.trunc_normal_(m.weight, mean=0.0, std=std, a=-2.0, b=2.0)


def _vit_conv_proj(m: Layer) -> None:
    fan_in = nn.init._calculate_fan_in_and_fan_out(m.weight)[0]
    nn.init.trunc_normal_(m.weight, std=math.sqrt(1 / fan_in))


def _efficientnet_linear(m: Layer) -> None:
    bound = 1.0 / math.sqrt(m.weight.shape[0])  # 1 / sqrt(out_features)
    nn.init.uniform_(m.weight, -bound, bound)


DEFAULT = Rule("PyTorch default")
_KAIMING_FAN_OUT_RELU = Rule("kaiming_normal_ fan_out relu", _kaiming_normal("fan_out", "relu"))
_KAIMING_FAN_OUT_RELU_B0 = Rule("kaiming_normal_ fan_out relu + bias 0",
                                _kaiming_normal("fan_out", "relu"), zero_bias=True)
_KAIMING_FAN_OUT_B0 = Rule("kaiming_normal_ fan_out (gain sqrt 2) + bias 0",
                           _kaiming_normal("fan_out"), zero_bias=True)
_NORMAL_001_B0 = Rule("normal std 0.01 + bias 0", _normal(0.01), zero_bias=True)
_TRUNC_002_B0 = Rule("trunc_normal_ std 0.02 + bias 0", _trunc_normal(0.02), zero_bias=True)
_NORMAL_002_B0 = Rule("normal std 0.02 + bias 0", _normal(0.02), zero_bias=True)
_GOOGLENET = Rule("trunc_normal_ std 0.01 in [-2 2]", _trunc_normal(0.01))
_INCEPTION = Rule("trunc_normal_ std 0.1 (or the layer's stddev) in [-2 2]", _inception)

# Family class -> {layer kind: rule}; a kind left out means the constructor sets nothing for it.
# Kinds: "conv" (Conv2d, and ConvTranspose2d by analogy) and "linear". Order matters only for
# subclasses (none of these families derives from another).
FAMILY_RULES: dict[type[nn.Module], dict[str, Rule]] = {
    _M.ResNet: {"conv": _KAIMING_FAN_OUT_RELU},
    _M.VGG: {"conv": _KAIMING_FAN_OUT_RELU_B0, "linear": _NORMAL_001_B0},
    _M.DenseNet: {"conv": Rule("kaiming_normal_ fan_in (gain sqrt 2)", _kaiming_normal("fan_in")),
                  "linear": Rule("PyTorch default weight + bias 0", zero_bias=True)},
    _M.EfficientNet: {"conv": _KAIMING_FAN_OUT_B0,
                      "linear": Rule("uniform 1/sqrt(out_features) + bias 0",
                                     _efficientnet_linear, zero_bias=True)},
    _M.MobileNetV2: {"conv": _KAIMING_FAN_OUT_B0, "linear": _NORMAL_001_B0},
    _M.MobileNetV3: {"conv": _KAIMING_FAN_OUT_B0, "linear": _NORMAL_001_B0},
    _M.MNASNet: {"conv": _KAIMING_FAN_OUT_RELU_B0,
                 "linear": Rule("kaiming_uniform_ fan_out sigmoid + bias 0",
                                lambda m: nn.init.kaiming_uniform_(m.weight, mode="fan_out",
                                                                   nonlinearity="sigmoid"),
                                zero_bias=True)},
    # RegNet writes normal(0, sqrt(2 / (kh * kw * out_channels))): kaiming_normal_ fan_out relu.
    _M.RegNet: {"conv": Rule("normal std sqrt(2/fan_out)", _kaiming_normal("fan_out", "relu")),
                "linear": _NORMAL_001_B0},
    _M.SqueezeNet: {"conv": Rule("kaiming_uniform_ fan_in (gain sqrt 2) + bias 0",
                                 lambda m: nn.init.kaiming_uniform_(m.weight), zero_bias=True)},
    _M.ConvNeXt: {"conv": _TRUNC_002_B0, "linear": _TRUNC_002_B0},
    _M.GoogLeNet: {"conv": _GOOGLENET, "linear": _GOOGLENET},
    _M.Inception3: {"conv": _INCEPTION, "linear": _INCEPTION},
    _M.VisionTransformer: {"conv": Rule("trunc_normal_ std sqrt(1/fan_in) + bias 0",
                                        _vit_conv_proj, zero_bias=True),
                           "linear": Rule("PyTorch default - no single Linear rule (Xavier MLP "
                                          "+ zero head)")},
    _M.SwinTransformer: {"linear": _TRUNC_002_B0},
    _M.MaxVit: {"conv": _NORMAL_002_B0, "linear": _NORMAL_002_B0},
    _M.AlexNet: {},
    _M.ShuffleNetV2: {},
}

_GOOG_CONV = Rule("normal std sqrt(2/fan_out) + bias 0", _kaiming_normal("fan_out", "relu"),
                  zero_bias=True)
_GOOG_LINEAR = Rule("uniform 1/sqrt(out_features) + bias 0", _efficientnet_linear,
                    zero_bias=True)

# timm family class path -> {layer kind: rule}. Paths, not classes: timm is an optional extra.
TIMM_FAMILY_RULES: dict[str, dict[str, Rule]] = {
    "timm.models.resnet.ResNet": {"conv": _KAIMING_FAN_OUT_RELU},
    "timm.models.efficientnet.EfficientNet": {"conv": _GOOG_CONV, "linear": _GOOG_LINEAR},
    "timm.models.mobilenetv3.MobileNetV3": {"conv": _GOOG_CONV, "linear": _GOOG_LINEAR},
}

_NORMS = (nn.BatchNorm2d, nn.GroupNorm)


def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def family_of(backbone: nn.Module) -> type[nn.Module] | None:
    """The family class of ``backbone`` (``torchvision.models.ResNet``, or timm's
    ``timm.models.resnet.ResNet`` class), or None when neither table knows it."""
    found = next((cls for cls in FAMILY_RULES if isinstance(backbone, cls)), None)
    if found is None:
        found = next((cls for cls in type(backbone).__mro__
                      if _class_path(cls) in TIMM_FAMILY_RULES), None)
    return found


def family_label(cls: type) -> str:
    """How a family (or any backbone class) is named in the record: ``ResNet`` for
    torchvision's, ``timm ResNet`` for timm's."""
    return f"timm {cls.__name__}" if cls.__module__.split(".")[0] == "timm" else cls.__name__


def _rules(family: type[nn.Module]) -> dict[str, Rule]:
    return FAMILY_RULES.get(family) or TIMM_FAMILY_RULES.get(_class_path(family), {})


def _kind(layer: Layer) -> str | None:
    if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
        return "conv"
    if isinstance(layer, nn.Linear):
        return "linear"
    if isinstance(layer, _NORMS):
        return "norm"
    return None


def family_rule(backbone: nn.Module, layer: Layer) -> Rule:
    """The rule ``backbone``'s family applies to a layer like ``layer``, its text prefixed by the
    family (``"ResNet: kaiming_normal_ fan_out relu"``). Nothing is changed."""
    family = family_of(backbone)
    kind = _kind(layer)
    layer_type = type(layer).__name__
    if family is None:
        return Rule(f"PyTorch default: no init rule known for {family_label(type(backbone))}")
    name = family_label(family)
    if kind == "norm":
        # Every family's norm rule (weight 1, bias 0) is PyTorch's default: nothing to draw.
        return Rule(f"{name}: weight 1 + bias 0 (= PyTorch default)")
    rule = _rules(family).get(kind) if kind else None
    if rule is None:
        return Rule(f"PyTorch default: {name} sets no {layer_type} init")
    suffix = " - its Conv2d rule" if isinstance(layer, nn.ConvTranspose2d) else ""
    return Rule(f"{name}: {rule.text}{suffix}", rule.weight, rule.zero_bias)


def init_like_family(backbone: nn.Module, module: nn.Module) -> dict[str, str]:
    """Re-initialise the freshly built ``module`` as ``backbone``'s constructor does.

    Like the constructor's loop, every layer in ``module`` (itself included) that holds
    parameters gets its family's rule for its type; what the rule does not set keeps the
    default draw from construction. Returns ``{layer name relative to module ("" for module
    itself): rule text}`` for the record. Works on meta tensors (nothing is drawn).
    """
    applied: dict[str, str] = {}
    for name, layer in module.named_modules():
        if next(layer.parameters(recurse=False), None) is None:
            continue
        rule = family_rule(backbone, layer)
        rule.apply(layer)
        applied[name] = rule.text
    return applied
