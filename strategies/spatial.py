"""Spatial adapters: how a 28 px image gets through a network built for 224 px.

- ``resize<N>``: bilinear resize to N px inside the model.
- ``pad<N>``: zero border, centred, to N px (keeps the digits' pixel scale).
- ``droppools[<K>]``: remove MaxPool2d layers from the end of the network, the fewest that let
  the input reach the classifier (or exactly K).
- ``cifarstem``: ResNet only; 3x3 stride-1 first convolution and no stem max-pool.

``convtranspose`` (the original write-up's upsampling stem) lives in ``post.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from ._meta import first_conv, runs_at
from ._model import Adaptation
from ._registry import NotApplicableError, StrategyError, list_strategies, register


class Resize(nn.Module):
    """Bilinear resize of ``(N, C, H, W)`` to ``(N, C, size, size)``."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)

    def extra_repr(self) -> str:
        return f"size={self.size}, mode='bilinear'"


class Pad(nn.Module):
    """Zero-pad ``(N, C, H, W)`` to ``(N, C, size, size)``, centred (odd extra px go right/bottom)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if h > self.size or w > self.size:
            raise RuntimeError(f"Pad({self.size}) cannot shrink a {h}x{w} input")
        top, left = (self.size - h) // 2, (self.size - w) // 2
        return F.pad(x, (left, self.size - w - left, top, self.size - h - top))

    def extra_repr(self) -> str:
        return f"size={self.size}"


@register("spatial", arg="required")
def resize(ctx: Adaptation, size: int | None) -> None:
    """Resize the image bilinearly to {n} px inside the model."""
    assert size is not None
    ctx.add_input_op(f"resize{size}", Resize(size))
    ctx.effective_input_px = ctx.backbone_input_px = size


@register("spatial", arg="required")
def pad(ctx: Adaptation, size: int | None) -> None:
    """Zero-pad the image, centred, to {n} px (the digits keep their pixel scale)."""
    assert size is not None
    if size < ctx.input_px:
        raise StrategyError(
            f"bad value in 'pad{size}': padding cannot shrink a {ctx.input_px} px input; "
            f"use pad<N> with N >= {ctx.input_px}, or resize{size}")
    ctx.add_input_op(f"pad{size}", Pad(size))
    ctx.effective_input_px = ctx.backbone_input_px = size


@contextmanager
def _without(backbone: nn.Module, names: list[str]) -> Iterator[None]:
    """Temporarily replace the named layers by Identity."""
    saved = {name: backbone.get_submodule(name) for name in names}
    for name in names:
        backbone.set_submodule(name, nn.Identity())
    try:
        yield
    finally:
        for name, module in saved.items():
            backbone.set_submodule(name, module)


def fewest_pools(backbone: nn.Module, pools: list[str], shape: tuple[int, ...]) -> int | None:
    """Smallest K such that dropping the last K of ``pools`` lets ``shape`` run (meta probes).

    None when even dropping all of them is not enough. Binary search: dropping more pools
    never makes the maps smaller.
    """
    if runs_at(backbone, shape):
        return 0
    with _without(backbone, pools):
        if not runs_at(backbone, shape):
            return None
    lo, hi = 1, len(pools)  # hi works, lo - 1 does not
    while lo < hi:
        mid = (lo + hi) // 2
        with _without(backbone, pools[len(pools) - mid:]):
            ok = runs_at(backbone, shape)
        lo, hi = (lo, mid) if ok else (mid + 1, hi)
    return lo


@register("spatial", arg="optional", arg_name="K", min_arg=1, max_arg=64, surgery=True)
def droppools(ctx: Adaptation, count: int | None) -> None:
    """Remove the fewest MaxPool2d layers, from the end of the network, that let the input reach the classifier (droppools<K>: exactly K)."""
    pools = [name for name, m in ctx.backbone.named_modules() if isinstance(m, nn.MaxPool2d)]
    if count is not None and count > len(pools):
        raise NotApplicableError(
            f"droppools{count}: {ctx.model_name} has only {len(pools)} MaxPool2d layer(s) "
            f"({', '.join(pools) or 'none'}); use droppools<K> with K <= {len(pools)} or "
            "droppools (automatic)")
    if count is None:
        channels = first_conv(ctx.backbone)[1].in_channels
        shape = (1, channels, ctx.backbone_input_px, ctx.backbone_input_px)
        count = fewest_pools(ctx.backbone, pools, shape)
        if count is None:
            # Nothing helps: drop them all and let the forward report the model's own error.
            count = len(pools)
            ctx.notes.append(f"droppools: dropping all {len(pools)} MaxPool2d layer(s) is not "
                             f"enough for {ctx.backbone_input_px} px" if pools else
                             f"droppools: {ctx.model_name} has no MaxPool2d layer to drop")
    dropped = pools[len(pools) - count:] if count else []
    for name in dropped:
        ctx.replace(name, nn.Identity(), fresh=False)
    ctx.notes.append(f"droppools: removed {len(dropped)} of {len(pools)} MaxPool2d layer(s)"
                     + (f" ({', '.join(dropped)})" if dropped else ""))


@register("spatial", surgery=True)
def cifarstem(ctx: Adaptation, _value: int | None) -> None:
    """ResNet family only: a 3x3 stride-1 first convolution and no stem max-pool, so a small image keeps 4x more resolution."""
    backbone = ctx.backbone
    # torchvision's ResNet, or timm's with the plain stem (one 7x7 conv1 and a maxpool); timm's
    # deep-stem variants (resnet*d: conv1 is a Sequential) have no single layer to swap.
    resnet_like = isinstance(backbone, torchvision.models.ResNet) or (
        type(backbone).__name__ == "ResNet" and isinstance(getattr(backbone, "conv1", None),
                                                           nn.Conv2d)
        and isinstance(getattr(backbone, "maxpool", None), nn.MaxPool2d))
    if not resnet_like:
        others = [s for s in list_strategies("spatial") if s != "cifarstem"]
        raise NotApplicableError(
            f"cifarstem applies to the ResNet family with a single-convolution stem (torchvision's "
            f"resnet*, resnext*, wide_resnet*; timm's resnet18/34/50...); {ctx.model_name} is "
            f"{type(backbone).__name__} without one. Valid spatial parts for it: "
            f"{', '.join(others)}")
    old = backbone.conv1
    stem = nn.Conv2d(old.in_channels, old.out_channels, kernel_size=3, stride=1, padding=1,
                     bias=False, device=old.weight.device, dtype=old.weight.dtype)
    ctx.replace("conv1", stem)  # initialised by ResNet's rule: kaiming_normal_ fan_out relu
    ctx.replace("maxpool", nn.Identity(), fresh=False)
    ctx.notes.append("cifarstem: conv1 is 3x3 stride 1, maxpool removed")
