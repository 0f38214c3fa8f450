"""What the fuzzers share (tests/test_data_user_fuzz.py, tests/test_results_fuzz.py): hypothesis
settings for the two lanes, running a command the way ``python -m bench`` does, and the property
every refusal must have.

The property: a command either succeeds (exit 0), or prints ONE line ``error: ...`` on stderr,
no traceback, exits 2, and leaves nothing behind. Each fuzzer checks "nothing behind" for its
own files (the data root's cache, the results directory).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import traceback
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir

from bench.__main__ import main

# Hypothesis keeps a cache of constants under ./.hypothesis even without an example
# database: point it at a temporary folder so a test run leaves the work tree as it was.
set_hypothesis_home_dir(tempfile.mkdtemp(prefix="adaptbench-hypothesis-"))

# derandomize: the examples are a function of the test alone, so a CI failure reproduces on
# any machine; database=None: running the tests never writes into the repository tree.
_COMMON = dict(deadline=None, database=None, derandomize=True, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.filter_too_much])
FAST = settings(max_examples=30, **_COMMON)  # the fast lane (make test): seconds, not minutes
SLOW = settings(max_examples=300, **_COMMON)  # the slow lane (make test-slow)


def call(argv: list[str]) -> tuple[int, str, str]:
    """``main(argv)`` in this process: (exit code, stdout, stderr). An exception that escapes
    is what a user would see as a traceback: it is returned as exit code -1 with the
    traceback as stderr, so the property below names it."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's own errors
            code = int(exc.code or 0) if not isinstance(exc.code, str) else 2
        except Exception:  # the bug this fuzzer looks for
            return -1, out.getvalue(), err.getvalue() + traceback.format_exc()
    return int(code), out.getvalue(), err.getvalue()


def assert_refusal_is_one_line(code: int, err: str, subject: str = "") -> str:
    """Exit 2 and one ``error:`` line without a traceback; returns the line. ``subject``: a
    path the message may name once but never twice in a row (``x.npz: x.npz: ...``)."""
    assert code == 2, f"exit {code} (expected 0, or 2 with one line):\n{err[-3000:]}"
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"{len(lines)} lines on stderr:\n{err[-3000:]}"
    line = lines[0]
    assert line.startswith("error: ") and "Traceback" not in line, line
    if subject:
        assert f"{subject}: {subject}:" not in line, f"the file named twice: {line}"
    assert not _doubled_name(line), f"a name doubled: {line[:3000]}"
    return line


def _doubled_name(line: str) -> str:
    """A name of 4+ non-space characters written twice in a row (``x.npz: x.npz:``), or "".

    Linear in the line: the backreference regex ``(\\S{4,}): \\1:`` it replaces took minutes
    on a message that quoted a 128 KiB field."""
    parts = line.split(": ")
    for head, nxt in zip(parts, parts[1:], strict=False):
        name = head.rsplit(None, 1)[-1] if head.strip() else ""
        if len(name) >= 4 and (nxt == name or nxt.startswith(name + ":")):
            return name
    return ""


def listing(root: Path) -> list[str]:
    """Every path under ``root`` (relative), sorted; [] when it does not exist."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []
