"""Plain-language explanations of why a model × strategy fails, found by probing on meta.

For a failed forward we replay it on the meta device with hooks (which layer was running,
what size reached it, how the feature map shrank) and search the smallest input side that
works. Cost: a few shape-only forwards; nothing here touches real weights.

``explain_error(exc, model_name, spec)`` is the engine's entry point and never raises;
``diagnose(model, exc)`` is the doctor's, on a model it has already built.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from ._meta import first_conv, meta_forward, runs_at
from ._model import AdaptedModel, build
from ._registry import NotApplicableError, StrategyError
from .spatial import Pad, Resize

# Failure classes, in the order the doctor's legend shows them.
ERROR_CLASSES = ("channels", "too-small", "exact-size", "shape", "not-applicable", "oom",
                 "bad-spec", "other")

_CHANNELS = re.compile(r"to have (\d+) channels, but got (\d+) channels|Invalid channel dimensions")
# torchvision's ViT/Swin check, then timm's PatchEmbed ("Input height (28) doesn't match model
# (224).") and Swin-V2-CR's ("Input image height (224) doesn't match model (384).").
_EXACT = re.compile(r"(?:Wrong image (?:height|width)! Expected "
                    r"|Input (?:image )?(?:height|width) \(\d+\) doesn't match model \()(\d+)")
_TOO_SMALL = re.compile(r"Output size is too small|Kernel size can't be greater than actual input"
                        r"|Padding size should be less than|smaller than kernel|"
                        r"output size is too small", re.IGNORECASE)
# "Attempting to broadcast": the meta kernels' wording of "must match the size" (timm's
# residual branches of odd map sizes, 4 vs 3, as a real forward reports it).
_SHAPE = re.compile(r"is invalid for input of size|cannot be multiplied|must match the size"
                    r"|shape mismatch|Expected size|Attempting to broadcast a dimension")
_OUT_SIZE = re.compile(r"Calculated output size: \((\d+)x(\d+)x(\d+)\)")
_KERNEL = re.compile(r"Kernel size: \((\d+) x (\d+)\)")
MAX_SEARCH_PX = 1024


def classify(exc: BaseException) -> str:
    """The failure class of an exception (one of :data:`ERROR_CLASSES`)."""
    if isinstance(exc, NotApplicableError):
        return "not-applicable"
    if isinstance(exc, StrategyError):
        return "bad-spec"
    msg = str(exc)
    if "out of memory" in msg.lower() or type(exc).__name__ == "OutOfMemoryError":
        return "oom"
    if _CHANNELS.search(msg):
        return "channels"
    if _EXACT.search(msg):
        return "exact-size"
    if _TOO_SMALL.search(msg):
        return "too-small"
    if _SHAPE.search(msg):
        return "shape"
    return "other"


@dataclass
class Trace:
    """What a meta forward was doing when it failed."""

    error: BaseException | None = None
    layer: str | None = None  # innermost module running when the error was raised
    module: nn.Module | None = None
    in_shape: tuple[int, ...] | None = None  # that module's input shape
    sides: list[int] = field(default_factory=list)  # map side after each size change


# Layers whose output is an NCHW map whose side may change (others may be channels-last).
_RESAMPLING: tuple[type[nn.Module], ...] = (
    nn.modules.conv._ConvNd, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
    nn.Upsample, Resize, Pad)


def trace_forward(model: nn.Module, shape: tuple[int, ...]) -> Trace:
    """Meta forward of ``model`` at ``shape``, recording the failing module and map sizes."""
    names = {m: n for n, m in model.named_modules()}
    stack: list[tuple[str, nn.Module, tuple[int, ...] | None]] = []
    sides: list[int] = [shape[-1]]

    def before(module: nn.Module, args: tuple[Any, ...]) -> None:
        first = args[0] if args and isinstance(args[0], Tensor) else None
        stack.append((names[module], module, tuple(first.shape) if first is not None else None))

    def after(module: nn.Module, _args: tuple[Any, ...], out: Any) -> None:
        stack.pop()
        if (isinstance(module, _RESAMPLING) and isinstance(out, Tensor) and out.dim() == 4
                and out.shape[-1] != sides[-1]):
            sides.append(int(out.shape[-1]))

    handles = [m.register_forward_pre_hook(before) for m in names]
    handles += [m.register_forward_hook(after) for m in names]
    try:
        meta_forward(model, shape)
        return Trace(sides=sides)
    except Exception as exc:  # the failure is the result
        name, module, in_shape = stack[-1] if stack else (None, None, None)
        return Trace(exc, name, module, in_shape, sides)
    finally:
        for h in handles:
            h.remove()


def input_channels(backbone: nn.Module) -> int:
    """Channels the backbone's first executed convolution takes (3 for every torchvision model)."""
    try:
        return first_conv(backbone)[1].in_channels
    except Exception:
        return 3


def min_input_px(backbone: nn.Module, channels: int, failing_px: int,
                 max_px: int = MAX_SEARCH_PX, hint_px: int | None = None,
                 check_exact: bool = True) -> tuple[int | None, bool]:
    """Smallest square side (> ``failing_px``) at which ``backbone`` runs, and whether it is exact.

    Doubling then bisection on meta, so it assumes that bigger inputs keep working; with
    ``check_exact`` the result is then checked one pixel up: if ``side + 1`` fails, the model
    needs specific sizes (``exact`` = True, e.g. ViT's 224). ``hint_px`` (read from an error
    message) is tried first. Returns (None, False) when nothing up to ``max_px`` works.
    """
    def ok(px: int) -> bool:
        return runs_at(backbone, (1, channels, px, px))

    if hint_px is not None and hint_px > 0 and ok(hint_px):
        return hint_px, check_exact and not ok(hint_px + 1)
    # Upward probes: +4 px first (VGG's 28 -> 32 is the common case), then doublings, and
    # 224, the size every ImageNet model takes (MaxViT's window grid wants multiples of it).
    candidates = sorted({failing_px + 4, *(failing_px << k for k in range(1, 12)), 224, max_px})
    lo, hi = failing_px, 0
    for px in (c for c in candidates if failing_px < c <= max_px):
        if ok(px):
            hi = px
            break
        lo = px
    if not hi:
        return None, False
    while hi - lo > 1:  # lo fails, hi works
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi, check_exact and not ok(hi + 1)


def size_fingerprint(backbone: nn.Module) -> int:
    """Hash of the layer structure that decides which input sizes work.

    Channel counts are left out (they never change a map's side), so repeat3, conv1 and sumrgb
    variants of a model share one min-size search, and so does a droppools that dropped nothing.
    """
    return hash(re.sub(r"\((\d+), (\d+), kernel_size", "(C, C, kernel_size", repr(backbone)))


@dataclass
class Diagnosis:
    """Why a model × strategy failed, in plain words, with the numbers behind it."""

    error_class: str
    explanation: str
    layer: str | None = None
    min_input_px: int | None = None
    exact_input_px: bool = False


def _short(name: str | None) -> str:
    return (name or "?").removeprefix("backbone.")


def _layer_text(trace: Trace) -> str:
    if trace.layer is None or trace.module is None:
        return "the model"
    return f"{_short(trace.layer)} ({type(trace.module).__name__})"


def _chain(sides: list[int]) -> str:
    if len(sides) > 12:
        sides = [*sides[:5], -1, *sides[-5:]]
    return " → ".join("…" if s < 0 else str(s) for s in sides)


def _suggest_size(px: int, exact: bool, input_px: int) -> str:
    if exact:
        return f"resize{px}"
    return f"resize{px} or pad{px}" if px >= input_px else f"resize{px}"


def diagnose(model: AdaptedModel, exc: BaseException,
             cache: dict[Any, tuple[int | None, bool]] | None = None,
             trace: Trace | None = None) -> Diagnosis:
    """Explain ``exc``, raised by a forward of ``model`` (built by :func:`strategies.build`).

    ``cache`` maps (model, layer-changing spatial part) to a min-size search result, so a sweep
    over many strategies searches each backbone variant once (channel adapters and input
    resizing do not change which sizes the backbone accepts). ``trace``: the failed forward's
    :func:`trace_forward`, when the caller already ran it. Never raises.
    """
    error_class = classify(exc)
    try:
        return _diagnose(model, exc, error_class, cache, trace)
    except Exception:  # explanations are best effort; the original error is kept anyway
        return Diagnosis(error_class, explain_message(exc, model.model_name))


def _diagnose(model: AdaptedModel, exc: BaseException, error_class: str,
              cache: dict[Any, tuple[int | None, bool]] | None, trace: Trace | None) -> Diagnosis:
    if error_class in ("not-applicable", "bad-spec", "oom"):
        return Diagnosis(error_class, explain_message(exc, model.model_name))
    name = model.model_name
    px = model.input_px
    if trace is None:
        trace = trace_forward(model, (2, getattr(model, "in_channels", 1), px, px))
    if trace.error is None:  # runs on meta: not a shape problem (dtype, device, memory...)
        return Diagnosis(error_class, explain_message(exc, name))
    layer = _short(trace.layer)
    if error_class == "channels":
        module = trace.module
        want = getattr(module, "in_channels", 3)
        got = trace.in_shape[1] if trace.in_shape and len(trace.in_shape) > 1 else 1
        if got == 1:
            text = (f"{name}'s first convolution {layer} expects {want} input channels (RGB) "
                    f"but receives {got}: add a channel adapter: repeat3 (tile gray to 3), conv1"
                    f" (a new one-channel convolution) or sumrgb (fold its RGB weights).")
        else:
            text = (f"{name}'s first convolution {layer} expects {want} input channels but "
                    f"receives {got}: add the channel adapter conv1 (a first convolution built "
                    f"for {got} channels).")
        return Diagnosis(error_class, text, layer)

    key = (name, size_fingerprint(model.backbone))
    exact_hint = _EXACT.search(str(exc)) or _EXACT.search(str(trace.error))
    if cache is not None and key in cache:
        min_px, exact = cache[key]
    else:
        min_px, exact = min_input_px(model.backbone, input_channels(model.backbone),
                                     model.backbone_input_px,
                                     hint_px=int(exact_hint.group(1)) if exact_hint else None,
                                     check_exact=error_class != "too-small")
        if cache is not None:
            cache[key] = (min_px, exact)

    seen = model.backbone_input_px
    if error_class == "exact-size" and min_px is not None:
        text = (f"{name} needs an input of exactly {min_px}×{min_px} px (it checks the image "
                f"size against its fixed position embeddings; {min_px + 1} px fails too) but "
                f"gets {seen} px: use {_suggest_size(min_px, True, px)}.")
        return Diagnosis(error_class, text, layer, min_px, True)
    if error_class == "too-small":
        h_w = (f"{trace.in_shape[-2]}×{trace.in_shape[-1]}"
               if trace.in_shape and len(trace.in_shape) >= 3 else "too small a")
        out = _OUT_SIZE.search(str(trace.error))
        kernel = _KERNEL.search(str(trace.error))
        if out:
            result = f"its output would be {out.group(2)}×{out.group(3)}"
        elif kernel:
            result = f"its {kernel.group(1)}×{kernel.group(2)} kernel is larger than the map"
        else:
            result = "it cannot shrink it further"
        where = (f"Along the network the map goes {_chain(trace.sides)}, and "
                 if len(trace.sides) > 2 else f"At {seen} px ")
        text = (f"{where}{_layer_text(trace)} gets a {h_w} map: {result}. "
                f"The {seen} px input is too small for {name}'s downsampling.")
        if min_px is not None:
            fix = _suggest_size(min_px, exact, px)
            text += (f" Smallest input that works: {min_px} px ({fix}"
                     f"{'' if model.spec.endswith('droppools') else ', or droppools'}).")
        return Diagnosis(error_class, text, layer, min_px, exact)
    text = (f"At {seen} px {_layer_text(trace)} fails on a map of shape "
            f"{list(trace.in_shape) if trace.in_shape else '?'}: {_first_line(trace.error)}.")
    if min_px is not None:
        text += (f" Smallest input that works: {min_px} px"
                 + (f" ({min_px + 1} px fails: only specific sizes work)." if exact else "."))
    return Diagnosis(error_class, text, layer, min_px, exact)


def _first_line(exc: BaseException | None) -> str:
    return str(exc).strip().splitlines()[0] if exc is not None and str(exc).strip() else ""


def explain_message(exc: BaseException, model_name: str = "the model") -> str:
    """An explanation from the error message alone (no probing)."""
    error_class = classify(exc)
    msg = _first_line(exc)
    if error_class in ("not-applicable", "bad-spec"):
        return msg
    if error_class == "channels":
        return (f"{model_name}'s first convolution expects 3 (RGB) channels but the batch is "
                "one-channel gray: add a channel adapter (repeat3, conv1 or sumrgb).")
    if error_class == "exact-size":
        size = _EXACT.search(str(exc))
        return f"{model_name} only accepts {size.group(1) if size else 'one'} px inputs: resize to it."
    if error_class == "too-small":
        return (f"The input is too small for {model_name}'s downsampling: a feature map shrank "
                f"to nothing ({msg}). Resize or pad to a larger size, or drop pools (droppools).")
    if error_class == "oom":
        return f"Out of memory: lower the batch size or the input size ({msg})."
    return f"{type(exc).__name__}: {msg}"


def explain_error(exc: BaseException, model_name: str, spec: str, *, input_px: int = 28,
                  in_channels: int = 1) -> str:
    """Plain-language explanation of ``exc``, raised by ``build(model_name, spec)`` or its forward.

    Rebuilds the model on the meta device to find the failing layer and the smallest input
    that works (a few shape-only forwards). Never raises.
    """
    try:
        if isinstance(exc, StrategyError):
            return _first_line(exc)
        model = build(model_name, spec, device="meta", input_px=input_px,
                      in_channels=in_channels)
        return diagnose(model, exc).explanation
    except Exception:
        try:
            return explain_message(exc, model_name)
        except Exception:
            return f"{type(exc).__name__}: {exc}"

