"""``npz:PATH`` import: arrays ``x_train``, ``y_train``, ``x_test``, ``y_test`` (optional
``classes``), every declared shape and dtype checked from the ``.npy`` headers before any data is
read (:mod:`bench.data.limits`), then memory-mapped.
"""

from __future__ import annotations

import zipfile

import numpy as np

from bench.data import limits
from bench.data.user_spec import UserDataError, UserSpec


def import_npz(spec: UserSpec) -> tuple[dict[str, np.ndarray], tuple[str, ...], list[str], str]:
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
    # Truncated, bad CRC; RuntimeError: encrypted, or an unknown compression method.
    except (OSError, ValueError, EOFError, RuntimeError, zipfile.BadZipFile) as exc:
        if isinstance(exc, UserDataError):
            raise
        raise UserDataError(f"{spec.name}: cannot read {spec.path} as .npz "
                            f"({limits._one_line(exc)}); save it "
                            "with numpy.savez(path, x_train=..., y_train=..., x_test=..., "
                            "y_test=...) and plain (non-object) arrays") from None
    arrays: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        x, y = loaded[f"x_{split}"], loaded[f"y_{split}"]
        arrays[f"{split}_x"] = np.ascontiguousarray(x[:, None] if x.ndim == 3 else x)
    n_named = None if classes_arr is None else int(np.asarray(classes_arr).size)
    if classes_arr is not None:
        _check_class_names(spec, np.asarray(classes_arr).reshape(-1))
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


def _check_class_names(spec: UserSpec, names: np.ndarray) -> None:
    """A ``classes`` array names each class once: none (every label would be out of range,
    a message of "0..-1") or one name twice (two classes no table could tell apart) is
    refused."""
    if names.size == 0:
        raise UserDataError(f"{spec.name}: classes is empty; it names the classes in label "
                            "order (classes[k] is the name of label k), or leave it out")
    text = [str(c) for c in names[:limits.MAX_CLASSES + 1].tolist()]
    seen: dict[str, int] = {}
    for k, name in enumerate(text):
        if name in seen:
            raise UserDataError(f"{spec.name}: classes names {name!r} twice (labels "
                                f"{seen[name]} and {k}); every class needs its own name")
        seen[name] = k


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
