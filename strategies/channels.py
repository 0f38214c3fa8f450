"""Channel adapters: how the dataset's channels meet a first convolution built for RGB.

The dataset says how many channels its images have (``Adaptation.in_channels``: 1 for MNIST
and gray scans, 3 for RGB crops, ...); each adapter states what it needs and is *not
applicable* (a recorded result with the reason) otherwise:

- ``repeat3``: tile the gray channel to 3 (a view, no copy); the model stays intact, so
  ImageNet weights load unchanged. One-channel datasets only.
- ``conv1``: replace the first convolution by one with ``in_channels`` = the dataset's channel
  count (1 for gray: the fix for the original write-up's error 1), freshly initialised by the
  model family's own rule (:mod:`strategies._init`: ResNet/VGG ``kaiming_normal_`` fan_out
  relu, ...). Not applicable when the first convolution already takes that many channels.
- ``sumrgb``: replace it by a one-channel convolution whose weight is the RGB weight summed over
  the input-channel axis (timm's folding). ``conv(repeat3(x), W) == conv(x, W.sum(1))``, so it
  computes exactly what ``repeat3`` does, with a third of the first layer's multiply-adds.
  One-channel datasets only.

The first convolution is found generically: the first ``Conv2d`` a forward pass executes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._meta import first_conv
from ._model import Adaptation
from ._registry import NotApplicableError, register


class RepeatChannels(nn.Module):
    """``(N, 1, H, W) -> (N, channels, H, W)`` by broadcasting: a view, no copy."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] != 1:
            raise RuntimeError(
                f"RepeatChannels expects a one-channel batch (N, 1, H, W), got {tuple(x.shape)}")
        return x.expand(-1, self.channels, -1, -1)

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


def _rgb_conv(ctx: Adaptation, adapter: str) -> tuple[str, nn.Conv2d]:
    name, conv = first_conv(ctx.backbone)
    if conv.in_channels != 3 or conv.groups != 1:
        raise NotApplicableError(
            f"{adapter} needs a first convolution with 3 input channels and groups=1; "
            f"{ctx.model_name}'s {name} has in_channels={conv.in_channels}, groups={conv.groups}. "
            "Use repeat3 or no channel part instead")
    return name, conv


def _needs_gray(ctx: Adaptation, adapter: str) -> None:
    if ctx.in_channels != 1:
        raise NotApplicableError(
            f"{adapter} turns a one-channel (gray) image into the model's 3 channels; this "
            f"dataset's images have {ctx.in_channels} channels. Use conv1 (a first convolution "
            f"built for {ctx.in_channels} channels)"
            + (" or no channel part (the model takes 3 channels as they are)"
               if ctx.in_channels == 3 else ""))


def _one_channel_like(conv: nn.Conv2d, *, init: bool, channels: int = 1) -> nn.Conv2d:
    """A ``Conv2d`` with ``channels`` inputs and every other hyper-parameter of ``conv``."""
    kwargs = dict(in_channels=channels, out_channels=conv.out_channels, kernel_size=conv.kernel_size,
                  stride=conv.stride, padding=conv.padding, dilation=conv.dilation, groups=1,
                  bias=conv.bias is not None, padding_mode=conv.padding_mode,
                  device=conv.weight.device, dtype=conv.weight.dtype)
    if init:
        return nn.Conv2d(**kwargs)
    # Weights are about to be overwritten: skip the random init (and its draw on the RNG).
    return torch.nn.utils.skip_init(nn.Conv2d, **kwargs)


@register("channel")
def repeat3(ctx: Adaptation, _value: int | None) -> None:
    """Tile the gray channel to 3 (a broadcast view, no copy) and keep the model intact."""
    _needs_gray(ctx, "repeat3")
    ctx.add_input_op("repeat3", RepeatChannels(3))


@register("channel", surgery=True)
def conv1(ctx: Adaptation, _value: int | None) -> None:
    """Replace the first convolution by one that takes the dataset's channels (in_channels=1 for gray images), initialised by the model family's own rule.

    ``ctx.replace`` re-initialises the new layer as the family's torchvision constructor does
    (ResNet: ``kaiming_normal_`` fan_out relu), not at PyTorch's default, so that ``conv1`` on a
    random model is the model built natively with one input channel. After a spatial part that
    rebuilt the first convolution (``cifarstem``) the result is that part's layer built with one
    input channel: same shape, same family init.
    """
    name, conv = _rgb_conv(ctx, "conv1")
    if ctx.in_channels == conv.in_channels:
        raise NotApplicableError(
            f"conv1 rebuilds the first convolution for the dataset's channel count, but "
            f"{ctx.model_name}'s {name} already takes {conv.in_channels}: nothing to adapt. "
            "Use no channel part (e.g. the spatial part alone)")
    ctx.replace(name, _one_channel_like(conv, init=True, channels=ctx.in_channels))
    ctx.notes.append(f"conv1: {name} now takes {ctx.in_channels} channel(s) "
                     f"({ctx.init_rules[f'backbone.{name}']})")


@register("channel", surgery=True)
def sumrgb(ctx: Adaptation, _value: int | None) -> None:
    """Fold the first convolution to in_channels=1 by summing its weight over R, G and B (timm's adapt_input_conv), which equals repeat3 at a third of its first-layer cost."""
    _needs_gray(ctx, "sumrgb")
    name, conv = _rgb_conv(ctx, "sumrgb")
    folded = _one_channel_like(conv, init=False)
    with torch.no_grad():
        folded.weight.copy_(conv.weight.sum(dim=1, keepdim=True))
        if conv.bias is not None:
            folded.bias.copy_(conv.bias)
    folded.weight.requires_grad_(conv.weight.requires_grad)
    ctx.replace(name, folded, fresh=False)
    ctx.notes.append(f"sumrgb: {name} folded to 1 channel (weights kept, summed over RGB)")
