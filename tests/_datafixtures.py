"""Tiny synthetic data files for the data-layer tests: IDX files, Python 2 style pickles, wheels.

Every image carries its own identity: pixel (0, 0, 0) is the image's index in its split (mod 256)
and pixel (0, 0, 1) its split (1 = train, 2 = test), so tests can tell which samples they got.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from numpy._core.multiarray import _reconstruct

from bench.data import IDX_NAMES, DatasetInfo, DebianSpec, IdxFile, WheelSpec

TINY_TRAIN_COUNTS = (10, 12, 8)  # deliberately unbalanced
TINY_TEST_COUNTS = (4, 4, 4)


def tiny_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """uint8 images (N, 28, 28) and uint8 labels for a 3-class toy dataset (30 train, 12 test)."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, counts, tag in (("train", TINY_TRAIN_COUNTS, 1), ("test", TINY_TEST_COUNTS, 2)):
        labels = np.repeat(np.arange(len(counts)), counts)
        rng.shuffle(labels)
        images = rng.integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8)
        images[:, 0, 0] = np.arange(len(labels)) % 256
        images[:, 0, 1] = tag
        out[f"{split}_x"], out[f"{split}_y"] = images, labels.astype(np.uint8)
    return out


def idx_bytes(arr: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array: 0, 0, type 0x08, ndim, big-endian sizes, data."""
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    return header + np.ascontiguousarray(arr, dtype=np.uint8).tobytes()


def write_idx_dir(directory: Path, arrays: dict[str, np.ndarray], gz: bool = True) -> list[Path]:
    """The four IDX files under their standard names, in the order of ``IDX_NAMES``."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, key in zip(IDX_NAMES, ("train_x", "train_y", "test_x", "test_y"), strict=True):
        data = idx_bytes(arrays[key])
        path = directory / (f"{name}.gz" if gz else name)
        path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
        paths.append(path)
    return paths


def idx_specs(arrays: dict[str, np.ndarray]) -> tuple[IdxFile, ...]:
    """IdxFile entries with the sha256 of each file's uncompressed content."""
    return tuple(IdxFile(name, sha256=hashlib.sha256(idx_bytes(arrays[key])).hexdigest())
                 for name, key in zip(IDX_NAMES, ("train_x", "train_y", "test_x", "test_y"),
                                      strict=True))


class _Py2Pickler(pickle.Pickler):
    """Pickles ndarrays the way Python 2's numpy did: raw data as a (latin-1) str, no _codecs."""

    def reducer_override(self, obj):
        if type(obj) is np.ndarray:
            state = (1, obj.shape, obj.dtype, False, obj.tobytes().decode("latin1"))
            return _reconstruct, (np.ndarray, (0,), "b"), state
        return NotImplemented


def py2_numpy_pickle(obj: object) -> bytes:
    """Protocol-2 pickle naming ``numpy.core.multiarray`` as Python 2's numpy did."""
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def tiny_mnist_pickle(arrays: dict[str, np.ndarray]) -> bytes:
    """gzip of a pickle shaped like mnist.pkl.gz: (train, valid, test) of (float32 x/256, int64).

    The training split is cut in two parts (first 20, last 10) like MNIST's 50k/10k.
    """
    def part(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (x.reshape(len(x), 784).astype(np.float32) / 256, y.astype(np.int64))

    tx, ty = arrays["train_x"], arrays["train_y"]
    obj = (part(tx[:20], ty[:20]), part(tx[20:], ty[20:]), part(arrays["test_x"], arrays["test_y"]))
    return gzip.compress(py2_numpy_pickle(obj), mtime=0)


def write_wheel(path: Path, member: str, blob: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("mnist/__init__.py", "")
        zf.writestr(member, blob)
    return path


def tiny_info(tmp_path: Path, arrays: dict[str, np.ndarray], **changes) -> DatasetInfo:
    """A 3-class dataset "tiny" whose every source lives under ``tmp_path`` (nothing real)."""
    pkl = tiny_mnist_pickle(arrays)
    info = DatasetInfo(
        name="tiny", mean=0.5, std=0.25, num_classes=3, classes=("a", "b", "c"),
        train_count=sum(TINY_TRAIN_COUNTS), test_count=sum(TINY_TEST_COUNTS),
        train_label_counts=TINY_TRAIN_COUNTS, test_label_counts=TINY_TEST_COUNTS,
        sources=("data-root", "downloads", "torchvision", "pypi", "debian"),
        torchvision_class="MNIST",
        idx_files=idx_specs(arrays),
        wheel=WheelSpec(requirement="tiny-hub==1.0", filename="tiny_hub-1.0-py3-none-any.whl",
                        member="mnist/data/mnist.pkl.gz",
                        sha256=hashlib.sha256(pkl).hexdigest()),
        debian=DebianSpec("dataset-tiny", tmp_path / "usr-share" / "tiny"),
    )
    return replace(info, **changes)


def fetch_messages_table(cases, show_name=str) -> str:
    """docs/failures.md rows for user-dataset ``cases`` (pytest params whose first value makes
    the dataset under a folder and returns its name): each run through ``data fetch``, its one
    line with the temporary folder written ``SRC``; ``show_name`` formats the name column."""
    import contextlib
    import tempfile

    from bench.__main__ import main

    lines = []
    for number, case in enumerate(cases, 1):
        make = case.values[0]
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp)
            (base / "root").mkdir()
            name = make(base / "src")
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                main(["data", "fetch", "--dataset", name, "--data-root", str(base / "root")])
            msg, name = (t.replace(str(base / "src"), "SRC") for t in (err.getvalue().strip(), name))
        lines.append(f"| {number} | {case.id} | `{show_name(name)}` | {msg.replace('|', '/')} |")
    return "\n".join(lines)
