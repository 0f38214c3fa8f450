"""``folder:PATH`` import: class sub-folders of PNG, JPEG or BMP files (or ``train/`` and ``test/``
ones) read with Pillow into uint8 ``(N, C, H, W)`` arrays and int64 labels, every bad image or
layout refused with one line naming the file.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from bench.data import limits
from bench.data.splits import stratified_indices  # the same rule as every subset in the harness
from bench.data.user_spec import UserDataError, UserSpec

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_MODE_CHANNELS = {"1": 1, "L": 1, "P": 3, "RGB": 3, "RGBA": 4}


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__



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


def _check_split_root(spec: UserSpec, root: Path) -> None:
    """Beside ``train/`` and ``test/`` nothing else is read: a class folder or image there would
    be fingerprinted but silently left out of both splits, so it is refused."""
    stray = sorted(p for p in root.iterdir()
                   if p.name not in ("train", "test") and not p.name.startswith("."))
    if stray:
        what = "folder" if stray[0].is_dir() else "file"
        raise UserDataError(f"{spec.name}: {stray[0]} is a {what} beside {root / 'train'} and "
                            f"{root / 'test'}, which would be left out of both splits; move "
                            "it into train/ or test/ (or out of the folder)")


def import_folder(spec: UserSpec) -> tuple[dict[str, np.ndarray], tuple[str, ...], list[str], str]:
    root = spec.path
    train_dir, test_dir = root / "train", root / "test"
    if train_dir.is_dir() or test_dir.is_dir():
        if not (train_dir.is_dir() and test_dir.is_dir()):
            have, lack = (train_dir, test_dir) if train_dir.is_dir() else (test_dir, train_dir)
            raise UserDataError(f"{spec.name}: {have} exists but {lack} does not; give both, "
                                "or neither (then a stratified test split is drawn)")
        _check_split_root(spec, root)
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
