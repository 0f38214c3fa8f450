"""The static (CUDA-graph) step on the CPU: same buffers, copies, restore and masks, run eagerly.

A tiny conv net with BatchNorm (running statistics, a step counter) and Dropout (the RNG) keeps
each test well under a second. The CUDA tests at the end capture for real and skip without a GPU.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.config import Config
from bench.engine import step as step_mod
from bench.engine import train

CFG = Config(batch_size=8, lr=0.05, warmup_frac=0.5, schedule="cosine", grad_clip=1.0)
STEPS = 6


def tiny_net() -> nn.Module:
    # No conv bias before BatchNorm (as torchvision builds them): its gradient is rounding
    # noise, which Adam's normalised update would amplify into a difference of kernels.
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Dropout(0.2),
                         nn.Linear(16, 10))


def data(n: int = STEPS * 8, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


def train_steps(static: bool, cfg: Config = CFG, device: str = "cpu", capture: bool = False
                ) -> tuple[nn.Module, list[float], list[float], torch.optim.Optimizer]:
    """Run STEPS steps with the plain step or the static one; (model, losses, lrs, opt)."""
    dev = torch.device(device)
    model = tiny_net().to(dev)
    x, y = (t.to(dev) for t in data())
    criterion = nn.CrossEntropyLoss()
    opt = train.make_optimizer(cfg, model, for_graphs=static, device=dev)
    sched = train.make_schedule(cfg, opt, STEPS)
    if static:
        step = step_mod.StaticTrainStep(model, model, opt, sched, criterion, cfg.precision, dev,
                                        grad_clip=cfg.grad_clip, capture=capture)
        step.prepare(x[:8], y[:8])
    else:
        step = step_mod.TrainStep(model, model, opt, sched, criterion, cfg.precision, dev,
                                  grad_clip=cfg.grad_clip)
    torch.manual_seed(123)  # the same dropout masks for both runs from here on
    losses, lrs = [], []
    for i in range(STEPS):
        lrs.append(float(opt.param_groups[0]["lr"]))
        losses.append(float(step(x[i * 8:(i + 1) * 8], y[i * 8:(i + 1) * 8], i)))
    return model, losses, lrs, opt


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_static_step_equals_the_plain_step(optimizer: str) -> None:
    cfg = CFG.replace(optimizer=optimizer)
    plain, plain_losses, plain_lrs, _ = train_steps(False, cfg)
    static, static_losses, static_lrs, opt = train_steps(True, cfg)
    # The LR lives in a tensor the schedule updates in place: same values, every step.
    assert isinstance(opt.param_groups[0]["lr"], torch.Tensor)
    assert static_lrs == pytest.approx(plain_lrs, rel=1e-6) and len(set(plain_lrs)) > 3
    # Warm-up steps ran in prepare() and were undone: training starts from the same state.
    assert static_losses == pytest.approx(plain_losses, rel=1e-5, abs=1e-6)
    for (name, a), b in zip(plain.state_dict().items(), static.state_dict().values(),
                            strict=True):
        assert torch.allclose(a.float(), b.float(), rtol=1e-5, atol=1e-6), name
    assert int(static[1].num_batches_tracked) == STEPS  # not STEPS + the warm-up steps


def test_prepare_restores_weights_buffers_and_optimizer_state() -> None:
    model = tiny_net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = train.make_optimizer(CFG, model, for_graphs=True, device=torch.device("cpu"))
    sched = train.make_schedule(CFG, opt, STEPS)
    step = step_mod.StaticTrainStep(model, model, opt, sched, nn.CrossEntropyLoss(), "fp32",
                                    torch.device("cpu"))
    x, y = data(8)
    seconds = step.prepare(x, y, warmup_steps=3)
    assert seconds >= 0 and not step.graphed  # no capture on the CPU: eager replay
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    bufs = [s["momentum_buffer"] for s in opt.state.values()]
    assert bufs and all(torch.count_nonzero(b) == 0 for b in bufs)
    # The static buffers hold the batch the step was prepared with, in their own storage.
    assert torch.equal(step.static_x, x) and step.static_x.data_ptr() != x.data_ptr()


def test_static_step_refuses_capture_off_cuda_and_use_before_prepare() -> None:
    model = tiny_net()
    opt = train.make_optimizer(CFG, model, for_graphs=True)
    sched = train.make_schedule(CFG, opt, STEPS)
    with pytest.raises(ValueError, match="needs a CUDA device"):
        step_mod.StaticTrainStep(model, model, opt, sched, nn.CrossEntropyLoss(), "fp32",
                                 torch.device("cpu"), capture=True)
    step = step_mod.StaticTrainStep(model, model, opt, sched, nn.CrossEntropyLoss(), "fp32",
                                    torch.device("cpu"))
    with pytest.raises(RuntimeError, match="prepare"):
        step(*data(8), 0)


def test_eval_step_pads_and_masks_the_partial_last_batch() -> None:
    model = tiny_net().eval()
    x, y = data(37)  # batches of 16: 16, 16 and a partial 5
    evaluator = step_mod.EvalStep(model, 16, (1, 8, 8), 10, "fp32", torch.device("cpu"))
    # Stale rows from a full batch sit in the buffers when the partial one arrives.
    got = evaluator.count([(x[i:i + 16], y[i:i + 16]) for i in range(0, 37, 16)])
    with torch.no_grad():
        hit = model(x).argmax(1) == y
    want = torch.bincount(y[hit], minlength=10)
    assert torch.equal(got, want) and int(got.sum()) <= 37
    assert evaluator.valid.tolist() == [True] * 5 + [False] * 11
    with pytest.raises(ValueError, match="static batch size"):
        evaluator.load(*data(17))


def test_evaluate_with_the_eval_step_equals_the_plain_evaluation() -> None:
    model = tiny_net()
    x_u8 = torch.randint(0, 256, (45, 1, 8, 8), dtype=torch.uint8)
    y = torch.randint(0, 10, (45,))
    cfg = Config()
    dev = torch.device("cpu")
    plain = train.evaluate(model, x_u8, y, 16, 0.13, 0.31, 10, cfg, dev)
    evaluator = step_mod.EvalStep(model, 16, (1, 8, 8), 10, "fp32", dev)
    static = train.evaluate(model, x_u8, y, 16, 0.13, 0.31, 10, cfg, dev, evaluator)
    assert static[0] == plain[0] and static[1] == plain[1] and model.training


def test_build_steps_without_graphs_is_the_plain_step() -> None:
    model = tiny_net()
    made: list[bool] = []

    def make_opt(for_graphs: bool) -> torch.optim.Optimizer:
        made.append(for_graphs)
        return train.make_optimizer(CFG, model, for_graphs=for_graphs)

    steps = step_mod.build_steps(model, model, make_opt,
                                 lambda opt: train.make_schedule(CFG, opt, STEPS),
                                 nn.CrossEntropyLoss(), "fp32", torch.device("cpu"),
                                 graphs=False, sample=None, eval_batch_size=16,
                                 num_classes=10)
    assert type(steps.train) is step_mod.TrainStep and steps.eval is None
    assert steps.capture_s == 0 and made == [False] and not steps.train.graphed


# --- on a GPU: the capture itself ------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_captured_step_matches_the_eager_step_on_cuda(optimizer: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = CFG.replace(optimizer=optimizer)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    plain, plain_losses, _, _ = train_steps(False, cfg, "cuda")
    graphed, graph_losses, _, _ = train_steps(True, cfg, "cuda", capture=True)
    # Dropout masks differ on the GPU (graph-safe RNG offsets), so allow training noise.
    assert graph_losses == pytest.approx(plain_losses, rel=0.05)


@pytest.mark.gpu
def test_captured_eval_counts_match_on_cuda() -> None:
    dev = torch.device("cuda")
    model = tiny_net().to(dev).eval()
    x, y = (t.to(dev) for t in data(37))
    evaluator = step_mod.EvalStep(model, 16, (1, 8, 8), 10, "fp32", dev, capture=True)
    assert evaluator.prepare() > 0 and evaluator.graph is not None
    got = evaluator.count([(x[i:i + 16], y[i:i + 16]) for i in range(0, 37, 16)])
    with torch.no_grad():
        hit = model(x).argmax(1) == y
    assert torch.equal(got, torch.bincount(y[hit], minlength=10))
