"""The cost model: seconds per cell from forward FLOPs on the meta device, instantly.

A cell's estimate (:class:`Estimate`, seconds) is its forward GFLOPs per image (a meta-device
build, no memory, no data) times a per-device throughput (:data:`SPEEDS`), plus fixed costs per
image, per step and per cell. It is within ~2x of measured throughput, which is enough to rank
cells and to decide far from a budget; near one, :mod:`bench.plan.planner` times the cell for real.

Where a cell takes a fast path (:mod:`bench.plan.fastpath`: ``graphs`` / ``compile``, ``auto`` decided
the same way as the cell will), the estimate models it: compile runs compute-bound arithmetic at
the compiled MFU and adds the compile time; graphs replace the eager per-step launch floor by an
*assumed* floor of a replayed step (``fastpath.GRAPH_STEP_FLOOR_S``, not yet measured) and add
an assumed capture time. ``python -m bench.tools.gpu_check`` prints those assumptions next to what it
measures.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.config import Cell, Config
from bench.identity import effective
from bench.plan import fastpath, flops
from bench.plan.speeds import SPEEDS, DeviceSpeed, device_speed  # noqa: F401 - re-exported

# The cost model is trusted when it is this far from the budget either way (it is within ~2x
# of measured throughput); in between, the cell is timed for a few steps before deciding.
SURE_FACTOR = 4.0


@dataclass
class Estimate:
    seconds: float  # whole cell, full mode, including process start
    measure_only_s: float  # the cell in measure-only mode
    source: str  # "cost-model" | "timed"
    incompatible: str = ""  # the meta-device error, when the forward cannot run
    # Of ``seconds`` / ``measure_only_s``: the device's own arithmetic (FLOPs at the sustained
    # rate and the per-image costs, training and evaluation), which cells sharing the device
    # cannot overlap; the rest (launch floor, process start, compile) is host work that they
    # can (bench.plan.packing).
    device_s: float = 0.0
    measure_only_device_s: float = 0.0


class CostModel:
    """Seconds per cell from forward FLOPs (meta device) and a :class:`DeviceSpeed`."""

    def __init__(self, device_kind: str, device_model: str = "") -> None:
        """``device_model``: a name of :data:`bench.plan.speeds.DEVICE_MODELS` ("" = the model
        the constants were fitted on); ConfigError if unknown."""
        self.device_kind = device_kind
        self.device_model = device_model
        device_speed(device_kind, "fp32", device_model)  # an unknown model fails here

    def forward_gflops(self, cell: Cell, num_classes: int,
                       shape: tuple[int, int, int]) -> tuple[float, str]:
        """(forward GFLOPs per image, "" or why the cell cannot run) from a meta-device build.

        Not applicable strategies and forwards that fail on meta (VGG16 at 28 px) fail for
        real: such a cell is ``incompatible`` and recorded without starting a process.
        Cached once per process by :func:`bench.plan.flops.forward_gflops`.
        """
        return flops.forward_gflops(cell.model, cell.strategy, num_classes, tuple(shape))

    def estimate(self, cfg: Config, cell: Cell) -> Estimate:
        from bench.data import get_info

        cfg = effective(cfg, cell, self.device_kind)
        info = get_info(cell.dataset, cfg.data_root or None)
        speed = device_speed(self.device_kind, cfg.precision, self.device_model)
        gflops, incompatible = self.forward_gflops(cell, info.num_classes, info.shape)
        if incompatible:  # recorded by the sweep itself, no process started
            return Estimate(0.0, 0.0, "cost-model", incompatible)
        # val_size images are held out of the training split and evaluated after every
        # epoch in place of the test split, which is evaluated once at the end
        # (bench.engine.train); without val_size the test split is evaluated every epoch.
        n_val = cfg.val_size
        n_train = cfg.train_size or (getattr(info, "train_count", 0) or 60_000) - n_val
        n_test = cfg.test_size or getattr(info, "test_count", 0) or 10_000
        steps = max(1, n_train // cfg.batch_size)
        if cfg.max_steps_per_epoch:
            steps = min(steps, cfg.max_steps_per_epoch)
        # The fast paths the cell will take (the same decision bench.engine.train makes).
        fast = fastpath.resolve_for_model(cfg, self.device_kind, cell.model, gflops,
                                          cfg.epochs * steps, info.num_classes,
                                          tuple(info.shape))
        flop_s = speed.tflops * 1e12
        if fast.compile:  # compute-bound arithmetic at the compiled MFU instead of the eager
            flop_s /= 1.0 - fastpath.COMPILE_SAVING
        # Graphs replace the eager launch floor by the (assumed) floor of a replayed step.
        per_step_s = (min(speed.per_step_s, fastpath.GRAPH_STEP_FLOOR_S) if fast.graphs
                      else speed.per_step_s)
        img_train_s = 3 * gflops * 1e9 / flop_s + speed.per_img_s
        img_eval_s = gflops * 1e9 / flop_s + speed.per_img_s / 3
        compute_s = cfg.batch_size * img_train_s
        step_s = (max(compute_s, per_step_s) if speed.overlapped
                  else compute_s + per_step_s)
        from bench.plan.steps import EVAL_BATCH_FACTOR, extra_train_steps, measure_only_total_steps

        eval_bs = EVAL_BATCH_FACTOR * cfg.batch_size

        def eval_s(n: int) -> float:
            return n * img_eval_s + (n / eval_bs) * per_step_s

        epoch_eval_s = eval_s(n_val or n_test)
        final_test_s = eval_s(n_test) if n_val else 0.0
        # The memory and profiler window's steps, one evaluation batch, and the one-off
        # compile and capture.
        extra_s = (extra_train_steps(cfg.profile_steps) * step_s + eval_bs * img_eval_s
                   + speed.start_s + (fastpath.COMPILE_S if fast.compile else 0.0)
                   + (fastpath.GRAPH_CAPTURE_S if fast.graphs else 0.0))
        full = cfg.epochs * (steps * step_s + epoch_eval_s) + final_test_s + extra_s
        mo_steps = measure_only_total_steps(cfg.measure_only_steps, cfg.warmup_steps,
                                            cfg.window_steps, steps)
        measure_only = mo_steps * step_s + extra_s
        # The same sums with only the arithmetic: what N cells on one device still pay in turn.
        evaluated = cfg.epochs * (n_val or n_test) + (n_test if n_val else 0) + eval_bs
        extra_steps = extra_train_steps(cfg.profile_steps)
        device_full = ((cfg.epochs * steps + extra_steps) * compute_s
                       + evaluated * img_eval_s)
        device_mo = (mo_steps + extra_steps) * compute_s + eval_bs * img_eval_s
        if self.device_kind == "cpu":
            # On a CPU the host is the device: a cell's process start, model build and Python
            # take the same cores its arithmetic does, so cells sharing it overlap nothing.
            # Measured: 10 resnet18 cells of the cpu profile on the 2-core AMX Xeon, 84.0 s one
            # at a time, 82.3 s two at once (a split of the arithmetic alone had said 0.80x).
            device_full, device_mo = full, measure_only
        return Estimate(full, measure_only, "cost-model", device_s=device_full,
                        measure_only_device_s=device_mo)

