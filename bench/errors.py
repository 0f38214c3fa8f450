"""The error of a bad configuration: a profile, key, value or engine the run cannot use.

It lives below every package (config, executors, plan) so that each can raise it without
importing the others; the command line turns it into exit code 2.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A bad profile, key or value. The CLI turns it into exit code 2."""
