"""Can an output path be written? Asked before any work, so a bad ``--out`` is one line.

``report --out X`` and ``doctor --out X`` create X's missing folders; under a regular file
(``--out somefile/sub``) or a read-only folder that failed with a traceback after the work was
done. :func:`out_problem` names the reason first, and imports nothing of the harness.
"""

from __future__ import annotations

import os
from pathlib import Path


def out_problem(path: Path, *, is_dir: bool) -> str:
    """Why ``path`` cannot be written ("" when it can): ``is_dir`` says whether it names a
    folder to write into (``report --out``) or a file (``doctor --out``). Its missing parent
    folders may be created; the nearest existing one must be a writable folder."""
    path = Path(path)
    if path.exists() and path.is_dir() != is_dir:
        return (f"{path} is {'a file' if is_dir else 'a directory'}; expected "
                f"{'a directory' if is_dir else 'a file name'}")
    folder = path if is_dir else path.parent
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return (f"{path} cannot be created: {existing} is a file, not a directory; pass an "
                "output path under a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{path} cannot be written: directory {existing} is not writable"
    return ""
