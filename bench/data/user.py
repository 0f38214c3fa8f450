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

import errno
import hashlib
import math
import os
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import numpy as np

from bench.data import limits
from bench.data.splits import stratified_indices  # the same rule as every subset in the harness

KINDS = ("folder", "npz")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
OPTIONS = {"folder": ("size", "test", "seed"), "npz": ()}
_MODE_CHANNELS = {"1": 1, "L": 1, "P": 3, "RGB": 3, "RGBA": 4}
DEFAULT_TEST_FRACTION = 0.2


class UserDataError(ValueError):
    """A user dataset that cannot be imported: bad name, options or files (exit 2)."""


def is_user_dataset(name: str) -> bool:
    """``folder:...`` or ``npz:...``."""
    return isinstance(name, str) and name.split(":", 1)[0] in KINDS and ":" in name


@dataclass(frozen=True)
class UserSpec:
    """A parsed user dataset name. ``size``: px to resize to on import (None: keep);
    ``test``: fraction held out as the test split when the folder has no ``test/``."""

    name: str  # exactly as written: the dataset's name in rows and reports
    kind: str
    path: Path
    size: int | None = None
    test: float = DEFAULT_TEST_FRACTION
    seed: int = 0

    @property
    def cache_name(self) -> str:
        """Folder name under ``data/cache``: readable stem + digest of the resolved path and
        options (two datasets with the same folder name never share a cache)."""
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", self.path.name or "data").strip("-.") or "data"
        key = f"{self.kind}|{self.path.resolve()}|{self.size}|{self.test}|{self.seed}"
        return f"{self.kind}-{stem[:40]}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"

    def options(self) -> dict[str, Any]:
        """The import options in effect (npz files take none)."""
        if self.kind != "folder":
            return {}
        return {"size": self.size, "test": self.test, "seed": self.seed}


def parse(name: str) -> UserSpec:
    """``folder:PATH?size=48&test=0.2&seed=0`` / ``npz:PATH`` -> :class:`UserSpec`."""
    kind, _, rest = str(name).partition(":")
    if kind not in KINDS:
        raise UserDataError(f"bad dataset {name!r}: a user dataset is written "
                            f"{' or '.join(k + ':PATH' for k in KINDS)}")
    path_text, _, query = rest.partition("?")
    if not path_text:
        raise UserDataError(f"bad dataset {name!r}: no path after '{kind}:'; e.g. {kind}:./my_images"
                            + ("" if kind == "folder" else ".npz"))
    opts: dict[str, Any] = {}
    valid = OPTIONS[kind]
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if key not in valid:
            raise UserDataError(
                f"bad option {key!r} in dataset {name!r}; valid options for {kind}: "
                f"{', '.join(valid) or 'none'}")
        opts[key] = _option(name, key, value)
    if query and not opts and "=" not in query:
        raise UserDataError(f"bad options {query!r} in dataset {name!r}: write them as "
                            f"?key=value&key=value; valid: {', '.join(valid) or 'none'}")
    return UserSpec(name=name, kind=kind, path=Path(path_text).expanduser(), **opts)


def _option(name: str, key: str, value: str) -> Any:
    try:
        if key == "size":
            size = int(value)
            if not 1 <= size <= 4096:
                raise ValueError
            return size
        if key == "test":
            test = float(value)
            if not (math.isfinite(test) and 0 < test < 1):
                raise ValueError
            return test
        seed = int(value)
        if seed < 0:
            raise ValueError
        return seed
    except ValueError:
        valid = {"size": "an integer 1..4096 (px)", "test": "a fraction strictly between 0 and 1",
                 "seed": "an integer >= 0"}[key]
        raise UserDataError(f"bad {key}={value!r} in dataset {name!r}; valid: {valid}") from None


@dataclass
class Imported:
    """What an import produced: the arrays, class names and source fingerprint."""

    arrays: dict[str, np.ndarray]  # train_x, train_y, test_x, test_y
    classes: tuple[str, ...]
    fingerprint: str
    files: list[str]  # source files read (relative), for the manifest
    split: str  # "folders" (train/ and test/) | "stratified <fraction> seed <n>" | "arrays"


# -- fingerprint ------------------------------------------------------------------------------


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(spec: UserSpec) -> str:
    """sha256 over (relative path, content sha256) of every source file, plus the options.

    Reads every byte of the source (a 60,000-image folder of 1 kB PNGs: ~60 MB, well under a
    second); raises :class:`UserDataError` when the source is gone.
    """
    digest = hashlib.sha256(repr(sorted(spec.options().items())).encode())
    for rel, path in _source_files(spec):
        digest.update(f"{rel}\0{_hash_file(path)}\n".encode())
    return digest.hexdigest()


def _source_files(spec: UserSpec) -> list[tuple[str, Path]]:
    root = spec.path
    if spec.kind == "npz":
        if not root.is_file():
            raise UserDataError(f"{spec.name}: {root} is not a file; npz:PATH names an .npz file "
                                "with x_train, y_train, x_test, y_test")
        return [(root.name, root)]
    if not root.is_dir():
        raise UserDataError(f"{spec.name}: {root} is not a directory; folder:PATH names a folder "
                            "with one sub-folder of images per class (or train/ and test/ ones)")
    real_root = root.resolve()
    out = []
    seen: dict[Path, Path] = {}  # real folder -> the path it was first walked as

    def walk_error(exc: OSError) -> None:  # os.walk ignores errors unless told
        raise exc

    try:
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=walk_error):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            here = Path(dirpath)
            limits.check_name(spec.name, here)
            real = here.resolve()
            if real in seen:  # a link back into the tree would be walked forever
                raise UserDataError(
                    f"{spec.name}: {here} and {seen[real]} are the same folder {real} (a "
                    "symlink loop, or the same images linked twice); remove the link")
            seen[real] = here
            if real != real_root and real_root not in real.parents:
                raise UserDataError(f"{spec.name}: {here} is a link to {real}, outside "
                                    f"{real_root}; copy the images into the folder instead of "
                                    "linking out of it")
            for fname in sorted(filenames):
                if fname.startswith("."):
                    continue
                path = here / fname
                limits.check_name(spec.name, path)
                target = path.resolve(strict=True)
                if real_root not in target.parents:
                    raise UserDataError(f"{spec.name}: {path} links to {target}, outside "
                                        f"{real_root}; copy the file into the folder instead "
                                        "of linking to it")
                limits.check_regular(spec.name, path)
                out.append((str(path.relative_to(root)), path))
    except limits.LimitError as exc:
        raise UserDataError(str(exc)) from None
    except (OSError, RuntimeError) as exc:  # ELOOP: a link to itself; RuntimeError on 3.11
        where = getattr(exc, "filename", None) or str(exc).rpartition(" ")[2].strip("'")
        if isinstance(exc, RuntimeError) or exc.errno == errno.ELOOP:
            raise UserDataError(f"{spec.name}: {where} is a symlink loop (a link that leads "
                                "back to itself); remove it") from None
        raise UserDataError(f"{spec.name}: cannot read {where} ({exc.strerror}); fix its "
                            "permissions or remove it") from None
    return out


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# -- folders ----------------------------------------------------------------------------------


def _class_dirs(spec: UserSpec, base: Path) -> list[Path]:
    dirs = sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    stray = sorted(p.name for p in base.iterdir()
                   if p.is_file() and not p.name.startswith("."))
    if stray:
        raise UserDataError(f"{spec.name}: {base / stray[0]} is a file beside the class "
                            f"folders; every image goes in a sub-folder named after its class")
    if len(dirs) < 2:
        found = f"only {dirs[0].name!r}" if dirs else "none"
        raise UserDataError(f"{spec.name}: {base} needs at least 2 class sub-folders, found "
                            f"{found}; a classifier needs two classes or more")
    return dirs


def _read_image(spec: UserSpec, path: Path) -> np.ndarray:
    """uint8 ``(C, H, W)``; resized when ``spec.size``."""
    from PIL import Image, UnidentifiedImageError

    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise UserDataError(f"{spec.name}: {path} is not an image file (valid: "
                            f"{', '.join(IMAGE_SUFFIXES)}); move it out of the folder")
    try:
        limits.check_regular(spec.name, path)  # a FIFO named x.png would block open() forever
    except limits.LimitError as exc:
        raise UserDataError(str(exc)) from None
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its pixel limit and twice it: refuse there too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                mode = img.mode
                if mode not in _MODE_CHANNELS:
                    raise UserDataError(
                        f"{spec.name}: {path} has pixel mode {mode!r}; valid: 8-bit "
                        f"{', '.join(_MODE_CHANNELS)} (convert it, e.g. to 'L' for gray)")
                if mode == "1":
                    img = img.convert("L")
                elif mode == "P":
                    img = img.convert("RGB")
                if spec.size is not None and img.size != (spec.size, spec.size):
                    img = img.resize((spec.size, spec.size), Image.BILINEAR)
                arr = np.asarray(img, dtype=np.uint8)
    except UserDataError:
        raise  # already one line; the handler below would wrap it in a second message
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UserDataError(f"{spec.name}: {path} is too many pixels to decode safely "
                            f"({_one_line(exc)}); shrink it or remove it") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UserDataError(f"{spec.name}: cannot read image {path} ({type(exc).__name__}: "
                            f"{exc}); replace or remove it") from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _read_split(spec: UserSpec, base: Path, classes: list[str]) -> tuple[np.ndarray, np.ndarray,
                                                                          list[str]]:
    images, labels, files = [], [], []
    first: tuple[Path, tuple[int, ...]] | None = None
    for label, cls in enumerate(classes):
        folder = base / cls
        entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
        if not entries:
            raise UserDataError(f"{spec.name}: class folder {folder} is empty; add its images "
                                "or remove the folder")
        for path in entries:
            if path.is_dir():
                raise UserDataError(f"{spec.name}: {path} is a folder inside class folder "
                                    f"{folder}; class folders hold image files only")
            arr = _read_image(spec, path)
            if first is None:
                if arr.shape[1] != arr.shape[2]:
                    raise UserDataError(
                        f"{spec.name}: {path} is {arr.shape[2]}x{arr.shape[1]} px; only square "
                        f"images are supported: crop or pad them, or import with "
                        f"{spec.kind}:{spec.path}?size=N to resize every image to N x N")
                first = (path, arr.shape)
            elif arr.shape != first[1]:
                c0, c1 = first[1][0], arr.shape[0]
                if c0 != c1:
                    raise UserDataError(
                        f"{spec.name}: {path} has {c1} channel(s) but {first[0]} has {c0}; "
                        "convert every image to one mode (all gray 'L' or all 'RGB')")
                raise UserDataError(
                    f"{spec.name}: {path} is {arr.shape[2]}x{arr.shape[1]} px but {first[0]} is "
                    f"{first[1][2]}x{first[1][1]}; resize them to one size, or import with "
                    f"{spec.kind}:{spec.path}?size=N to resize every image to N x N")
            images.append(arr)
            labels.append(label)
            files.append(str(path.relative_to(spec.path)))
    return np.stack(images), np.asarray(labels, dtype=np.int64), files


def _import_folder(spec: UserSpec) -> tuple[dict[str, np.ndarray], tuple[str, ...], list[str], str]:
    root = spec.path
    train_dir, test_dir = root / "train", root / "test"
    if train_dir.is_dir() or test_dir.is_dir():
        if not (train_dir.is_dir() and test_dir.is_dir()):
            have, lack = (train_dir, test_dir) if train_dir.is_dir() else (test_dir, train_dir)
            raise UserDataError(f"{spec.name}: {have} exists but {lack} does not; give both, "
                                "or neither (then a stratified test split is drawn)")
        classes = [p.name for p in _class_dirs(spec, train_dir)]
        test_classes = [p.name for p in _class_dirs(spec, test_dir)]
        extra = sorted(set(test_classes) - set(classes))
        if extra:
            raise UserDataError(f"{spec.name}: test class(es) {extra} have no folder in "
                                f"{train_dir}; the model can never learn them. Add their "
                                "training images or remove them from test/")
        tx, ty, tfiles = _read_split(spec, train_dir, classes)
        present = [c for c in classes if (test_dir / c).is_dir()]
        vx, vy, vfiles = _read_split(spec, test_dir, present)
        if tx.shape[1:] != vx.shape[1:]:  # each split is checked alone: compare the two
            (c, h, w), (vc, vh, vw) = tx.shape[1:], vx.shape[1:]
            raise UserDataError(
                f"{spec.name}: {root / vfiles[0]} is {vw}x{vh} px, {vc} channel(s), "
                f"but {root / tfiles[0]} is {w}x{h} px, {c} channel(s); give both "
                f"splits one size and mode, or import with {spec.kind}:{spec.path}?size=N")
        remap = np.asarray([classes.index(c) for c in present], dtype=np.int64)
        arrays = {"train_x": tx, "train_y": ty, "test_x": vx, "test_y": remap[vy]}
        return arrays, tuple(classes), tfiles + vfiles, "folders"
    classes = [p.name for p in _class_dirs(spec, root)]
    x, y, files = _read_split(spec, root, classes)

    n_test = round(len(y) * spec.test)
    counts = np.bincount(y, minlength=len(classes))
    if n_test < len(classes) or len(y) - n_test < len(classes):
        raise UserDataError(
            f"{spec.name}: {len(y)} images cannot give every one of the {len(classes)} classes "
            f"a training and a test image with test={spec.test}; add images or change test=")
    test_idx = stratified_indices(y, n_test, seed=spec.seed, purpose="user-test-split")
    train_idx = np.setdiff1d(np.arange(len(y)), test_idx, assume_unique=True)
    lacking = [classes[k] for k in range(len(classes))
               if counts[k] and not np.any(y[train_idx] == k)]
    if lacking:
        raise UserDataError(f"{spec.name}: class(es) {lacking} have too few images to appear "
                            f"in both splits; add images or lower test=")
    arrays = {"train_x": x[train_idx], "train_y": y[train_idx],
              "test_x": x[test_idx], "test_y": y[test_idx]}
    return arrays, tuple(classes), files, f"stratified test={spec.test} seed={spec.seed}"


# -- arrays -----------------------------------------------------------------------------------


def _import_npz(spec: UserSpec) -> tuple[dict[str, np.ndarray], tuple[str, ...], list[str], str]:
    keys = ("x_train", "y_train", "x_test", "y_test")
    if not zipfile.is_zipfile(spec.path):  # np.load would take it for a pickle and say so
        raise UserDataError(f"{spec.name}: {spec.path} is not an .npz (zip) file; save one "
                            "with numpy.savez(path, x_train=..., y_train=..., x_test=..., "
                            "y_test=...)")
    try:
        # Headers first: every declared shape and size is checked before any data is read.
        headers = limits.npz_headers(spec.path)
        missing = [k for k in keys if k not in headers]
        if missing:
            raise UserDataError(f"{spec.name}: {spec.path} lacks array(s) {missing}; it "
                                f"needs {', '.join(keys)} (found: {', '.join(headers)})")
        train_shape = _check_npz_shapes(spec, "train", headers["x_train"], headers["y_train"])
        test_shape = _check_npz_shapes(spec, "test", headers["x_test"], headers["y_test"])
        if test_shape != train_shape:
            raise UserDataError(f"{spec.name}: x_test images are {test_shape} but x_train "
                                f"ones are {train_shape}; both splits need one shape")
        # Memory-mapped (or read once in chunks): the peak stays near the file's size.
        loaded = {k: limits.load_member(spec.path, headers[k]) for k in keys}
        classes_arr = (limits.load_member(spec.path, headers["classes"])
                       if "classes" in headers else None)
    except limits.LimitError as exc:
        raise UserDataError(f"{spec.name}: {exc}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # truncated, bad CRC
        if isinstance(exc, UserDataError):
            raise
        raise UserDataError(f"{spec.name}: cannot read {spec.path} as .npz ({exc}); save it "
                            "with numpy.savez(path, x_train=..., y_train=..., x_test=..., "
                            "y_test=...) and plain (non-object) arrays") from None
    arrays: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        x, y = loaded[f"x_{split}"], loaded[f"y_{split}"]
        arrays[f"{split}_x"] = np.ascontiguousarray(x[:, None] if x.ndim == 3 else x)
    n_named = None if classes_arr is None else int(np.asarray(classes_arr).size)
    try:
        if n_named is not None and n_named > limits.MAX_CLASSES:
            raise limits.LimitError(f"classes names {n_named} classes, over the limit of "
                                    f"{limits.MAX_CLASSES}")
        # On the labels as stored: a uint64 label past 2^63 must be named as it is, and no
        # class list is sized by a label before it is bounded.
        n_classes = limits.check_labels("y_train", loaded["y_train"], n_named)
        limits.check_labels("y_test", loaded["y_test"], n_classes)
    except limits.LimitError as exc:
        raise UserDataError(f"{spec.name}: {exc}") from None
    for split in ("train", "test"):
        arrays[f"{split}_y"] = np.asarray(loaded[f"y_{split}"]).astype(np.int64)
    train_y, test_y = arrays["train_y"], arrays["test_y"]
    if classes_arr is not None:
        classes = tuple(str(c) for c in np.asarray(classes_arr).reshape(-1))
    else:
        classes = tuple(str(k) for k in range(max(n_classes, 1)))
    for split, y in (("train", train_y), ("test", test_y)):
        if y.min() < 0 or y.max() >= len(classes):
            bad = int(y.min() if y.min() < 0 else y.max())
            raise UserDataError(f"{spec.name}: y_{split} has label {bad}, outside 0.."
                                f"{len(classes) - 1} ({len(classes)} classes"
                                f"{' named in classes' if classes_arr is not None else ''})")
    if len(classes) < 2:
        raise UserDataError(f"{spec.name}: only one class; a classifier needs two or more")
    lacking = sorted(set(np.unique(test_y).tolist()) - set(np.unique(train_y).tolist()))
    if lacking:
        raise UserDataError(f"{spec.name}: y_test has label(s) {lacking} that y_train lacks; "
                            "the model can never learn them")
    return arrays, classes, [spec.path.name], "arrays"


def _check_npz_shapes(spec: UserSpec, split: str, xh: limits.NpyHeader,
                      yh: limits.NpyHeader) -> tuple[int, ...]:
    """The checks of one split's declared image and label arrays, from their headers alone;
    returns the shape of one image, ``(C, H, W)``."""
    shape = xh.shape if len(xh.shape) != 3 else (xh.shape[0], 1, *xh.shape[1:])
    if xh.dtype != np.uint8:
        raise UserDataError(f"{spec.name}: x_{split} is {xh.dtype}; it must be uint8 pixels "
                            "0..255 (e.g. (x * 255).round().astype(np.uint8))")
    if len(shape) != 4:
        raise UserDataError(f"{spec.name}: x_{split} has shape {xh.shape}; valid: N×H×W "
                            "(gray) or N×C×H×W")
    if shape[1] > 4 and shape[-1] <= 4:
        raise UserDataError(f"{spec.name}: x_{split} has shape {xh.shape}, which looks like "
                            "N×H×W×C; give N×C×H×W (x.transpose(0, 3, 1, 2))")
    if not 1 <= shape[1] <= 4:
        raise UserDataError(f"{spec.name}: x_{split} has {shape[1]} channels; valid: 1..4")
    if shape[2] != shape[3]:
        raise UserDataError(f"{spec.name}: x_{split} images are {shape[3]}x{shape[2]} "
                            "px; only square images are supported (pad or resize them)")
    if shape[2] == 0:
        raise UserDataError(f"{spec.name}: x_{split} images are 0x0 px (shape {xh.shape}); "
                            "give images of at least 1x1 px")
    if len(yh.shape) != 1 or yh.dtype.kind not in "iu":
        raise UserDataError(f"{spec.name}: y_{split} must be a 1-D integer array, got "
                            f"{yh.dtype} with shape {yh.shape}")
    if yh.shape[0] != shape[0]:
        raise UserDataError(f"{spec.name}: x_{split} has {shape[0]} images but y_{split} "
                            f"{yh.shape[0]} labels")
    if shape[0] == 0:
        raise UserDataError(f"{spec.name}: the {split} split is empty")
    return tuple(shape[1:])


def read(spec: UserSpec) -> Imported:
    """Read and check the source of ``spec``; nothing is written. Raises :class:`UserDataError`."""
    fp = fingerprint(spec)  # also refuses links out of the folder before any image is opened
    reader = _import_folder if spec.kind == "folder" else _import_npz
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
