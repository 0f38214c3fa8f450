"""The errors of the data layer. Each message names the bad value and the fix; every one is a
bad input (exit 2) to the command line."""

from __future__ import annotations


class DataError(Exception):
    """Data missing, corrupt or asked for in a size it does not have. The message says the fix."""


class UnknownDatasetError(DataError, ValueError):
    """A dataset name that is not in :data:`DATASETS`. The message lists the valid names."""
