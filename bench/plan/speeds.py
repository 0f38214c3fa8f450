"""What each device kind sustains, as the cost model and the fast-path decision see it.

One :class:`DeviceSpeed` per (device kind, precision): sustained training TFLOP/s, fixed
seconds per image, per step and per cell. Fitted with ``python -m bench.tools.calibrate``.
:func:`device_speed` names the device model too (``bench plan --device-model h200``):
:data:`DEVICE_MODELS` says how each model relates to the one the constants were fitted on.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.errors import ConfigError


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
# AVX2 part): precision "auto" never picks it there, so its rate here is for AVX512_BF16 / AMX
# machines, where it is priced as fp32. On the 2-core AMX Xeon that published results/cpu,
# bf16 autocast + channels_last was slower than fp32 for one cheap cell and much faster for
# the costly ones (results/cpu/overhead-profile-cpu.json: resnet18 repeat3 402.9 vs 456.3
# img/s probed against fp32 channels_last; results/cpu/auto-choices.json: resnet18 cifarstem
# 182 vs 98, vgg16 post-convtranspose 15.8 vs 11.0), and pricing it slower (0.03 TFLOP/s) had
# sent the VGG16 cells measure-only there.
SPEEDS: dict[tuple[str, str], DeviceSpeed] = {
    ("cpu", "fp32"): DeviceSpeed(0.05, 2e-3, 0.0, start_s=10.0, overlapped=False),
    ("cpu", "bf16"): DeviceSpeed(0.05, 2e-3, 0.0, start_s=10.0, overlapped=False),
    ("cpu", "fp16"): DeviceSpeed(0.02, 3e-3, 0.0, start_s=10.0, overlapped=False),
    ("cuda", "fp32"): DeviceSpeed(75.0, 0.0, 0.0091, start_s=14.0, overlapped=True),
    ("cuda", "bf16"): DeviceSpeed(207.0, 0.0, 0.0091, start_s=14.0, overlapped=True),
    ("cuda", "fp16"): DeviceSpeed(207.0, 0.0, 0.0091, start_s=14.0, overlapped=True),
}


# The device model each kind's constants were fitted on (the rows named above).
FITTED_MODEL = {"cpu": "epyc-avx2", "cuda": "h100"}
# Device models the cost model can plan for, each as the factor on the fitted model's
# sustained TFLOP/s (the per-step, per-image and per-cell costs are kept: they are host-side).
# H200: an ASSUMPTION until a lease measures it (python -m bench.tools.gpu_check records the
# ceilings and every cell's wall time; python -m bench.tools.calibrate re-fits). NVIDIA's
# datasheets give the H200 SXM the H100 SXM's compute (the same Hopper GH100 die and clocks:
# 989 dense bf16 TFLOP/s) with more and faster memory (141 GB HBM3e at 4.8 TB/s against 80 GB
# HBM3 at 3.35 TB/s). The cost model has no bandwidth term (compute-bound cells are priced by
# FLOPs, launch-bound ones by the host's launch floor), so the H200 gets the H100's constants:
# factor 1.0. Memory-bound layers may run faster on it; the estimate then errs high.
DEVICE_MODELS: dict[str, dict[str, float]] = {
    "cpu": {"epyc-avx2": 1.0},
    "cuda": {"h100": 1.0, "h200": 1.0},
}
# Measured wall_s / estimate of the cells the constants were checked on (the comment above
# SPEEDS): (p10, median, p90). A plan prints its ETA times these as the range to expect.
RATIO_SPREAD: dict[str, tuple[float, float, float]] = {
    "cpu": (0.66, 0.84, 1.12),
    "cuda": (0.74, 0.87, 1.35),
}


def device_speed(kind: str, precision: str, device_model: str = "") -> DeviceSpeed:
    """The :class:`DeviceSpeed` of ``device_model`` ("" = the fitted one) of device ``kind``;
    :class:`~bench.errors.ConfigError` names the known models of that kind."""
    speed = SPEEDS[(kind, precision)]
    models = DEVICE_MODELS.get(kind, {})
    name = (device_model or FITTED_MODEL.get(kind, "")).lower()
    if name not in models:
        raise ConfigError(f"unknown {kind} device model {device_model!r}; known: "
                         f"{', '.join(sorted(models))}")
    factor = models[name]
    if factor == 1.0:
        return speed
    from dataclasses import replace

    return replace(speed, tflops=speed.tflops * factor)
