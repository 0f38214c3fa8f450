"""What the device can do: sustained matmul TFLOP/s (1e12 floating-point operations per second, the
denominator of MFU), cached per device and dtype, and device-to-device copy GB/s (1e9 bytes per
second).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from bench.engine.windows import MIB, synchronize


def _peak_cache_path() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "adaptbench" / "peaks.json"


def device_name(device: torch.device) -> str:
    """Short, human-readable device name (see :mod:`bench.device`)."""
    from bench import device as device_mod

    return device_mod.device_name(device)


def matmul_tflops(device: torch.device, dtype: torch.dtype, n: int | None = None,
                  reps: int | None = None) -> float:
    """Achieved TFLOP/s of a square ``n``×``n`` matmul (median of ``reps`` timed calls after two
    warm-ups). On CUDA fp32 the TF32 setting in force applies. A quick probe: the ceiling MFU is
    measured against is :func:`sustained_matmul_tflops`.
    """
    if n is None:
        n = 8192 if device.type == "cuda" else 1024
    if reps is None:
        reps = 20 if device.type == "cuda" else 5
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    times = []
    for i in range(reps + 2):
        synchronize(device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e12


# Matmul sizes tried for the sustained peak: small ones fit the caches, large ones amortise
# the per-call cost; which is best depends on the machine, so each is measured.
PEAK_SIZES = {"cpu": (1024, 2048, 3072), "cuda": (4096, 8192, 16384)}
PEAK_STABLE = 0.05  # three repeats within 5% of each other count as a stable measurement


def _timed_matmuls(a: torch.Tensor, b: torch.Tensor, device: torch.device,
                   min_s: float) -> float:
    """TFLOP/s of back-to-back ``a @ b`` calls over at least ``min_s`` seconds (one repeat)."""
    n = a.shape[0]
    calls = 0
    synchronize(device)
    t0 = time.perf_counter()
    while True:
        torch.mm(a, b)
        calls += 1
        if calls % 4 == 0 or device.type != "cuda":
            synchronize(device)
            elapsed = time.perf_counter() - t0
            if elapsed >= min_s:
                return 2 * n**3 * calls / elapsed / 1e12


def sustained_matmul_tflops(device: torch.device, dtype: torch.dtype,
                            sizes: tuple[int, ...] | None = None, repeat_s: float = 1.0,
                            attempts: int = 3) -> dict[str, Any]:
    """The matmul ceiling MFU is measured against, TFLOP/s: sustained, not a lucky burst.

    For each size, three repeats of back-to-back matmuls lasting ``repeat_s`` seconds each (after
    one warm-up repeat); a size counts when its three repeats agree within
    :data:`PEAK_STABLE`, else it is measured again (up to ``attempts`` times). The peak is the
    best median over sizes. Returns ``{"tflops", "n", "spread", "stable", "repeats"}``:
    ``spread`` is (max - min) / max of the chosen size's repeats.
    """
    sizes = sizes or PEAK_SIZES.get(device.type, PEAK_SIZES["cpu"])
    best: dict[str, Any] = {"tflops": 0.0, "n": 0, "spread": float("nan"), "stable": False,
                            "repeats": []}
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        _timed_matmuls(a, b, device, repeat_s / 4)  # warm-up: threads, clocks, caches
        for _ in range(attempts):
            reps = [_timed_matmuls(a, b, device, repeat_s) for _ in range(3)]
            spread = (max(reps) - min(reps)) / max(reps)
            if spread <= PEAK_STABLE:
                break
        value = statistics.median(reps)
        if value > best["tflops"]:
            best = {"tflops": value, "n": n, "spread": spread, "stable": spread <= PEAK_STABLE,
                    "repeats": reps}
        del a, b
    return best


def peak_key(device: torch.device, dtype: torch.dtype) -> str:
    """Cache key of a peak: exact device identity, dtype, intra-op threads, TF32 state."""
    from bench import device as device_mod

    tf32 = ""
    if device.type == "cuda" and dtype == torch.float32:
        tf32 = f"|tf32={torch.backends.cuda.matmul.allow_tf32}"
    return (f"{device_mod.device_identity(device)}|{dtype}|threads={torch.get_num_threads()}"
            f"{tf32}")


def cached_peaks(device_id: str) -> dict[str, dict[str, Any]]:
    """The cached peaks of one device identity (every dtype and thread count measured), by
    cache key: what a sweep's cells divided their FLOP/s by, for its env.json."""
    cache = _read_peak_cache(_peak_cache_path())
    return {k: v for k, v in sorted(cache.items())
            if isinstance(v, dict) and k.split("|tf32=")[0].rsplit("|", 2)[0] == device_id}


def _read_peak_cache(path: Path) -> dict[str, Any]:
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return cache if isinstance(cache, dict) else {}


def peak_tflops(device: torch.device, dtype: torch.dtype, refresh: bool = False) -> float:
    """Sustained matmul peak in TFLOP/s for (device identity, dtype, threads, TF32), cached.

    Measured once by :func:`sustained_matmul_tflops` and kept in
    ``~/.cache/adaptbench/peaks.json``; ``refresh`` measures again. The cache keeps the best
    value ever measured for the key: a peak taken while other work shared the machine is too
    low (it once made CPU MFU read 300%), and a quieter measurement must be able to replace it.
    """
    return peak_entry(device, dtype, refresh)["tflops"]


def peak_entry(device: torch.device, dtype: torch.dtype, refresh: bool = False
               ) -> dict[str, Any]:
    """:func:`peak_tflops` with its provenance: ``{"tflops", "n", "spread", "stable", ...}``."""
    key = peak_key(device, dtype)
    path = _peak_cache_path()
    cache = _read_peak_cache(path)
    old = cache.get(key)
    if isinstance(old, dict) and old.get("tflops", 0) > 0 and not refresh:
        return old
    entry = sustained_matmul_tflops(device, dtype)
    entry["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if isinstance(old, dict) and old.get("tflops", 0.0) > entry["tflops"]:
        return old
    cache = _read_peak_cache(path)  # re-read: another process may have written meanwhile
    cache[key] = entry
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=1))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home only costs a re-measurement next time
    return entry


# A fresh check newer than this is reused (seconds): see fresh_peak_check.
FRESH_CHECK_MAX_AGE_S = 600.0
# (peak key, matmul size) -> (TFLOP/s, time.monotonic() of the measurement); this process only.
_FRESH_CHECKS: dict[tuple[str, int], tuple[float, float]] = {}


def fresh_peak_check(device: torch.device, dtype: torch.dtype, n: int,
                     seconds: float = 0.5, max_age_s: float = FRESH_CHECK_MAX_AGE_S) -> float:
    """A quick matmul at the cached peak's size, TFLOP/s: is the machine as quiet as when the
    peak was measured? (The report flags rows where the two differ by more than 20%.)

    A property of the device, not of a cell: measured once per process for each
    (:func:`peak_key`, ``n``) and reused while younger than ``max_age_s`` seconds, so a warm
    worker's cells share one check (each ``>= 0.6 s``) instead of paying it per cell; a fresh
    process per cell measures it every time. ``max_age_s=0`` always measures.
    """
    key = (peak_key(device, dtype), int(n))
    cached = _FRESH_CHECKS.get(key)
    now = time.monotonic()
    if cached is not None and now - cached[1] < max_age_s:
        return cached[0]
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    _timed_matmuls(a, b, device, seconds / 5)
    value = _timed_matmuls(a, b, device, seconds)
    _FRESH_CHECKS[key] = (value, time.monotonic())
    return value


def copy_gb_s(device: torch.device, mib: int = 1024, reps: int = 10) -> float:
    """Device-to-device copy bandwidth in GB/s (bytes read + written, 1e9)."""
    nbytes = mib * MIB
    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    times = []
    for i in range(reps + 2):
        synchronize(device)
        t0 = time.perf_counter()
        dst.copy_(src)
        synchronize(device)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return 2 * nbytes / statistics.median(times) / 1e9
