"""Where a row was produced: git commit and state, host CPU, software versions and device, gathered
for ``env.json`` and for a cell whose process reported none; timestamps in UTC, ISO 8601.
"""

from __future__ import annotations

import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from bench import REPO_ROOT


def now_iso() -> str:
    """UTC timestamp, second resolution, ISO 8601 (sorts as text)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def git_info(repo_dir: Path | None = None) -> dict[str, str]:
    """``{"git_sha": ..., "git_dirty": "true"|"false"}``; "unknown"/"" outside a git checkout.

    Untracked files are ignored (a fresh results directory must not make the tree "dirty").
    Outside a checkout (a copied working tree, e.g. on a lent GPU machine) the commit can be
    named by ``$ADAPTBENCH_GIT_SHA``; its dirty flag is then unknown ("").
    """
    repo_dir = Path(repo_dir or REPO_ROOT)

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(repo_dir), *args], capture_output=True,
                                 text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout if out.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    if sha is None:
        return {"git_sha": os.environ.get("ADAPTBENCH_GIT_SHA") or "unknown", "git_dirty": ""}
    status = git("status", "--porcelain", "--untracked-files=no")
    dirty = "" if status is None else ("true" if status.strip() else "false")
    return {"git_sha": sha.strip(), "git_dirty": dirty}


def host_cpu() -> str:
    """CPU model and logical core count, e.g. ``AMD EPYC 7B13 (2 logical cores)``."""
    from bench import device

    return device.host_cpu()


def software_versions() -> dict[str, str]:
    """torch / torchvision / CUDA / cuDNN versions (imports torch)."""
    import torch
    import torchvision

    cudnn = ""
    if torch.backends.cudnn.is_available():
        cudnn = str(torch.backends.cudnn.version() or "")
    return {"torch_version": torch.__version__, "torchvision_version": torchvision.__version__,
            "cuda_version": torch.version.cuda or "", "cudnn_version": cudnn}


def device_info(device: str) -> dict[str, str]:
    """``device`` kind, short ``device_name`` and exact ``device_id`` of ``cpu`` / ``cuda:N``."""
    from bench import device as device_mod

    return {"device": device.split(":")[0], "device_name": device_mod.device_name(device),
            "device_id": device_mod.device_identity(device)}


def provenance(device: str) -> dict[str, str]:
    """Where a cell runs, as this process sees it: the :data:`bench.schema.DEVICE_KEYS` and
    :data:`bench.schema.HOST_KEYS` of a row (imports torch). Gathered by the process that
    runs the cell (:mod:`bench.executors.worker`), once per cell; the sweep gathers its own only
    for env.json and for a cell whose process reported none."""
    return {**device_info(device), "host_cpu": host_cpu(), **software_versions()}
