"""What each device kind sustains, as the cost model and the fast-path decision see it.

One :class:`DeviceSpeed` per (device kind, precision): sustained training TFLOP/s, fixed
seconds per image, per step and per cell. Fitted with ``python -m bench.tools.calibrate``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeviceSpeed:
    """A device as the cost model sees it."""

    tflops: float  # sustained training TFLOP/s on large convolutions
    per_img_s: float  # fixed cost per training image (small-tensor overheads), seconds
    per_step_s: float  # fixed cost per optimizer step (kernel launches, Python), seconds
    start_s: float  # per cell: process start, imports, data, model build, eval, profiler, s
    overlapped: bool  # a step costs max(compute, per_step_s) (async GPU), else their sum


# Checked against the published rows (2-core AMD EPYC family 25 model 1, AVX2 + FMA, for the
# CPU; one H100 80GB HBM3, bf16, channels_last, batch 256, torch 2.11, for CUDA) with
#   python -m bench.tools.calibrate results/cpu --profile cpu --device cpu
#   python -m bench.tools.calibrate results/gpu --profile gpu-quick --device cuda
# which print the fit and wall_s / estimate of today's constants (median, p10, p90):
# - CPU fp32: 8 cells x0.84 (x0.66, x1.12). The throughput fit (0.0755 TFLOP/s, 6.6 ms per
#   image, 6.2 s per cell) was tried in place of these constants and predicted the cells' wall
#   time worse, so the CPU constants stay: resnet18@28 ~180 img/s predicted (140 measured),
#   vgg16@32 ~18 (25), vgg16@224 ~0.5 (0.9).
# - CUDA bf16: the fit's 207 TFLOP/s (compute-bound cells) and 9.1 ms launch floor per step,
#   with 14 s per cell outside the epochs (the fit's 9.4 s underestimated; 14 s was picked on
#   these same rows, so this is in-sample): 14 cells x0.87 (x0.74, x1.35), where the run's own
#   estimates (the old 220 TFLOP/s, 18 ms, 20 s) were x0.61 (x0.50, x0.93). fp32/fp16 keep their
#   old ratio to bf16 (no published rows).
# start_s counts what the cell's wall_s counts; the warm executor's worker start is paid once
# per sweep. CPU bf16 without AVX512_BF16 is emulated (~100x slower than fp32 measured on the
# AVX2 part): precision "auto" never picks it there, so its rate here is for AVX-512 machines.
SPEEDS: dict[tuple[str, str], DeviceSpeed] = {
    ("cpu", "fp32"): DeviceSpeed(0.05, 2e-3, 0.0, start_s=10.0, overlapped=False),
    ("cpu", "bf16"): DeviceSpeed(0.03, 3e-3, 0.0, start_s=10.0, overlapped=False),
    ("cpu", "fp16"): DeviceSpeed(0.02, 3e-3, 0.0, start_s=10.0, overlapped=False),
    ("cuda", "fp32"): DeviceSpeed(75.0, 0.0, 0.0091, start_s=14.0, overlapped=True),
    ("cuda", "bf16"): DeviceSpeed(207.0, 0.0, 0.0091, start_s=14.0, overlapped=True),
    ("cuda", "fp16"): DeviceSpeed(207.0, 0.0, 0.0091, start_s=14.0, overlapped=True),
}
