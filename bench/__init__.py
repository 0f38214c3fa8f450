"""adaptbench's harness: plan, run, measure and report adaptation strategies.

Data flows one way: ``config`` (profiles -> one frozen Config) -> ``plan`` (grid, cost model,
fast-path decision: the plan) -> ``sweep`` with an executor from ``executors`` (warm worker,
process per cell, Ray, Slurm; the worker, torchrun ranks, DDP) -> ``engine`` (one cell: train
step, measurement windows) -> a row of ``schema`` -> ``results`` (the atomic store) ->
``report`` (tables, charts, page, advice). ``data`` puts datasets on the device; ``device``
names the machine; ``progress`` prints; ``tools`` holds the standalone checks (doctor,
overhead, gpu_check, efficiency, calibrate).
"""

from pathlib import Path

__version__ = "0.1.0"

# The checkout this package runs from: children get it on PYTHONPATH, provenance reads its git.
REPO_ROOT = Path(__file__).resolve().parent.parent
