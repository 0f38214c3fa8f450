"""Which files a user dataset is made of, walked safely (no symlink loop, no link out of the
folder, no FIFO), and the fingerprint over their bytes that tells a changed source from the one
that was imported.
"""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

from bench.data import limits
from bench.data.user_spec import UserDataError, UserSpec


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
                try:
                    target = path.resolve(strict=True)
                except FileNotFoundError:
                    if not path.is_symlink():
                        raise
                    # Named as the link, not its missing target: the link is what to remove.
                    raise UserDataError(
                        f"{spec.name}: {path} is a dangling symlink (to {os.readlink(path)}, "
                        "which does not exist); remove it or restore its target") from None
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
