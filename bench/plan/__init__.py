"""From a config to the plan that ``run`` executes exactly: nothing here imports the engine.

- :mod:`~bench.plan.grid`       profile resolution, grid checks, ``--only`` and ``--shard``.
- :mod:`~bench.plan.costmodel`  seconds per cell from forward FLOPs on the meta device and the
  device speeds of :mod:`~bench.plan.speeds`.
- :mod:`~bench.plan.flops`      a strategy's forward GFLOPs per image (meta device), cached once.
- :mod:`~bench.plan.fastpath`   which cells take CUDA graphs or compile, and why.
- :mod:`~bench.plan.steps`      how many steps and images a cell runs beyond its epochs.
- :mod:`~bench.plan.planner`    the plan itself: mode (full or measure-only), estimate, done.
"""
