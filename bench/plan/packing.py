"""What a packed sweep (``pack = N``: N cells at once on one device) is expected to take.

A sequential sweep takes the sum of its cells' estimates. N cells sharing one device overlap
their host work -- process start, model build, the launch floor of small steps, compilation --
but not the device's arithmetic, which they take in turn: the cost model's ``device_s`` part of
each estimate (:class:`bench.plan.costmodel.Estimate`). So a packed ETA is the larger of

- the slots' makespan: the cells dealt out as :class:`bench.executors.pack.PackedExecutor`
  deals them (plan order, each to the first free slot, the lowest-numbered on a tie), each
  taking its solo estimate; and
- the device floor: the sum of the cells' device seconds.

It is a floor of what the run can take, not a promise: cells that share a device also share
its memory bandwidth and the host's cores, and a time-sliced GPU (no MPS) switches between
processes rather than running their kernels together. Until a packed sweep's wall time has been
measured against it, treat it as the optimistic end of the range.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PackedEta:
    """A packed sweep's expected wall time and the two bounds it is the larger of, seconds."""

    slots: int
    eta_s: float  # max(makespan_s, device_floor_s)
    makespan_s: float  # the slots' makespan with solo durations
    device_floor_s: float  # the device's arithmetic, every cell's in turn
    sequential_s: float  # the same cells one at a time: the sum

    @property
    def bound(self) -> str:
        """Which bound sets the ETA: ``"device"`` (arithmetic) or ``"slots"`` (makespan)."""
        return "device" if self.device_floor_s >= self.makespan_s else "slots"


def makespan(durations: Sequence[float], slots: int) -> float:
    """Seconds until the last of ``durations`` (in dispatch order) ends on ``slots`` slots, each
    next cell going to the first slot to come free (the lowest-numbered on a tie)."""
    if slots < 1:
        raise ValueError(f"slots must be >= 1, got {slots}")
    free = [(0.0, i) for i in range(slots)]  # (time the slot comes free, its number)
    end = 0.0
    for seconds in durations:
        at, i = heapq.heappop(free)
        done = at + max(0.0, seconds)
        end = max(end, done)
        heapq.heappush(free, (done, i))
    return end


def packed_eta(cells: Sequence[tuple[float, float]], slots: int) -> PackedEta:
    """The :class:`PackedEta` of ``cells`` ((expected seconds, device seconds) each, in plan
    order) on ``slots`` slots; with one slot it is the plain sum."""
    durations = [seconds for seconds, _ in cells]
    sequential = sum(durations)
    floor = sum(min(d, s) for s, d in cells)
    if slots <= 1:
        return PackedEta(1, sequential, sequential, floor, sequential)
    span = makespan(durations, slots)
    return PackedEta(slots, max(span, floor), span, floor, sequential)


def plan_slots(pack: int | str) -> tuple[int, str]:
    """The slots a plan prices for the profile's ``pack`` and why: an integer is itself;
    ``auto`` is decided at run time from the cells' measured memory and the device's free
    memory (:func:`bench.executors.pack.resolve`), so a plan prices it as one slot."""
    if pack == "auto":
        return 1, ("pack=auto is decided at run time from measured memory: priced as one cell "
                   "at a time (pass --set pack=N to price N)")
    return max(1, int(pack)), ""
