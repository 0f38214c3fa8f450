"""Suite-wide pytest hook: a plain ``pytest`` run executes the micro-benchmarks without timing.

Why this lives here and not in ``tests/benchmarks/conftest.py``: pytest imports a sub-folder's
conftest only when it collects that folder, which is after ``pytest_configure`` has run and
pytest-benchmark has read its options. And ``--benchmark-disable`` cannot go into ``addopts``,
because pytest-benchmark refuses ``--benchmark-only`` together with ``--benchmark-disable``.

So: unless a benchmark option asks for timing (``--benchmark-only``, ``--benchmark-enable``,
``--benchmark-save``, ``--benchmark-autosave``, ``--benchmark-json``, ``--benchmark-compare``,
``--benchmark-histogram``), every benchmark body runs exactly once, untimed -- a broken
benchmark still fails ``make test``, and ``make test`` stays fast. The second hook skips
tests marked ``gpu`` on machines without CUDA. Keep suite-wide hooks only here.
"""

from __future__ import annotations

import os

import pytest

# pytest-benchmark option dests whose presence means "measure, don't just run once".
_TIMING_OPTIONS = (
    "benchmark_only",
    "benchmark_enable",
    "benchmark_save",
    "benchmark_autosave",
    "benchmark_json",
    "benchmark_compare",
    "benchmark_compare_fail",
    "benchmark_histogram",
)


@pytest.hookimpl(tryfirst=True)  # before pytest-benchmark's (trylast) pytest_configure reads it
def pytest_configure(config: pytest.Config) -> None:
    # A row key the results schema does not define is an error in tests (bench/schema.py),
    # in this process and in every cell process the tests start.
    os.environ.setdefault("ADAPTBENCH_STRICT_SCHEMA", "1")
    if not hasattr(config.option, "benchmark_disable"):
        return  # pytest-benchmark is not installed or was disabled with -p no:benchmark
    if not any(config.getoption(name, default=None) for name in _TIMING_OPTIONS):
        config.option.benchmark_disable = True


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``gpu`` skip cleanly, with the reason, on a machine without CUDA."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (marked gpu)")
    for item in items:
        # get_closest_marker, not `"gpu" in item.keywords`: keywords also hold parameter ids,
        # so a test parametrized with the profile name "gpu" would be skipped by mistake.
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)
