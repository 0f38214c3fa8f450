"""A user's own images as a dataset: ``folder:PATH`` and ``npz:PATH``, imported once into the cache.

The built-in datasets come from fixed, checksummed sources. A user's images come from a path;
this module reads them, refuses what cannot be a fair benchmark input, and hands
:mod:`bench.data` the same uint8 arrays ``(N, C, H, W)`` + int64 labels the built-ins have, so
everything downstream (cache, subsets, batches, strategies, report) is unchanged.

Names (in a profile's ``datasets`` or ``--set datasets=...``)::

    folder:PATH                  PATH/<class>/*.png, or PATH/train/<class>/ + PATH/test/<class>/
    folder:PATH?size=48          ...resized (bilinear, Pillow) to 48x48 px on import
    folder:PATH?test=0.25&seed=1 no train/test sub-folders: a stratified, seeded 25% test split
    npz:PATH                     arrays x_train, y_train, x_test, y_test (optional: classes)

- Folder layout: one sub-folder per class (sorted names are the classes, label = index), PNG,
  JPEG or BMP files (by extension; names starting with ``.`` are ignored, anything else is an
  error). Pillow modes ``L``/``1`` give 1 channel, ``RGB`` (and palette ``P``, converted) 3,
  ``RGBA`` 4. All images one size and one channel count, square, unless ``size`` is given
  (then every image is resized to ``size`` x ``size``; the channel count must still agree).
- Npz: uint8 images ``N×H×W`` (one channel) or ``N×C×H×W``, integer labels ``0..K-1``; K is
  ``len(classes)`` when the file has a ``classes`` array, else the largest training label + 1.
  Loaded with ``allow_pickle=False``.
- Normalisation: one mean and std over every pixel of every channel of the training split
  (x / 255), computed at import and kept in the manifest.

The import is verified like the built-ins' cache (sha256 of every array). The manifest also
keeps a fingerprint of the source (sha256 over every file's relative path and bytes, and the
options): a later load whose source no longer matches is refused, naming the fix
(``python -m bench data fetch --dataset NAME --rebuild``), so a row never silently mixes two
versions of someone's data. Every refusal is a :class:`UserDataError` (exit 2) naming the file
and the fix, raised before anything is cached.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bench.data.user_folder import IMAGE_SUFFIXES, import_folder
from bench.data.user_npz import import_npz
from bench.data.user_source import fingerprint
from bench.data.user_spec import (
    DEFAULT_TEST_FRACTION,
    KINDS,
    OPTIONS,
    UserDataError,
    UserSpec,
    is_user_dataset,
    parse,
)

__all__ = ["DEFAULT_TEST_FRACTION", "IMAGE_SUFFIXES", "KINDS", "OPTIONS", "Imported",
           "UserDataError", "UserSpec", "fingerprint", "is_user_dataset", "normalisation",
           "parse", "read"]


@dataclass
class Imported:
    """What an import produced: the arrays, class names and source fingerprint."""

    arrays: dict[str, np.ndarray]  # train_x, train_y, test_x, test_y
    classes: tuple[str, ...]
    fingerprint: str
    files: list[str]  # source files read (relative), for the manifest
    split: str  # "folders" (train/ and test/) | "stratified <fraction> seed <n>" | "arrays"


def read(spec: UserSpec) -> Imported:
    """Read and check the source of ``spec``; nothing is written. Raises :class:`UserDataError`."""
    fp = fingerprint(spec)  # also refuses links out of the folder before any image is opened
    reader = import_folder if spec.kind == "folder" else import_npz
    arrays, classes, files, split = reader(spec)
    return Imported(arrays, classes, fp, files, split)


def normalisation(train_x: np.ndarray) -> tuple[float, float]:
    """Mean and std of ``train_x / 255`` over all pixels and channels.

    From a histogram of the 256 pixel values, counted in chunks of images: exact integer
    counts, and no float copy of the images (a float64 copy is 8x their size).
    """
    counts = np.zeros(256, dtype=np.int64)
    # ~4 M pixels per chunk: bincount widens them to int64, a 32 MB transient.
    step = max(1, (4 << 20) // max(1, train_x[0].size))
    for start in range(0, len(train_x), step):
        counts += np.bincount(np.asarray(train_x[start:start + step]).reshape(-1),
                              minlength=256)
    n = int(counts.sum())
    values = np.arange(256, dtype=np.float64) / 255.0
    mean = float((counts * values).sum() / n)
    std = math.sqrt(float((counts * (values - mean) ** 2).sum() / n))
    return round(mean, 6), round(max(std, 1e-6), 6)  # a constant image set must not divide by 0
