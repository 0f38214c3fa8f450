"""The one picture of a directory that a test compares before and after a command to prove
it wrote nothing (tests/test_bad_inputs.py, tests/test_results_hostile.py, the fuzzers of
tests/_fuzz.py): every file's bytes and modification time.

Standard library only, so a test of refusals needs no fuzzing package to use it.
"""

from __future__ import annotations

from pathlib import Path


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Bytes and mtime (ns) of every file under ``root``, by path relative to it, the lock
    file included: equal before and after means nothing was written, not even rewritten with
    the same bytes."""
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}
