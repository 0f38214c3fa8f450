"""Which speed paths a cell takes: the ``graphs`` and ``compile`` decisions and their reasons.

Both keys take ``true | false | "auto"``. ``auto`` is decided per model (from its costliest
strategy in the grid: :func:`resolve_for_model`, so every strategy of a model runs in one
execution mode) from cost-model estimates
(:mod:`bench.plan.costmodel`), so the decision is a pure function of numbers and can be tested
without a GPU (:func:`decide`); :func:`resolve` reads those numbers off a config and the cell's
forward FLOPs. The row records what was decided (``graphs``, ``compile``) and why
(``fast_path_reason``).

- **graphs auto**: on for CUDA cells whose step is launch-bound by the cost model -- the
  arithmetic of one training step (3 x forward FLOPs x batch at the device's sustained rate) is
  under the eager per-step launch floor (9.1 ms on the H100 the cost model was fitted on), so
  a step costs the floor, not its arithmetic. resnet18 at 28 px, batch 256: ~0.2 ms of
  arithmetic under a ~9 ms floor, so capture; vgg16 at 224 px: ~115 ms of arithmetic, the
  launches are already hidden behind it. The capture is a one-off of about a second
  (:data:`GRAPH_CAPTURE_S`, in the estimate), so it is not weighed against the saving.
- **compile auto**: on for CUDA cells where the compile time is bought back: the training
  arithmetic of the whole cell (as planned, all epochs, also for a measure-only row, so that it
  measures the configuration the full cell trains with) shrinks by the measured MFU gain
  (:data:`EAGER_MFU` -> :data:`COMPILED_MFU`), and that saving must exceed :data:`COMPILE_S`.
  Off on CPU: the gain was measured on a GPU only; nothing says what it buys on a CPU.

Where graphs cannot be used they fall back to the eager step, and the reason says why: not a
CUDA device; fp16 (the grad scaler skips steps and updates its scale on the host); the onecycle
schedule with SGD (it changes momentum every step, a host value a capture would freeze); a
model that declares ``dynamic_shapes``; fault injection (the test hook edits the loss on the
host); and compile on, where ``torch.compile(mode="reduce-overhead")`` captures the compiled
model instead.

Figures (units in the names): :data:`COMPILE_S`, :data:`EAGER_MFU` and :data:`COMPILED_MFU`
come from one H100 (vgg16 ``resize224``, bf16, channels_last): the eager MFU is in
``results/gpu/runs.csv``; the compiled MFU and the compile time are from a follow-up probe whose
files did not come back (``results/gpu/README.md``), so they are assumptions until
``python -m bench.tools.gpu_check`` records its compile probe. :data:`GRAPH_STEP_FLOOR_S` and
:data:`GRAPH_CAPTURE_S` are assumptions, never measured yet: ``gpu_check`` prints them next to
what it measures.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.plan.flops import forward_gflops
from bench.plan.speeds import SPEEDS

# ASSUMED, not measured: the floor of one replayed training step (one graph launch, the
# batch gather and copy into the static buffers, the schedule's LR update; the kernels
# themselves, a few microseconds each for small maps). 2 ms would be ~128,000 img/s for
# resnet18 at 28 px, batch 256, against 25,874 img/s measured eager.
GRAPH_STEP_FLOOR_S = 0.002
# ASSUMED: warm-up steps on a side stream plus the capture of the training and evaluation
# steps, seconds per cell (recording a step costs about what launching it eagerly does).
GRAPH_CAPTURE_S = 1.0
# vgg16 resize224 on an H100: eager MFU (results/gpu/runs.csv) and the compiled MFU and compile
# time of a follow-up probe (its files did not come back: an assumption until re-measured).
EAGER_MFU = 0.388
COMPILED_MFU = 0.528
COMPILE_S = 23.0
# Fraction of a compute-bound step's time that compile saves (1 - 38.8 / 52.8 = 0.265).
COMPILE_SAVING = 1.0 - EAGER_MFU / COMPILED_MFU


@dataclass(frozen=True)
class Decision:
    """What a cell runs with: manual CUDA graphs, torch.compile (and its mode), and why."""

    graphs: bool  # the whole training and evaluation step captured and replayed
    compile: bool
    compile_mode: str  # "" (off) | "default" | "reduce-overhead"
    reason: str  # one line per key, "; "-joined: the fast_path_reason column


def decide(*, device_kind: str, graphs: bool | str, compile: bool | str,
           step_compute_s: float, launch_floor_s: float, planned_steps: int,
           precision: str = "bf16", schedule: str = "cosine", optimizer: str = "sgd",
           dynamic_shapes: bool = False, fault_injection: bool = False,
           distributed: bool = False) -> Decision:
    """The fast paths of one cell, from estimates (a pure function: no torch, no device).

    ``step_compute_s``: arithmetic of one training step, seconds; ``launch_floor_s``: the eager
    per-step floor on this device, seconds (0 on CPU); ``planned_steps``: the cell's training
    steps as planned (all epochs). ``graphs`` / ``compile``: the config's values.
    """
    cuda = device_kind == "cuda"
    notes: list[str] = []
    cell_compute_s = step_compute_s * planned_steps

    if compile == "auto":
        if not cuda:
            use_compile = False
            notes.append("compile auto: off on CPU")
        else:
            saving = cell_compute_s * COMPILE_SAVING
            use_compile = saving > COMPILE_S
            notes.append(f"compile auto: {'on' if use_compile else 'off'} (saves ~{saving:.0f} s "
                         f"of {cell_compute_s:.0f} s arithmetic at {EAGER_MFU:.1%} -> "
                         f"{COMPILED_MFU:.1%} MFU, {'>' if use_compile else '<='} "
                         f"{COMPILE_S:.0f} s compile)")
    else:
        use_compile = bool(compile)

    want_graphs = bool(graphs) and graphs != "auto"
    if graphs == "auto":
        if not cuda:
            notes.append("graphs auto: off on CPU")
        else:
            want_graphs = step_compute_s < launch_floor_s
            notes.append(f"graphs auto: {'on' if want_graphs else 'off'} ("
                         f"{'launch-bound' if want_graphs else 'compute-bound'}: "
                         f"{step_compute_s * 1e3:.2f} ms arithmetic a step "
                         f"{'<' if want_graphs else '>='} the {launch_floor_s * 1e3:.1f} ms "
                         "launch floor)")
    elif want_graphs and not cuda:
        notes.append("graphs: off, CUDA graphs need a CUDA device")
    use_graphs = want_graphs and cuda
    if use_graphs:
        blocker = _graph_blocker(precision, schedule, optimizer, dynamic_shapes, fault_injection,
                                 distributed)
        if blocker:
            use_graphs = False
            notes.append(f"graphs: off, {blocker}")
    mode = ""
    if use_compile:
        mode = "default"
        if use_graphs:
            use_graphs, mode = False, "reduce-overhead"
            notes.append("graphs: through torch.compile(mode=\"reduce-overhead\"), which "
                         "captures the compiled model (the optimizer step stays outside)")
    return Decision(use_graphs, use_compile, mode, "; ".join(notes))


def _graph_blocker(precision: str, schedule: str, optimizer: str, dynamic_shapes: bool,
                   fault_injection: bool, distributed: bool = False) -> str:
    """Why a captured step could not be the eager one, or ``""``."""
    if precision == "fp16":
        return "fp16's grad scaler skips steps and updates its scale on the host"
    if schedule == "onecycle" and optimizer == "sgd":
        return "onecycle changes SGD's momentum every step, a host value a capture would freeze"
    if dynamic_shapes:
        return "the model declares dynamic shapes"
    if fault_injection:
        return "fault injection edits the loss on the host"
    if distributed:
        # DDP's gradient all-reduce runs in hooks on its own buckets and streams; the
        # captured step here does not capture collectives.
        return "--ddp: the gradient all-reduce is not part of the captured step"
    return ""


def step_compute_s(device_kind: str, precision: str, gflops_fwd_per_img: float,
                   batch_size: int) -> tuple[float, float]:
    """(arithmetic of one training step, the eager per-step launch floor), seconds, from
    :data:`bench.plan.speeds.SPEEDS` (training = 3 x forward FLOPs)."""
    speed = SPEEDS.get((device_kind, precision)) or SPEEDS[(device_kind, "fp32")]
    compute = batch_size * (3 * gflops_fwd_per_img * 1e9 / (speed.tflops * 1e12))
    return compute, speed.per_step_s


def resolve(cfg: Any, device_kind: str, gflops_fwd_per_img: float, planned_steps: int, *,
            dynamic_shapes: bool = False, fault_injection: bool = False,
            distributed: bool = False) -> Decision:
    """:func:`decide` for a (per-model, precision-resolved) config: ``planned_steps`` is the
    full cell's training steps (epochs x steps per epoch), whatever the row's mode."""
    compute, floor = step_compute_s(device_kind, cfg.precision, gflops_fwd_per_img,
                                    cfg.batch_size)
    return decide(device_kind=device_kind, graphs=cfg.graphs, compile=cfg.compile,
                  step_compute_s=compute, launch_floor_s=floor,
                  planned_steps=planned_steps, precision=cfg.precision,
                  schedule=cfg.schedule, optimizer=cfg.optimizer,
                  dynamic_shapes=dynamic_shapes, fault_injection=fault_injection,
                  distributed=distributed)


def resolve_for_model(cfg: Any, device_kind: str, model: str, gflops_fwd_per_img: float,
                      planned_steps: int, num_classes: int, shape: tuple[int, int, int],
                      **cell_flags: bool) -> Decision:
    """:func:`resolve` with ``auto`` decided once per model, not per strategy.

    Two strategies of one model must run in one execution mode, or a table would compare CUDA
    graphs with eager launches: an ``auto`` decision is made from the costliest strategy of
    ``model`` in the config's grid (the most forward GFLOPs per image, the same strategy that
    decides the model's full / measure-only mode), and every strategy of the model takes it.
    ``gflops_fwd_per_img`` is this cell's own, used when no strategy of the grid builds.
    ``cell_flags``: :func:`resolve`'s per-cell blockers (``dynamic_shapes``, ``fault_injection``,
    ``distributed``), which stay per cell.
    """
    auto = "auto" in (cfg.graphs, cfg.compile)
    if not auto or device_kind != "cuda":  # nothing is decided from FLOPs: skip the builds
        return resolve(cfg, device_kind, gflops_fwd_per_img, planned_steps, **cell_flags)
    costliest, name = costliest_gflops(model, tuple(cfg.strategies), num_classes, shape)
    if costliest <= 0.0:
        costliest, name = gflops_fwd_per_img, ""
    decision = resolve(cfg, device_kind, costliest, planned_steps, **cell_flags)
    if name:
        reason = f"decided for every strategy of {model} from its costliest, {name}: "
        return Decision(decision.graphs, decision.compile, decision.compile_mode,
                        reason + decision.reason)
    return decision


def costliest_gflops(model: str, strategy_names: tuple[str, ...], num_classes: int,
                     shape: tuple[int, int, int]) -> tuple[float, str]:
    """(forward GFLOPs per image, strategy) of the costliest of ``strategy_names`` for
    ``model`` on inputs of ``shape`` (C, H, W), from meta-device builds (no memory, no data;
    each one cached by :func:`bench.plan.flops.forward_gflops`); strategies that cannot build
    or run are skipped; ``(0.0, "")`` when none can."""
    best, best_name = 0.0, ""
    for name in strategy_names:
        try:
            gflops, why = forward_gflops(model, name, num_classes, tuple(shape))
        except RuntimeError:  # a build that fails outright is no candidate either
            continue
        if why:
            continue
        if gflops > best:
            best, best_name = gflops, name
    return best, best_name


# --- the compile cache kept between the cells of a sweep ---------------------------------------

CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"
# A caller's own cache directory for the sweep's cells (gpu_check shares its probes' cache with
# its sweep this way). Not TORCHINDUCTOR_CACHE_DIR itself: inductor writes its user-wide default
# into that variable of any process that compiled, which would look like a choice.
SHARED_CACHE_ENV = "ADAPTBENCH_COMPILE_CACHE"


def compile_cache_env(workdir: Path) -> dict[str, str]:
    """Environment for a sweep's cell processes: one on-disk inductor cache for the sweep.

    The warm worker resets torch.compile's in-memory state before every cell
    (``torch._dynamo.reset()`` in :class:`bench.executors.worker._Baseline`), so without an on-disk cache a
    second vgg16 cell would compile again from nothing. Inductor's FX graph cache and
    AOTAutograd cache live under ``TORCHINDUCTOR_CACHE_DIR``: pointing every cell of the sweep
    at one directory of its own (``workdir/inductor-cache``, or ``$ADAPTBENCH_COMPILE_CACHE``)
    lets the second cell load what the first compiled, and keeps the first cell's compile_s
    honest (a cold cache, not whatever an earlier run left in the user-wide default under /tmp).
    """
    cache = os.environ.get(SHARED_CACHE_ENV) or str(Path(workdir) / "inductor-cache")
    return {CACHE_ENV: cache, "TORCHINDUCTOR_FX_GRAPH_CACHE": "1",
            "TORCHINDUCTOR_AUTOGRAD_CACHE": "1"}
