"""The shape of a cell's run, in steps and images: what the engine runs by and the cost model
counts, kept here so that the planner never imports the engine."""

from __future__ import annotations

from bench.schema import MIN_TIMED_WINDOWS

# Untimed training steps after the timed ones, in one profiler session: one settles (and
# warms the profiler up), then max(1, profile_steps) are measured for peak memory and, when
# profile_steps > 0, for the operator table (see measure.step_window); one evaluation batch
# follows for eval_peak_mem_mib.
SETTLE_STEPS = 1
# Evaluation batch = this x batch_size images: no activations are kept for backward, so the
# larger batch fits where training did, and on a CPU small batches evaluate far slower per image.
EVAL_BATCH_FACTOR = 4


def extra_train_steps(profile_steps: int) -> int:
    """Training steps a cell runs after its timed ones (memory and profiler window)."""
    return SETTLE_STEPS + max(1, profile_steps)


def measure_only_total_steps(measure_only_steps: int, warmup_steps: int, window_steps: int,
                             steps_per_epoch: int) -> int:
    """Training steps of a measure-only cell: ``measure_only_steps``, raised until the timed
    windows number at least :data:`~bench.schema.MIN_TIMED_WINDOWS`.

    Counts as :class:`bench.engine.measure.ThroughputMeter` does: the first ``warmup_steps``
    are untimed, windows are ``window_steps`` whole steps, and the partial window at the end
    of an epoch is dropped (the meter is interrupted there).
    """
    window = max(1, window_steps)
    per_epoch = max(1, steps_per_epoch)
    if per_epoch < window:  # no window fits in an epoch: more steps would not help
        return max(measure_only_steps, warmup_steps + window)
    steps, windows, open_len = 0, 0, 0
    while windows < MIN_TIMED_WINDOWS:
        steps += 1
        if steps > warmup_steps:
            open_len += 1
            if open_len == window:
                windows, open_len = windows + 1, 0
        if steps % per_epoch == 0:
            open_len = 0  # the meter drops a partial window at the epoch's end
    return max(measure_only_steps, steps)
