"""Shared machinery of the micro-benchmarks: which set runs, on which device, how it is measured.

Two sets, chosen with the environment variable ``ADAPTBENCH_MICRO``:

- ``default`` (unset): sized for a 2-core CPU -- the whole ``pytest --benchmark-only`` run takes
  a few minutes. vgg16 and resnet18, batch 8; the only 224 px cell is resnet18's.
- ``heavy``: for a GPU -- batch 64, more rounds, resnet50 added, and vgg16 at 224 px.

Every benchmark in this folder runs with ``torch.backends.cudnn.benchmark`` pinned to the set's
``cudnn_benchmark`` (what the harness uses on that hardware), so no benchmark inherits whatever
an earlier test left behind; the value is recorded in ``machine_info`` and ``extra_info``.

A plain ``pytest`` run executes every benchmark body once without timing (see
``tests/conftest.py``), so a broken benchmark fails ``make test``.

What lands in each benchmark's ``extra_info`` (saved in the JSON of ``--benchmark-save/-json``):
``img_s`` (images per second, from the median round), ``images_per_round``, ``rounds`` and
``warmup_rounds`` (timed and untimed calls), ``cudnn_benchmark``, ``peak_mem_mib``
(MiB, see :func:`peak_mem_mib`), ``gflops_per_img`` (GFLOPs of the timed work per image: forward,
or 3x forward for a training step) and ``gflop_s`` (achieved, = gflops_per_img x img_s).
"""

from __future__ import annotations

import functools
import os
import platform
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch

MIB = 2**20
HERE = Path(__file__).parent
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Cell(NamedTuple):
    """One (model, strategy) pair; ``incompatible`` holds why it cannot run, or ``None``."""

    model: str
    strategy: str
    incompatible: str | None = None

    @property
    def id(self) -> str:
        return f"{self.model}-{self.strategy}"


# repeat3 keeps 28 px: VGG16's five 2x2 max-pools take it 28 -> 14 -> 7 -> 3 -> 1 -> 0.
VGG_TOO_SMALL = "vgg16 at 28 px: the fifth max-pool has no input left (28->14->7->3->1->0)"


@dataclass(frozen=True)
class MicroSet:
    """The knobs of one benchmark set. Rounds are timed calls; warm-up calls are never timed."""

    name: str
    cells: tuple[Cell, ...]
    batch_size: int  # images per forward / training step
    step_rounds: int
    step_warmup: int
    forward_rounds: int
    forward_warmup: int
    pipeline_images: int  # images per round of an input-pipeline benchmark
    pipeline_rounds: int
    pipeline_warmup: int
    # torch.backends.cudnn.benchmark for every benchmark of the set: the harness's choice on
    # the hardware the set is for (bench.engine.train sets it on CUDA unless deterministic).
    cudnn_benchmark: bool


# The strategies are strategies.DEFAULT_PRESETS (what the profiles sweep), written out so that
# a cell's benchmark name stays stable across commits. cifarstem is ResNet-only (not built for
# VGG16); repeat3 on VGG16 runs to show it fails as documented (xfail, strict).
_PRESETS = ("post-convtranspose", "resize224", "repeat3", "droppools", "resize32", "cifarstem")


def _cells(models: tuple[str, ...], skip: set[tuple[str, str]]) -> tuple[Cell, ...]:
    return tuple(
        Cell(m, s, VGG_TOO_SMALL if (m, s) == ("vgg16", "repeat3") else None)
        for m in models for s in _PRESETS
        if (m, s) not in skip and not (m.startswith("vgg") and s == "cifarstem"))


MICRO_SETS = {
    # On two idle cores a batch-8 vgg16 step takes ~1 s (the update of its 138 M parameters
    # dominates) and a resnet18 step at 224 px ~0.8 s, so each cell takes seconds and the whole
    # run about a minute. vgg16 at 224 px (~1 img/s) is heavy-only.
    "default": MicroSet(
        name="default",
        cells=_cells(("vgg16", "resnet18"), skip={("vgg16", "resize224")}),
        batch_size=8,
        step_rounds=3,
        step_warmup=1,
        forward_rounds=5,
        forward_warmup=1,
        pipeline_images=64,
        pipeline_rounds=10,
        pipeline_warmup=2,
        cudnn_benchmark=False,
    ),
    # For a GPU: every cell at a training-sized batch, with enough rounds for a stable median.
    "heavy": MicroSet(
        name="heavy",
        cells=_cells(("vgg16", "resnet18", "resnet50"), skip=set()),
        batch_size=64,
        step_rounds=20,
        step_warmup=5,
        forward_rounds=20,
        forward_warmup=5,
        pipeline_images=256,
        pipeline_rounds=20,
        pipeline_warmup=3,
        cudnn_benchmark=True,
    ),
}


def selected_set() -> MicroSet:
    """The set named by ``$ADAPTBENCH_MICRO`` (unset or empty = ``default``)."""
    name = os.environ.get("ADAPTBENCH_MICRO", "").strip().lower() or "default"
    if name not in MICRO_SETS:
        raise pytest.UsageError(
            f"ADAPTBENCH_MICRO={name!r} is not a micro-benchmark set; "
            f"valid: {', '.join(MICRO_SETS)} (unset = default)")
    return MICRO_SETS[name]


MICRO = selected_set()


# -- timing ---------------------------------------------------------------------------------------

def synchronized_perf_counter() -> float:
    """``time.perf_counter`` after waiting for queued CUDA kernels.

    pytest-benchmark reads the timer before and after each round; synchronizing at both reads
    makes a round cover exactly the kernels it launched.
    """
    torch.cuda.synchronize()
    return time.perf_counter()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On CUDA, every benchmark in this folder uses the synchronizing timer."""
    if DEVICE.type != "cuda":
        return
    for item in items:
        ours = HERE in Path(str(item.path)).parents
        if ours and "benchmark" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.benchmark(timer=synchronized_perf_counter))


# -- parametrization and fixtures -----------------------------------------------------------------

def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests taking ``cell`` run once per cell of the selected set.

    Module scope groups a cell's tests together, so the ``adapted_model`` fixture builds each
    model once per module and only one model is alive at a time.
    """
    if "cell" not in metafunc.fixturenames:
        return
    def marks(cell: Cell) -> list[pytest.MarkDecorator]:
        if cell.incompatible is None:
            return []
        return [pytest.mark.xfail(raises=RuntimeError, strict=True, reason=cell.incompatible)]

    params = [pytest.param(cell, id=cell.id, marks=marks(cell)) for cell in MICRO.cells]
    metafunc.parametrize("cell", params, scope="module")


@pytest.fixture(scope="session")
def micro() -> MicroSet:
    return MICRO


@pytest.fixture(autouse=True)
def pinned_cudnn_benchmark() -> Any:
    """``cudnn.benchmark`` = the set's value during each benchmark here; restored afterwards."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = MICRO.cudnn_benchmark
    yield MICRO.cudnn_benchmark
    torch.backends.cudnn.benchmark = before


@pytest.fixture(scope="session")
def device() -> torch.device:
    return DEVICE


@pytest.fixture(scope="module")
def adapted_model(cell: Cell, device: torch.device) -> torch.nn.Module:
    """The cell's model, randomly initialised (seed 0), 10 classes, on the benchmark device."""
    from strategies import build

    torch.manual_seed(0)
    return build(cell.model, cell.strategy, num_classes=10, device=device)


@pytest.fixture
def mnist_like_batch(device: torch.device) -> Callable[[int], tuple]:
    """``make(n) -> (x, y)``: synthetic uint8 28x28 images, normalized like MNIST, on the device.

    Synthetic, not MNIST: these benchmarks measure speed, which does not depend on the pixels,
    and they must run on a fresh clone without the data downloaded.
    """

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(0)
        pixels = torch.randint(0, 256, (n, 1, 28, 28), generator=gen, dtype=torch.uint8)
        x = (pixels.float() / 255 - 0.1307) / 0.3081
        y = torch.randint(0, 10, (n,), generator=gen)
        return x.to(device), y.to(device)

    return make


# -- measurements recorded next to the timings ----------------------------------------------------

def _tensor_bytes(tensors: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def peak_mem_mib(fn: Callable[[], Any], device: torch.device, resident: Any = ()) -> float:
    """Peak tensor memory in MiB while ``fn()`` runs once (an extra, untimed call).

    CUDA: ``max_memory_allocated`` after ``reset_peak_memory_stats`` (everything allocated).
    CPU: there are no allocator statistics, so the bytes of ``resident`` tensors (parameters,
    optimizer state, the input: what is alive before the call) plus the highest running total
    of the allocations and frees the profiler records during the call. Call it in a state where
    the call frees nothing allocated before it (e.g. gradients already set to None): the
    profiler cannot size a block it did not see allocated.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) / MIB

    from torch.profiler import ProfilerActivity, profile

    with warnings.catch_warnings():
        # Some torch versions warn that a profiler without a schedule keeps one cycle: we want one.
        warnings.filterwarnings("ignore", message=".*Profiler clears events")
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
    changes = sorted((e.time_range.start, e.self_cpu_memory_usage)
                     for e in prof.events() if e.self_cpu_memory_usage)
    running = peak = 0
    for _, nbytes in changes:
        running += nbytes
        peak = max(peak, running)
    return (_tensor_bytes(resident) + peak) / MIB


@functools.cache
def gflops_fwd_per_img(model_name: str, strategy: str) -> float:
    """Forward GFLOPs per 28 px image, counted on a weightless meta-device copy (free)."""
    from strategies import build
    from strategies._meta import forward_gflops_per_img

    return forward_gflops_per_img(build(model_name, strategy, num_classes=10, device="meta"))


def record_extra_info(benchmark: Any, *, images_per_round: int, gflops_per_img: float | None = None,
                      memory_of: Callable[[], Any] | None = None, resident: Any = (),
                      **more: Any) -> None:
    """Fill ``benchmark.extra_info`` after the timed rounds.

    Only when the run was timed: throughput, and peak memory from one extra call of
    ``memory_of`` (see :func:`peak_mem_mib`). A plain ``pytest`` run skips both, so it costs one
    call per benchmark; ``test_peak_mem_mib_sees_a_known_allocation`` covers the helper there.
    """
    info = benchmark.extra_info
    info["images_per_round"] = images_per_round
    info["device"] = DEVICE.type
    info["micro_set"] = MICRO.name
    info["cudnn_benchmark"] = torch.backends.cudnn.benchmark
    if gflops_per_img is not None:
        info["gflops_per_img"] = round(gflops_per_img, 4)
    info.update(more)
    if not benchmark.enabled:
        return
    median_s = benchmark.stats.stats.median
    info["img_s"] = round(images_per_round / median_s, 2)
    info["us_per_img"] = round(median_s / images_per_round * 1e6, 2)
    if gflops_per_img is not None:
        info["gflop_s"] = round(gflops_per_img * images_per_round / median_s, 2)
    if memory_of is not None:
        info["peak_mem_mib"] = round(peak_mem_mib(memory_of, DEVICE, resident), 1)


def run_timed(benchmark: Any, fn: Callable[[], Any], *, rounds: int, warmup: int) -> Any:
    """``fn``'s result, timed as ``rounds`` calls of one iteration after ``warmup`` untimed
    calls; the window (one call) and the counts are recorded in ``extra_info``, so benchmarks
    compared side by side can be seen to share them."""
    benchmark.extra_info.update(rounds=rounds, warmup_rounds=warmup, iterations_per_round=1)
    return benchmark.pedantic(fn, rounds=rounds, warmup_rounds=warmup, iterations=1)


@pytest.fixture(scope="session")
def measure() -> Any:
    """The measuring helpers above, for the test modules (conftest is not importable)."""

    class Measure:
        peak_mem_mib = staticmethod(peak_mem_mib)
        gflops_fwd_per_img = staticmethod(gflops_fwd_per_img)
        tensor_bytes = staticmethod(_tensor_bytes)
        record = staticmethod(record_extra_info)
        run = staticmethod(run_timed)

    return Measure


# -- machine_info: what the saved JSON needs to compare runs honestly ----------------------------

def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    import torchvision

    machine_info["torch"] = torch.__version__
    machine_info["torchvision"] = torchvision.__version__
    machine_info["cuda"] = torch.version.cuda
    machine_info["cudnn"] = torch.backends.cudnn.version() if torch.cuda.is_available() else None
    machine_info["device"] = DEVICE.type
    machine_info["device_name"] = (torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda"
                                   else machine_info.get("cpu", {}).get("brand_raw")
                                   or platform.processor() or platform.machine())
    machine_info["torch_threads"] = torch.get_num_threads()
    machine_info["micro_set"] = MICRO.name
    machine_info["cudnn_benchmark"] = MICRO.cudnn_benchmark
