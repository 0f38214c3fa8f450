"""Command line: ``python -m bench run | plan | list | doctor | report | data``.

::

    python -m bench plan --profile cpu [--fast] [--json] # cells, estimates, total ETA
    python -m bench plan --profile gpu --device cuda --device-model h200 --fast
    python -m bench run --profile auto                    # gpu with CUDA, else cpu
    python -m bench run --profile cpu --executor process  # a fresh process per cell
    python -m bench run --profile smoke --set epochs=2 --only model=resnet18 --quiet
    python -m bench run --profile gpu --shard 1/4 --results-dir results/gpu
    torchrun --standalone --nproc_per_node 2 -m bench run --profile smoke   # ranks pull cells
    torchrun --standalone --nproc_per_node 2 -m bench run --profile smoke --ddp  # 2 ranks/cell
    python -m bench list                                  # models, strategies, datasets, profiles
    python -m bench list keys                             # every --set key: type, default, meaning
    python -m bench list --source timm                    # timm's models (pip install '.[timm]')
    python -m bench doctor ... | report DIR ... | data fetch|info ...
    python -m bench advise --model vgg16 [--dataset mnist] [--results results/gpu]

--profile, --set, --device and --results are spelled the same in every subcommand that takes
them (bench/cli_args.py); --results-dir is the same option as --results.

Exit codes: 0 done (failed cells are results, not errors), 2 bad input (unknown profile, key,
model, strategy, dataset, unreadable results, busy or unwritable results directory -- nothing
written), 1 an unexpected failure, 130 interrupted (finished cells are kept; rerun resumes).
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
import textwrap

# Subcommands owned by other modules: their main(argv) gets the rest of the command line.
DISPATCH = {
    "doctor": ("bench.tools.doctor", "compatibility matrix of torchvision (or timm) models x "
                               "strategies"),
    "report": ("bench.report", "tables and charts from a results directory"),
    "advise": ("bench.report.advise", "which strategy to use (accuracy, accuracy per second, memory), "
                               "from a results directory"),
    "data": ("bench.data", "fetch or inspect the datasets (data fetch | data info)"),
}


def _grid_parent() -> argparse.ArgumentParser:
    """--profile, --set, --device, --results (bench.cli_args, shared with advise and report)."""
    from bench import cli_args

    return cli_args.grid_parent("default: runs/<profile> (results/<profile> is the published "
                                "copy)")


def _grid_args(p: argparse.ArgumentParser) -> None:
    """The options of run and plan beyond the shared ones (:func:`_grid_parent`)."""
    p.add_argument("--only", action="append", default=[], metavar="K=V[,K=V]",
                   help="narrow the grid, e.g. model=vgg16,strategy=resize224 (keys: dataset, "
                        "model, strategy, seed; a repeated key widens)")
    p.add_argument("--shard", metavar="K/N",
                   help="run shard K of N (1-based; cell i goes to shard i %% N + 1); writes "
                        "runs.shard-K-of-N.csv")
    p.add_argument("--force", action="store_true",
                   help="rerun cells that already have a final row (replacing it)")
    p.add_argument("--executor", metavar="NAME",
                   help="how cells get a process: warm (default: one long-lived worker runs "
                        "cell after cell), process (a fresh process per cell), ray (warm "
                        "workers in Ray actors) or submitit (a Slurm job array); also the "
                        "profile key `executor`")


RUN_EXAMPLES = """\
examples:
  python -m bench run --profile smoke                   # 4 cells, under 2 minutes on a CPU
  python -m bench run --profile cpu --set epochs=2 --only model=resnet18
  python -m bench run --profile cpu --set datasets=npz:digits.npz   # your own images
  python -m bench run --profile cpu --set models=resnet18 --set weights=my_resnet18.pt  # yours
  python -m bench run --profile gpu --shard 1/4 --results-dir results/gpu
"""


def _run_epilog() -> str:
    """Examples and the --set keys by table, from the config's own table (bench.config_keys)."""
    from bench import config_keys

    return (f"{RUN_EXAMPLES}\n--set keys (types, defaults and meanings: python -m bench list "
            f"keys):\n{config_keys.keys_by_table()}")


def cmd_list_keys() -> int:
    """Every config key with its type, default and one-line meaning, table by table."""
    import shutil
    import textwrap

    from bench import config_keys

    width = max(60, min(120, shutil.get_terminal_size((100, 24)).columns))
    table = ""
    for doc in config_keys.key_docs():
        if doc.table != table:
            table = doc.table
            print(f"[{table}]")
        print(f"  {doc.key} = {doc.default}   ({doc.type})")
        print(textwrap.fill(doc.meaning, width=width, initial_indent="      ",
                            subsequent_indent="      "))
    print("set any of them with --set KEY=VALUE (lists comma-separated) or in a profile's table")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="adaptbench: adapt ImageNet-shaped torchvision (or timm) models to small "
                    "images -- any CxHxW dataset, built-in or your own -- and measure what each "
                    "choice costs.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run = sub.add_parser("run", help="run a profile's grid, each cell outside this process "
                                     "(resumable)",
                         formatter_class=argparse.RawDescriptionHelpFormatter,
                         epilog=_run_epilog(), parents=[_grid_parent()])
    _grid_args(run)
    run.add_argument("--quiet", action="store_true",
                     help="no progress bar or per-epoch lines: one line per cell (CI)")
    run.add_argument("--publish", action="store_true",
                     help="the rows are a published answer (make publish): refused before any "
                          "cell unless the grid has at least 3 seeds and a validation split")
    run.add_argument("--ddp", action="store_true",
                     help="under torchrun: train every cell with all ranks together "
                          "(DistributedDataParallel; batch_size is the global batch, a multiple "
                          "of the world size); without it the ranks pull cells one by one")
    plan = sub.add_parser("plan", help="print every cell with its estimated cost and the ETA",
                          parents=[_grid_parent()])
    _grid_args(plan)
    plan.add_argument("--fast", action="store_true",
                      help="cost model only (FLOPs on the meta device), no timed steps")
    plan.add_argument("--ddp", type=int, default=0, metavar="N",
                      help="plan the cells as `torchrun --nproc_per_node N -m bench run --ddp` "
                           "runs them: each on N ranks (their own cell hashes; batch_size must "
                           "split N ways); estimates stay one device's")
    from bench.plan.speeds import DEVICE_MODELS

    plan.add_argument("--device-model", default="", metavar="NAME",
                      choices=sorted({m for ms in DEVICE_MODELS.values() for m in ms}),
                      help="price the cells on this device model (" + ", ".join(
                          f"{k}: {'/'.join(sorted(v))}" for k, v in DEVICE_MODELS.items())
                      + "; default: the one the constants were fitted on, "
                        "bench/plan/speeds.py)")
    plan.add_argument("--json", action="store_true",
                      help="print the plan as one JSON document (per cell: dataset, model, "
                           "strategy, seed, cell_hash, mode, estimate_s, done)")
    listing = sub.add_parser("list", help="models, strategies, datasets and profiles; "
                                          "`list keys`: every --set key")
    listing.add_argument("what", nargs="?", choices=["keys"],
                         help="keys: every config key with its type, default and meaning")
    listing.add_argument("--source", choices=["torchvision", "timm"], default=None,
                         help="print only this source's model names, one per line")
    for name, (_, text) in DISPATCH.items():
        sub.add_parser(name, help=text, add_help=False)
    return parser


def _known_errors() -> tuple[type[BaseException], ...]:
    """The exception types that mean bad input (exit 2).

    Asked after the failure, and only of modules already imported: a module that was never
    imported raised nothing, and importing strategies or bench.data (torch) just to name their
    error types would cost a bad ``--profile`` several seconds.
    """
    from bench.config import ConfigError
    from bench.results import ResultsError

    errors: list[type[BaseException]] = [ConfigError, ResultsError]
    for module, name in (("strategies", "StrategyError"), ("bench.data", "DataError")):
        error = getattr(sys.modules.get(module), name, None)
        if error is not None:
            errors.append(error)
    return tuple(errors)


def _print_wrapped(names: list[str]) -> None:
    line = "  "
    for m in names:
        if len(line) + len(m) > 98:
            print(line.rstrip())
            line = "  "
        line += m + " "
    print(line.rstrip())


def cmd_list(source: str | None = None) -> int:
    """Profiles, datasets, strategies and models; ``source``: only that source's model names,
    one per line (for scripts and grep), or exit 2 with the install hint."""
    import strategies
    from strategies import sources

    if source is not None:
        for name in strategies.list_models(source):  # StrategyError: the extra is missing
            print(name)
        return 0
    from bench import config
    from bench.data import DATASETS, user_datasets

    print("profiles:")
    for name in config.list_profiles():
        # Wrapped, not cut: a description is one sentence, whatever its length.
        print(textwrap.fill(_profile_summary(config.profile_path(name)), width=98,
                            initial_indent=f"  {name:<12} ", subsequent_indent=" " * 15))
    print("datasets:")
    for name, info in sorted(DATASETS.items()):
        print(f"  {name:<14} {info.shape_text}, {info.num_classes} classes")
    for user in user_datasets():
        shape = "x".join(str(d) for d in user.get("shape", []))
        print(f"  {user.get('name', user['path'])}  {shape}, {len(user['classes'])} classes "
              "(imported)")
    print("  your images:   folder:PATH[?size=N&test=F&seed=S], npz:PATH (see bench/data/user.py)")
    try:
        import strategies

        print("strategies (a spec is channel+spatial, e.g. repeat3+resize224, or a preset):")
        for kind in ("preset", "channel", "spatial"):
            print(f"  {kind + ':':<9} {', '.join(strategies.list_strategies(kind))}")
    except ImportError as exc:
        print(f"strategies: unavailable ({exc})")
    models = strategies.list_models("torchvision")
    print(f"models ({len(models)} torchvision classification models):")
    _print_wrapped(models)
    # timm's zoo is 17x torchvision's: counted here, listed by `list --source timm`.
    if sources.timm_available():
        print(f"timm models ({len(strategies.list_models('timm'))} architectures, written "
              "timm:NAME, e.g. timm:resnet18): python -m bench list --source timm")
    else:
        print(f"timm models: not installed; pip install '.[{sources.TIMM_EXTRA}]' adds timm's "
              "zoo (written timm:NAME)")
    return 0


# Where the first sentence of a profile's header ends: a full stop before a capital, a colon
# before a quoted command, or the end of a line followed by a line that starts a new sentence.
_SENTENCE_END = re.compile(r"\.(?=\s+[A-Z`]|$)|:(?=\s+`)|\n(?=[A-Z])")


def _profile_summary(path) -> str:
    """The first sentence of a profile file's header comment: what the profile is for (whole,
    however many lines it takes, never cut mid-sentence)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return ""
    header: list[str] = []
    for line in lines:
        if not line.startswith("#"):
            break
        header.append(line.lstrip("# ").strip())
    text = "\n".join(header)
    match = _SENTENCE_END.search(text)
    text = " ".join((text[: match.start()] if match else text).split())
    head, sep, rest = text.partition(": ")
    return rest if sep and head == path.stem else text


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DISPATCH:
        import importlib

        module = importlib.import_module(DISPATCH[argv[0]][0])
        return int(module.main(argv[1:]) or 0)
    args = build_parser().parse_args(argv)
    if args.command == "list":
        if args.what == "keys":
            return cmd_list_keys()
        try:
            return cmd_list(args.source)
        except Exception as exc:
            if not isinstance(exc, _known_errors()):
                raise
            print(f"error: {exc}", file=sys.stderr)
            return 2

    from bench import sweep

    # --executor is the `executor` key, so it is validated with the config, before anything.
    overrides = [*args.overrides, *([f"executor={args.executor}"] if args.executor else [])]
    opts = sweep.SweepOptions(
        profile=args.profile, overrides=overrides, results_dir=args.results_dir,
        only=args.only, force=args.force, shard=args.shard, quiet=getattr(args, "quiet", False),
        device=args.device, ddp=getattr(args, "ddp", False),
        publish=getattr(args, "publish", False),
        command_line=shlex.join([sys.executable, "-m", "bench", *argv]))
    try:
        if args.command == "plan":
            return sweep.run_plan(opts, fast=args.fast, as_json=args.json,
                                  ddp_world=args.ddp, device_model=args.device_model)
        return sweep.run_sweep(opts)
    except Exception as exc:
        if not isinstance(exc, _known_errors()):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
