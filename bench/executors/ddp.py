"""One cell trained data-parallel by every torchrun rank (``bench run --ddp``).

::

    torchrun --standalone --nproc_per_node 8 -m bench run --profile gpu --ddp

Every rank runs the same cell at the same time, each in its own cell process (the executors'
child protocol, :mod:`bench.executors.worker`), and those W processes form a process group of their own
(NCCL on CUDA, gloo on CPU) in which the model is wrapped in
:class:`~torch.nn.parallel.DistributedDataParallel`.

**Why a cell process per rank, not the rank's own process.** A cell that crashes, runs out of
memory or hangs then costs one row, as without ``--ddp``: the sweep's ranks survive, record it
and go on to the next cell together. Training in the rank's process would be simpler (no second
group), but one bad cell would end the whole torchrun job and its rows still unmerged.

**Rendezvous.** The cell processes meet through the sweep's own c10d store (torchrun's
``MASTER_ADDR:MASTER_PORT``), under a key prefix unique to the sweep and the cell, as clients:
the cell's group opens its own connections, but no second port has to be chosen. A free port
picked by rank 0 could be taken by another process before the cell binds it, and on several
machines it would need to be reachable too; the store's port already is. :func:`cell_spec` is
what the sweep passes to the cell (rank, world, address, port, prefix) -- explicitly, in the
cell's spec, because :func:`bench.executors.protocol.child_env` strips torchrun's variables
from every cell process on purpose.

**What the cell computes** (the hooks in :mod:`bench.engine.train`):

- ``batch_size`` is the GLOBAL batch; each rank trains ``batch_size / W`` images per step, its
  slice of the same per-epoch permutation (:func:`bench.data.batches` ``shard=``), so one global
  step covers exactly the images of one single-process step;
- ``train_img_s`` is global: per timed window, the images of every rank over the slowest rank's
  window time (the windows span the same steps on every rank: DDP's gradient all-reduce makes
  every step a meeting point); ``mfu`` is over W devices' peak;
- memory columns are the max over ranks, ``final_train_loss`` the mean over ranks;
- before each evaluation every rank takes rank 0's buffers (BatchNorm running statistics,
  which are per rank while training), so every rank evaluates the same model and the accuracy
  is checked equal on all ranks;
- BatchNorm normalises each rank's local batch (``batch_size / W`` images), as with plain DDP;
  this is the one way a ``--ddp`` cell trains differently from a single-process one with the
  same global batch.

Rank 0 writes the one row; its ``world_size`` column is W and its ``device_id`` ends in
``| ddp xW`` (another experiment than the same cell on one device: its own hash, its own row).
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from bench.schema import Status, outcome

# Row columns that are a per-rank peak: the row reports the max over ranks.
MAX_COLUMNS = ("peak_mem_mib", "peak_reserved_mib", "eval_peak_mem_mib", "peak_rss_mib")
# Which rank's failure names the cell's: a cause, not a symptom. A rank whose peer died (killed,
# out of memory) sees only a broken connection in its collective; the peer's row says why.
_CAUSES = (Status.OOM, Status.DIVERGED, Status.INCOMPATIBLE, Status.TIMEOUT)
_SYMPTOMS = ("gloo", "nccl", "connection", "broken pipe", "timed out")


def check_batch(batch_size: int, world: int, what: str = "batch_size") -> str | None:
    """Why a global batch cannot be split over ``world`` ranks, or None when it can."""
    if world > 0 and batch_size % world:
        lower = batch_size - batch_size % world
        valid = ", ".join(str(v) for v in (lower, lower + world) if v > 0)
        return (f"--ddp: {what}={batch_size} is the global batch and must split evenly over "
                f"the {world} ranks; valid: a multiple of {world}, e.g. {valid}")
    return None


def cell_spec(rank: int, world: int, token: str, cell_hash: str, timeout_s: float
              ) -> dict[str, Any]:
    """The ``ddp`` entry of a cell's spec: how its process joins the cell's group."""
    return {"rank": rank, "world": world, "master_addr": os.environ.get("MASTER_ADDR", "127.0.0.1"),
            "master_port": int(os.environ.get("MASTER_PORT", "29500")),
            "prefix": f"adaptbench/ddp/{token}/{cell_hash}", "timeout_s": float(timeout_s)}


@dataclass
class Context:
    """This cell process's place in its cell's group."""

    rank: int
    world: int
    device: Any  # torch.device

    @property
    def shard(self) -> tuple[int, int]:
        """``(rank, world)``: which slice of every global batch this rank trains."""
        return self.rank, self.world

    def wrap(self, model: Any) -> Any:
        """``model`` in DistributedDataParallel (rank 0's weights are broadcast to every rank)."""
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def sync_buffers(self, model: Any) -> None:
        """Every rank takes rank 0's buffers (BatchNorm running statistics) before evaluating."""
        import torch.distributed as td

        for buf in model.buffers():
            td.broadcast(buf, 0)

    def gather(self, value: Any) -> list[Any]:
        """``value`` of every rank, in rank order (a collective: every rank must call it)."""
        import torch.distributed as td

        out: list[Any] = [None] * self.world
        td.all_gather_object(out, value)
        return out

    def throughput(self, meter: Any) -> dict[str, float]:
        """:meth:`bench.engine.measure.ThroughputMeter.summary` of the whole group: per window, the
        images of every rank over the slowest rank's window seconds (global images/s)."""
        mine = [(end - start, rate * (end - start))
                for (start, end), rate in zip(meter.windows, meter.window_img_s, strict=False)]
        return global_windows(self.gather(mine))

    def finish_row(self, row: dict[str, Any]) -> None:
        """Reduce the per-rank columns of ``row`` over the group (every rank calls it)."""
        keys = (*MAX_COLUMNS, "final_train_loss", "test_acc")
        rows = self.gather({k: row.get(k) for k in keys})
        row.update(reduce_rows(rows))
        if row.get("mfu") is not None:
            row["mfu"] = row["mfu"] / self.world  # against the peak of every device together
        row["world_size"] = self.world


def global_windows(per_rank: list[list[tuple[float, float]]]) -> dict[str, float]:
    """``[(seconds, images) per window] per rank`` -> the meter's summary, global.

    Window ``w`` of every rank spans the same steps, so its global rate is the sum of the
    ranks' images over the longest of their durations (the group went as fast as its slowest).
    """
    from bench.engine.measure import percentile

    n = min((len(w) for w in per_rank), default=0)
    rates = []
    total_s = total_images = 0.0
    for w in range(n):
        seconds = max(r[w][0] for r in per_rank)
        if seconds > 0:
            rates.append(sum(r[w][1] for r in per_rank) / seconds)
            total_s += seconds
            total_images += sum(r[w][1] for r in per_rank)
    return {"train_img_s_pooled": total_images / total_s if total_s > 0 else float("nan"),
            "timed_s": total_s,
            "train_img_s": statistics.median(rates) if rates else float("nan"),
            "train_img_s_p10": percentile(rates, 10), "train_img_s_p90": percentile(rates, 90),
            "timed_windows": float(len(rates))}


def reduce_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Max of the peak columns, mean of ``final_train_loss``, and the one ``test_acc`` (raises
    when ranks disagree: they evaluated the same weights and buffers on the same images)."""
    out: dict[str, Any] = {}
    for key in MAX_COLUMNS:
        values = [r[key] for r in rows if isinstance(r.get(key), (int, float))
                  and r[key] == r[key]]
        if values:
            out[key] = max(values)
    losses = [r["final_train_loss"] for r in rows
              if isinstance(r.get("final_train_loss"), (int, float))]
    if losses:
        out["final_train_loss"] = sum(losses) / len(losses)
    accs = {r.get("test_acc") for r in rows}
    if len(accs) > 1:
        raise RuntimeError(f"--ddp ranks evaluated different accuracies {sorted(map(str, accs))}"
                           ": their models differ")
    return out


def merge_statuses(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Status and reason of a cell from every rank's row (rank order); ``{}`` when all ok.

    The first rank with a cause (out of memory, non-finite loss, ...) names the status; else
    the first failed rank whose reason is not a broken collective; else the first failed rank.
    The reason says which rank.
    """
    failed = [(r, row) for r, row in enumerate(rows) if row.get("status") != Status.OK]
    if not failed:
        return {}

    def symptom(row: dict[str, Any]) -> bool:
        return any(word in str(row.get("reason", "")).lower() for word in _SYMPTOMS)

    rank, row = next(((r, x) for r, x in failed if x.get("status") in _CAUSES),
                     next(((r, x) for r, x in failed if not symptom(x)), failed[0]))
    return outcome(str(row.get("status")),
                   f"rank {rank} of {len(rows)}: {row.get('reason') or row.get('status')}")


_ACTIVE: Context | None = None


def active() -> Context | None:
    """The group of the cell this process is running, or None (a cell of its own)."""
    return _ACTIVE


@contextmanager
def cell_group(spec: dict[str, Any] | None, device: str) -> Iterator[Context | None]:
    """Join the cell's group for the duration of one cell (nothing when ``spec`` is None)."""
    global _ACTIVE
    if not spec:
        yield None
        return
    from datetime import timedelta

    import torch
    import torch.distributed as td

    dev = torch.device(device)
    timeout = timedelta(seconds=max(60.0, float(spec["timeout_s"])))
    # A client of the sweep's store: it outlives the cell (torchrun's agent or rank 0 hosts it).
    store = td.TCPStore(spec["master_addr"], int(spec["master_port"]), is_master=False,
                        timeout=timeout)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    td.init_process_group("nccl" if dev.type == "cuda" else "gloo",
                          store=td.PrefixStore(spec["prefix"], store), rank=int(spec["rank"]),
                          world_size=int(spec["world"]), timeout=timeout)
    _ACTIVE = Context(int(spec["rank"]), int(spec["world"]), dev)
    try:
        yield _ACTIVE
    finally:
        _ACTIVE = None
        td.destroy_process_group()
