"""A cell's expected seconds before it runs: a few timed steps on random data, scaled to the recipe's
epochs and evaluations.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from bench.config import Cell, Config
from bench.engine import measure
from bench.engine.backend import resolve_device
from bench.engine.evaluate import autocast
from bench.engine.meta import Incompatible, inspect_on_meta
from bench.identity import effective


def estimate_cell_s(cfg: Config, cell: Cell, device: str | torch.device = "auto",
                    probe_steps: int = 3) -> float:
    """Seconds the cell will take: a few timed steps on random data, scaled to the recipe.

    Training = epochs x steps/epoch x step time; evaluation ~ 1/3 of a training step per image
    (forward only) per epoch. Incompatible cells estimate to 0 (they stop at the meta check).
    """
    import strategies
    from bench import data as data_mod

    dev = resolve_device(device)
    cfg = effective(cfg, cell, dev)
    info = data_mod.get_info(cell.dataset, cfg.data_root or None)
    try:
        inspect_on_meta(cell, info.num_classes, info.shape)
    except Incompatible:
        return 0.0
    model = strategies.build(cell.model, cell.strategy, num_classes=info.num_classes, device=dev,
                             input_px=info.shape[1], in_channels=info.shape[0])
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    bs = cfg.batch_size
    x = torch.randn(bs, *info.shape, device=dev)
    y = torch.randint(0, info.num_classes, (bs,), device=dev)
    amp = autocast(cfg, dev)  # the cell's precision, as training runs it
    times = []
    for i in range(probe_steps + 1):
        measure.synchronize(dev)
        t0 = time.perf_counter()
        with amp:
            loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        measure.synchronize(dev)
        if i:  # the first step pays allocation and autotuning
            times.append(time.perf_counter() - t0)
    step_s = statistics.median(times)
    n_train = cfg.train_size or getattr(info, "train_count", 60000)
    n_test = cfg.test_size or getattr(info, "test_count", 10000)
    steps = max(1, n_train // bs)
    if cfg.max_steps_per_epoch:
        steps = min(steps, cfg.max_steps_per_epoch)
    train_est = cfg.epochs * steps * step_s
    eval_est = cfg.epochs * (n_test / bs) * step_s / 3
    return train_est + eval_est
