"""adaptbench's harness: run, measure, sweep and report adaptation strategies.

Layout: ``config`` (profiles), ``data`` (datasets on the device), ``train`` (one cell),
``measure`` (timing, memory, FLOPs, profiler), ``sweep`` (grid, subprocesses, resume),
``results`` (CSV store), ``report`` (tables, charts), ``doctor`` (compatibility matrix).
"""

__version__ = "0.1.0"
