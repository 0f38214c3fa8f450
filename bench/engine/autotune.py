"""Precision and layout ``"auto"`` on a CPU, decided by measuring, once per model per sweep.

The ISA rule (:func:`bench.device.auto_recipe`) says what a CPU *can* run natively; it cannot
say what is fastest for a given cell. On a 2-core AMX Xeon (family 6 model 167) the rule's bf16 +
channels_last ran resnet18 repeat3 at 317 img/s where fp32 NCHW ran at 388, and vgg16 resize32 at
8.5 against 11.8 (``python -m bench.tools.overhead --profile cpu``,
results/cpu/overhead-profile-cpu.json), while on an AVX512_BF16 EPYC bf16 was the fast one for
VGG16. So on CPU the sweep times the candidates the ISA allows and keeps the fastest:

- candidates: bf16 only where the CPU multiplies it natively (AVX512_BF16 / AMX-BF16: emulated
  bf16 is ~100x slower and is never tried), channels_last and NCHW; only for the keys that are
  ``"auto"`` (a key the config fixes stays fixed);
- the cell probed is the model's costliest strategy in the grid (the most forward GFLOPs per
  image: the one that dominates the model's cost), with the recipe's batch size, optimizer and
  gradient clipping, on random inputs of the dataset's shape;
- each candidate gets :data:`WARMUP_STEPS` untimed steps, then :data:`ROUNDS` rounds of
  :data:`STEPS` timed whole steps, the candidates interleaved within a round so that a change of
  machine speed hits all alike; a candidate's figure is its best round (load only ever slows a
  round, so the minimum is the least disturbed);
- fp32 NCHW, the plain default, is kept unless another candidate's best round is more than
  :data:`MARGIN` faster: bf16 also changes the numerics, so it has to pay clearly.

One decision per model (every strategy of the model runs with it: one mode per comparison),
saved in the results directory as ``auto-choices.json`` keyed by the device identity and what
the probe ran, so a resumed sweep reuses it and every row of the directory agrees. The decision
reaches the cells as the config key ``auto_choices`` (``model=precision/layout``), which
:func:`bench.config.resolve_auto` reads before the ISA rule; rows record the resolved values.
CUDA keeps the rule (bf16 where supported, channels_last); executors that run cells on other
machines (ray, submitit) keep it too, since this process would measure the wrong hardware.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.config import Cell, Config, for_model

WARMUP_STEPS = 2  # first-call costs (allocation, kernel selection) stay out
STEPS = 2  # timed whole steps per round
ROUNDS = 3  # interleaved rounds; a candidate's figure is its best round
MARGIN = 0.05  # how much faster (fraction of img/s) a candidate must be than fp32 NCHW
FILE = "auto-choices.json"


@dataclass(frozen=True)
class Candidate:
    precision: str  # "fp32" | "bf16"
    channels_last: bool

    @property
    def name(self) -> str:
        return f"{self.precision} {'channels_last' if self.channels_last else 'NCHW'}"

    @property
    def entry(self) -> str:
        """The ``auto_choices`` value: ``precision/layout``."""
        return f"{self.precision}/{'channels_last' if self.channels_last else 'nchw'}"


PLAIN = Candidate("fp32", False)


def candidates(cfg: Config, flags: list[str]) -> list[Candidate]:
    """What the probe tries for ``cfg`` (one model's recipe) on a CPU with ``flags``; plain
    fp32 NCHW first. One candidate means there is nothing to measure."""
    from bench.device import _NATIVE_BF16

    if cfg.precision == "auto":
        precisions = ["fp32"] + (["bf16"] if any(f in flags for f in _NATIVE_BF16) else [])
    else:
        precisions = [cfg.precision]
    layouts = [False, True] if cfg.channels_last == "auto" else [bool(cfg.channels_last)]
    return [Candidate(p, cl) for p in precisions for cl in layouts]


def probe(cfg: Config, cell: Cell, options: list[Candidate], threads: int = 0,
          clock: Callable[[], float] = time.perf_counter) -> dict[Candidate, float]:
    """Best-round img/s of each candidate for ``cell`` trained with ``cfg``'s recipe on CPU.

    ``threads`` > 0 sets torch's intra-op threads for the probe (restored after), as the cells
    will run with; 0 keeps this process's.
    """
    import strategies
    from bench import data as data_mod
    from bench.engine.step import TrainStep
    from bench.engine.train import make_optimizer

    info = data_mod.get_info(cell.dataset, cfg.data_root or None)
    dev = torch.device("cpu")
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        x = torch.randn(cfg.batch_size, *info.shape)
        y = torch.randint(0, info.num_classes, (cfg.batch_size,))
        steps: dict[Candidate, tuple[TrainStep, torch.Tensor]] = {}
        for cand in options:
            torch.manual_seed(cell.seed)
            model = strategies.build(cell.model, cell.strategy, num_classes=info.num_classes,
                                     device=dev, input_px=info.shape[1],
                                     in_channels=info.shape[0])
            layout = torch.channels_last if cand.channels_last else torch.contiguous_format
            model = model.to(memory_format=layout).train()
            step = TrainStep(model, model, make_optimizer(cfg, model), None,
                             nn.CrossEntropyLoss(), cand.precision, dev, grad_clip=cfg.grad_clip)
            xb = x.contiguous(memory_format=layout)
            for i in range(WARMUP_STEPS):
                step(xb, y, i, advance_schedule=False)
            steps[cand] = (step, xb)
        best = {cand: 0.0 for cand in options}
        for _ in range(ROUNDS):
            for cand, (step, xb) in steps.items():
                t0 = clock()
                for i in range(STEPS):
                    step(xb, y, i, advance_schedule=False)
                seconds = clock() - t0
                if seconds > 0:
                    best[cand] = max(best[cand], STEPS * cfg.batch_size / seconds)
        return best
    finally:
        torch.set_num_threads(before)
        gc.collect()


def decide(rates: dict[Candidate, float]) -> Candidate:
    """The fastest candidate, unless it beats plain fp32 NCHW by no more than :data:`MARGIN`."""
    fastest = max(rates, key=lambda c: rates[c])
    plain = rates.get(PLAIN)
    if plain and rates[fastest] <= (1.0 + MARGIN) * plain:
        return PLAIN
    return fastest


def probe_key(device_id: str, cfg: Config, cell: Cell, threads: int) -> str:
    """What a saved decision is valid for: the device identity and what the probe ran."""
    return (f"{device_id} | {cell.model} | {cell.strategy} | {cell.dataset} | batch "
            f"{cfg.batch_size} | {cfg.optimizer} | clip {cfg.grad_clip} | threads {threads} | "
            f"precision {cfg.precision} | channels_last {cfg.channels_last}")


def load_saved(results_dir: Path) -> dict[str, Any]:
    """The saved decisions of ``results_dir`` (``{}`` when none, or unreadable: re-probed)."""
    try:
        doc = json.loads((results_dir / FILE).read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def resolve_for_sweep(cfg: Config, cells: list[Cell], device: str, device_id: str,
                      results_dir: Path | None, flags: list[str], threads: int,
                      say: Callable[[str], None] | None = None,
                      prober: Callable[..., dict[Candidate, float]] = probe,
                      save: bool = True) -> Config:
    """``cfg`` with ``auto_choices`` set for every model of ``cells`` whose precision or layout
    is ``"auto"`` on this CPU: a saved decision of ``results_dir`` when one matches, else a
    probe (saved there). Unchanged on CUDA, or when nothing is ``"auto"``. ``flags``: the CPU's
    speed flags; ``threads``: the torch threads each cell will run with; ``save=False`` reads
    saved decisions but writes none (a tool asking what the sweep would run)."""
    if not device.startswith("cpu"):
        return cfg
    from bench import results
    from bench.data import get_info
    from bench.plan.fastpath import costliest_gflops

    saved = load_saved(results_dir) if results_dir else {}
    choices = dict(entry.split("=", 1) for entry in cfg.auto_choices)
    changed = False
    for model in dict.fromkeys(c.model for c in cells):
        recipe = for_model(cfg, model)
        if model in choices or "auto" not in (recipe.precision, recipe.channels_last):
            continue
        options = candidates(recipe, flags)
        if len(options) == 1:
            choices[model] = options[0].entry
            continue
        first = next(c for c in cells if c.model == model)
        info = get_info(first.dataset, cfg.data_root or None)
        strategy_names = tuple(dict.fromkeys(c.strategy for c in cells if c.model == model))
        _, strategy = costliest_gflops(model, strategy_names, info.num_classes,
                                       tuple(info.shape))
        if not strategy:
            continue  # nothing of this model can run: its cells are recorded incompatible
        cell = Cell(first.dataset, model, strategy, 0)
        n_threads = recipe.num_threads or threads
        key = probe_key(device_id, recipe, cell, n_threads)
        entry = saved.get(key)
        if isinstance(entry, dict) and isinstance(entry.get("choice"), str):
            choices[model] = entry["choice"]
            if say:
                say(f"precision/layout auto for {model}: {entry['choice']} (measured earlier, "
                    f"{results_dir / FILE})")
            continue
        if say:
            say(f"precision/layout auto for {model}: timing "
                f"{', '.join(c.name for c in options)} on {strategy} (batch "
                f"{recipe.batch_size}, best of {ROUNDS} rounds of {STEPS} steps)")
        rates = prober(recipe, cell, options, n_threads)
        choice = decide(rates)
        choices[model] = choice.entry
        saved[key] = {"choice": choice.entry, "measured_at": results.now_iso(),
                      "img_s": {c.name: round(r, 2) for c, r in rates.items()},
                      "rule": f"fastest; fp32 NCHW unless beaten by more than {MARGIN:.0%}"}
        changed = True
        if say:
            say(f"precision/layout auto for {model}: {choice.name} ("
                + ", ".join(f"{c.name} {r:.1f}" for c, r in rates.items()) + " img/s)")
    if changed and save and results_dir is not None:
        results.atomic_write_text(results_dir / FILE, json.dumps(saved, indent=2) + "\n")
    entries = tuple(f"{m}={v}" for m, v in choices.items())
    return cfg if entries == cfg.auto_choices else cfg.replace(auto_choices=entries)
