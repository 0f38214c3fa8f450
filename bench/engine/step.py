"""The training step and the evaluation step, eager or over static buffers (CUDA graphs).

:class:`TrainStep` is the plain eager step: forward under autocast, loss, backward (through
the grad scaler for fp16), optional gradient clipping, optimizer step, schedule step.

:class:`StaticTrainStep` is the same step over *static* buffers: each batch is ``copy_``'d
into an input and a target tensor that never move, so the step's kernels always read the same
addresses. On CUDA the step body (forward, loss, backward, clipping, optimizer) is captured once
as a ``torch.cuda.CUDAGraph`` and replayed; elsewhere the same buffers and copies run eagerly,
which is what the CPU tests check against :class:`TrainStep` (numerically equal). What capture
needs, and how it is met:

- the optimizer's learning rate is a device tensor (``lr=torch.tensor(...)``) that the schedule
  updates in place every step (``fill_``, outside the graph), with SGD ``fused=True`` or AdamW
  ``fused=True, capturable=True``: kernels that read the LR (and AdamW's step count) from
  device memory (:func:`graph_optimizer`);
- warm-up steps on a side stream before the capture (cuDNN autotuning, the optimizer's lazy
  state), after which the weights, buffers and optimizer state are put back, so training starts
  from the same state as the eager step would (SGD with dampening 0 and a zeroed momentum
  buffer makes the same first step as a missing buffer; AdamW's state is zeroed with its step);
- ``autocast(cache_enabled=False)`` inside the capture (the autocast weight cache must not
  outlive it);
- the loss is a static output, valid until the next call.

A replay allocates nothing: the step's memory was taken from the graph's private pool during
the capture, and what the step frees inside it stays reserved there, not "allocated". So the
peak of a captured step is the peak measured over its capture (``capture_peak_mib``); the
engine reports the larger of that and the replay's.

:class:`EvalStep` evaluates over static buffers of the evaluation batch size. The last batch of
a split is usually partial: it is padded to the static shape and the padded rows are masked
out of the per-class hit counts, so one capture serves every batch. Padding is exact in eval
mode (every model here treats samples independently at inference: BatchNorm uses running
statistics), whereas a second capture or an eager last batch would cost a capture or a cuDNN
autotune of a new shape per pass. Training has no partial batch: its batches drop the remainder
(``drop_last``), so BatchNorm's batch statistics are never computed over padding.

Capture time is returned by :meth:`StaticTrainStep.prepare` / :meth:`EvalStep.prepare` and
reported as ``capture_s``, never inside a throughput window: the engine prepares before the
first epoch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

LossHook = Callable[[torch.Tensor, int], torch.Tensor]
# Warm-up steps before a capture: cuDNN picks algorithms and the optimizer creates its state on
# the first ones (three, as PyTorch's CUDA-graph notes do).
CAPTURE_WARMUP_STEPS = 3


def autocast_for(precision: str, device: torch.device, *, capture: bool = False
                 ) -> AbstractContextManager[Any]:
    """The autocast context of a step: none for fp32; without the weight-cast cache inside a
    CUDA-graph capture (a cached cast made during capture would be freed after it)."""
    if precision == "fp32":
        return nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device_type=device.type, dtype=dtype, cache_enabled=not capture)


def graph_optimizer(name: str, groups: list[dict[str, Any]], lr: float, momentum: float,
                    nesterov: bool, device: torch.device) -> torch.optim.Optimizer:
    """The optimizer of a captured step: the LR in a device tensor, fused kernels that read it
    there (SGD or AdamW; ``groups`` as :func:`bench.engine.train.make_optimizer` builds them)."""
    lr_t = torch.tensor(lr, dtype=torch.float32, device=device)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr_t, momentum=momentum,
                               nesterov=nesterov and momentum > 0, fused=True)
    # AdamW checks capturable=True when step() runs under a capture (SGD keeps no step count
    # on the host and has no such flag).
    return torch.optim.AdamW(groups, lr=lr_t, fused=True, capturable=True)


class TrainStep:
    """One eager training step; ``step(xb, yb, index)`` returns the loss (detached).

    ``loss_hook(loss, index)`` may replace the loss before backward (the fault-injection test
    hook). ``advance_schedule=False`` leaves the schedule where it is (the extra memory and
    profiler steps after the timed ones).
    """

    graphed = False

    def __init__(self, model: nn.Module, step_model: nn.Module, opt: torch.optim.Optimizer,
                 sched: Any, criterion: nn.Module, precision: str, device: torch.device, *,
                 scaler: torch.amp.GradScaler | None = None, grad_clip: float = 0.0,
                 loss_hook: LossHook | None = None) -> None:
        self.model, self.step_model, self.opt, self.sched = model, step_model, opt, sched
        self.criterion, self.precision, self.device = criterion, precision, device
        self.scaler, self.grad_clip, self.loss_hook = scaler, grad_clip, loss_hook

    def prepare(self, xb: torch.Tensor, yb: torch.Tensor) -> float:
        """Nothing to prepare for an eager step: 0 seconds."""
        return 0.0

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor, index: int,
                 advance_schedule: bool = True) -> torch.Tensor:
        with autocast_for(self.precision, self.device):
            loss = self.criterion(self.step_model(xb), yb)
        if self.loss_hook is not None:
            loss = self.loss_hook(loss, index)
        self.opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            if self.grad_clip:
                self.scaler.unscale_(self.opt)
                nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            loss.backward()
            if self.grad_clip:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            self.opt.step()
        if advance_schedule:
            self.sched.step()
        return loss.detach()


class StaticTrainStep(TrainStep):
    """The training step over static input/target buffers; captured as a CUDA graph on CUDA.

    ``capture``: record a CUDA graph in :meth:`prepare` (needs a CUDA device); without it the
    same buffers and copies run eagerly. The optimizer must come from :func:`graph_optimizer`
    when capturing. No grad scaler and no loss hook: :mod:`bench.plan.fastpath` falls back to
    :class:`TrainStep` for those.
    """

    def __init__(self, model: nn.Module, step_model: nn.Module, opt: torch.optim.Optimizer,
                 sched: Any, criterion: nn.Module, precision: str, device: torch.device, *,
                 grad_clip: float = 0.0, capture: bool = False) -> None:
        super().__init__(model, step_model, opt, sched, criterion, precision, device,
                         grad_clip=grad_clip)
        if capture and device.type != "cuda":
            raise ValueError(f"CUDA-graph capture needs a CUDA device, got {device}")
        self.capture = capture
        self.static_x: torch.Tensor | None = None
        self.static_y: torch.Tensor | None = None
        self.static_loss: torch.Tensor | None = None
        self.graph: Any = None
        self.capture_peak_mib = float("nan")  # MiB allocated at the capture's peak (CUDA)

    @property
    def graphed(self) -> bool:  # type: ignore[override]
        return self.graph is not None

    def _body(self) -> torch.Tensor:
        """Forward, loss, backward, clip, optimizer step on the static buffers (no zero_grad:
        the captured backward writes the gradients it allocated during capture)."""
        assert self.static_x is not None and self.static_y is not None
        with autocast_for(self.precision, self.device, capture=self.capture):
            loss = self.criterion(self.step_model(self.static_x), self.static_y)
        loss.backward()
        if self.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.opt.step()
        return loss.detach()

    def prepare(self, xb: torch.Tensor, yb: torch.Tensor, *,
                warmup_steps: int = CAPTURE_WARMUP_STEPS) -> float:
        """Allocate the static buffers from a sample batch, run ``warmup_steps`` steps, capture
        (CUDA), then restore weights, buffers and optimizer state. Returns seconds spent."""
        t0 = time.perf_counter()
        self.static_x = torch.empty_like(xb, memory_format=torch.contiguous_format)
        self.static_y = torch.empty_like(yb)
        self.static_x.copy_(xb)
        self.static_y.copy_(yb)
        saved = _snapshot(self.model)
        cpu_rng = torch.get_rng_state()
        if self.capture:
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(warmup_steps):
                    self.opt.zero_grad(set_to_none=True)
                    self._body()
            torch.cuda.current_stream(self.device).wait_stream(side)
            self.opt.zero_grad(set_to_none=True)
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.static_loss = self._body()
            torch.cuda.synchronize(self.device)
            self.capture_peak_mib = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            for _ in range(warmup_steps):
                self.opt.zero_grad(set_to_none=True)
                self._body()
        _restore(self.model, saved)
        _zero_optimizer_state(self.opt)
        torch.set_rng_state(cpu_rng)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - t0

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor, index: int,
                 advance_schedule: bool = True) -> torch.Tensor:
        if self.static_x is None:
            raise RuntimeError("StaticTrainStep.prepare() must run before the first step")
        assert self.static_y is not None
        self.static_x.copy_(xb)
        self.static_y.copy_(yb)
        if self.graph is not None:
            self.graph.replay()
            loss = self.static_loss
        else:
            self.opt.zero_grad(set_to_none=True)
            loss = self._body()
        if advance_schedule:
            self.sched.step()  # writes the new LR into the optimizer's LR tensor, in place
        assert loss is not None
        return loss


class EvalStep:
    """Per-class hit counts over a split, batch by batch, on static buffers.

    The last, partial batch is padded to ``batch_size`` and masked (see the module docstring).
    ``capture``: record one CUDA graph of a batch in :meth:`prepare`; otherwise eager.
    """

    def __init__(self, model: nn.Module, batch_size: int, image_shape: tuple[int, ...],
                 num_classes: int, precision: str, device: torch.device, *,
                 capture: bool = False) -> None:
        if capture and device.type != "cuda":
            raise ValueError(f"CUDA-graph capture needs a CUDA device, got {device}")
        self.model, self.batch_size, self.num_classes = model, batch_size, num_classes
        self.precision, self.device, self.capture = precision, device, capture
        self.x = torch.zeros((batch_size, *image_shape), device=device)
        self.y = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.valid = torch.zeros(batch_size, dtype=torch.bool, device=device)
        self.correct = torch.zeros(num_classes, dtype=torch.long, device=device)
        self._rows = torch.arange(batch_size, device=device)
        self.graph: Any = None
        self.capture_peak_mib = float("nan")  # MiB allocated at the capture's peak (CUDA)

    def _body(self) -> None:
        with autocast_for(self.precision, self.device, capture=self.capture):
            hit = (self.model(self.x).argmax(1) == self.y) & self.valid
        self.correct.scatter_add_(0, self.y, hit.long())  # static shape, unlike y[hit]

    @torch.no_grad()
    def prepare(self) -> float:
        """Warm up and capture one evaluation batch (CUDA); seconds spent (0 when eager)."""
        if not self.capture:
            return 0.0
        t0 = time.perf_counter()
        was_training = self.model.training
        self.model.eval()
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                self._body()
        torch.cuda.current_stream(self.device).wait_stream(side)
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._body()
        torch.cuda.synchronize(self.device)
        self.capture_peak_mib = torch.cuda.max_memory_allocated(self.device) / 2**20
        self.model.train(was_training)
        return time.perf_counter() - t0

    def load(self, xb: torch.Tensor, yb: torch.Tensor) -> None:
        """Copy a batch of ``n <= batch_size`` into the buffers; rows from ``n`` on are
        masked (they keep whatever an earlier batch left there)."""
        n = len(yb)
        if n > self.batch_size:
            raise ValueError(f"batch of {n} > the static batch size {self.batch_size}")
        self.x[:n].copy_(xb)
        self.y[:n].copy_(yb)
        torch.lt(self._rows, n, out=self.valid)

    @torch.no_grad()
    def count(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """Per-class correct predictions over ``batches`` (model in eval mode), a new tensor."""
        self.correct.zero_()
        for xb, yb in batches:
            self.load(xb, yb)
            if self.graph is not None:
                self.graph.replay()
            else:
                self._body()
        return self.correct.clone()


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@torch.no_grad()
def _restore(model: nn.Module, saved: dict[str, torch.Tensor]) -> None:
    """Copy ``saved`` back into the model's own tensors, in place (a graph holds their
    addresses, so they must not be replaced)."""
    for key, tensor in model.state_dict().items():
        tensor.copy_(saved[key])


@torch.no_grad()
def _zero_optimizer_state(opt: torch.optim.Optimizer) -> None:
    """Zero every state tensor in place (momentum buffers, Adam moments and step counts):
    the state a fresh optimizer would behave as on its first step (see the module docstring)."""
    for state in opt.state.values():
        for value in state.values():
            if isinstance(value, torch.Tensor):
                value.zero_()


class Steps:
    """The train and eval steps a cell uses, the capture time (s) and a fallback note."""

    def __init__(self, train: TrainStep, eval_step: EvalStep | None, capture_s: float,
                 note: str = "") -> None:
        self.train, self.eval, self.capture_s, self.note = train, eval_step, capture_s, note


def build_steps(model: nn.Module, step_model: nn.Module,
                make_opt: Callable[[bool], torch.optim.Optimizer],
                make_sched: Callable[[torch.optim.Optimizer], Any], criterion: nn.Module,
                precision: str, device: torch.device, *, graphs: bool,
                sample: tuple[torch.Tensor, torch.Tensor] | None, eval_batch_size: int,
                num_classes: int, grad_clip: float = 0.0,
                scaler: torch.amp.GradScaler | None = None,
                loss_hook: LossHook | None = None) -> Steps:
    """The cell's steps: captured (``graphs``: training and evaluation, prepared here, before
    any timed step) or eager. ``make_opt(for_graphs)`` builds the optimizer
    (:func:`graph_optimizer` when true), ``make_sched(opt)`` its schedule; ``sample``: a
    training batch (graphs only) that sizes the static buffers. A capture that fails
    (an operation a graph cannot hold) restores the model and falls back to the eager step;
    the returned note says why. Out-of-memory is raised: the cell is ``oom``, not slower.
    """
    if graphs:
        if sample is None:
            raise ValueError("graphs need a sample batch for the static buffers")
        saved = _snapshot(model)
        opt = make_opt(True)
        train = StaticTrainStep(model, step_model, opt, make_sched(opt), criterion, precision,
                                device, grad_clip=grad_clip, capture=True)
        evaluator = EvalStep(model, eval_batch_size, tuple(sample[0].shape[1:]), num_classes,
                             precision, device, capture=True)
        try:
            capture_s = train.prepare(*sample)
            capture_s += evaluator.prepare()
            return Steps(train, evaluator, capture_s)
        except torch.cuda.OutOfMemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - any capture failure: run the eager step
            del train, evaluator
            torch.cuda.synchronize(device)
            _restore(model, saved)
            first = (str(exc).splitlines() or [""])[0][:200]
            note = f"graphs: capture failed ({type(exc).__name__}: {first}), eager step"
    else:
        note = ""
    opt = make_opt(False)
    train = TrainStep(model, step_model, opt, make_sched(opt), criterion, precision, device,
                      scaler=scaler, grad_clip=grad_clip, loss_hook=loss_hook)
    return Steps(train, None, 0.0, note)
