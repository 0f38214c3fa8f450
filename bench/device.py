"""Device identity: the one owner of "which hardware measured this row".

Two machines that both call themselves "AMD EPYC" can differ 8x in training speed (an AVX2-only
part and one with AVX-512 BF16), and a 2-core and a 64-core slice of one CPU model are not the
same hardware either. So the identity that goes into a cell's hash (``device_id`` column) names:

- CPU: the model string; family / model / stepping (a hypervisor often masks the name down to
  "AMD EPYC"); the logical core count; the ISA features that change speed (:data:`SPEED_FLAGS`).
- CUDA: the GPU's name, its memory in MiB and how many GPUs the process sees.

``device_name`` is the short, human-readable form shown in tables; ``device_id`` is exact.
A row measured under one identity is never resumed as another's (``bench.executors.ranks.device_key``).
"""

from __future__ import annotations

import os
import platform
import re
from functools import lru_cache

# CPU features that change training speed by integer factors (vector width, bf16/int8 dot
# products, matrix tiles), in the order they are named.
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni",
               "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve")


@lru_cache(maxsize=1)
def cpu_info() -> dict[str, str]:
    """``/proc/cpuinfo``'s first processor: model name, vendor, family, model, stepping, flags."""
    keys = {"model name": "name", "vendor_id": "vendor", "cpu family": "family",
            "model": "model", "stepping": "stepping", "flags": "flags", "Features": "flags"}
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if not line.strip():
                    if info:
                        break  # the first processor block is enough
                    continue
                key, _, value = line.partition(":")
                name = keys.get(key.strip())
                if name and name not in info:
                    info[name] = value.strip()
    except OSError:
        pass
    info.setdefault("name", platform.processor() or platform.machine() or "unknown CPU")
    return info


def logical_cores() -> int:
    return os.cpu_count() or 1


def speed_flags() -> list[str]:
    """The :data:`SPEED_FLAGS` this CPU has, e.g. ``["avx2", "fma"]``."""
    have = set(cpu_info().get("flags", "").split())
    return [f for f in SPEED_FLAGS if f in have]


def _name_is_masked(name: str) -> bool:
    # A real model string carries a model number ("EPYC 7B13", "Xeon Platinum 8480+");
    # hypervisors often pass a generic one ("AMD EPYC", "Intel Xeon Processor (Icelake)").
    return not re.search(r"\d{3,}", name)


def _fms() -> str:
    info = cpu_info()
    if not any(k in info for k in ("family", "model", "stepping")):
        return ""
    return (f"family {info.get('family', '?')} model {info.get('model', '?')} "
            f"stepping {info.get('stepping', '?')}")


def cpu_name() -> str:
    """Human-readable CPU model; family/model/stepping appended when the name is masked."""
    name = cpu_info()["name"]
    fms = _fms()
    return f"{name}, {fms}" if fms and _name_is_masked(name) else name


def cpu_identity() -> str:
    """``AMD EPYC | family 25 model 1 stepping 1 | 2 logical cores | avx2 fma``."""
    flags = " ".join(speed_flags()) or "no listed speed flags"
    parts = [cpu_info()["name"], _fms(), f"{logical_cores()} logical cores", flags]
    return " | ".join(p for p in parts if p)


def host_cpu() -> str:
    """CPU model and logical core count, e.g. ``AMD EPYC 7B13 (2 logical cores)``."""
    return f"{cpu_name()} ({logical_cores()} logical cores)"


def _cuda_index(device: str) -> int:
    return int(device.split(":")[1]) if ":" in device else 0


def device_name(device: str | object) -> str:
    """Short name of a device (``cpu``, ``cuda``, ``cuda:1`` or a ``torch.device``)."""
    text = str(device)
    if text.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(_cuda_index(text))
    return cpu_name()


def device_identity(device: str | object) -> str:
    """Exact identity of a device for cell hashes and the ``device_id`` column."""
    text = str(device)
    if text.startswith("cuda"):
        import torch

        props = torch.cuda.get_device_properties(_cuda_index(text))
        return (f"cuda | {props.name} | {props.total_memory // 2**20} MiB | "
                f"{torch.cuda.device_count()} visible")
    return f"cpu | {cpu_identity()}"


# -- what the hardware runs natively: the rule behind precision = "auto", channels_last = "auto" --

# bf16 on a CPU is only fast where the ISA multiplies bf16 natively; elsewhere autocast emulates
# it. channels_last pays where oneDNN has its AVX-512 blocked kernels. Figures:
# - 2-core EPYC with AVX-512 + AVX512_BF16 (plain PyTorch, as reported in the speed issue):
#   vgg16 at 32 px, batch 64, fp32 NCHW 18-25 img/s, fp32 channels_last 80, bf16 112.
# - 2-core EPYC family 25 model 1, AVX2 + FMA only: `python -m bench run --profile smoke --set
#   models=resnet18 --set strategies=repeat3 --set train_size=256 --set batch_size=32 --set
#   num_threads=2 --set precision=P --set channels_last=L` (and test_size=64 epochs=1
#   warmup_steps=1 window_steps=2 profile_steps=0 peak_tflops=1) gave train_img_s fp32 NCHW 176,
#   fp32 channels_last 121, bf16 NCHW 4.5: both off is right there. Later, `python -m
#   bench.tools.overhead --profile cpu` on the same machine kind: fp32 NCHW and channels_last within
#   the noise of each other (resnet18 112-119 vs 116-131 img/s; docs/micro-benchmarks.md).
_NATIVE_BF16 = ("avx512_bf16", "amx_bf16")
_NATIVE_NHWC = ("avx512f",)


def auto_recipe(device: str | object, flags: list[str] | None = None) -> dict[str, object]:
    """The precision and layout ``"auto"`` resolves to on ``device``, and why.

    CUDA: bf16 where the GPU supports it (else fp32), channels_last (tensor-core convolutions
    want NHWC). CPU: bf16 only with AVX512_BF16 or AMX-BF16 (``flags``: default this CPU's
    :func:`speed_flags`), channels_last only with AVX-512; fp32 and NCHW elsewhere. Returns
    ``{"precision": str, "channels_last": bool, "why": str}``.
    """
    text = str(device)
    if text.startswith("cuda"):
        import torch

        bf16 = bool(torch.cuda.is_bf16_supported())
        return {"precision": "bf16" if bf16 else "fp32", "channels_last": True,
                "why": f"CUDA: {'bf16 supported' if bf16 else 'no bf16'}, NHWC convolutions"}
    have = set(speed_flags() if flags is None else flags)
    bf16 = [f for f in _NATIVE_BF16 if f in have]
    nhwc = [f for f in _NATIVE_NHWC if f in have]
    return {"precision": "bf16" if bf16 else "fp32", "channels_last": bool(nhwc),
            "why": (f"CPU: bf16 {'native (' + ', '.join(bf16) + ')' if bf16 else 'emulated (no AVX512_BF16/AMX)'}"
                    f"; channels_last {'on (' + ', '.join(nhwc) + ')' if nhwc else 'off (no AVX-512)'}")}
