"""Bounds a user dataset is checked against before anything is allocated or opened.

A user's ``.npz`` or folder is untrusted input: one label of 10^8 would make a class list of that
length, a forged ``.npy`` header can ask for a terabyte, a FIFO named ``x.png`` blocks ``open``
forever. Each check here reads only metadata (a zip directory, a ``.npy`` header, ``stat``) and
raises :class:`~bench.data.user.UserDataError`'s base, ``ValueError`` subclass
:class:`LimitError`, whose message names the value, the limit and the fix; the importer turns
it into a one-line exit-2 error. The npz messages name the member, not the file: the importer
puts the dataset's name (which holds the path) in front, and a path said twice reads as two
files.
"""

from __future__ import annotations

import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAX_CLASSES = 10_000  # far above any small-image benchmark; a label past it is a bad file
MAX_ARRAY_BYTES = 16 * 1024**3  # one array of a user .npz, bytes (16 GiB)


class LimitError(ValueError):
    """A user dataset past a stated limit, or with an entry that cannot be read safely."""


@dataclass(frozen=True)
class NpyHeader:
    """What a ``.npy`` member of an ``.npz`` declares, read without loading its data.

    ``offset``: bytes from the member's start to its data; ``nbytes``: declared data bytes.
    """

    member: str
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool
    offset: int
    nbytes: int
    member_size: int  # uncompressed size the zip directory states for the member, bytes
    stored: bool  # ZIP_STORED (not compressed): the data can be memory-mapped


def npz_headers(path: Path) -> dict[str, NpyHeader]:
    """The header of every ``.npy`` member of the zip at ``path``, keyed by array name.

    Refuses (:class:`LimitError`) a zip with no ``.npy`` member, a member whose header is not a
    ``.npy`` header, an object (pickle) dtype, and a declared size over :data:`MAX_ARRAY_BYTES`
    or different from the member's real size (a forged header), all before any data is read.
    """
    from numpy.lib import format as npformat

    out: dict[str, NpyHeader] = {}
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        npy = [i for i in infos if i.filename.endswith(".npy") and not i.is_dir()]
        if not npy:
            names = ", ".join(repr(i.filename) for i in infos[:5]) or "none"
            raise LimitError(f"{path} is a zip but holds no .npy arrays (members: {names}); "
                             "save one with numpy.savez(path, x_train=..., y_train=..., "
                             "x_test=..., y_test=...)")
        for info in npy:
            try:
                with zf.open(info) as fh:
                    version = npformat.read_magic(fh)
                    if version == (1, 0):
                        shape, fortran, dtype = npformat.read_array_header_1_0(fh)
                    elif version == (2, 0):
                        shape, fortran, dtype = npformat.read_array_header_2_0(fh)
                    else:  # 3.0 (utf-8 field names) is never written for plain arrays
                        raise ValueError(f"unsupported .npy format version {version}")
                    offset = fh.tell()
            # RuntimeError: an encrypted member (zipfile wants a password); its subclass
            # NotImplementedError: a compression method zipfile does not know.
            except (ValueError, OSError, EOFError, RuntimeError, zipfile.BadZipFile) as exc:
                raise LimitError(f"member {info.filename!r} is not a readable .npy array "
                                 f"({_one_line(exc)}); save the file with numpy.savez"
                                 ) from None
            if dtype.hasobject:
                raise LimitError(f"member {info.filename!r} holds "
                                 f"Python objects (dtype {dtype}), which would need pickle; "
                                 "save it with numpy.savez and plain (non-object) arrays")
            nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize  # exact, no overflow
            if nbytes > MAX_ARRAY_BYTES:
                raise LimitError(
                    f"member {info.filename!r} declares shape {tuple(shape)} {dtype} = "
                    f"{nbytes / 1024**3:.3g} GiB, over the limit of "
                    f"{MAX_ARRAY_BYTES / 1024**3:.0f} GiB per array; split or shrink the data")
            if nbytes != info.file_size - offset:
                raise LimitError(
                    f"member {info.filename!r} declares shape {tuple(shape)} {dtype} = "
                    f"{nbytes} bytes but holds {info.file_size - offset}; the header is forged "
                    "or the file truncated: save it again with numpy.savez")
            name = info.filename[:-len(".npy")]
            out[name] = NpyHeader(info.filename, tuple(int(d) for d in shape), dtype, fortran,
                                  offset, nbytes, info.file_size,
                                  info.compress_type == zipfile.ZIP_STORED)
    return out


def load_member(path: Path, header: NpyHeader) -> np.ndarray:
    """The array of one checked ``.npy`` member: memory-mapped read-only when the zip stores it
    uncompressed (no copy of the file in memory), else read in chunks into one array."""
    from numpy.lib import format as npformat

    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(header.member)
        if header.stored and header.nbytes:
            with open(path, "rb") as raw:
                # The local file header (30 bytes + name + extra) precedes the member's bytes.
                raw.seek(info.header_offset)
                local = raw.read(30)
                start = (info.header_offset + 30 + int.from_bytes(local[26:28], "little")
                         + int.from_bytes(local[28:30], "little") + header.offset)
            return np.memmap(path, dtype=header.dtype, mode="r", offset=start,
                             shape=header.shape, order="F" if header.fortran else "C")
        with zf.open(info) as fh:
            return npformat.read_array(fh, allow_pickle=False)


def check_labels(where: str, y: np.ndarray, n_classes: int | None) -> int:
    """The class count of labels ``y`` (1-D integers), checked before anything is sized by it.

    ``n_classes``: the length of the file's ``classes`` array, or None (then it is the largest
    label + 1). Refuses a label beyond :data:`MAX_CLASSES` (naming its real value, unsigned
    ones included) and, without ``classes``, labels that skip values (sparse labels would make
    classes no image has).
    """
    top = y.max()
    if int(top) >= MAX_CLASSES and (n_classes is None or int(top) >= n_classes):
        raise LimitError(f"{where} has label {int(top)}, over the limit of {MAX_CLASSES} classes"
                         f" (labels are class indices 0..K-1); renumber them 0..K-1")
    if n_classes is None:
        present = np.unique(y)
        k = int(top) + 1
        if len(present) != k and int(present[0]) >= 0:
            missing = k - len(present)
            raise LimitError(
                f"{where} has labels 0..{k - 1} with {missing} of them unused (e.g. "
                f"{_first_missing(present, k)}), which would make {missing} class(es) with no "
                "image; renumber the labels 0..K-1 (np.unique(y, return_inverse=True)[1]) or "
                "name every class in a classes array")
        return k
    return n_classes


def _first_missing(present: np.ndarray, k: int) -> int:
    have = np.zeros(k, dtype=bool)
    have[present] = True
    return int(np.flatnonzero(~have)[0])


def check_regular(where: str, path: Path) -> None:
    """Refuse anything but a regular file before it is opened: ``open`` on a FIFO blocks until
    a writer comes (forever), and a device never ends. ``stat`` follows links, as ``open`` does."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise LimitError(f"{where}: cannot stat {path} ({exc.strerror}); fix or remove it"
                         ) from None
    if not stat.S_ISREG(mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else
                "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else
                "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
        raise LimitError(f"{where}: {path} is {kind}, not an image file; only regular files "
                         "are read: remove it from the folder")


def check_name(where: str, path: Path | str) -> None:
    """Refuse a path that is not valid UTF-8 (surrogate-escaped bytes from the file system):
    it could not be written to the manifest, and rows must name files readably. Refuse a
    control character (a newline, a tab) too: every refusal is one line on stderr, and a
    message naming such a file would print as two."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        raise LimitError(f"{where}: the name {os.fsencode(path)!r} is not valid UTF-8; rename "
                         "it (e.g. convmv -f latin1 -t utf8) and import again") from None
    bad = next((ch for ch in str(path) if ord(ch) < 32 or ord(ch) == 127), None)
    if bad is not None:
        raise LimitError(f"{where}: the name {str(path)!r} holds the control character "
                         f"{bad!r}; rename it (names are printed on one line) and import again")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
