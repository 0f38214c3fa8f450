"""A property-based fuzzer of the user-dataset importer (issue 27): ``python -m bench data fetch
--dataset folder:SRC|npz:SRC`` over sources drawn from a grammar of bad inputs.

Folder trees: class folders with odd names (dots, 200 characters, non-UTF-8 bytes, a newline,
``train``/``test``), images of every Pillow mode, size (1x1 up, non-square) and format, under
any extension, truncated, empty or junk files, FIFOs, sub-folders, symlinks (dangling, to
itself, to its folder, out of the tree), a train/test layout with a stray folder, and the
``size``/``test``/``seed`` options. Npz archives: arrays of any shape (0x0 too), dtype and
label values (negative, sparse, 2**63-1, uint64 2**64-1), class-name arrays (empty,
duplicated), a mismatched train/test, missing or renamed members, forged ``.npy`` headers
(huge declared shapes), truncated or encrypted zips and unknown compression methods.

The property (tests/_fuzz.py): the import succeeds with a whole, valid cache entry, or it is
one line on stderr, exit code 2, and nothing under the data root's ``cache/``. Each failure
it found is an explicit case of tests/test_data_user_hostile.py. The fast lane runs
``FAST.max_examples`` examples; the slow lane ten times more.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from tests._fuzz import FAST, SLOW, assert_refusal_is_one_line, call, listing

# -- folder trees ------------------------------------------------------------------------------

CLASS_NAMES = st.one_of(
    st.sampled_from(["c0", "c1", "c2", "cats", "a.b", "train", "test", "x" * 200, "c 3",
                     ".hidden", "Ω"]),
    st.sampled_from([b"c\xff", b"c\n9", b"c\t1", b"c\r"]),  # bytes: written as they are
)
MODES = ["L", "L", "L", "1", "P", "RGB", "RGBA", "LA", "I;16", "I", "F", "CMYK"]
FORMATS = ["PNG", "PNG", "BMP", "JPEG", "GIF", "TIFF"]
SUFFIXES = [".png", ".png", ".png", ".PNG", ".jpg", ".bmp", ".txt", ""]


@st.composite
def image_entry(draw) -> dict:
    """One entry of a class folder: an image, junk, or a special file."""
    kind = draw(st.sampled_from(["image"] * 8 + ["truncated", "junk", "empty", "fifo",
                                                 "dangling", "self-link", "parent-link",
                                                 "out-link", "subfolder", "hidden", "badname"]))
    side = draw(st.sampled_from([8, 8, 8, 1, 2, 9]))
    return {"kind": kind, "mode": draw(st.sampled_from(MODES)),
            "format": draw(st.sampled_from(FORMATS)), "suffix": draw(st.sampled_from(SUFFIXES)),
            "size": (side, draw(st.sampled_from([side, side, side, side + 1]))),
            "cut": draw(st.integers(1, 120)), "junk": draw(st.binary(min_size=1, max_size=64))}


def _encode(name: str | bytes) -> bytes:
    return name if isinstance(name, bytes) else name.encode()


def _write_entry(folder: bytes, index: int, entry: dict, outside: bytes) -> None:
    path = folder + b"/" + f"{index}".encode() + entry["suffix"].encode()
    kind = entry["kind"]
    if kind in ("image", "truncated"):
        mode, fmt = entry["mode"], entry["format"]
        img = Image.new(mode, entry["size"], color=index * 37 % 256 if mode != "F" else 0.5)
        try:
            img.save(os.fsdecode(path), format=fmt)
        except (OSError, ValueError, KeyError):  # a mode this format cannot hold
            img.convert("L").save(os.fsdecode(path), format=fmt)
        if kind == "truncated":
            with open(path, "r+b") as fh:
                fh.truncate(entry["cut"])
    elif kind == "junk":
        Path(os.fsdecode(path)).write_bytes(entry["junk"])
    elif kind == "empty":
        Path(os.fsdecode(path)).write_bytes(b"")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "dangling":
        os.symlink(b"nothing-here.png", path)
    elif kind == "self-link":
        os.symlink(os.path.basename(path), path)
    elif kind == "parent-link":
        os.symlink(b"..", folder + b"/up")
    elif kind == "out-link":
        os.symlink(outside, path)
    elif kind == "subfolder":
        os.mkdir(folder + b"/sub")
        Image.new("L", (8, 8)).save(os.fsdecode(folder + b"/sub/0.png"))
    elif kind == "hidden":
        Path(os.fsdecode(folder + b"/.DS_Store")).write_bytes(entry["junk"])
    elif kind == "badname":
        Image.new("L", entry["size"]).save(os.fsdecode(folder + b"/\xe9" + entry["suffix"]
                                                      .encode()), format="PNG")


@st.composite
def folder_source(draw) -> dict:
    """A folder tree: layout, classes and their entries, and the options of the name."""
    classes = draw(st.lists(CLASS_NAMES, min_size=0, max_size=4, unique=True))
    folders = {c: draw(st.lists(image_entry(), min_size=0, max_size=6)) for c in classes}
    options = draw(st.lists(st.sampled_from(["size=8", "size=0", "size=4097", "size=x",
                                             "test=0.5", "test=0.99", "test=nan", "seed=3",
                                             "seed=-1", "colour=red"]),
                            max_size=2, unique=True))
    return {"layout": draw(st.sampled_from(["flat", "flat", "split", "split+stray"])),
            "folders": folders, "options": options, "stray_file": draw(st.booleans())}


def build_folder(src: Path, tree: dict) -> str:
    """Write ``tree`` under ``src``; return the dataset name."""
    base = os.fsencode(src)
    outside = os.fsencode(src.parent / "outside.png")
    Image.new("L", (8, 8)).save(src.parent / "outside.png")
    splits = [b""] if tree["layout"] == "flat" else [b"/train", b"/test"]
    for split in splits:
        for name, entries in tree["folders"].items():
            folder = base + split + b"/" + _encode(name)
            os.makedirs(folder, exist_ok=True)
            for i, entry in enumerate(entries):
                try:
                    _write_entry(folder, i, entry, outside)
                except FileExistsError:  # a second link named "up"
                    pass
    os.makedirs(base, exist_ok=True)
    if tree["layout"] == "split+stray":  # a class folder beside train/ and test/
        os.makedirs(base + b"/extra")
        Image.new("L", (8, 8)).save(os.fsdecode(base + b"/extra/0.png"))
    if tree["stray_file"]:
        Path(os.fsdecode(base + b"/notes.txt")).write_text("not an image")
    query = "?" + "&".join(tree["options"]) if tree["options"] else ""
    return f"folder:{src}{query}"


# -- npz archives ------------------------------------------------------------------------------

LABELS = st.sampled_from(["ok", "ok", "ok", "negative", "sparse", "2**63-1", "uint64-max",
                          "one-class", "float", "2-D"])


@st.composite
def npz_source(draw) -> dict:
    side = draw(st.sampled_from([4, 4, 4, 0, 1]))
    return {
        "n": (draw(st.integers(0, 12)), draw(st.integers(0, 6))),
        "shape": draw(st.sampled_from(["NCHW", "NCHW", "NHW", "NHWC", "N", "NCHWX",
                                       "non-square"])),
        "channels": draw(st.sampled_from([1, 3, 3, 0, 5])),
        "side": side,
        "test_side": draw(st.sampled_from([side, side, side, side + 1])),
        "dtype": draw(st.sampled_from(["u1", "u1", "u1", ">u1", "f4", "i8", "?"])),
        "labels": (draw(LABELS), draw(LABELS)),
        "classes": draw(st.sampled_from([None, None, "names", "empty", "duplicated", "ints",
                                         "too-few"])),
        "members": draw(st.sampled_from(["all", "all", "all", "drop-y_test", "rename",
                                         "extra-junk", "nested"])),
        "damage": draw(st.sampled_from(["none"] * 5 + ["forged-huge", "forged-small",
                                                       "truncate", "encrypt", "method-99",
                                                       "text-zip", "not-zip"])),
        "compressed": draw(st.booleans()),
        "cut": draw(st.floats(0.05, 0.95)),
    }


def _labels(kind: str, n: int, k: int = 3) -> np.ndarray:
    y = np.arange(n) % k
    if kind == "negative":
        return y - 1
    if kind == "sparse":
        return y * 1000
    if kind == "2**63-1":
        return np.concatenate([y[:-1].astype(np.int64), np.array([2**63 - 1], np.int64)])
    if kind == "uint64-max":
        return np.concatenate([y[:-1].astype(np.uint64), np.array([2**64 - 1], np.uint64)])
    if kind == "one-class":
        return np.zeros(n, dtype=np.int64)
    if kind == "float":
        return y.astype(np.float32)
    if kind == "2-D":
        return y.reshape(-1, 1)
    return y


def _images(spec: dict, n: int, side: int) -> np.ndarray:
    c = spec["channels"]
    shape = {"NCHW": (n, c, side, side), "NHW": (n, side, side), "NHWC": (n, side, side, 3),
             "N": (n,), "NCHWX": (n, c, side, side, 2),
             "non-square": (n, c, side, side + 1)}[spec["shape"]]
    dtype = np.dtype(spec["dtype"])
    return (np.arange(int(np.prod(shape))) % 200).astype(dtype).reshape(shape)


def _rewrite(path: Path, edit) -> None:
    with zipfile.ZipFile(path) as zf:
        members = [(i, zf.read(i.filename)) for i in zf.infolist()]
    with zipfile.ZipFile(path, "w") as zf:
        for info, blob in members:
            name, blob = edit(info.filename, blob)
            zf.writestr(name, blob)


def _patch_headers(path: Path, fn) -> None:
    """Apply ``fn(buffer, offset_of_signature, is_central)`` to every zip header."""
    b = bytearray(path.read_bytes())
    for sig, central in ((b"PK\x03\x04", False), (b"PK\x01\x02", True)):
        i = b.find(sig)
        while i >= 0:
            fn(b, i, central)
            i = b.find(sig, i + 4)
    path.write_bytes(bytes(b))


def build_npz(src: Path, spec: dict) -> str:
    from numpy.lib import format as npformat

    src.mkdir(parents=True)
    path = src / "x.npz"
    n_train, n_test = spec["n"]
    arrays = {"x_train": _images(spec, n_train, spec["side"]),
              "y_train": _labels(spec["labels"][0], n_train),
              "x_test": _images(spec, n_test, spec["test_side"]),
              "y_test": _labels(spec["labels"][1], n_test)}
    classes = {"names": np.array(["a", "b", "c"]), "empty": np.array([], dtype="U1"),
               "duplicated": np.array(["a", "a", "b"]), "ints": np.arange(3),
               "too-few": np.array(["a"])}.get(spec["classes"] or "")
    if classes is not None:
        arrays["classes"] = classes
    if spec["members"] == "drop-y_test":
        del arrays["y_test"]
    (np.savez_compressed if spec["compressed"] else np.savez)(path, **arrays)
    members = spec["members"]
    if members in ("rename", "extra-junk", "nested"):
        def edit(name: str, blob: bytes) -> tuple[str, bytes]:
            if members == "rename" and name == "x_test.npy":
                return "X_test.npy", blob
            if members == "nested":
                return f"data/{name}", blob
            return name, blob
        _rewrite(path, edit)
        if members == "extra-junk":
            with zipfile.ZipFile(path, "a") as zf:
                zf.writestr("junk.npy", b"\x93NUMPY junk")
    damage = spec["damage"]
    if damage.startswith("forged"):
        shape = (10**7, 3, 1000, 1000) if damage == "forged-huge" else (2, 3, 4, 4)

        def forge(name: str, blob: bytes) -> tuple[str, bytes]:
            if name != "x_train.npy":
                return name, blob
            import io
            buf = io.BytesIO()
            npformat.write_array_header_1_0(
                buf, {"descr": "|u1", "fortran_order": False, "shape": shape})
            return name, buf.getvalue() + b"\0" * 16
        _rewrite(path, forge)
    elif damage == "truncate":
        blob = path.read_bytes()
        path.write_bytes(blob[:max(1, int(len(blob) * spec["cut"]))])
    elif damage == "encrypt":  # the flag bit only: zipfile asks for a password
        _patch_headers(path, lambda b, i, central: b.__setitem__(i + (8 if central else 6),
                                                                 b[i + (8 if central else 6)] | 1))
    elif damage == "method-99":  # a compression method nobody implements
        def method(b: bytearray, i: int, central: bool) -> None:
            at = i + (10 if central else 8)
            b[at:at + 2] = struct.pack("<H", 99)
        _patch_headers(path, method)
    elif damage == "text-zip":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("x_train.txt", "1 2 3")
    elif damage == "not-zip":
        path.write_bytes(b"\x93NUMPY" + path.read_bytes()[:40])
    return f"npz:{path}"


# -- the property ------------------------------------------------------------------------------


def check_import(name: str, root: Path, subject: str) -> None:
    """``data fetch --dataset NAME``: a whole cache entry, or one line, exit 2, no cache."""
    code, _, err = call(["data", "fetch", "--dataset", name, "--data-root", str(root)])
    cache = root / "cache"
    if code == 0:
        entries = [p for p in cache.iterdir()]
        assert len(entries) == 1 and not entries[0].name.startswith("."), listing(cache)
        manifest = json.loads((entries[0] / "manifest.json").read_text())
        user = manifest["user"]
        counts = manifest["counts"]
        assert counts["train"] > 0 and counts["test"] > 0, manifest
        assert len(user["classes"]) >= 2 and len(set(user["classes"])) == len(user["classes"])
        c, h, w = user["shape"]
        assert 1 <= c <= 4 and h == w >= 1, user["shape"]
        assert all(np.isfinite([user["mean"], user["std"]])), user
        for key in ("train_x", "train_y", "test_x", "test_y"):
            arr = np.load(entries[0] / f"{key}.npy", allow_pickle=False)
            assert list(arr.shape) == manifest["arrays"][key]["shape"]
        for split in ("train", "test"):
            y = np.load(entries[0] / f"{split}_y.npy")
            assert y.min() >= 0 and y.max() < len(user["classes"])
        return
    assert_refusal_is_one_line(code, err, subject)
    assert listing(cache) == [], listing(cache)


def _folder_case(tree: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "root").mkdir()
        name = build_folder(base / "src", tree)
        check_import(name, base / "root", str(base / "src"))


def _npz_case(spec: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "root").mkdir()
        name = build_npz(base / "src", spec)
        check_import(name, base / "root", str(base / "src" / "x.npz"))


@FAST
@given(tree=folder_source())
def test_fuzz_folder_imports_succeed_or_refuse_in_one_line(tree) -> None:
    _folder_case(tree)


@FAST
@given(spec=npz_source())
def test_fuzz_npz_imports_succeed_or_refuse_in_one_line(spec) -> None:
    _npz_case(spec)


@pytest.mark.slow
@SLOW
@given(tree=folder_source())
def test_fuzz_folder_imports_many_examples(tree) -> None:
    _folder_case(tree)


@pytest.mark.slow
@SLOW
@given(spec=npz_source())
def test_fuzz_npz_imports_many_examples(spec) -> None:
    _npz_case(spec)
