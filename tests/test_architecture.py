"""The layout is a claim about the code: packages in one direction, no import loop, small modules.

Read from the source with :mod:`ast` (every import, at module level or inside a function, since
a function-level import is how a loop hides), so these tests cost well under a second and need
no torch.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "strategies")

# What each layer may not import (prefix match on the dotted module name). Data flows
# config -> plan -> executors -> engine -> results -> report; nothing downstream reaches back.
FORBIDDEN = {
    "strategies": ("bench",),
    "bench.data": ("bench.plan", "bench.engine", "bench.executors", "bench.sweep",
                   "bench.report", "bench.tools", "bench.results"),
    "bench.plan": ("bench.engine", "bench.executors", "bench.sweep", "bench.report",
                   "bench.tools"),
    "bench.engine": ("bench.executors.ranks", "bench.sweep", "bench.report", "bench.tools"),
    "bench.report": ("bench.engine", "bench.executors", "bench.sweep", "bench.plan",
                     "bench.tools"),
    "bench.results": ("bench.engine", "bench.executors", "bench.sweep", "bench.report",
                      "bench.plan", "bench.tools"),
    "bench.schema": ("bench.",),
    "bench.errors": ("bench.",),
    "bench.device": ("bench.",),
}

# Modules allowed past MAX_LINES, each with the reason it is one module.
MAX_LINES = 400
LONG_MODULES = {
    "bench/config.py": "the profile schema: every key's type, range and default in one table",
    "bench/schema.py": "every results column with its unit and meaning, the status and mode "
                       "values and the one constructor of a runs row",
    "bench/sweep.py": "the driver loop: preflight, plan, dispatch, resume and exit codes",
    "bench/executors/ray_cluster.py": "Ray actors, their relay of epoch lines and clean-up",
    "bench/report/stats.py": "intervals, separation and picking: the report's statistics",
    "bench/tools/doctor.py": "the compatibility matrix and its explanations",
    "bench/tools/gpu_check.py": "the GPU lease's one script: ceilings, probes, profile, report",
    "bench/tools/overhead.py": "the bare-loop comparison and its paired scoring",
    "strategies/_model.py": "AdaptedModel and the layer surgery every adapter shares",
}


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = path
    return mods


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Internal modules ``name`` imports anywhere in its body (the importing package's own
    ``__init__`` excluded, as Python runs it first either way)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            # `from pkg import sub` imports the submodule pkg.sub, not (only) pkg's facade.
            subs = [f"{module}.{a.name}" for a in node.names if f"{module}.{a.name}" in MODULES]
            targets = subs if subs and len(subs) == len(node.names) else [module, *subs]
        else:
            continue
        for t in targets:
            while t and t not in MODULES:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_loop_hidden_in_a_function():
    """The checker itself: a loop through a function-level import is a loop."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_loop_in_bench_or_strategies():
    assert _cycles(GRAPH) == []


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_each_layer_imports_only_downstream(layer):
    bad = []
    for name, deps in GRAPH.items():
        if name == layer or name.startswith(layer + "."):
            for dep in deps:
                if any(dep == f or dep.startswith(f.rstrip(".") + ".") or
                       (f.endswith(".") and dep.startswith(f)) for f in FORBIDDEN[layer]):
                    bad.append(f"{name} -> {dep}")
    assert not bad, "imports against the flow: " + "; ".join(sorted(bad))


def test_modules_stay_small_or_say_why():
    over = {}
    for path in MODULES.values():
        rel = path.relative_to(ROOT).as_posix()
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES and rel not in LONG_MODULES:
            over[rel] = lines
    assert not over, f"modules over {MAX_LINES} lines with no stated reason: {over}"
    stale = [rel for rel in LONG_MODULES
             if not (ROOT / rel).exists()
             or len((ROOT / rel).read_text().splitlines()) <= MAX_LINES]
    assert not stale, f"LONG_MODULES entries that are gone or short now: {stale}"


def test_every_package_says_what_it_holds():
    for name, path in MODULES.items():
        if path.name == "__init__.py" and name != "strategies":
            doc = ast.get_docstring(ast.parse(path.read_text()))
            assert doc and len(doc) > 40, f"{name} has no docstring saying what it holds"


# --- the tests mirror the code ----------------------------------------------------------------

# Test modules named for no one package or module, each with what it holds.
CROSS_CUTTING_TESTS = {
    "test_architecture.py": "the layout itself",
    "test_bad_inputs.py": "every command's refusals of a bad argument, through bench.__main__",
    "test_cli.py": "the command line (bench/__main__.py) and its dispatch to each owner",
    "test_faults.py": "faults injected across executor, engine, results store and data cache",
    "test_readme.py": "the README's and the docs' commands and file names",
}


def _mirrored_names() -> set[str]:
    """What a test module may be named for: bench's packages and modules, and strategies."""
    names = {"strategies"}
    for name in MODULES:
        parts = name.split(".")
        if parts[0] == "bench" and len(parts) == 2 and not parts[1].startswith("_"):
            names.add(parts[1])
    return names


def test_every_test_module_is_named_for_what_it_tests() -> None:
    """tests/test_<package>[_<more>].py: a test module per package or module it tests, so the
    tests of bench/engine/train.py are found in tests/test_engine_train.py."""
    names = _mirrored_names()
    stray = []
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        stem = path.stem[len("test_"):]
        if path.name in CROSS_CUTTING_TESTS:
            continue
        if not any(stem == n or stem.startswith(n + "_") for n in names):
            stray.append(path.name)
    assert not stray, f"test modules named for no package or module (see {sorted(names)}): {stray}"
    gone = [name for name in CROSS_CUTTING_TESTS if not (ROOT / "tests" / name).is_file()]
    assert not gone, f"CROSS_CUTTING_TESTS entries with no module: {gone}"


def test_every_package_has_its_test_module() -> None:
    packages = [name.split(".", 1)[1] for name, path in MODULES.items()
                if path.name == "__init__.py" and name.count(".") == 1]
    packages.append("strategies")
    tests = [p.stem[len("test_"):] for p in (ROOT / "tests").glob("test_*.py")]
    untested = [p for p in packages
                if not any(t == p or t.startswith(p + "_") for t in tests)]
    assert not untested, f"packages with no tests/test_<package>*.py: {untested}"
