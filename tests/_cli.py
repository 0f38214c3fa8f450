"""The CLI run in this process as a user runs it: ``main(argv)``'s exit code, argparse's own
``SystemExit`` included (tests/test_bad_inputs.py, tests/test_results_hostile.py)."""

from __future__ import annotations

from bench.__main__ import main


def exit_code(argv: list[str]) -> int:
    """``python -m bench argv``'s exit code, without a subprocess."""
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own errors
        return int(exc.code or 0)
