"""How much does the harness cost? Engine throughput vs a bare training loop, side by side.

The bare loop is forward, loss, backward, optimizer step over batches made (and normalised)
before timing starts. The engine is :func:`bench.train.run_cell` in measure-only mode on the
same model, strategy, batch size and optimizer. Both run in this one process, interleaved
(bare, engine, bare, engine, ...) so that drift in the machine's speed hits both alike; each
figure is the median img/s over per-step windows after warm-up, then the median over rounds.

    python -m bench.overhead                       # resnet18 repeat3 and vgg16 post-convtranspose
    python -m bench.overhead --cells resnet18:repeat3 --rounds 5

The last line printed is the worst (lowest) engine/bare ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from torch import nn

from bench import measure
from bench.config import Cell, Config
from bench.train import run_cell

DEFAULT_CELLS = ("resnet18:repeat3:64", "vgg16:post-convtranspose:16")


def bare_loop_img_s(model_name: str, spec: str, cfg: Config, steps: int) -> float:
    """Median img/s of a plain loop over pre-made, pre-normalised batches (warm-up excluded)."""
    import strategies
    from bench import data as data_mod

    info = data_mod.DATASETS["mnist"]
    splits = data_mod.load("mnist", cfg.data_root or None, train_size=cfg.train_size,
                           test_size=cfg.test_size, seed=0)
    batches = list(data_mod.batches(splits.train_x, splits.train_y, cfg.batch_size,
                                    mean=info.mean, std=info.std, shuffle=True, seed=0))
    torch.manual_seed(0)
    model = strategies.build(model_name, spec, num_classes=info.num_classes)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                          nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    criterion = nn.CrossEntropyLoss()
    rates = []
    for i in range(cfg.warmup_steps + steps):
        xb, yb = batches[i % len(batches)]
        t0 = time.perf_counter()
        loss = criterion(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= cfg.warmup_steps:
            rates.append(len(yb) / (time.perf_counter() - t0))
    return statistics.median(rates)


def engine_img_s(model_name: str, spec: str, cfg: Config, steps: int) -> float:
    cfg = cfg.replace(measure_only_steps=cfg.warmup_steps + steps)
    result = run_cell(cfg, Cell("mnist", model_name, spec, 0), device="cpu", measure_only=True)
    if result.row["status"] != "ok":
        raise RuntimeError(f"engine cell failed: {result.row['status']}: {result.row['reason']}")
    return result.row["train_img_s"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.overhead", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", nargs="+", default=list(DEFAULT_CELLS),
                        help="model:strategy[:batch_size] (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per run (default 8)")
    parser.add_argument("--data-root", default="")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.steps < 1:
        parser.error(f"--rounds and --steps must be >= 1, got {args.rounds}, {args.steps}")

    ratios = []
    print(f"device: {measure.host_cpu_name()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    for text in args.cells:
        parts = text.split(":")
        if len(parts) not in (2, 3):
            parser.error(f"bad cell {text!r}: expected model:strategy[:batch_size]")
        model_name, spec = parts[0], parts[1]
        bs = int(parts[2]) if len(parts) == 3 else 32
        # No clipping (per_model would clip VGG): the bare loop does not clip, and clipping is
        # recipe, not harness, cost.
        cfg = Config(batch_size=bs, train_size=bs * 8, test_size=100, warmup_steps=2,
                     window_steps=1, profile_steps=0, grad_clip=0.0, per_model=(),
                     data_root=args.data_root, peak_tflops=1.0)
        bare, engine = [], []
        for _ in range(args.rounds):
            bare.append(bare_loop_img_s(model_name, spec, cfg, args.steps))
            engine.append(engine_img_s(model_name, spec, cfg, args.steps))
        ratio = statistics.median(engine) / statistics.median(bare)
        ratios.append(ratio)
        print(f"{model_name} {spec} batch {bs}: bare {statistics.median(bare):.1f} img/s "
              f"(rounds {', '.join(f'{v:.1f}' for v in bare)}), engine "
              f"{statistics.median(engine):.1f} img/s "
              f"(rounds {', '.join(f'{v:.1f}' for v in engine)}), ratio {ratio:.3f}")
    print(f"engine/bare throughput ratio (worst cell): {min(ratios):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
