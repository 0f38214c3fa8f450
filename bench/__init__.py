"""adaptbench's harness: run, measure, sweep and report adaptation strategies.

Layout: ``config`` (profiles), ``data`` (datasets on the device), ``train`` (one cell),
``measure`` (timing, memory, FLOPs, profiler), ``grid`` (selection), ``costmodel`` and
``plan`` (the one plan), ``executors`` (warm worker | process per cell), ``sweep`` (runs the
plan, resume), ``progress`` (output), ``results`` (CSV store), ``report`` (tables, charts),
``doctor`` (compatibility matrix).
"""

__version__ = "0.1.0"
