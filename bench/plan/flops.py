"""A strategy's forward GFLOPs per image, from a meta-device build, once per process.

The one cache of that figure: the cost model's estimate of a cell (:mod:`bench.plan.costmodel`)
and the fast paths' per-model decision (:func:`bench.plan.fastpath.costliest_gflops`, which the
engine asks too) both read :func:`forward_gflops`, so a (model, strategy, classes, input shape)
is built on the meta device once, not once per reader.
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=4096)
def forward_gflops(model: str, strategy: str, num_classes: int,
                   shape: tuple[int, int, int]) -> tuple[float, str]:
    """(forward GFLOPs per image, "" or why the cell cannot run) of ``model`` adapted by
    ``strategy`` with ``num_classes`` outputs on inputs of ``shape`` (C, H, W px), counted on a
    meta-device build (no memory, no data).

    A strategy that does not apply, and a forward that fails on meta (VGG16 at 28 px), fail for
    real: (0.0, why), the reason a cell is ``incompatible``. Any other error while building
    propagates (and is not cached).
    """
    import strategies
    from strategies._meta import forward_gflops_per_img

    try:
        net = strategies.build(model, strategy, num_classes=num_classes, device="meta",
                               input_px=shape[1], in_channels=shape[0])
    except strategies.StrategyError as exc:
        return 0.0, str(exc)
    try:
        return forward_gflops_per_img(net, shape), ""
    except RuntimeError as exc:
        try:
            from strategies.explain import explain_error
        except ImportError:
            return 0.0, f"{type(exc).__name__}: {exc}"
        return 0.0, explain_error(exc, model, strategy, input_px=shape[1],
                                  in_channels=shape[0])
