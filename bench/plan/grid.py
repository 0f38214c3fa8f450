"""The grid: which cells a sweep selects, and the checks made before any of them starts.

::

    python -m bench run --profile gpu --only model=vgg16,strategy=resize224
    python -m bench run --profile gpu --shard 2/4   # every 4th cell, starting at the 2nd

A profile's grid is datasets x models x strategies x seeds (:func:`bench.config.cells`).
``--only key=value`` narrows it (a repeated key widens), ``--shard k/n`` keeps cells
``i % n == k - 1``. Every dataset, model, strategy and the data they need are validated here,
so that bad input is one error (exit 2) instead of one error row per cell.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from bench import config as config_mod
from bench.config import Cell, Config, ConfigError


def resolve_profile(profile: str) -> tuple[str, str]:
    """``auto`` -> ``gpu`` with CUDA, else ``cpu``; returns (profile, a line saying why)."""
    if profile != "auto":
        return profile, ""
    import torch

    if torch.cuda.is_available():
        return "gpu", f"profile auto -> gpu (CUDA available: {torch.cuda.get_device_name(0)})"
    return "cpu", "profile auto -> cpu (no CUDA device found)"


def validate_grid(cfg: Config) -> None:
    """Every dataset, model and strategy of the grid exists; raise naming the bad one."""
    from bench.data import DATASETS
    from bench.data import user as userdata

    bad = [d for d in cfg.datasets if d not in DATASETS and not userdata.is_user_dataset(d)]
    if bad:
        raise ConfigError(f"unknown dataset {bad[0]!r} in datasets; valid: "
                          f"{', '.join(sorted(DATASETS))}, or your own images as folder:PATH "
                          "or npz:PATH")
    for d in cfg.datasets:
        if userdata.is_user_dataset(d):
            try:
                userdata.parse(d)  # a bad option is a config error; the files come next
            except userdata.UserDataError as exc:
                raise ConfigError(str(exc)) from None
    config_mod.check_models(cfg.models)  # torchvision names and timm:NAME, one lookup
    import strategies

    for spec in cfg.strategies:
        strategies.parse_spec(spec)  # StrategyError names the bad part and the valid ones


def validate_data(cfg: Config) -> None:
    """The data the grid needs: an existing data root, subset and batch sizes that fit each
    dataset, no corrupt cache. Raises DataError / ConfigError (exit 2) naming the bad value.

    Every cell would otherwise fail the same way in its own process, one error row each (and
    a mistyped data root would be created and filled from the network by the first cell).
    """
    from bench import data as data_mod

    root = cfg.data_root or os.environ.get(data_mod.ENV_ROOT, "")
    if root and not Path(root).expanduser().is_dir():
        name = "data_root" if cfg.data_root else f"${data_mod.ENV_ROOT}"
        raise data_mod.DataError(
            f"{name} {root!r} does not exist or is not a directory; fill it with `python -m "
            f"bench data fetch --data-root {root}`, or leave data_root empty for ./data")
    for dataset in cfg.datasets:
        info = data_mod.get_info(dataset, cfg.data_root or None)  # imports a user dataset
        if info.train_count and info.test_count:
            # A user dataset smaller than the profile asks is used whole (the cells get the
            # same sizes through bench.identity.for_cell); a built-in one is refused below.
            train_size, test_size, val_size, note = data_mod.fit_sizes(
                dataset, info, cfg.train_size, cfg.test_size, cfg.val_size)
            if note:
                print(note, file=sys.stderr)
            data_mod.check_sizes(info, info.train_count, info.test_count, train_size,
                                  test_size, val_size)
            n_train = train_size or info.train_count - val_size
            if cfg.batch_size > n_train:
                raise ConfigError(f"batch_size={cfg.batch_size} is larger than the {dataset} "
                                  f"training set of this grid ({n_train} images): no full batch "
                                  f"to train on; valid: batch_size <= {n_train}")
        status = data_mod.cache_status(dataset, cfg.data_root or None)  # ~0.3 s for MNIST
        if status["status"] == "corrupt":
            raise data_mod.DataError(status["error"])


_ONLY_KEYS = {"dataset": "datasets", "model": "models", "strategy": "strategies", "seed": "seeds"}


def parse_only(texts: list[str] | None, cfg: Config) -> dict[str, set[str]]:
    """``["model=vgg16,strategy=resize224"]`` -> {"model": {"vgg16"}, "strategy": {...}}.

    Repeating a key widens (``model=vgg16,model=resnet18``); different keys narrow. A value
    that is not in the profile's grid is an error naming the grid's values.
    """
    wanted: dict[str, set[str]] = {}
    for text in texts or []:
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            key, sep, value = part.partition("=")
            key, value = key.strip(), value.strip()
            key = {v: k for k, v in _ONLY_KEYS.items()}.get(key, key)
            if not sep or key not in _ONLY_KEYS or not value:
                raise ConfigError(f"bad --only item {part!r}: expected key=value with key one of "
                                  f"{', '.join(_ONLY_KEYS)}")
            grid = [str(v) for v in getattr(cfg, _ONLY_KEYS[key])]
            if value not in grid:
                raise ConfigError(f"--only {key}={value}: {value!r} is not in this profile's "
                                  f"{_ONLY_KEYS[key]}; valid: {', '.join(grid)}")
            wanted.setdefault(key, set()).add(value)
    return wanted


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"2/4"`` -> (2, 4): 1-based shard index and count; ``None`` -> (1, 1)."""
    if not text:
        return 1, 1
    k, sep, n = text.partition("/")
    try:
        index, count = int(k), int(n)
    except ValueError:
        index = count = 0
    if not sep or count < 1 or not 1 <= index <= count:
        raise ConfigError(f"bad --shard {text!r}: expected k/n with 1 <= k <= n, e.g. 2/4")
    return index, count


def select_cells(cfg: Config, only: dict[str, set[str]], shard: tuple[int, int] = (1, 1)
                 ) -> list[Cell]:
    """The grid, narrowed by ``--only``, then every n-th cell for ``--shard k/n``."""
    chosen = [c for c in config_mod.cells(cfg)
              if all(str(getattr(c, key)) in values for key, values in only.items())]
    index, count = shard
    chosen = [c for i, c in enumerate(chosen) if i % count == index - 1]
    if not chosen:
        raise ConfigError("no cells left to run: --only/--shard select nothing from this grid "
                          f"({len(config_mod.cells(cfg))} cells)")
    return chosen


