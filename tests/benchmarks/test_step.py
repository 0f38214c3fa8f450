"""Micro-benchmarks: one training step and one forward pass per (model, strategy) cell.

Each cell's model comes from ``strategies.build`` and takes the raw (N, 1, 28, 28) batch, so
the input adaptation (resize, channel repeat, ConvTranspose stem) is inside the timed call.
The batch is fixed, synthetic and already on the device: no data loading is timed here
(``test_pipeline.py`` times that). Every cell runs under the same settings, so its strategies
compare fairly: contiguous (NCHW) layout, fp32, ``cudnn.benchmark`` pinned by the conftest, and
the same rounds and warm-up (recorded in ``extra_info``). Results are grouped by model, so ``--benchmark-only`` prints
one table per model comparing its strategies, forward and training step side by side.

Run: ``pytest --benchmark-only`` (timed) or plain ``pytest`` (each body once, untimed).
"""

from __future__ import annotations

import torch
from torch import nn

from bench.config import Config
from bench.engine.train import make_optimizer


def _group(cell, micro, device) -> str:
    return f"{cell.model}: forward & train step, batch {micro.batch_size}, {device.type}"


def test_forward(benchmark, cell, adapted_model, micro, device, mnist_like_batch, measure):
    """Inference forward (eval mode, no autograd) of one batch."""
    benchmark.group = _group(cell, micro, device)
    model = adapted_model.eval()
    x, _ = mnist_like_batch(micro.batch_size)

    def forward() -> torch.Tensor:
        with torch.no_grad():
            return model(x)

    logits = measure.run(benchmark, forward, rounds=micro.forward_rounds,
                         warmup=micro.forward_warmup)

    assert logits.shape == (micro.batch_size, 10)
    resident = [*model.parameters(), *model.buffers(), x]
    measure.record(
        benchmark,
        images_per_round=micro.batch_size,
        gflops_per_img=measure.gflops_fwd_per_img(cell.model, cell.strategy),
        memory_of=forward,
        resident=resident,
        input_px=model.effective_input_px,
    )


def test_train_step(benchmark, cell, adapted_model, micro, device, mnist_like_batch, measure):
    """zero_grad + forward + cross-entropy + backward + optimizer step on one batch.

    The optimizer is the harness's (``bench.engine.train.make_optimizer`` with the default recipe:
    SGD, Nesterov momentum, weight decay). Gradients are cleared first, so none are alive
    during the forward pass.
    """
    benchmark.group = _group(cell, micro, device)
    model = adapted_model.train()
    x, y = mnist_like_batch(micro.batch_size)
    opt = make_optimizer(Config(), model)
    criterion = nn.CrossEntropyLoss()

    def step() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = criterion(model(x), y)
        loss.backward()
        opt.step()
        return loss.detach()

    loss = measure.run(benchmark, step, rounds=micro.step_rounds, warmup=micro.step_warmup)

    assert torch.isfinite(loss), f"non-finite loss {loss.item()}"
    opt.zero_grad(set_to_none=True)  # see peak_mem_mib: nothing freed that predates the call
    state = [t for s in opt.state.values() for t in s.values()]
    resident = [*model.parameters(), *model.buffers(), *state, x, y]
    measure.record(
        benchmark,
        images_per_round=micro.batch_size,
        # Training ~ 3x the forward FLOPs (forward, grad wrt activations, grad wrt weights).
        gflops_per_img=3 * measure.gflops_fwd_per_img(cell.model, cell.strategy),
        memory_of=step,
        resident=resident,
        input_px=model.effective_input_px,
    )


def test_peak_mem_mib_sees_a_known_allocation(device, measure):
    """The memory helper itself: a 4 MiB temporary must show up (plain ``pytest`` only)."""
    resident = torch.zeros(1024, 1024, device=device)  # 4 MiB alive before the call

    def allocate() -> None:
        torch.ones(1024, 1024, device=device).sum()

    peak = measure.peak_mem_mib(allocate, device, [resident])
    assert peak >= 8.0, peak
    if device.type == "cpu":  # CUDA's figure also counts whatever else is allocated
        assert peak < 9.0, peak
