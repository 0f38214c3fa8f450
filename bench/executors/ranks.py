"""Where this process runs: its torchrun rank, its device, and that device's exact identity.

Without torchrun the world is one rank. Under ``torchrun`` every rank plans the same cells (rank
0 makes the plan, :meth:`Dist.share` hands it to the others) and then each rank *pulls* the next
unclaimed cell from a counter in the c10d store of the ranks' gloo group (:meth:`Dist.claim`),
longest expected cell first, on ``cuda:LOCAL_RANK`` (CPU: the cores are split between local
ranks). A rank that drew short cells takes more of them, so the slowest rank no longer sets the
sweep's wall time, as a fixed ``i % W`` split would. Under ``--ddp`` every rank runs every cell
together instead (:mod:`bench.executors.ddp`). The group is also used to agree on start-up and for the
final barrier.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from bench.errors import ConfigError

T = TypeVar("T")


def longest_first(planned: Sequence[Any]) -> list[Any]:
    """The order ranks claim cells in: longest expected first (``expected_s``, seconds).

    The classic rule for jobs pulled by idle workers (LPT): a long cell started last would
    run alone while every other rank sits idle; started first, the short ones fill the other
    ranks around it. Its makespan is within 4/3 of the best possible (Graham, 1969). Ties
    keep the plan's order, so every rank computes the same list.
    """
    return sorted(planned, key=lambda p: -p.expected_s)


@dataclass
class Dist:
    """torchrun's view of this process; world 1 without torchrun."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    _pg: bool = False
    _store: Any = None  # the group's c10d store (claims, and the --ddp cells' rendezvous)
    token: str = ""  # rank 0's, shared at init: names this sweep's keys in the store

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
            timeout = timedelta(days=7)
            # The env:// rendezvous init_process_group would do itself, kept for the store.
            store, _, _ = next(td.rendezvous("env://", timeout=timeout))
            td.init_process_group("gloo", store=store, rank=self.rank, world_size=self.world,
                                  timeout=timeout)
            self._store, self._pg = store, True
            # A torchrun restart reuses the agent's store: keys of this sweep are its own.
            self.token = self.share(lambda: secrets.token_hex(6))

    def share(self, make: Callable[[], T]) -> T:
        """``make()`` on rank 0, its value on every rank (the plan: one plan, identical
        everywhere). An exception on rank 0 is raised on every rank."""
        if not self._pg:
            return make()
        import torch.distributed as td

        box: list[Any] = [None]
        error: BaseException | None = None
        if self.rank == 0:
            try:
                box[0] = (True, make())
            except BaseException as exc:  # noqa: BLE001 - the other ranks must not wait forever
                error, box[0] = exc, (False, f"{type(exc).__name__}: {exc}")
        td.broadcast_object_list(box, src=0)
        if error is not None:
            raise error
        ok, value = box[0]
        if not ok:
            raise RuntimeError(f"rank 0 failed: {value}")
        return value

    def claim(self, items: Sequence[T], key: str = "cells") -> Iterator[T]:
        """The items this rank runs, pulled one at a time from a counter every rank shares.

        Every rank must pass the same ``items`` in the same order; together they get each item
        exactly once. Without a group: all of them.
        """
        if not self._pg:
            yield from items
            return
        counter = f"adaptbench/{self.token}/claim/{key}"
        while True:
            taken = self._store.add(counter, 1) - 1  # atomic: one rank gets each number
            if taken >= len(items):
                return
            yield items[taken]

    def gather(self, value: Any) -> list[Any]:
        """``value`` of every rank, in rank order (a collective: every rank calls it)."""
        if not self._pg:
            return [value]
        import torch.distributed as td

        out: list[Any] = [None] * self.world
        td.all_gather_object(out, value)
        return out

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
