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


def results_dir_problem(results_dir: Path, names: list[str]) -> str:
    """Why ``results_dir`` cannot hold a run ("" when it can): it, when it exists, must be a
    writable directory and each of ``names`` in it (runs.csv, history.csv, ...), when it
    exists, a regular file. The readers skip anything else, so a runs.csv replaced by a
    directory was noticed only when the first cell's row was written, after it had trained."""
    results_dir = Path(results_dir)
    if not results_dir.exists():
        return ""  # created by run; its parent is checked then
    if not results_dir.is_dir():
        # (the words the mkdir of run said before this check)
        return f"results directory {results_dir} cannot be created: File exists"
    if not os.access(results_dir, os.W_OK | os.X_OK):
        return f"results directory {results_dir} is not writable"
    for name in names:
        path = results_dir / name
        if (path.exists() or path.is_symlink()) and not path.is_file():
            kind = "a directory" if path.is_dir() else "not a regular file"
            return (f"{path} is {kind}; a results file must be a regular file: move it away, "
                    "or pass --results-dir for a fresh directory")
    return ""
