"""What every section of ``index.html`` is built from: the :class:`Page` (the frames the report read),
HTML escaping, number cells, a small table, inlined chart SVGs, a cell's learning curve as an SVG,
and a cell's re-run command.
"""

from __future__ import annotations

import dataclasses
import html
import math
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.report.advise import Advice
from bench.report.markdown import display_path

TOP_OPS = 10  # operators listed per cell


@dataclass
class Page:
    """Everything the page shows (the frames :func:`bench.report.summary._build` has read)."""

    runs: pd.DataFrame
    table: pd.DataFrame
    history: pd.DataFrame | None
    ops: pd.DataFrame | None
    compat: pd.DataFrame | None
    charts: list[Path]
    advice: list[Advice]
    warnings: list[str]
    results_dir: Path
    inputs: list[str]
    out_dir: Path | None = None  # where index.html is written; default results_dir
    findings: list[str] = dataclasses.field(default_factory=list)  # "What we found" (markdown)


def esc(value: object) -> str:
    """HTML-escape any value (quotes too, so the result is safe inside attributes)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return html.escape(str(value), quote=True)


def num_html(value: object) -> str:
    """A sort key for ``data-v``: the number, or '' (sorted last) when missing."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    return "" if math.isnan(v) else repr(v)


# ---------------------------------------------------------------------------------------------
# Pieces


def rerun_command(row: pd.Series, results_dir: Path) -> str:
    """The exact command that re-runs one seed of one cell into the same results directory."""
    profile = str(row.get("profile") or "") or Path(results_dir).name
    only = (f"dataset={row['dataset']},model={row['model']},strategy={row['strategy']},"
            f"seed={int(row['seed'])}")
    return shlex.join(["python", "-m", "bench", "run", "--profile", profile, "--only", only,
                       "--results-dir", display_path(results_dir), "--force"])


_SVG_PROLOG = re.compile(r"<\?xml.*?\?>|<!DOCTYPE.*?>|<!--.*?-->|<metadata>.*?</metadata>",
                         re.S)


def inline_svg(text: str, prefix: str) -> str:
    """A matplotlib SVG ready to sit inside HTML: prolog, comments and metadata removed, every
    id (and reference to one) prefixed so that several charts on one page never clash."""
    text = _SVG_PROLOG.sub("", text).strip()
    text = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}{m.group(1)}"', text)
    text = re.sub(r'(href=")#([^"]+)"', lambda m: f'{m.group(1)}#{prefix}{m.group(2)}"', text)
    text = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}{m.group(1)})", text)
    return re.sub(r"<svg\b", '<svg class="chart" role="img"', text, count=1)


def curve_svg(points: dict[str, list[tuple[float, float]]], width: int = 360,
              height: int = 150) -> str:
    """A tiny learning-curve chart: test accuracy (%, 0–100 axis) against epoch, one line per
    seed. ``points``: label -> [(epoch, accuracy fraction)]."""
    xs = [x for pts in points.values() for x, _ in pts]
    if not xs:
        return ""
    x0, x1 = min(0.0, min(xs)), max(xs) or 1.0
    left, bottom, right, top = 34, height - 22, width - 8, 8

    def px(x: float, y: float) -> str:
        return (f"{left + (x - x0) / (x1 - x0 or 1) * (right - left):.1f},"
                f"{bottom - y * (bottom - top):.1f}")

    parts = [f'<svg class="curve" width="{width}" height="{height}" viewBox="0 0 {width} '
             f'{height}" role="img" aria-label="learning curve">',
             f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" class="ax"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" class="ax"/>']
    for frac in (0.0, 0.5, 1.0):
        y = bottom - frac * (bottom - top)
        parts.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">'
                     f'{100 * frac:.0f}%</text>')
    parts.append(f'<text x="{right}" y="{height - 6}" text-anchor="end">epoch {x1:g}</text>')
    for i, (label, pts) in enumerate(points.items()):
        pts = sorted(pts)
        coords = " ".join(px(x, y) for x, y in pts)
        parts.append(f'<polyline points="{coords}" class="s{i % 4}"><title>{esc(label)}'
                     '</title></polyline>')
        parts += [f'<circle cx="{px(x, y).split(",")[0]}" cy="{px(x, y).split(",")[1]}" r="2.5" '
                  f'class="s{i % 4}"/>' for x, y in pts]
    parts.append("</svg>")
    return "".join(parts)


def table_html(head: list[str], rows: list[list[str]], cls: str = "small") -> str:
    """A plain table; every cell is already escaped HTML."""
    out = [f'<div class="scroll"><table class="{cls}"><thead><tr>'
           + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"]
    out += ["<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows]
    return "".join(out) + "</tbody></table></div>"  # scrolls sideways on a narrow screen


def fmt_pct(v: object, digits: int = 2) -> str:
    return "" if pd.isna(v) else f"{100 * float(v):.{digits}f}"
