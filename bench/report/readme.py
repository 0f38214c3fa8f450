"""The README's generated blocks: what ``bench report DIR --readme README.md`` (which ``make
publish`` runs) writes between marker comments that name ``DIR``, and nothing else.

Two kinds of block, each between ``<!-- KIND: DIR (...) -->`` and ``<!-- /KIND: DIR -->``:

- ``findings``: "What we found" (:func:`bench.report.findings.findings_for`); every published
  results directory has one, and a missing pair is an error;
- ``table``: the headline table of the directory's current rows
  (:func:`bench.report.markdown.headline_table`), where the README shows one; filled when its
  markers are there.

So no number in those blocks is typed in: tests/test_readme.py regenerates each from the
published files and compares.
"""

from __future__ import annotations

from pathlib import Path

from bench.report.findings import findings_for, shown_path

KINDS = ("findings", "table")
BEGIN = ("<!-- {kind}: {label} (written by `python -m bench report {label} --readme README.md`, "
         "which make publish runs; do not edit by hand) -->")
END = "<!-- /{kind}: {label} -->"


class ReadmeError(ValueError):
    """The README has no (or a broken) block for the results directory."""


def markers(label: str, kind: str = "findings") -> tuple[str, str]:
    """The opening and closing comment of ``label``'s block of ``kind``."""
    return BEGIN.format(kind=kind, label=label), END.format(kind=kind, label=label)


def fill_readme(text: str, label: str, body: list[str], kind: str = "findings") -> str:
    """``text`` with the lines between the markers naming ``label`` replaced by ``body``.

    Only that block changes; the markers stay. Raises :class:`ReadmeError` when the pair is
    missing or out of order, so ``make publish`` cannot silently leave a stale block.
    """
    begin, end = markers(label, kind)
    i, j = text.find(begin), text.find(end)
    if i < 0 or j < i:
        raise ReadmeError(f"no {kind} block for {label}: add the lines\n{begin}\n{end}")
    return text[:i + len(begin)] + "\n" + "\n".join(body) + "\n" + text[j:]


def readme_block(text: str, label: str, kind: str = "findings") -> list[str] | None:
    """The lines between ``label``'s markers of ``kind``, or None when there is no such block."""
    begin, end = markers(label, kind)
    i, j = text.find(begin), text.find(end)
    if i < 0 or j < i:
        return None
    return text[i + len(begin):j].strip("\n").split("\n")


def table_for(results_dir: Path) -> list[str]:
    """The ``table`` block's lines for ``results_dir``: the headline table of its current rows,
    or the sentence saying there are none (superseded rows are never a headline)."""
    from bench.report.aggregate import comparison_table
    from bench.report.load import current_runs, read_runs
    from bench.report.markdown import headline_table

    current, note = current_runs(read_runs(results_dir))
    if current.empty:
        return [f"No headline table. {note}".strip() if note else "No headline table: no rows."]
    return headline_table(comparison_table(current)).rstrip("\n").split("\n")


def blocks_for(results_dir: Path) -> dict[str, list[str]]:
    """Every block kind's lines for ``results_dir``, computed from its files alone."""
    return {"findings": findings_for(results_dir), "table": table_for(results_dir)}


def fill(readme: Path, results_dir: Path) -> Path:
    """Rewrite ``readme``'s blocks for ``results_dir``: its findings (required) and its table
    (where the README has one); nothing else in the file changes."""
    try:
        text = readme.read_text(encoding="utf-8")
    except OSError as exc:
        raise ReadmeError(f"--readme {readme}: cannot read it ({exc.strerror})") from None
    label = shown_path(results_dir)
    new = text
    for kind, body in blocks_for(results_dir).items():
        if kind == "findings" or readme_block(new, label, kind) is not None:
            new = fill_readme(new, label, body, kind)
    if new != text:  # an unchanged file keeps its timestamp
        readme.write_text(new, encoding="utf-8")
    return readme
