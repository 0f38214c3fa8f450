"""The options every subcommand spells the same way: ``--profile``, ``--set``, ``--device`` and
``--results``, defined once here so that ``run``, ``plan``, ``advise`` and ``report`` cannot
drift apart (each takes the ones it has a use for).

The spellings they had before stay accepted: ``--results-dir`` is an alias of ``--results``
everywhere, and ``report DIR`` still takes the directory as its positional argument.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

RESULTS_FLAGS = ("--results", "--results-dir")


def add_profile(p: argparse.ArgumentParser) -> None:
    """``--profile NAME|PATH|auto`` (required)."""
    p.add_argument("--profile", required=True,
                   help="profile name (see `list`), a path to a .toml file, or 'auto' "
                        "(gpu when CUDA is available, else cpu)")


def add_set(p: argparse.ArgumentParser) -> None:
    """``--set KEY=VALUE`` (repeatable) into ``overrides``."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable); lists are comma-separated")


def add_device(p: argparse.ArgumentParser) -> None:
    """``--device auto|cpu|cuda``."""
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")


def add_results(p: argparse.ArgumentParser, help: str, default: Any = None,
                type: Any = None) -> None:  # noqa: A002 - argparse's own names
    """``--results DIR`` (alias ``--results-dir``) into ``results_dir``."""
    kwargs = {"type": type} if type is not None else {}
    p.add_argument(*RESULTS_FLAGS, dest="results_dir", metavar="DIR", default=default,
                   help=help, **kwargs)


def grid_parent(results_help: str) -> argparse.ArgumentParser:
    """The parent parser of the subcommands that resolve a profile's grid (run, plan):
    ``--profile``, ``--set``, ``--device``, ``--results``."""
    parent = argparse.ArgumentParser(add_help=False)
    add_profile(parent)
    add_set(parent)
    add_device(parent)
    add_results(parent, results_help)
    return parent


def results_parent(help: str, default: Any = None) -> argparse.ArgumentParser:  # noqa: A002
    """The parent parser of the subcommands that read a results directory (advise, report)."""
    parent = argparse.ArgumentParser(add_help=False)
    add_results(parent, help, default, type=Path)
    return parent
