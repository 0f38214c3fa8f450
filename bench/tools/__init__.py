"""Standalone checks built on the harness, each a ``python -m bench.tools.NAME`` command:

- :mod:`~bench.tools.doctor`      the compatibility matrix (meta device) of models x strategies.
- :mod:`~bench.tools.overhead`    the engine's throughput against a bare training loop.
- :mod:`~bench.tools.gpu_check`   the one-shot GPU lease script (ceilings, probes, profile).
- :mod:`~bench.tools.efficiency`  a sweep's wall time split into training, evaluation and rest.
- :mod:`~bench.tools.calibrate`   refit the cost model's device speeds from published rows.
"""
