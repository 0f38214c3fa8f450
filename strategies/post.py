"""The upsampling stem of the VGG16/MNIST write-up (README, "The question"), reproduced.

The post replaces two layers of ``torchvision.models.vgg16``::

    model.features[0] = nn.Conv2d(1, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))
    model.features[2] = nn.ConvTranspose2d(16, 64, kernel_size=(3, 3), stride=(2, 2),
                                           padding=(0, 0), bias=False)

so a 28 px one-channel image becomes a 57 px, 64-channel map ((28 - 1) * 2 + 3 = 57) that
survives VGG's five max-pools (57 -> 28 -> 14 -> 7 -> 3 -> 1).

``convtranspose`` applies exactly that to the VGG models laid out like vgg16 (vgg13, vgg16,
vgg19: conv, ReLU, conv). Every other model gets the generic equivalent *in front of* the
intact network: ``Conv2d(1, 16, 3, padding=1) -> ReLU -> ConvTranspose2d(16, 3, 3, stride=2)``,
a learned 28 -> 57 px upsampling to the 3 channels its first convolution expects.

Initialisation: the post's exact VGG stem is the one documented exception to the rule that a
layer a strategy creates gets its family's init (:mod:`strategies._init`). It keeps PyTorch's
default init (kaiming-uniform a=sqrt(5), uniform bias), as the post's code does, so that the
``post-convtranspose`` preset on vgg16 reproduces the write-up exactly: seeded alike, it draws
the same weights as :func:`post_vgg16`. Its control, ``convtranspose_familyinit`` (preset
``post-convtranspose-familyinit``), is the same stem with the family's rule, so that the stem's
effect can be told from the default init's. The generic stem in front of other models is ours, not
the post's: its Conv2d and ConvTranspose2d get the family's Conv2d rule (ResNet:
``kaiming_normal_`` fan_out relu).
"""

from __future__ import annotations

import torchvision
from torch import nn

from ._meta import first_conv
from ._model import Adaptation
from ._registry import register

STEM_CHANNELS = 16  # the post's "single channel, a bit smaller" width
_AS_THE_POST = "the post's exact stem - the documented exception"


def upsampled_px(px: int) -> int:
    """Side after the stem's ConvTranspose2d(kernel 3, stride 2, padding 0): (px - 1) * 2 + 3."""
    return (px - 1) * 2 + 3


def post_vgg16(num_classes: int = 10) -> nn.Module:
    """The post's model, line for line (random init), for comparison with ``convtranspose``."""
    model = torchvision.models.vgg16(weights=None, num_classes=num_classes)
    model.features[0] = nn.Conv2d(1, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))
    model.features[2] = nn.ConvTranspose2d(16, 64, kernel_size=(3, 3), stride=(2, 2),
                                           padding=(0, 0), bias=False)
    return model


def _has_post_layout(model: nn.Module) -> bool:
    """VGG whose features start conv(3->64), ReLU, conv(64->64), as vgg16's do."""
    if not isinstance(model, torchvision.models.VGG) or len(model.features) < 3:
        return False
    f0, f1, f2 = model.features[0], model.features[1], model.features[2]
    return (isinstance(f0, nn.Conv2d) and isinstance(f1, nn.ReLU) and isinstance(f2, nn.Conv2d)
            and f0.out_channels == f2.in_channels == f2.out_channels == 64)


@register("spatial", surgery=True, takes_channel=False)
def convtranspose(ctx: Adaptation, _value: int | None) -> None:
    """A learned upsampling stem from the original write-up, Conv2d(1, 16) then a stride-2 ConvTranspose2d, that turns a one-channel N px image into a 2N+1 px map (28 -> 57 px on MNIST) (on vgg13/16/19 it replaces features[0] and features[2] exactly as the post does; elsewhere it is put in front of the intact model).

    Init: the post's exact stem keeps PyTorch's default (the documented exception, see the
    module docstring); the generic stem gets the family's Conv2d rule.
    """
    _stem(ctx, family_init=False)


@register("spatial", surgery=True, takes_channel=False)
def convtranspose_familyinit(ctx: Adaptation, _value: int | None) -> None:
    """The write-up's upsampling stem exactly as ``convtranspose`` builds it, but every layer initialised by the model family's rule: the control that separates the stem's effect from PyTorch's default init.

    On vgg13/16/19 the post's features[0] and features[2] get VGG's ``kaiming_normal_``
    fan_out relu (zero bias) instead of the default kaiming-uniform; elsewhere it is the same
    generic stem as ``convtranspose``, which already follows the family.
    """
    _stem(ctx, family_init=True)


def _stem(ctx: Adaptation, *, family_init: bool) -> None:
    """Build the stem; ``family_init`` False keeps the post's exact VGG stem at PyTorch's
    default init (the documented exception), True gives it the family's rule."""
    device = next(ctx.backbone.parameters()).device
    if _has_post_layout(ctx.backbone):
        out_channels = ctx.backbone.features[2].out_channels
        # The documented exception: PyTorch's default init, as the post's code has it, unless
        # this is the family-init control. The post's 1 input channel; the dataset's channel
        # count when it has more.
        default = None if family_init else _AS_THE_POST
        ctx.replace("features.0", nn.Conv2d(ctx.in_channels, STEM_CHANNELS, kernel_size=(3, 3),
                                            stride=(1, 1), padding=(1, 1), device=device),
                    pytorch_default=default)
        ctx.replace("features.2", nn.ConvTranspose2d(STEM_CHANNELS, out_channels,
                                                     kernel_size=(3, 3), stride=(2, 2),
                                                     padding=(0, 0), bias=False, device=device),
                    pytorch_default=default)
        ctx.effective_input_px = upsampled_px(ctx.backbone_input_px)
        ctx.notes.append("convtranspose: the post's VGG stem (features.0 and features.2 replaced"
                         + (", initialised by the family rule)" if family_init else ")"))
        return
    in_channels = first_conv(ctx.backbone)[1].in_channels
    stem = nn.Sequential(
        nn.Conv2d(ctx.in_channels, STEM_CHANNELS, kernel_size=(3, 3), stride=(1, 1),
                  padding=(1, 1), device=device),
        nn.ReLU(inplace=True),
        nn.ConvTranspose2d(STEM_CHANNELS, in_channels, kernel_size=(3, 3), stride=(2, 2),
                           padding=(0, 0), bias=False, device=device),
    )
    ctx.add_input_op("stem", stem)
    ctx.effective_input_px = ctx.backbone_input_px = upsampled_px(ctx.backbone_input_px)
    ctx.notes.append(f"convtranspose: a {ctx.in_channels} -> {STEM_CHANNELS} -> {in_channels} channel stem "
                     f"upsampling to {ctx.effective_input_px} px in front of the model")
