"""The verified cache under ``<root>/cache/<name>/``: uint8 ``.npy`` arrays and a manifest with the
sha256 of each. Written to a temporary folder and renamed into place; read back only when every
digest matches. Also the import of a user's own images into the same cache, and the dataset
lookup (:func:`get_info`) that imports a user dataset on first use.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.data import stale
from bench.data import user as userdata
from bench.data.readers import _check_arrays, _Raw, _sha256
from bench.data.registry import (
    ARRAYS,
    CACHE_FORMAT,
    DATASETS,
    DataError,
    DatasetInfo,
    UnknownDatasetError,
    UserDatasetError,
    _fetch_command,
    dataset_names,
    resolve_root,
)
from bench.data.sources import _Ctx, _resolve_sources, _say


def _cache_dir(root: Path, name: str) -> Path:
    return root / "cache" / name


def _digest(manifest: dict[str, Any]) -> str:
    """One short digest naming the cached data (for provenance)."""
    joined = ":".join(manifest["arrays"][k]["sha256"] for k in ARRAYS)
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


def _read_cache(info: DatasetInfo, root: Path) -> tuple[dict[str, np.ndarray], dict] | None:
    """The verified cached arrays and manifest; None if there is no cache; DataError if bad."""
    directory = _cache_dir(root, info.cache_key)
    manifest_path = directory / "manifest.json"
    if not directory.exists():
        return None
    fix = (f"The cache was left as it is. Rebuild it from the sources: "
           f"{_fetch_command(info, root, ' --rebuild')}")
    try:
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != CACHE_FORMAT or manifest.get("dataset") != info.cache_key:
            raise ValueError(f"format {manifest.get('format')!r} for dataset "
                             f"{manifest.get('dataset')!r}")
        entries = manifest["arrays"]
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        raise DataError(f"{info.name}: cache manifest {manifest_path} is unreadable "
                        f"({exc}). {fix}") from None
    arrays = {}
    for key in ARRAYS:
        path = directory / f"{key}.npy"
        try:
            entry = entries[key]
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError, KeyError, EOFError) as exc:
            raise DataError(f"{info.name}: cache file {path} is unreadable ({exc}). {fix}") from None
        if list(arr.shape) != entry["shape"] or str(arr.dtype) != entry["dtype"]:
            raise DataError(f"{info.name}: cache file {path} has shape {list(arr.shape)} "
                            f"{arr.dtype}, the manifest says {entry['shape']} {entry['dtype']}. "
                            f"{fix}")
        got = _sha256(arr)
        if got != entry["sha256"]:
            raise DataError(f"{info.name}: cache file {path} is corrupt (sha256 {got}, manifest "
                            f"says {entry['sha256']}). {fix}")
        arrays[key] = arr
    try:
        _check_arrays(info, _Raw(arrays, f"cache {directory}"))
    except DataError as exc:
        raise DataError(f"{exc}. {fix}") from None
    return arrays, manifest


def _write_cache(info: DatasetInfo, root: Path, raw: _Raw, replace: bool,
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write arrays + manifest to a temp folder, then rename it into place (atomic).

    With ``replace`` an existing cache is swapped out only after the new one is complete.
    ``extra``: more manifest entries (a user dataset's description).
    """
    final = _cache_dir(root, info.cache_key)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=stale.temp_prefix(info.cache_key), dir=final.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is for everyone who can read root
        entries = {}
        for key in ARRAYS:
            arr = np.ascontiguousarray(raw.arrays[key])
            with open(tmp / f"{key}.npy", "wb") as fh:
                np.save(fh, arr, allow_pickle=False)
                fh.flush()
                os.fsync(fh.fileno())
            entries[key] = {"file": f"{key}.npy", "dtype": str(arr.dtype),
                            "shape": list(arr.shape), "sha256": _sha256(arr)}
        a = raw.arrays
        manifest = {
            "format": CACHE_FORMAT, "dataset": info.cache_key, "source": raw.source,
            "source_files": raw.files,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "counts": {"train": len(a["train_y"]), "test": len(a["test_y"])},
            "label_counts": {s: np.bincount(a[f"{s}_y"], minlength=info.num_classes).tolist()
                             for s in ("train", "test")},
            "arrays": entries,
            **(extra or {}),
        }
        manifest["digest"] = _digest(manifest)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if replace and final.exists():
            old = final.with_name(f".old-{info.cache_key}-{os.getpid()}")
            os.rename(final, old)
            try:
                os.rename(tmp, final)
            except OSError:
                os.rename(old, final)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                os.rename(tmp, final)
            except OSError:
                if not final.exists():
                    raise
                # Another process finished first; its cache is verified when it is read.
        return manifest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _build(info: DatasetInfo, root: Path, *, install: bool, replace: bool) -> tuple[dict, dict]:
    raw = _resolve_sources(info, _Ctx(root, install))
    manifest = _write_cache(info, root, raw, replace)
    _say(f"{info.name}: cached {manifest['counts']} from {raw.source} in "
         f"{_cache_dir(root, info.cache_key)}")
    # Read it back: what the caller gets is exactly what every later load verifies.
    found = _read_cache(info, root)
    assert found is not None
    return found


# -- user datasets (folder:PATH, npz:PATH) ---------------------------------------------------------

# (name, data root) -> info, verified against its source once per process: a sweep's cells and
# the planner ask for the same dataset many times.
_USER_INFOS: dict[tuple[str, str], DatasetInfo] = {}


def _user_error(exc: userdata.UserDataError) -> UserDatasetError:
    return UserDatasetError(str(exc))


def _info_from_manifest(spec: userdata.UserSpec, manifest: dict[str, Any]) -> DatasetInfo:
    user = manifest["user"]
    return DatasetInfo(
        name=spec.name, mean=float(user["mean"]), std=float(user["std"]),
        num_classes=len(user["classes"]), classes=tuple(user["classes"]),
        train_count=int(manifest["counts"]["train"]), test_count=int(manifest["counts"]["test"]),
        train_label_counts=tuple(manifest["label_counts"]["train"]),
        test_label_counts=tuple(manifest["label_counts"]["test"]),
        sources=(), shape=tuple(user["shape"]), cache_name=spec.cache_name, user=user)


def _import_user(spec: userdata.UserSpec, root: Path, *, replace: bool) -> DatasetInfo:
    """Read, check and cache a user dataset; nothing is written unless every check passes."""
    started = time.perf_counter()
    try:
        imported = userdata.read(spec)
    except userdata.UserDataError as exc:
        raise _user_error(exc) from None
    train_x = imported.arrays["train_x"]
    mean, std = userdata.normalisation(train_x)
    user = {"name": spec.name, "kind": spec.kind, "path": str(spec.path.resolve()),
            "options": spec.options(),
            "fingerprint": imported.fingerprint, "split": imported.split,
            "classes": list(imported.classes), "mean": mean, "std": std,
            "shape": list(train_x.shape[1:]), "source_files": len(imported.files)}
    y = {k: imported.arrays[f"{k}_y"] for k in ("train", "test")}
    info = DatasetInfo(
        name=spec.name, mean=mean, std=std, num_classes=len(imported.classes),
        classes=imported.classes, train_count=len(y["train"]), test_count=len(y["test"]),
        sources=(), shape=tuple(train_x.shape[1:]), cache_name=spec.cache_name, user=user)
    raw = _Raw(imported.arrays, f"{spec.kind}:{spec.path.resolve()}",
               {"fingerprint": f"sha256:{imported.fingerprint}"})
    _check_arrays(info, raw)
    _write_cache(info, root, raw, replace, extra={"user": user})
    split = imported.split
    # Drop the source arrays (memory-mapped from the user's file) before the read-back, so
    # the peak holds one copy of the data, not two.
    del imported, raw, train_x, y
    found = _read_cache(info, root)  # read back: what later loads verify
    assert found is not None
    _say(f"{spec.name}: imported {info.train_count}/{info.test_count} images of "
         f"{info.shape_text}, {info.num_classes} classes ({split}) into "
         f"{_cache_dir(root, info.cache_key)} in {time.perf_counter() - started:.1f} s")
    return _info_from_manifest(spec, found[1])


def _user_info(name: str, root: Path, *, rebuild: bool = False) -> DatasetInfo:
    """The info of user dataset ``name``: from its cache when the source is unchanged, else
    imported (first time, or ``rebuild``). A changed source without ``rebuild`` is refused."""
    try:
        spec = userdata.parse(name)
    except userdata.UserDataError as exc:
        raise _user_error(exc) from None
    key = (name, str(root))
    if key in _USER_INFOS and not rebuild:
        return _USER_INFOS[key]
    manifest_path = _cache_dir(root, spec.cache_name) / "manifest.json"
    if manifest_path.exists() and not rebuild:
        try:
            manifest = json.loads(manifest_path.read_text())
            info = _info_from_manifest(spec, manifest)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserDatasetError(
                f"{name}: cache manifest {manifest_path} is unreadable ({exc}); re-import it: "
                f"python -m bench data fetch --dataset {shlex.quote(name)} --rebuild") from None
        try:
            now = userdata.fingerprint(spec)
        except userdata.UserDataError as exc:
            raise _user_error(exc) from None
        if now != info.user["fingerprint"]:  # type: ignore[index]
            raise UserDatasetError(
                f"{name}: the files under {spec.path} changed since they were imported on "
                f"{manifest.get('created', '?')} (fingerprint {now[:12]}, cache has "
                f"{info.user['fingerprint'][:12]}); rows of the two versions must not mix. "  # type: ignore[index]
                f"Re-import: python -m bench data fetch --dataset {shlex.quote(name)} --rebuild")
    else:
        info = _import_user(spec, root, replace=manifest_path.exists())
    _USER_INFOS[key] = info
    return info


def user_datasets(data_root: str | Path | None = None) -> list[dict[str, Any]]:
    """Every imported user dataset under the data root's cache: its manifest's description."""
    base = resolve_root(data_root) / "cache"
    out = []
    for manifest_path in sorted(base.glob("*/manifest.json")):
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(manifest, dict) and isinstance(manifest.get("user"), dict):
            out.append({**manifest["user"], "cache": str(manifest_path.parent),
                        "counts": manifest.get("counts", {}), "created": manifest.get("created")})
    return out


def fetch(name: str, data_root: str | Path | None = None, *, install: bool = True,
          rebuild: bool = False) -> Path:
    """Fill the verified cache for ``name`` and return its folder (used by ``make data``).

    A good cache is kept as it is. A corrupt one raises :class:`DataError` unless ``rebuild``,
    which rebuilds from the sources and swaps the cache only once the new one is complete.
    ``install`` lets the Debian source run apt-get (only as root).
    """
    root = resolve_root(data_root)
    if userdata.is_user_dataset(name):
        info = _user_info(name, root, rebuild=rebuild)
        _read_cache(info, root)  # a corrupt cache is reported, as for the built-ins
        return _cache_dir(root, info.cache_key)
    info = get_info(name)
    if not rebuild and _read_cache(info, root) is not None:
        return _cache_dir(root, info.cache_key)
    _build(info, root, install=install, replace=rebuild)
    return _cache_dir(root, info.cache_key)


def cache_status(name: str, data_root: str | Path | None = None) -> dict[str, Any]:
    """State of one dataset's cache: status ok | missing | corrupt, counts, source, digest.
    A user dataset is imported first when it is not cached yet."""
    root = resolve_root(data_root)
    info = get_info(name, root)
    status: dict[str, Any] = {"dataset": info.name, "path": str(_cache_dir(root, info.cache_key))}
    try:
        found = _read_cache(info, root)
    except DataError as exc:
        return {**status, "status": "corrupt", "error": str(exc)}
    if found is None:
        return {**status, "status": "missing",
                "error": f"not fetched yet: {_fetch_command(info, root)}"}
    _, manifest = found
    return {**status, "status": "ok", "train": manifest["counts"]["train"],
            "test": manifest["counts"]["test"], "source": manifest["source"],
            "digest": manifest["digest"], "created": manifest.get("created", ""),
            "shape": info.shape_text, "classes": info.num_classes}


def get_info(name: str, data_root: str | Path | None = None) -> DatasetInfo:
    """What dataset ``name`` is: a built-in's registry entry, or a user dataset (``folder:PATH``,
    ``npz:PATH``, see :mod:`bench.data.user`) read from its cache, imported there first if
    needed. :class:`UnknownDatasetError` lists the valid names; a user dataset that cannot be
    imported, or whose source changed since, raises :class:`UserDatasetError` (exit 2)."""
    if userdata.is_user_dataset(name):
        return _user_info(name, resolve_root(data_root))
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        raise UnknownDatasetError(
            f"unknown dataset {name!r}; valid datasets: {', '.join(dataset_names())}, or your "
            "own images as folder:PATH or npz:PATH") from None
