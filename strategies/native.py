"""``native1``: a one-channel model the library's own way, as a row beside conv1/repeat3/sumrgb.

- timm (``timm:NAME``): the model's constructor is asked for it, ``timm.create_model(NAME,
  in_chans=1)``, and every layer whose shapes that changes (the stem convolution; a few
  architectures have more than one input layer) replaces the RGB model's, so the result is
  exactly the architecture timm builds for one channel. Random weights: the replacement is the
  constructor's own layer, drawn by the constructor's init (timm folds nothing when
  ``pretrained=False``). Loaded weights (``weights="imagenet"`` or a state dict): what timm's
  ``pretrained=True, in_chans=1`` does, its ``adapt_input_conv``: the RGB kernel summed over
  its three input channels, which is ``sumrgb``'s layer. Which of the two applied is in
  ``notes`` and ``init_rules``.
- torchvision: its constructors take no channel argument (vision #2152, #6822, #7356), so the
  first convolution is built with ``in_channels=1`` and every other hyper-parameter of the
  original, then initialised by the family's rule (:mod:`strategies._init`): what the
  constructor would draw if it had the argument. That is ``conv1``'s layer: the same shape,
  rule and, for a given seed, weights, with or without loaded weights (torchvision has no rule
  for adapting weights to one channel, so both draw a fresh layer). On torchvision the row
  differs from ``conv1`` only by its name; it exists so that "the library's own way" reads the
  same across sources.

Applies to one-channel datasets only (``ctx.in_channels == 1``), else NotApplicableError.
"""

from __future__ import annotations

import torch
from torch import nn

from . import sources
from ._meta import first_conv
from ._model import Adaptation
from ._registry import NotApplicableError, register


def _one_channel(conv: nn.Conv2d) -> nn.Conv2d:
    """A Conv2d with in_channels=1 and every other hyper-parameter of ``conv``."""
    return nn.Conv2d(1, conv.out_channels, kernel_size=conv.kernel_size, stride=conv.stride,
                     padding=conv.padding, dilation=conv.dilation, groups=1,
                     bias=conv.bias is not None, padding_mode=conv.padding_mode,
                     device=conv.weight.device, dtype=conv.weight.dtype)


def _param_shapes(module: nn.Module) -> dict[str, torch.Size]:
    return {k: v.shape for k, v in module.named_parameters(recurse=False)}


def _changed_layers(rgb: nn.Module, gray: nn.Module) -> list[str]:
    """Leaf layers of ``gray`` whose own parameter shapes differ from ``rgb``'s."""
    theirs = dict(rgb.named_modules())
    return [name for name, m in gray.named_modules()
            if next(m.children(), None) is None and name in theirs
            and _param_shapes(m) != _param_shapes(theirs[name])]


def _timm_native(ctx: Adaptation) -> None:
    on_meta = next(ctx.backbone.parameters()).device.type == "meta"
    num_classes = ctx.num_classes or 1000
    # The constructor's own one-channel model: on meta only its shapes are needed.
    gray = sources.construct(ctx.model_name, num_classes, meta=on_meta, in_chans=1)
    changed = _changed_layers(ctx.backbone, gray)
    if not changed:
        raise NotApplicableError(
            f"native1: timm.create_model({ctx.model_name.partition(':')[2]!r}, in_chans=1) "
            f"builds the same layers as the RGB model, so {ctx.model_name} has no one-channel "
            "form of its own; use repeat3 or conv1")
    for name in changed:
        layer = gray.get_submodule(name)
        old = ctx.backbone.get_submodule(name)
        if ctx.pretrained and isinstance(old, nn.Conv2d) and old.in_channels == 3 \
                and layer.weight.shape[1] == 1:
            # timm's adapt_input_conv for in_chans=1: the RGB kernel summed over channels.
            with torch.no_grad():
                layer.weight.copy_(old.weight.sum(dim=1, keepdim=True))
                if old.bias is not None and layer.bias is not None:
                    layer.bias.copy_(old.bias)
            ctx.replace(name, layer, fresh=False)
            ctx.notes.append(f"native1: {name} as timm builds it for in_chans=1 with pretrained "
                             "weights (RGB kernel summed over channels, timm's adapt_input_conv)")
            continue
        # The constructor's draw is the layer's init: record it, do not re-draw it.
        ctx.replace(name, layer, fresh=False)
        ctx._record(f"backbone.{name}", "timm constructor, in_chans=1")
        ctx.notes.append(f"native1: {name} as timm.create_model(in_chans=1) builds and "
                         "initialises it")


def _torchvision_native(ctx: Adaptation) -> None:
    name, conv = first_conv(ctx.backbone)
    if conv.in_channels != 3 or conv.groups != 1:
        raise NotApplicableError(
            f"native1 needs a first convolution with 3 input channels and groups=1; "
            f"{ctx.model_name}'s {name} has in_channels={conv.in_channels}, "
            f"groups={conv.groups}. Use repeat3 or no channel part instead")
    ctx.replace(name, _one_channel(conv))  # fresh: the family's rule (strategies._init)
    ctx.notes.append(f"native1: {name} built with 1 input channel, as torchvision's constructor "
                     f"would ({ctx.init_rules[f'backbone.{name}']})")


@register("channel", surgery=True)
def native1(ctx: Adaptation, _value: int | None) -> None:
    """The library's own one-channel model: timm's constructor with in_chans=1 (timm:NAME), or for torchvision a first convolution built with one input channel and the family's init (the same layer as conv1).

    See :mod:`strategies.native` for the weights rules (random: the constructor's draw;
    loaded: timm sums the RGB kernel, torchvision draws a fresh layer).
    """
    if ctx.in_channels != 1:
        raise NotApplicableError(
            f"native1 builds the model for one input channel, but the dataset's images have "
            f"{ctx.in_channels}; valid here: no channel part (the model takes "
            f"{ctx.in_channels}-channel input as it is) or an adapter for that channel count")
    if sources.source_of(ctx.model_name) == "timm":
        _timm_native(ctx)
    else:
        _torchvision_native(ctx)
