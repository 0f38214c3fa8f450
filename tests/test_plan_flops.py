"""bench.plan.flops: a strategy's forward GFLOPs, built on the meta device once per process
for every reader (the cost model, the fast paths' per-model decision)."""

from __future__ import annotations

from bench.config import Cell
from bench.plan import costmodel, fastpath, flops


def test_the_cost_model_and_the_fast_paths_read_one_cache() -> None:
    flops.forward_gflops.cache_clear()
    shape = (1, 28, 28)
    gflops, why = costmodel.CostModel("cuda").forward_gflops(
        Cell("mnist", "resnet18", "conv1", 0), 10, shape)
    assert gflops > 0 and why == ""
    built = flops.forward_gflops.cache_info()
    assert fastpath.costliest_gflops("resnet18", ("conv1",), 10, shape) == (gflops, "conv1")
    # A second cost model too: the figure is the process's, not one instance's.
    assert costmodel.CostModel("cpu").forward_gflops(
        Cell("mnist", "resnet18", "conv1", 1), 10, shape) == (gflops, "")
    after = flops.forward_gflops.cache_info()
    assert after.misses == built.misses == 1 and after.hits == built.hits + 2


def test_a_cell_that_cannot_run_says_why_and_is_no_candidate() -> None:
    gflops, why = flops.forward_gflops("vgg16", "repeat3", 10, (1, 28, 28))
    assert gflops == 0.0 and "too small for vgg16" in why
    best, name = fastpath.costliest_gflops("vgg16", ("repeat3", "conv1+resize32"), 10,
                                           (1, 28, 28))
    assert name == "conv1+resize32" and best > 0
