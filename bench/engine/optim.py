"""The recipe's optimizer (SGD or AdamW, no weight decay on biases and norms) and its per-step
learning-rate schedule (warm-up, then cosine, constant or one-cycle).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bench.config import Config
from bench.engine import step as step_mod


def make_optimizer(cfg: Config, model: nn.Module, *, for_graphs: bool = False,
                   device: torch.device | None = None) -> torch.optim.Optimizer:
    """SGD or AdamW over two groups (no weight decay on biases and norm parameters);
    ``for_graphs``: the capturable form, LR in a tensor on ``device``
    (:func:`bench.engine.step.graph_optimizer`)."""
    # No weight decay on biases and norm parameters: the usual, and it keeps BN models stable.
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if for_graphs:
        return step_mod.graph_optimizer(cfg.optimizer, groups, cfg.lr, cfg.momentum,
                                        cfg.nesterov, device or torch.device("cpu"))
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=cfg.nesterov and cfg.momentum > 0)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def make_schedule(cfg: Config, opt: torch.optim.Optimizer, total_steps: int):
    """Per-step LR multiplier: linear warm-up to ``lr``, then cosine to 0 (or constant)."""
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=cfg.lr, total_steps=max(total_steps, 1),
            pct_start=max(cfg.warmup_frac, 0.01), cycle_momentum=cfg.optimizer == "sgd")
    warmup = int(cfg.warmup_frac * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if cfg.schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)
