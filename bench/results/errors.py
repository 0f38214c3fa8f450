"""The store's errors: a results file that cannot be read or written as expected, and a results
directory another run holds.
"""

from __future__ import annotations


class ResultsError(Exception):
    """A results file that cannot be read or written as expected. Message says what to do."""


class LockError(ResultsError):
    """Another run holds the results directory."""
