"""How much does the harness cost? Engine throughput vs a bare training loop, side by side.

The engine is :func:`bench.engine.train.run_cell` in measure-only mode. The bare loop is what a user
would write: take the next batch from ``bench.data.batches`` (the same generator, the same
uint8 data on the device, the same seed, so the same indexing and normalisation work), then
forward, loss, ``zero_grad``, backward, optimizer step. Everything else is shared: model,
strategy, batch size, optimizer (``bench.engine.train.make_optimizer``), precision (fp32), backend
flags, thread count, warm-up steps excluded, and timing windows of ``--window-steps``
consecutive whole steps (batch preparation included), each bounded by a device sync and a
clock read. What the engine adds on top (LR schedule, loss accumulator, finiteness check, the
meter) is the overhead being measured; none of it is excluded.

Both run in this one process, interleaved, in alternating order (bare, engine, engine, bare,
...) so that drift in the machine's speed hits both alike. Each side's figure for a round is
the median img/s over its windows; each side's figure reported is the median over rounds, and
the ratio is the median over rounds of that round's engine / bare (goal: >= 0.97).

``--profile NAME`` asks a different question: is the harness, run as that profile runs it, as
fast as the fastest plain loop a user could write for the same cell? The engine takes the
profile's recipe for the model (batch size, optimizer, learning rate, gradient clipping,
precision and layout as ``"auto"`` resolves them on this device: on CPU what the profile's sweep
measured, ``bench.engine.autotune``, read from ``--results DIR`` or measured now).
The bare side is not fixed to that precision and layout: it tries each of
:data:`BARE_VARIANTS` (fp32 NCHW, fp32 channels_last, bf16 autocast + channels_last) on the
same batches and recipe, clipping where the recipe clips, and keeps the fastest. Choosing is a
short probe per variant (:func:`probe_variants`): a warm-up step, then ``--probe-steps`` timed
steps. A variant is dropped early, with the proof, as soon as it cannot win: when its forward
pass alone (no backward, no optimizer) already takes as long as a whole step of the fastest
variant so far, or when its first timed steps already took longer than the fastest variant's
whole probe. That is what keeps an emulated bf16 step (~90 s for VGG16 on an AVX2 CPU) from
costing minutes. The fastest variant, and any within ``--margin`` of it, then run the
interleaved rounds against the engine. Each round is scored against the variant fastest over
the other rounds (:func:`paired_ratio`: picking the best median over the very rounds it then
divides into would favour the bare side by luck alone), and the ratio is the median of the
per-round engine/bare ratios. Goal for the ratio: >= 0.9 (:data:`PROFILE_GOAL`). The bare loop
in the engine's own precision and layout always runs the rounds too, so a second ratio, engine /
that loop, is the harness's cost alone: the two differ when the model's precision and layout,
decided once per model on its costliest strategy (``bench.engine.autotune``), are not the
fastest for the cell timed here.

    python -m bench.tools.overhead                       # resnet18 repeat3 and vgg16 post-convtranspose
    python -m bench.tools.overhead --cells resnet18:repeat3 --rounds 5 --windows 5
    python -m bench.tools.overhead --profile cpu         # resnet18 repeat3 and vgg16 resize32, batch 32

The last line printed is the worst (lowest) engine/bare ratio. Exit codes: 0 measured, 2 bad
input (including ``--window-steps`` under 10: shorter windows are dominated by the clock reads
and syncs at their ends and do not measure steady-state throughput), refused with one line on
stderr before anything is measured.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import torch
from torch import nn

from bench.config import Cell, Config, for_model
from bench.engine import measure
from bench.engine.train import make_optimizer, resolve_device, run_cell
from bench.schema import Status

DEFAULT_CELLS = ("resnet18:repeat3:64", "vgg16:post-convtranspose:16")
# With --profile: the profile's cheapest native-size cell of each model (batch from the profile).
PROFILE_CELLS = ("resnet18:repeat3", "vgg16:resize32")
PROFILE_GOAL = 0.9  # engine / fastest bare loop, at a profile's settings
MIN_WINDOW_STEPS = 10
SEED = 0


@dataclass(frozen=True)
class Variant:
    """How a plain loop may run a step: compute precision (autocast) and memory layout."""

    name: str
    precision: str  # "fp32" | "bf16" (autocast)
    channels_last: bool  # model and input batches in NHWC


FP32_NCHW = Variant("fp32 NCHW", "fp32", False)
# Ordered by how likely each is to win on a CPU without native bf16, so that the early-drop
# rules of probe_variants have a fast reference early; the order never decides the winner.
BARE_VARIANTS = (FP32_NCHW, Variant("fp32 channels_last", "fp32", True),
                 Variant("bf16 autocast + channels_last", "bf16", True))
# Not probed, but run when the engine's precision and layout is one of them (engine_variant).
EXTRA_VARIANTS = (Variant("bf16 autocast + NCHW", "bf16", False),)


@dataclass
class Probe:
    """One variant's probe: img/s over its timed steps, or NaN and why it was dropped."""

    variant: Variant
    img_s: float = float("nan")
    dropped: str = ""  # "" when probed to the end; else the proof it is slower

    def to_dict(self) -> dict[str, object]:
        return {"variant": self.variant.name, "precision": self.variant.precision,
                "channels_last": self.variant.channels_last, "probe_img_s": self.img_s,
                "dropped": self.dropped}


class OneLineParser(argparse.ArgumentParser):
    """Bad input is one line on stderr (what was wrong, what is valid) and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def cell_config(batch_size: int, warmup_steps: int, window_steps: int, windows: int,
                threads: int, data_root: str = "") -> Config:
    """The recipe both sides run: one epoch holds the warm-up and every timed step.

    An epoch boundary ends the engine's open window, so ``train_size`` is sized for
    ``warmup_steps + windows * window_steps`` full batches. No clipping (per_model would clip
    VGG): clipping is recipe, not harness, cost; the bare loop does not clip either.
    """
    if window_steps < MIN_WINDOW_STEPS:
        raise ValueError(f"window_steps={window_steps}: windows shorter than "
                         f"{MIN_WINDOW_STEPS} steps are refused")
    steps = warmup_steps + windows * window_steps
    return Config(batch_size=batch_size, train_size=batch_size * steps, test_size=100,
                  warmup_steps=warmup_steps, window_steps=window_steps,
                  measure_only_steps=steps, max_steps_per_epoch=0, profile_steps=0,
                  grad_clip=0.0, per_model=(), precision="fp32", channels_last=False,
                  compile=False, num_threads=threads, data_root=data_root, peak_tflops=1.0)


# Recipe keys a --profile run takes from the profile (as resolved for the model and device).
# Left out: batch_size (the cell's), num_threads (the tool's), per_model (already applied),
# epochs (a measure-only run counts steps) and weights (the values do not change the speed).
PROFILE_RECIPE_KEYS = ("optimizer", "lr", "momentum", "nesterov", "weight_decay", "schedule",
                       "warmup_frac", "label_smoothing", "grad_clip", "precision",
                       "channels_last", "compile", "deterministic")


def profile_cell_config(profile: Config, model_name: str, batch_size: int, warmup_steps: int,
                        window_steps: int, windows: int, threads: int,
                        device: torch.device) -> Config:
    """:func:`cell_config`'s timing with ``profile``'s recipe for ``model_name`` on ``device``
    (per_model entries applied, ``"auto"`` precision and layout resolved): what that profile's
    cells train with, gradient clipping included, so both sides do the recipe's work."""
    from bench.identity import effective

    # The recipe depends on the model (per_model) and the dataset, not on the strategy.
    recipe = effective(profile, Cell("mnist", model_name, "repeat3", SEED), device)
    base = cell_config(batch_size, warmup_steps, window_steps, windows, threads,
                       profile.data_root)
    return base.replace(**{key: getattr(recipe, key) for key in PROFILE_RECIPE_KEYS})


class BareLoop:
    """A plain training loop: what a user would write around the engine's batches.

    Same model build, seed, optimizer (:func:`bench.engine.train.make_optimizer`), loss and batches
    (``bench.data.batches`` over the engine's uint8 subset, epoch 0 first) as the engine; the
    precision and layout are the ``variant``'s, and it clips where ``cfg`` clips.
    """

    def __init__(self, model_name: str, spec: str, cfg: Config, device: torch.device,
                 variant: Variant = FP32_NCHW) -> None:
        import strategies
        from bench import data as data_mod
        from bench.engine.train import _seed_everything

        info = data_mod.DATASETS["mnist"]
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        _seed_everything(SEED, cfg.deterministic, device)  # the engine's backend flags
        splits = data_mod.load("mnist", cfg.data_root or None, device=device,
                               train_size=cfg.train_size, test_size=cfg.test_size, seed=0)
        torch.manual_seed(SEED)
        model = strategies.build(model_name, spec, num_classes=info.num_classes, device=device)
        self.layout = torch.channels_last if variant.channels_last else torch.contiguous_format
        model = model.to(memory_format=self.layout)
        model.train()
        self.model = model
        self.step_model = torch.compile(model) if cfg.compile else model
        self.opt = make_optimizer(cfg, model)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self.grad_clip = cfg.grad_clip
        self.device = device
        self.precision = variant.precision

        def endless() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            epoch = 0
            while True:  # epoch 0 holds every timed step; later epochs only serve probes
                yield from data_mod.batches(splits.train_x, splits.train_y, cfg.batch_size,
                                            mean=info.mean, std=info.std, shuffle=True,
                                            seed=SEED, epoch=epoch, drop_last=True)
                epoch += 1

        self._batches = endless()

    def _autocast(self):
        if self.precision == "fp32":
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def _next(self) -> tuple[torch.Tensor, torch.Tensor]:
        xb, yb = next(self._batches)
        if self.layout is torch.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        return xb, yb

    def step(self) -> int:
        """One whole training step on the next batch; returns its number of images."""
        xb, yb = self._next()
        with self._autocast():
            loss = self.criterion(self.step_model(xb), yb)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.opt.step()
        return len(yb)

    def forward(self) -> None:
        """The forward pass and loss of a step on the next batch, graph dropped: a lower bound
        on the step's time (a step is this plus backward and the optimizer)."""
        xb, yb = self._next()
        with self._autocast():
            self.criterion(self.step_model(xb), yb)


def bare_loop_window_img_s(model_name: str, spec: str, cfg: Config, device: torch.device,
                           clock: Callable[[], float] = time.perf_counter,
                           variant: Variant = FP32_NCHW) -> list[float]:
    """img/s of each timed window of a plain loop (warm-up excluded), in window order.

    Windows are ``cfg.window_steps`` consecutive whole steps between boundaries, as in
    :class:`bench.engine.measure.ThroughputMeter`: a boundary (device sync, clock read) falls before a
    step fetches its batch, and one boundary closes a window and opens the next. Batches come
    from ``bench.data.batches`` over the same uint8 subset, seed and epoch as the engine's, made
    inside the window as the engine makes them.
    """
    loop = BareLoop(model_name, spec, cfg, device, variant)
    total = cfg.measure_only_steps
    rates: list[float] = []
    start: float | None = None
    images = 0
    for i in range(total + 1):
        timed = i - cfg.warmup_steps  # timed steps before step i; < 0 during warm-up
        if timed >= 0 and timed % cfg.window_steps == 0:
            # A boundary, as the engine's meter has it: one sync and clock read closes the
            # window that ends here and opens the next one.
            measure.synchronize(device)
            now = clock()
            if start is not None:
                rates.append(images / (now - start))
            start, images = now, 0
        if i == total:
            break
        images += loop.step()
    return rates


def bare_loop_img_s(model_name: str, spec: str, cfg: Config, device: torch.device,
                    variant: Variant = FP32_NCHW) -> float:
    """Median img/s over the bare loop's windows."""
    return statistics.median(bare_loop_window_img_s(model_name, spec, cfg, device,
                                                    variant=variant))


def probe_variants(model_name: str, spec: str, cfg: Config, device: torch.device,
                   variants: tuple[Variant, ...] = BARE_VARIANTS, probe_steps: int = 3,
                   clock: Callable[[], float] = time.perf_counter) -> list[Probe]:
    """A short probe of each bare variant on ``cfg``'s batches; one :class:`Probe` each.

    A probe is one warm-up step, then ``probe_steps`` timed steps (img/s = their images over
    their seconds). Against the fastest variant probed so far (step time ``s``), a variant is
    dropped, and the probe says why, as soon as it provably loses: its forward pass (the second
    one, after a warm-up forward) takes >= ``s`` -- a step is that forward plus more -- or its
    timed steps so far take >= ``probe_steps * s``. Nothing else is skipped, so the variant
    with the highest ``img_s`` is the fastest of all (to the probe's noise).
    """
    probes: list[Probe] = []
    best_step_s = float("inf")  # mean step seconds of the fastest variant probed so far
    for variant in variants:
        probe = Probe(variant)
        probes.append(probe)
        loop = BareLoop(model_name, spec, cfg, device, variant)
        step_s = _probe_one(loop, probe, best_step_s, probe_steps, device, clock)
        best_step_s = min(best_step_s, step_s)
        del loop
        gc.collect()  # free this variant's model and optimizer before the next is built
    return probes


def _probe_one(loop: BareLoop, probe: Probe, best_step_s: float, probe_steps: int,
               device: torch.device, clock: Callable[[], float]) -> float:
    """Probe one variant into ``probe``; returns its mean step seconds (inf when dropped)."""

    def timed(fn: Callable[[], object]) -> tuple[float, object]:
        measure.synchronize(device)
        t0 = clock()
        out = fn()
        measure.synchronize(device)
        return clock() - t0, out

    if best_step_s < float("inf"):
        loop.forward()  # first-call costs (allocations, kernel selection) stay out
        forward_s, _ = timed(loop.forward)
        if forward_s >= best_step_s:
            probe.dropped = (f"its forward pass alone took {forward_s:.3g} s, more than a whole "
                             f"step of the fastest so far ({best_step_s:.3g} s)")
            return float("inf")
    loop.step()  # warm-up
    elapsed, images = 0.0, 0
    for k in range(probe_steps):
        seconds, n = timed(loop.step)
        elapsed += seconds
        images += int(n)  # type: ignore[call-overload]
        if k + 1 < probe_steps and elapsed >= probe_steps * best_step_s:
            probe.dropped = (f"{k + 1} of {probe_steps} timed steps took {elapsed:.3g} s, "
                             f"more than all {probe_steps} of the fastest so far "
                             f"({probe_steps * best_step_s:.3g} s)")
            return float("inf")
    probe.img_s = images / elapsed if elapsed > 0 else float("inf")
    return elapsed / probe_steps


def engine_variant(cfg: Config) -> Variant:
    """The bare variant that runs ``cfg``'s precision and layout (the engine's own)."""
    for variant in (*BARE_VARIANTS, *EXTRA_VARIANTS):
        if (variant.precision, variant.channels_last) == (cfg.precision, bool(cfg.channels_last)):
            return variant
    layout = "channels_last" if cfg.channels_last else "NCHW"
    return Variant(f"{cfg.precision} autocast + {layout}", cfg.precision, bool(cfg.channels_last))


def contenders(probes: list[Probe], margin: float) -> list[Variant]:
    """The fastest probed variant, then every other within ``margin`` (a fraction) of its img/s,
    fastest first: the ones worth timing in full."""
    scored = sorted((p for p in probes if p.img_s == p.img_s), key=lambda p: -p.img_s)
    if not scored:
        raise RuntimeError("no bare variant finished its probe")
    return [p.variant for p in scored if p.img_s >= (1.0 - margin) * scored[0].img_s]


def paired_ratio(engine: list[float], bare: dict[Variant, list[float]]
                 ) -> tuple[float, list[float], list[Variant]]:
    """Engine / fastest-bare ratio of interleaved rounds, free of the winner's curse.

    ``engine[r]`` and ``bare[v][r]`` are round ``r``'s img/s; ``bare`` is ordered fastest probe
    first. Taking the best of several variants' medians over the same rounds that are then
    divided into overstates the bare loop whenever variants are equally fast (the maximum of
    noisy equals exceeds each of them: with two equal variants, 9 rounds and 10% noise per round
    the engine/bare ratio of identical loops averaged 0.977, with 3 rounds 0.969). So round ``r`` is scored
    against the variant that is fastest over the *other* rounds (leave one out; ties and a
    single round go to the earlier, faster-probed variant), and the figure is the median of the
    per-round ratios, each a pair measured back to back. Returns (ratio, the bare img/s each
    round was scored against, the variant each round chose).
    """
    variants = list(bare)
    rounds = len(engine)
    chosen: list[Variant] = []
    for r in range(rounds):
        def others(v: Variant, r: int = r) -> float:
            rest = [x for k, x in enumerate(bare[v]) if k != r]
            return statistics.median(rest) if rest else 0.0
        # max() keeps the first of equals: the variant the probe found faster.
        chosen.append(max(variants, key=others))
    against = [bare[v][r] for r, v in enumerate(chosen)]
    ratio = statistics.median(e / b for e, b in zip(engine, against, strict=True))
    return ratio, against, chosen


def engine_img_s(model_name: str, spec: str, cfg: Config, device: torch.device) -> float:
    """The engine's ``train_img_s`` (median over its windows) for the same cell and recipe."""
    result = run_cell(cfg, Cell("mnist", model_name, spec, SEED), device=device,
                      measure_only=True)
    if result.row["status"] != Status.OK:
        raise RuntimeError(f"engine cell failed: {result.row['status']}: {result.row['reason']}")
    if result.row.get("reason"):  # e.g. no timed window
        raise RuntimeError(f"engine cell measured nothing: {result.row['reason']}")
    return result.row["train_img_s"]


def parse_cell(text: str, default_batch: int = 32) -> tuple[str, str, int]:
    """``model:strategy[:batch_size]`` -> (model, strategy, batch size; ``default_batch``
    when the text gives none)."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"bad cell {text!r}: expected model:strategy[:batch_size]")
    if len(parts) == 2:
        return parts[0], parts[1], default_batch
    try:
        bs = int(parts[2])
    except ValueError:
        raise ValueError(f"bad cell {text!r}: batch size {parts[2]!r} is not an integer") from None
    if bs < 1:
        raise ValueError(f"bad cell {text!r}: batch size must be >= 1")
    return parts[0], parts[1], bs


def check_cell(model_name: str, spec: str) -> None:
    """Raise ValueError, with the explanation, when the cell cannot run on MNIST (unknown model
    or strategy, or a forward that fails at 28 px): a meta-device build, no memory spent."""
    import strategies
    from bench.engine.train import Incompatible, inspect_on_meta

    try:
        from bench.data import DATASETS

        mnist = DATASETS["mnist"]
        inspect_on_meta(Cell("mnist", model_name, spec, SEED), mnist.num_classes, mnist.shape)
    except (Incompatible, strategies.StrategyError) as exc:
        raise ValueError(f"bad cell {model_name}:{spec}: {' '.join(str(exc).split())}") from None


def _measured_auto(profile: Config, models: set[str], results_dir: Path | None,
                   threads: int) -> Config:
    """``profile`` with "auto" precision / layout decided as its sweep decides them on this CPU
    (:mod:`bench.engine.autotune`, on the costliest strategy of the profile's grid): the
    decision saved in ``results_dir`` when it matches, else measured now (and not saved)."""
    from bench import config as config_mod
    from bench import device as device_mod
    from bench.engine import autotune

    grid = [c for c in config_mod.cells(profile) if c.model in models]
    if not grid:
        return profile
    return autotune.resolve_for_sweep(profile, grid, "cpu", device_mod.device_identity("cpu"),
                                      results_dir, device_mod.speed_flags(), threads, print,
                                      save=False)


def _rates(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m bench.tools.overhead", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", nargs="+", default=None,
                        help="model:strategy[:batch_size] (default: "
                             f"{' '.join(DEFAULT_CELLS)}; with --profile "
                             f"{' '.join(PROFILE_CELLS)} at the profile's batch size)")
    parser.add_argument("--profile", default=None,
                        help="take each cell's recipe (batch, optimizer, lr, clipping, "
                             "precision and layout as resolved) from this profile, and compare "
                             "with the fastest of the bare variants")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a profile key (with --profile)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds per side (default %(default)s)")
    parser.add_argument("--window-steps", type=int, default=MIN_WINDOW_STEPS,
                        help=f"steps per timing window, >= {MIN_WINDOW_STEPS} "
                             "(default %(default)s)")
    parser.add_argument("--windows", type=int, default=3,
                        help="timed windows per run; each run's figure is their median "
                             "(default %(default)s)")
    parser.add_argument("--warmup-steps", type=int, default=2,
                        help="untimed steps at the start of every run (default %(default)s)")
    parser.add_argument("--probe-steps", type=int, default=3,
                        help="with --profile: timed steps of each bare variant's probe "
                             "(default %(default)s)")
    parser.add_argument("--margin", type=float, default=0.1,
                        help="with --profile: bare variants within this fraction of the "
                             "fastest probe also run the rounds (default %(default)s)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads for both sides (default: the profile's "
                             f"num_threads, else torch's, now {torch.get_num_threads()})")
    parser.add_argument("--results", type=Path, default=None,
                        help="with --profile on CPU: take precision / layout \"auto\" from this "
                             "results directory's auto-choices.json (what its sweep measured; "
                             "measured now, and not saved, when absent)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    parser.add_argument("--data-root", default="")
    parser.add_argument("--out", type=Path, default=None,
                        help="also write the figures, settings and machine as JSON here "
                             "(e.g. results/cpu/overhead.json)")
    args = parser.parse_args(argv)
    if args.window_steps < MIN_WINDOW_STEPS:
        parser.error(f"--window-steps must be >= {MIN_WINDOW_STEPS}, got {args.window_steps}: "
                     "shorter windows measure the syncs and clock reads at their ends")
    if args.rounds < 1 or args.windows < 1 or args.warmup_steps < 0 or args.threads < 0:
        parser.error(f"--rounds and --windows must be >= 1, --warmup-steps and --threads >= 0; "
                     f"got {args.rounds}, {args.windows}, {args.warmup_steps}, {args.threads}")
    if args.probe_steps < 1 or not 0.0 <= args.margin < 1.0:
        parser.error(f"--probe-steps must be >= 1 and --margin in [0, 1); got "
                     f"{args.probe_steps}, {args.margin}")
    if args.overrides and args.profile is None:
        parser.error("--set needs --profile (it overrides a profile's keys)")
    profile: Config | None = None
    if args.profile is not None:
        from bench import config as config_mod

        try:
            profile = config_mod.load(args.profile, args.overrides)
        except config_mod.ConfigError as exc:
            parser.error(str(exc))
    texts = args.cells or list(PROFILE_CELLS if profile is not None else DEFAULT_CELLS)
    try:
        cells = [parse_cell(text, 0) for text in texts]  # 0: no batch size given
        # A cell without one trains at the batch size its model gets from the profile
        # (per_model entries may set it), else the tool's default.
        cells = [(m, s, bs or (for_model(profile, m).batch_size if profile is not None else 32))
                 for m, s, bs in cells]
        device = resolve_device(args.device)
        for model_name, spec, _ in cells:
            check_cell(model_name, spec)
    except ValueError as exc:
        parser.error(str(exc))
    threads = args.threads or (profile.num_threads if profile is not None else 0) \
        or torch.get_num_threads()
    torch.set_num_threads(threads)
    load_start = os.getloadavg()
    if profile is not None and device.type == "cpu":
        profile = _measured_auto(profile, {m for m, _, _ in cells}, args.results, threads)

    print(f"device: {measure.device_name(device)}, torch {torch.__version__}, {threads} threads; "
          f"{args.rounds} rounds x {args.windows} windows of {args.window_steps} steps after "
          f"{args.warmup_steps} warm-up, per side"
          + (f"; recipe of profile {args.profile}" if profile is not None else ""))
    print(f"load average at start (1, 5, 15 min): {', '.join(f'{v:.2f}' for v in load_start)}")
    ratios: list[float] = []
    same_ratios: list[float] = []  # engine / the bare loop in the engine's precision and layout
    record: list[dict[str, object]] = []
    for model_name, spec, bs in cells:
        if profile is None:
            cfg = cell_config(bs, args.warmup_steps, args.window_steps, args.windows, threads,
                              args.data_root)
            probes: list[Probe] = []
            variants = [FP32_NCHW]
        else:
            cfg = profile_cell_config(profile, model_name, bs, args.warmup_steps,
                                      args.window_steps, args.windows, threads, device)
            if args.data_root:
                cfg = cfg.replace(data_root=args.data_root)
            probes = probe_variants(model_name, spec, cfg, device, probe_steps=args.probe_steps)
            print(f"{model_name} {spec} batch {bs}: bare variants probed ("
                  f"{args.probe_steps} steps): " + "; ".join(
                      f"{p.variant.name} " + (f"dropped: {p.dropped}" if p.dropped
                                              else f"{p.img_s:.1f} img/s") for p in probes))
            variants = contenders(probes, args.margin)
            # The bare loop in the engine's own precision and layout runs the rounds too: the
            # engine / it ratio is the harness's cost alone, apart from the cost of the
            # model-wide precision choice (autotune decides it on the model's costliest cell).
            own = engine_variant(cfg)
            if own not in variants:
                variants.append(own)
        bare: dict[Variant, list[float]] = {v: [] for v in variants}
        engine: list[float] = []
        for r in range(args.rounds):
            # Alternate who goes first, so a trend in machine speed favours neither side.
            order = [*variants, None] if r % 2 == 0 else [None, *reversed(variants)]
            for side in order:
                if side is None:
                    engine.append(engine_img_s(model_name, spec, cfg, device))
                else:
                    bare[side].append(bare_loop_img_s(model_name, spec, cfg, device, side))
        ratio, against, chosen = paired_ratio(engine, bare)
        own = engine_variant(cfg) if profile is not None else FP32_NCHW
        same = statistics.median(e / b for e, b in zip(engine, bare[own], strict=True))
        same_ratios.append(same)
        # The variant most rounds were scored against names the row (ties: fastest probe).
        winner = max(variants, key=chosen.count)
        bare_img_s = statistics.median(against)
        ratios.append(ratio)
        entry: dict[str, object] = {
            "model": model_name, "strategy": spec, "batch_size": bs,
            "bare_img_s": bare_img_s, "engine_img_s": statistics.median(engine),
            "ratio": ratio, "bare_rounds_img_s": against, "engine_rounds_img_s": engine,
            "bare_round_variants": [v.name for v in chosen]}
        if profile is not None:
            entry.update(
                engine_precision=cfg.precision, engine_channels_last=cfg.channels_last,
                optimizer=cfg.optimizer, grad_clip=cfg.grad_clip, bare_variant=winner.name,
                same_variant=own.name, same_variant_ratio=same,
                variants=[{**p.to_dict(), "rounds_img_s": bare.get(p.variant, [])}
                          for p in probes])
        record.append(entry)
        what = f" [{winner.name}, fastest of {len(probes)}]" if profile is not None else ""
        layout = (f" (engine {cfg.precision}, {'channels_last' if cfg.channels_last else 'NCHW'}"
                  f", {cfg.optimizer}, clip {cfg.grad_clip:g})" if profile is not None else "")
        print(f"{model_name} {spec} batch {bs}{layout}: bare{what} {bare_img_s:.1f} img/s "
              f"(rounds {_rates(against)}), engine {statistics.median(engine):.1f} img/s "
              f"(rounds {_rates(engine)}), ratio {ratio:.3f}")
    load_end = os.getloadavg()
    print(f"load average at end (1, 5, 15 min): {', '.join(f'{v:.2f}' for v in load_end)}; "
          "other processes on these cores slow either side at random, so the spread between "
          "rounds bounds the noise")
    if profile is not None:
        print(f"engine / bare loop in the engine's own precision and layout (worst cell): "
              f"{min(same_ratios):.3f} (the harness's cost alone)")
        met = "met" if min(ratios) >= PROFILE_GOAL else "NOT met"
        print(f"goal engine >= {PROFILE_GOAL:g} x the fastest bare loop: {met}")
        print(f"engine/fastest-bare throughput ratio (worst cell): {min(ratios):.3f}")
    else:
        print(f"engine/bare throughput ratio (worst cell): {min(ratios):.3f}")
    if args.out is not None:
        from bench import device as device_mod
        from bench import results

        doc = {"command": " ".join(["python -m bench.tools.overhead", *(argv or sys.argv[1:])]),
               "measured_at": results.now_iso(), "device_id": device_mod.device_identity(device),
               "device_name": measure.device_name(device), "torch_version": torch.__version__,
               **results.git_info(), "threads": threads, "rounds": args.rounds,
               "windows": args.windows, "window_steps": args.window_steps,
               "warmup_steps": args.warmup_steps, "loadavg_start": list(load_start),
               "loadavg_end": list(load_end), "cells": record, "worst_ratio": min(ratios)}
        if profile is not None:
            doc.update(worst_same_variant_ratio=min(same_ratios))
            doc.update(profile=args.profile, overrides=args.overrides, goal=PROFILE_GOAL,
                       probe_steps=args.probe_steps, margin=args.margin)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        results.atomic_write_text(args.out, json.dumps(doc, indent=1) + "\n")
        print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
