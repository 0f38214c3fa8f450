"""The shape of a cell's run, in steps and images: what the engine runs by and the cost model
counts, kept here so that the planner never imports the engine."""

from __future__ import annotations

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
