"""The name of a user dataset: ``folder:PATH?size=N&test=F&seed=S`` / ``npz:PATH``, parsed into a
:class:`UserSpec`, and the error every refusal of a user dataset raises (:class:`UserDataError`).
See :mod:`bench.data.user` for what the sources may hold.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

KINDS = ("folder", "npz")
OPTIONS = {"folder": ("size", "test", "seed"), "npz": ()}
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
    _check_text(name)
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


def _check_text(name: str) -> None:
    """The name keys the cache (hashed as UTF-8) and every row, and each refusal prints it on
    one line: undecodable bytes from the command line (surrogate escapes) or a control
    character would crash the hash or break the line, so both are refused first."""
    try:
        str(name).encode("utf-8")
    except UnicodeEncodeError:
        raise UserDataError(f"bad dataset {os.fsencode(name)!r}: its path is not valid UTF-8; "
                            "rename the file or folder (e.g. convmv -f latin1 -t utf8)") from None
    bad = next((ch for ch in str(name) if ord(ch) < 32 or ord(ch) == 127), None)
    if bad is not None:
        raise UserDataError(f"bad dataset {name!r}: it holds the control character {bad!r}; "
                            "rename the file or folder (names are printed on one line)")


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
