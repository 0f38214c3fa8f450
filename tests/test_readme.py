"""The README and docs/ cannot drift from the code.

- The column glossary in docs/methodology.md is generated from the results schema.
- Every ``python -m bench ...``, ``torchrun ... -m bench ...`` and ``make ...`` line of a README
  code block is a command this checkout accepts: its argv parses with the command's own argparse
  parser (run/plan also resolve their profile and ``--set`` overrides, and each strategy spec
  parses), and each make target is defined in the Makefile. Nothing is run.
- Every relative link in README.md and docs/*.md points at a file of the repository.
"""

from __future__ import annotations

import argparse
import importlib
import re
import shlex
from pathlib import Path

import pytest

from bench import schema

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
METHODOLOGY = ROOT / "docs" / "methodology.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))


def test_the_methodology_glossary_is_the_schemas() -> None:
    text = METHODOLOGY.read_text()
    assert schema.GLOSSARY_BEGIN in text and schema.GLOSSARY_END in text
    assert schema.fill_glossary(text) == text, (
        "docs/methodology.md glossary is stale: run `python -m bench.schema --write`")
    for kind, columns in schema.COLUMNS.items():
        for name in columns:
            assert f"| `{name}` |" in text, (kind, name)


def test_the_readme_has_no_glossary_copy_and_stays_short() -> None:
    text = README.read_text()
    assert schema.GLOSSARY_BEGIN not in text, "the glossary lives in docs/methodology.md"
    assert len(text.splitlines()) <= 250


# ---------------------------------------------------------------------------------------------
# Commands in the README


def _code_block_lines(text: str) -> list[str]:
    """The lines of every fenced code block, backslash continuations joined."""
    lines, inside, pending = [], False, ""
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            inside = not inside
            continue
        if not inside:
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    return lines


def _commands(text: str) -> list[list[str]]:
    """argv of every command line adaptbench owns: python -m bench[.x] ..., torchrun ..., make."""
    found = []
    for line in _code_block_lines(text):
        stripped = line.strip()
        if not re.match(r"(\S*python\S* -m bench\b|torchrun |make )", stripped):
            continue
        found.append(shlex.split(stripped, comments=True))
    return found


README_COMMANDS = _commands(README.read_text())


def test_the_readme_shows_its_commands() -> None:
    kinds = {" ".join(argv[:2]) if argv[0] == "make" else "bench" for argv in README_COMMANDS}
    assert {"make bench", "make test", "bench"} <= kinds, kinds


class _Parsed(Exception):
    """Raised in place of running a command once its argv has parsed."""

    def __init__(self, namespace: argparse.Namespace) -> None:
        super().__init__(namespace)
        self.namespace = namespace


def _module_argv(argv: list[str]) -> tuple[str, list[str]]:
    """``python -m MOD ARGS`` or ``torchrun OPTS -m MOD ARGS`` -> (MOD, ARGS)."""
    at = argv.index("-m")
    return argv[at + 1], argv[at + 2:]


def _check_strategies(overrides: list[str]) -> None:
    import strategies

    for override in overrides:
        key, _, value = override.partition("=")
        if key.strip() == "strategies":
            for spec in value.split(","):
                strategies.parse_spec(spec.strip())


@pytest.mark.parametrize("argv", README_COMMANDS, ids=[" ".join(a) for a in README_COMMANDS])
def test_every_readme_command_is_accepted(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    if argv[0] == "make":
        makefile = (ROOT / "Makefile").read_text()
        for target in (a for a in argv[1:] if "=" not in a and not a.startswith("-")):
            assert re.search(rf"^{re.escape(target)}:", makefile, re.M), (
                f"make {target}: no such target in the Makefile")
        return
    module, args = _module_argv(argv)
    original = argparse.ArgumentParser.parse_args

    def parse_and_stop(self, args=None, namespace=None):  # type: ignore[no-untyped-def]
        raise _Parsed(original(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_and_stop)
    if module == "bench":
        from bench.__main__ import main
    else:
        main = importlib.import_module(module).main
    with pytest.raises(_Parsed) as parsed:
        main(list(args))
    ns = parsed.value.namespace
    if module == "bench" and getattr(ns, "command", None) in ("run", "plan"):
        from bench import config

        executor = [f"executor={ns.executor}"] if ns.executor else []
        config.load(ns.profile, [*ns.overrides, *executor])
        _check_strategies(ns.overrides)


# ---------------------------------------------------------------------------------------------
# Links

_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _links(path: Path) -> list[str]:
    text = path.read_text()
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # links inside code blocks are not links
    return _LINK.findall(text)


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_at_a_file_of_the_repository(path: Path) -> None:
    missing = []
    for target in _links(path):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # http(s)://, mailto:, or an anchor in the same file
        assert not target.startswith("/"), f"{path.name}: {target} is absolute; keep links relative"
        name, _, anchor = target.partition("#")
        file = (path.parent / name).resolve()
        if not file.exists() or ROOT not in file.parents:
            missing.append(target)
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            missing.append(target)
    assert not missing, f"{path.relative_to(ROOT)} links to files or headings that do not exist: {missing}"


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


def test_the_docs_name_no_file_outside_the_repository() -> None:
    for path in [README, *DOCS]:
        text = path.read_text()
        for name in ("DESIGN.md", "original-post.md"):
            assert name not in text, f"{path.relative_to(ROOT)} cites {name}, not in the repository"


# ---------------------------------------------------------------------------------------------
# The README's findings are generated from the published files


def _labels(kind: str = "findings") -> list[str]:
    return re.findall(rf"<!-- {kind}: (\S+) \(", README.read_text())


def test_the_readme_has_a_findings_block_per_published_machine() -> None:
    assert {"results/cpu", "results/gpu"} <= set(_labels())
    # The CPU's headline table is generated too (the GPU's current rows are none yet).
    assert "results/cpu" in _labels("table")


@pytest.mark.parametrize(("kind", "label"),
                         [(k, label) for k in ("findings", "table") for label in _labels(k)])
def test_each_readme_block_is_what_the_generator_makes(kind: str, label: str) -> None:
    from bench.report.readme import blocks_for, readme_block

    block = readme_block(README.read_text(), label, kind)
    assert block == blocks_for(ROOT / label)[kind], (
        f"README's {kind} for {label} are stale or edited by hand: run "
        f"`python -m bench report {label} --readme README.md` (make publish does)")


def test_make_publish_rewrites_the_readme_findings() -> None:
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\npublish:", 1)[1].split("\n\n", 1)[0]
    assert "-m bench report results/$(RESOLVED) --readme README.md" in recipe
