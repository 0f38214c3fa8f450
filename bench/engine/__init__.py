"""One cell, run in the child process: build the strategy's model, train and measure it.

- :mod:`~bench.engine.train`    a cell in phases: prepare data, build, budget, epochs,
  summarize, profile; returns the measured row.
- :mod:`~bench.engine.step`     THE training and evaluation step (and the optimizer and
  schedule builder), shared with the micro-benchmarks and the overhead check.
- :mod:`~bench.engine.measure`  windows over whole steps (seconds, images/s), peak memory
  (MiB), FLOPs/MFU and the profiler's operator table.

The fast-path decision (CUDA graphs, compile) is the planner's (:mod:`bench.plan.fastpath`),
so a plan and the cell it runs agree by construction.
"""
