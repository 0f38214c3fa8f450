"""Shape-only probing on the meta device: forwards that cost no memory and no arithmetic.

A meta forward raises the same shape errors as a real one, so adapters and the doctor use it
to ask "does this model run at this input size?" without touching real weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode


def _on_meta(module: nn.Module) -> bool:
    tensors = [*module.parameters(), *module.buffers()]
    return all(t.device.type == "meta" for t in tensors)


@contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Eval mode for the duration (batch-norm needs no batch statistics), then restore."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


# Normalisations keep their input's shape and cost no FLOPs in FlopCounterMode, but their meta
# kernels are Python decompositions: skipping them makes a meta forward ~2x faster.
_NORMS = frozenset({F.batch_norm, F.layer_norm, F.group_norm, F.instance_norm, torch.batch_norm,
                    torch.layer_norm, torch.group_norm, torch.instance_norm})


class _SkipNorms(TorchFunctionMode):
    def __torch_function__(self, func: Any, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        if func in _NORMS:
            return args[0]
        return func(*args, **(kwargs or {}))


def meta_forward(module: nn.Module, shape: tuple[int, ...]) -> Tensor:
    """Run ``module`` on an empty meta batch of ``shape`` and return the meta output.

    Shapes only: normalisation layers pass their input through. A module with real weights is
    called functionally with meta stand-ins for every parameter and buffer, so its weights are
    neither copied nor changed.
    """
    x = torch.empty(shape, device="meta")
    with torch.no_grad(), _eval_mode(module), _SkipNorms():
        if _on_meta(module):
            return module(x)
        stand_ins = {name: torch.empty_like(t, device="meta")
                     for name, t in [*module.named_parameters(remove_duplicate=False),
                                     *module.named_buffers(remove_duplicate=False)]}
        return torch.func.functional_call(module, stand_ins, (x,), tie_weights=False, strict=False)


def runs_at(module: nn.Module, shape: tuple[int, ...]) -> bool:
    """True when a meta forward at ``shape`` succeeds."""
    try:
        meta_forward(module, shape)
    except Exception:  # any shape error means "no": the caller only needs yes/no
        return False
    return True


class _Found(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def first_conv(module: nn.Module, in_channels: int = 3, px: int = 224) -> tuple[str, nn.Conv2d]:
    """The first ``Conv2d`` the forward pass executes (not merely the first one declared).

    Found by a meta forward at ``px`` that stops at the first convolution; falls back to
    declaration order if the forward never reaches one.
    """
    names = {m: n for n, m in module.named_modules() if isinstance(m, nn.Conv2d)}
    if not names:
        raise LookupError(f"{type(module).__name__} has no Conv2d layer")

    def stop(conv: nn.Module, _args: object) -> None:
        raise _Found(names[conv])

    handles = [conv.register_forward_pre_hook(stop) for conv in names]
    try:
        meta_forward(module, (1, in_channels, px, px))
    except _Found as found:
        return found.name, module.get_submodule(found.name)
    except Exception:
        pass
    finally:
        for h in handles:
            h.remove()
    conv, name = next(iter(names.items()))
    return name, conv


def forward_gflops_per_img(model: nn.Module, image_shape: tuple[int, ...] | None = None,
                           batch: int = 2) -> float:
    """Forward GFLOPs per image counted by ``FlopCounterMode`` (2 FLOPs per multiply-add).

    ``image_shape`` (C, H, W): default the shape an AdaptedModel was built for
    (``in_channels`` x ``input_px`` x ``input_px``), else 1x28x28. Runs on whatever device
    ``model`` is on: give it a meta-device model to count for free.
    """
    from torch.utils.flop_counter import FlopCounterMode

    if image_shape is None:
        px = getattr(model, "input_px", 28)
        image_shape = (getattr(model, "in_channels", 1), px, px)

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x = torch.zeros((batch, *image_shape), device=device)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() / batch / 1e9
