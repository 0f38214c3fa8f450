"""``python -m bench data fetch|info``: fetch the datasets into the verified cache, or say what the
cache holds.
"""

from __future__ import annotations

import argparse
import sys
import time

from bench.data import stale, user
from bench.data.cache import cache_status, fetch, get_info, user_datasets
from bench.data.registry import (
    ENV_ROOT,
    DataError,
    UnknownDatasetError,
    UserDatasetError,
    dataset_names,
    resolve_root,
)


def _names(arg: str) -> list[str]:
    if user.is_user_dataset(arg):
        return [arg]  # imported (and checked) by the command, under its --data-root
    return dataset_names() if arg == "all" else [get_info(arg).name]


def main(argv: list[str] | None = None) -> int:
    """``fetch`` / ``info``. Exit codes: 0 ok, 1 data missing or corrupt, 2 bad input."""
    parser = argparse.ArgumentParser(prog="python -m bench data",
                                     description="Fetch and inspect the cached datasets.")
    sub = parser.add_subparsers(dest="command", required=True)
    for cmd, help_text in (("fetch", "fill the verified cache (installs with apt if needed)"),
                           ("info", "show cache status, counts, source and digest")):
        p = sub.add_parser(cmd, help=help_text)
        p.add_argument("--dataset", default="all",
                       help=f"one of: {', '.join(dataset_names())}, all (default: all), "
                            "or your images: folder:PATH[?size=N&test=F&seed=S], npz:PATH")
        p.add_argument("--data-root", default=None,
                       help=f"data folder (default: ${ENV_ROOT} or ./data)")
        if cmd == "fetch":
            p.add_argument("--rebuild", action="store_true",
                           help="rebuild the cache from the sources even if it exists")
            p.add_argument("--no-install", action="store_true",
                           help="never run apt-get")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad input; report it as a return code
        return int(exc.code or 0)
    try:
        names = _names(args.dataset)
    except UnknownDatasetError as exc:
        print(f"error: {exc} (or all)", file=sys.stderr)
        return 2
    root = resolve_root(args.data_root)
    for folder in (root, root / "cache"):
        # Checked before any import: a cache write under a file would fail only after every
        # image was read, with the OSError as a traceback.
        if folder.exists() and not folder.is_dir():
            print(f"error: --data-root: {folder} is a file, not a directory; pass a data "
                  f"folder (default: ${ENV_ROOT} or ./data)", file=sys.stderr)
            return 2
    removed = stale.remove_stale(root / "cache")  # left by a killed import or fetch
    if removed:
        print(removed)
    if args.command == "fetch":
        failed = 0
        for name in names:
            started = time.perf_counter()
            try:
                path = fetch(name, root, install=not args.no_install, rebuild=args.rebuild)
            except UserDatasetError as exc:  # the user's files: bad input, nothing cached
                print(f"error: {exc}", file=sys.stderr)
                return 2
            except DataError as exc:
                print(f"error: {exc}", file=sys.stderr)
                failed += 1
                continue
            status = cache_status(name, root)
            print(f"{name}: ok  {status['train']}/{status['test']}  "
                  f"source={status['source']}  shape={status['shape']}  "
                  f"digest={status['digest']}  {path}  "
                  f"({time.perf_counter() - started:.1f} s)")
        return 1 if failed else 0
    print(f"data root: {root}")
    for name in names:
        try:
            s = cache_status(name, root)
        except UserDatasetError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if s["status"] == "ok":
            print(f"{name:<14} ok       {s['shape']} classes={s['classes']} train={s['train']} "
                  f"test={s['test']}  source={s['source']}  digest={s['digest']}  {s['path']}")
        else:
            print(f"{name:<14} {s['status']:<8} {s['error']}")
    if args.dataset == "all":
        for user in user_datasets(root):
            counts = user.get("counts", {})
            shape = "x".join(str(d) for d in user.get("shape", []))
            print(f"{user.get('name', user['path'])}  imported {shape} classes={len(user['classes'])}"
                  f" train={counts.get('train')} test={counts.get('test')} split={user['split']}"
                  f" options={user['options']}  {user['cache']}")
    return 0
