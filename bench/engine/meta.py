"""The meta-device check of a cell: its parameter count, forward GFLOPs per image (1e9 floating-point
operations) and effective input size, or :class:`Incompatible` with the plain-language reason,
before any memory is spent.
"""

from __future__ import annotations

from typing import Any

from bench.config import Cell
from bench.engine import measure
from strategies._meta import forward_gflops_per_img


class Incompatible(RuntimeError):
    """The strategy cannot run this model at this input size (explained)."""


def inspect_on_meta(cell: Cell, num_classes: int,
                    shape: tuple[int, int, int]) -> dict[str, Any]:
    """Params, forward GFLOPs/img and effective input size, from a meta-device build for images
    of ``shape`` (channels, height px, width px: the dataset's).

    A forward that fails on meta fails for real: that is raised as :class:`Incompatible`,
    with the plain-language explanation, before any memory is spent.
    """
    import strategies

    try:
        model = strategies.build(cell.model, cell.strategy, num_classes=num_classes,
                                 device="meta", input_px=shape[1], in_channels=shape[0])
    except strategies.StrategyError as exc:
        raise Incompatible(str(exc)) from exc
    try:
        gflops = forward_gflops_per_img(model, shape)
    except RuntimeError as exc:
        from strategies.explain import explain_error

        raise Incompatible(explain_error(exc, cell.model, cell.strategy, input_px=shape[1],
                                         in_channels=shape[0])) from exc
    return {
        "params": measure.count_params(model),
        "gflops_fwd_per_img": gflops,
        "effective_input_px": getattr(model, "effective_input_px", None),
        # Each replaced layer with the init rule it got (strategies/_init.py), e.g.
        # "backbone.conv1 (ResNet: kaiming_normal_ fan_out relu)".
        "reinitialized": ";".join(getattr(model, "init_rules", None)
                                  or getattr(model, "reinitialized", []) or []),
    }
