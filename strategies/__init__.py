"""How a torchvision (or timm) model is adapted to a dataset's small images. No training code here.

Every strategy turns ``(model_name, num_classes, weights)`` into an :class:`AdaptedModel`: an
``nn.Module`` that takes the raw batch ``(N, C, H, W)`` float (``(N, 1, 28, 28)`` for MNIST) and returns ``(N, num_classes)``
logits, with the input adaptation (resize, pad, channel repeat) inside it::

    import strategies
    model = strategies.build("vgg16", "repeat3+resize224", num_classes=10)
    strategies.list_strategies("preset")   # ['post-convtranspose', 'resize224', ...]
    strategies.describe("droppools")       # one plain sentence

A strategy is written ``channel+spatial`` (either part optional, channel first) or as a preset:

- channel: ``conv1``, ``repeat3``, ``sumrgb`` (or ``none``: the batch goes in unchanged);
- spatial: ``resize<N>``, ``pad<N>``, ``convtranspose``, ``droppools[<K>]``, ``cifarstem``;
- presets: see :data:`PRESETS` (``resize224`` means ``repeat3+resize224``).

Every layer an adapter creates is initialised by the model family's own torchvision rule
(:mod:`strategies._init`; ``AdaptedModel.init_rules`` says which), so that ``conv1`` on a random
model is the model built natively with one input channel. The one exception, documented in
:mod:`strategies.post`: the post's exact VGG stem keeps PyTorch's default, as the post has it.

New adapters register with ``@register("channel" | "spatial")``, like torchvision's
``@register_model``; presets with :func:`register_preset`.
"""

from __future__ import annotations

from . import channels, native, post, spatial  # noqa: F401  (importing registers the adapters)
from ._model import (
    AdaptedModel,
    adapt,
    build,
    build_backbone,
    check_model_name,
    list_models,
    restore,
)
from ._registry import (
    PRESETS,
    Adapter,
    NotApplicableError,
    Part,
    Spec,
    StrategyError,
    canonical,
    describe,
    get,
    list_strategies,
    parse_spec,
    register,
    register_preset,
)
from .presets import DEFAULT_PRESETS

__all__ = [
    "DEFAULT_PRESETS",
    "PRESETS",
    "AdaptedModel",
    "Adapter",
    "NotApplicableError",
    "Part",
    "Spec",
    "StrategyError",
    "adapt",
    "build",
    "build_backbone",
    "canonical",
    "check_model_name",
    "describe",
    "explain_error",
    "get",
    "list_models",
    "list_strategies",
    "parse_spec",
    "register",
    "register_preset",
    "restore",
]


def explain_error(exc: BaseException, model_name: str, spec: str) -> str:
    """Plain-language explanation of a forward failure (see :mod:`strategies.explain`)."""
    from .explain import explain_error as _explain

    return _explain(exc, model_name, spec)
