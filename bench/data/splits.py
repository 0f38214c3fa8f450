"""Seeded, stratified subsets: the one rule every subset in the harness uses (train/test sizes of
a profile, a user folder's test split).
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from bench.data.errors import DataError


def _rng(seed: int, purpose: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}:{purpose}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def stratified_indices(labels: np.ndarray | torch.Tensor, size: int, *, seed: int = 0,
                       purpose: str = "subset") -> np.ndarray:
    """Sorted indices of a class-stratified random subset of ``size`` items.

    Each class gets ``size * n_class / n`` items, rounded by largest remainder so the total is
    exact. The same (labels, size, seed, purpose) always gives the same indices.
    """
    y = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    n = len(y)
    if not 0 <= size <= n:
        raise DataError(f"subset size {size} is out of range (0..{n})")
    counts = np.bincount(y) if n else np.zeros(0, dtype=np.int64)
    share = [size * int(c) for c in counts]
    take = [s // n for s in share]
    # Largest remainder; ties go to the lower class index.
    order = sorted(range(len(counts)), key=lambda k: (-(share[k] % n), k))
    for k in order[: size - sum(take)]:
        take[k] += 1
    rng = _rng(seed, purpose)
    picked = [np.flatnonzero(y == k)[rng.permutation(int(c))[:t]]
              for k, (c, t) in enumerate(zip(counts, take, strict=True)) if t]
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)
