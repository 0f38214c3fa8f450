"""Where this process runs: its torchrun rank, its device, and that device's exact identity.

Without torchrun the world is one rank. Under ``torchrun`` rank ``r`` of ``W`` runs cells
``i % W == r`` on ``cuda:LOCAL_RANK`` (CPU: the cores are split between local ranks); a gloo
group is used only to agree on start-up and for the final barrier.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from bench import results
from bench.config import ConfigError


@dataclass
class Dist:
    """torchrun's view of this process; world 1 without torchrun."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    _pg: bool = False

    @classmethod
    def from_env(cls) -> Dist:
        env = os.environ
        try:
            return cls(rank=int(env.get("RANK", 0)), world=int(env.get("WORLD_SIZE", 1)),
                       local_rank=int(env.get("LOCAL_RANK", 0)),
                       local_world=int(env.get("LOCAL_WORLD_SIZE", env.get("WORLD_SIZE", 1))))
        except ValueError as exc:
            raise ConfigError(f"bad torchrun environment (RANK/WORLD_SIZE/LOCAL_RANK): {exc}"
                              ) from None

    def init(self) -> None:
        """A gloo group, used only to agree on start-up and for the final barrier."""
        if self.world > 1 and not self._pg:
            from datetime import timedelta

            import torch.distributed as td

            # A rank may wait at the barrier for as long as the slowest rank's cells take.
            td.init_process_group("gloo", timeout=timedelta(days=7))
            self._pg = True

    def all_ok(self, ok: bool) -> bool:
        """True when every rank says ok (used after taking the locks)."""
        if not self._pg:
            return ok
        import torch
        import torch.distributed as td

        flag = torch.tensor([1 if ok else 0])
        td.all_reduce(flag, op=td.ReduceOp.MIN)
        return bool(flag.item())

    def barrier(self) -> None:
        if self._pg:
            import torch.distributed as td

            td.barrier()

    def close(self) -> None:
        if self._pg:
            import torch.distributed as td

            td.destroy_process_group()
            self._pg = False


def resolve_device(device: str, dist: Dist) -> str:
    """``auto|cpu|cuda`` -> ``cpu`` or ``cuda:<local rank>``."""
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"unknown device {device!r}; valid: auto, cpu, cuda")
    if device == "cpu":
        return "cpu"
    import torch

    if not torch.cuda.is_available():
        if device == "cuda":
            raise ConfigError("--device cuda requested but CUDA is not available; valid here: "
                              "auto, cpu")
        return "cpu"
    count = torch.cuda.device_count()
    if dist.local_rank >= count:
        raise ConfigError(f"LOCAL_RANK={dist.local_rank} but only {count} CUDA device(s); use "
                          f"--nproc_per_node <= {count}")
    return f"cuda:{dist.local_rank}"


def device_key(device: str) -> str:
    """What a cell's hash knows of the hardware: its exact identity (:mod:`bench.device`).

    The same machine resumes its own rows; another machine -- another CPU model, stepping,
    core count or ISA, another GPU or GPU count -- runs every cell itself and adds its rows
    beside them, even with published results in the directory.
    """
    return parent_device(device)["device_id"]


_DEVICES: dict[str, dict[str, str]] = {}


def parent_device(device: str) -> dict[str, str]:
    """device, device_name and device_id of ``device`` as this (the sweep's) process sees it."""
    if device not in _DEVICES:
        try:
            _DEVICES[device] = results.device_info(device)
        except Exception:  # noqa: BLE001
            _DEVICES[device] = {"device": device.split(":")[0], "device_name": "unknown",
                                "device_id": f"{device.split(':')[0]} | unknown"}
    return _DEVICES[device]


_PARENT_ENV: dict[str, str] = {}


def parent_env() -> dict[str, str]:
    """Host CPU and library versions of this process (a row's fallback provenance)."""
    if not _PARENT_ENV:
        _PARENT_ENV.update(host_cpu=results.host_cpu(), **results.software_versions())
    return _PARENT_ENV
