"""Evaluation: accuracy, per-class accuracy and images per second over a whole split, under the cell's
autocast precision.
"""

from __future__ import annotations

import time
from contextlib import nullcontext

import torch
from torch import nn

from bench.config import Config
from bench.engine import measure
from bench.engine import step as step_mod

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

def autocast(cfg: Config, device: torch.device):
    if cfg.precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=PRECISIONS[cfg.precision])


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, mean: float,
             std: float, num_classes: int, cfg: Config, device: torch.device,
             eval_step: step_mod.EvalStep | None = None) -> tuple[float, list[float], float]:
    """Accuracy, per-class accuracy and eval throughput (img/s) over the whole split;
    ``eval_step``: count on its static (captured) buffers instead of eagerly."""
    from bench.data import batches

    model.eval()
    correct = torch.zeros(num_classes, dtype=torch.long, device=device)
    measure.synchronize(device)
    t0 = time.perf_counter()
    split = batches(x, y, batch_size, mean=mean, std=std, shuffle=False, drop_last=False)
    if eval_step is not None:
        correct = eval_step.count(split)
    else:
        with autocast(cfg, device):
            for xb, yb in split:
                hit = model(xb).argmax(1) == yb
                correct += torch.bincount(yb[hit], minlength=num_classes)
    measure.synchronize(device)
    elapsed = time.perf_counter() - t0
    model.train()
    totals = torch.bincount(y, minlength=num_classes).clamp(min=1)
    per_class = (correct.float() / totals.float()).tolist()
    acc = correct.sum().item() / max(1, len(y))
    return acc, per_class, len(y) / elapsed if elapsed > 0 else float("nan")
