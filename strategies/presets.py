"""Named strategies: the four of the original brief, plus a few clear extras.

A preset is only a name for a canonical ``channel+spatial`` spec; ``describe(name)`` gives
its one-sentence rationale.
"""

from __future__ import annotations

from ._registry import register_preset

register_preset(
    "post-convtranspose", "convtranspose",
    "The original write-up's fix: a one-channel Conv2d(1, 16) and a stride-2 "
    "ConvTranspose2d upsample 28 -> 57 px (on VGG16 replacing features[0] and features[2] "
    "exactly as the post does; on other families as a stem in front of the intact model).")
register_preset(
    "post-convtranspose-familyinit", "convtranspose_familyinit",
    "The write-up's stem with the model family's init instead of PyTorch's default (on VGG16 "
    "the same features[0] and features[2]): set beside post-convtranspose, it tells the "
    "stem's effect from the init's.")
register_preset(
    "resize224", "repeat3+resize224",
    "The ImageNet recipe: repeat the gray channel to 3 and resize bilinearly to 224 px; the "
    "model is untouched, so ImageNet weights load as they are.")
register_preset(
    "repeat3", "repeat3",
    "Native 28 px with the gray channel repeated to 3 and the model untouched: works where "
    "the downsampling leaves at least 1x1 (ResNet), fails on VGG16 with the post's "
    "'Output size is too small', by design.")
register_preset(
    "droppools", "conv1+droppools",
    "One-channel first convolution and the fewest MaxPool2d layers removed from the end so a "
    "28 px image reaches the classifier (VGG16: the last of its five pools).")
register_preset(
    "cifarstem", "conv1+cifarstem",
    "The CIFAR-style ResNet: a one-channel 3x3 stride-1 first convolution and no stem "
    "max-pool, so 28 px keeps 4x more resolution (ResNet family only).")
register_preset(
    "resize32", "conv1+resize32",
    "One-channel first convolution and a bilinear resize to 32 px, the smallest input VGG "
    "accepts: the cheapest way through VGG's five pools.")
register_preset(
    "pad32", "conv1+pad32",
    "One-channel first convolution and a 2 px zero border (28 -> 32 px): VGG's minimum size "
    "without resampling the digits.")

# What profiles sweep by default: the brief's four, then two clear extras (the cheapest size
# VGG accepts, and the standard small-image ResNet stem, which is not applicable to VGG).
DEFAULT_PRESETS: tuple[str, ...] = (
    "post-convtranspose", "resize224", "repeat3", "droppools", "resize32", "cifarstem")
