"""One cell, run in the child process: build the strategy's model, train and measure it.

- :mod:`~bench.engine.train`      a cell in phases: prepare data, build, budget, epochs,
  summarize; returns the measured row (and is the import path of the engine's API).
- :mod:`~bench.engine.state`      what a cell carries through its phases (Run, CellResult).
- :mod:`~bench.engine.meta`       the meta-device check: params, FLOPs, or Incompatible.
- :mod:`~bench.engine.backend`    the device ``auto`` resolves to; seeds and backend flags.
- :mod:`~bench.engine.optim`      the recipe's optimizer and learning-rate schedule.
- :mod:`~bench.engine.step`       THE training and evaluation step, shared with the
  micro-benchmarks and the overhead check.
- :mod:`~bench.engine.evaluate`   accuracy and eval images/s over a split.
- :mod:`~bench.engine.profiling`  after the accuracy: re-timed contended windows, then peak
  memory, the profiler's operators and MFU on extra steps.
- :mod:`~bench.engine.estimate`   a cell's expected seconds from a few timed steps.
- :mod:`~bench.engine.measure`    the measuring API in one import, from
  :mod:`~bench.engine.windows` (seconds, images/s), :mod:`~bench.engine.memory` (MiB),
  :mod:`~bench.engine.opstats` (the operator table) and :mod:`~bench.engine.peaks`
  (matmul TFLOP/s, copy GB/s).
- :mod:`~bench.engine.contention` and :mod:`~bench.engine.oom`: a contended window, an OOM.

The fast-path decision (CUDA graphs, compile) is the planner's (:mod:`bench.plan.fastpath`),
so a plan and the cell it runs agree by construction.
"""
