"""``index.html``: the whole report as one self-contained page (written by ``bench report``).

No network and no framework: plain HTML and CSS, the charts' SVGs inlined, and one small
hand-written script that sorts and filters the tables. A Content-Security-Policy forbids every
fetch, so the page works the same from ``file://`` and proves it needs nothing else.

Every value taken from the results (model, strategy and dataset names, failure reasons, device
names, operator names) is HTML-escaped: dataset names such as ``folder:/path/<odd>&chars`` are
user input.

The script takes options from the query string or the fragment, for links and for the browser
test: ``?sort=<column>&order=asc|desc&filter=<text>&status=<status>`` (column keys are the
``data-key`` of the cells table's headers, e.g. ``test_acc``, ``train_img_s``, ``peak_mem``).
When it has run without an exception it sets ``data-js="ok"`` on ``<html>``; any error (or
``console.error``) is written into ``<ul id="js-errors">``; an unknown option or value is
ignored and named, with the valid ones, in ``<p id="url-note">`` (:mod:`.page_assets`). The
header (:mod:`.page_header`) says what was measured, the caveats, and links the CSVs.
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

from bench.report import page_header
from bench.report.advise import CRITERIA, DEFINITIONS, Advice, verdict_text
from bench.report.fmt import fmt_num
from bench.report.markdown import display_path, speed_text, unique_value
from bench.report.page_assets import CSS, ERROR_HOOK, SCRIPT

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


def _num(value: object) -> str:
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


def _table(head: list[str], rows: list[list[str]], cls: str = "small") -> str:
    """A plain table; every cell is already escaped HTML."""
    out = [f'<div class="scroll"><table class="{cls}"><thead><tr>'
           + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"]
    out += ["<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows]
    return "".join(out) + "</tbody></table></div>"  # scrolls sideways on a narrow screen


def fmt_pct(v: object, digits: int = 2) -> str:
    return "" if pd.isna(v) else f"{100 * float(v):.{digits}f}"


# ---------------------------------------------------------------------------------------------
# Sections

CELL_COLUMNS = (  # (data-key, header, numeric)
    ("dataset", "dataset", False), ("model", "model", False), ("device", "device", False),
    ("strategy", "strategy", False), ("test_acc", "test acc %", True),
    ("ci", "95% CI", True), ("n", "seeds", True), ("diff", "Δ vs top, pp", True),
    ("train_img_s", "train img/s (p10–p90)", True), ("mfu", "MFU %", True),
    ("peak_mem", "peak MiB", True), ("status", "status", False), ("reason", "reason", False),
)


NUM_CLASS = ' class="num"'
ID_CLASS = ' class="id"'


ID_KEYS = ("dataset", "model", "device", "strategy", "status")  # names: never broken mid-word


def cells_table(t: pd.DataFrame, hidden: frozenset[str] = frozenset()) -> str:
    """The sortable, filterable table: one row per dataset × model × device × strategy.
    ``hidden``: data-keys left out (a column every cell shares, shown in the page's header)."""
    columns = [c for c in CELL_COLUMNS if c[0] not in hidden]
    head = "".join(
        f'<th data-key="{k}" data-type="{"num" if num else "text"}"><button type="button">'
        f"{esc(h)}</button></th>" for k, h, num in columns)
    rows = []
    for i, r in t.reset_index(drop=True).iterrows():
        reinit = bool(r.get("reinitialized"))
        acc = "—" if r["test_acc_n"] == 0 else fmt_pct(r["test_acc_mean"])
        if r["is_best"] and r["test_acc_n"] > 0:
            acc = f"<strong>{acc}</strong>"
        ci = ("—" if pd.isna(r["test_acc_ci_lo"]) else
              f"[{fmt_pct(r['test_acc_ci_lo'])}, {fmt_pct(r['test_acc_ci_hi'])}] "
              f"<small>{esc(r['test_acc_ci_method'])}</small>")
        diff = ("best" if r["is_best"] else
                "top (contended)" if r["is_top"] and r.get("contended") else
                "top (tied)" if r["is_top"] else
                "—" if pd.isna(r["diff_vs_best"]) else f"{100 * r['diff_vs_best']:+.2f}"
                + ("" if pd.isna(r["diff_significant"]) or r["diff_significant"]
                   else " <small>n.s.</small>"))
        spread = ("" if pd.isna(r["train_img_s_lo"]) else
                  f" <small>({fmt_num(r['train_img_s_lo'])}–"
                  f"{fmt_num(r['train_img_s_hi'])})</small>")
        speed = esc(speed_text(r)) + spread  # a packed figure says so
        if r["train_img_s_is_best"]:
            speed = f"<strong>{speed}</strong>"
        status = r["status_detail"] if r["status"] == "mixed" else r["status"]
        if r.get("contended"):  # a busy host's timing: shown, never a winner
            status += " (contended)"
        cells = [
            (r["dataset"], esc(r["dataset"])), (r["model"], esc(r["model"])),
            (r["device_name"], esc(r["device_name"])),
            (r["strategy"], f'<a href="#cell-{i}">{esc(r["strategy"])}</a>'
             + (' <span class="reinit" title="layers created or replaced: '
                f'{esc(r["reinitialized"])}">†</span>' if reinit else "")),
            (_num(r["test_acc_mean"]), acc), (_num(r["test_acc_ci_lo"]), ci),
            (_num(r["test_acc_n"]), esc(int(r["test_acc_n"]))),
            (_num(r["diff_vs_best"]) if not r["is_top"] else "0", diff),
            (_num(r["train_img_s_median"]), speed),
            (_num(r["mfu_median"]), "—" if pd.isna(r["mfu_median"])
             else f"{100 * r['mfu_median']:.1f}"),
            (_num(r["peak_mem_mib"]), esc(fmt_num(r["peak_mem_mib"]))),
            (status, f'<span class="st st-{esc(r["status"])}">{esc(status)}</span>'),
            (r["reason"], f'<span class="reason">{esc(r["reason"])}</span>'),
        ]
        tds = "".join(f'<td data-v="{esc(v)}"'
                      f'{NUM_CLASS if num else ID_CLASS if k in ID_KEYS else ""}>{c}</td>'
                      for (v, c), (k, _, num) in zip(cells, CELL_COLUMNS, strict=True)
                      if k not in hidden)
        rows.append(f'<tr class="cell" data-i="{i}" data-status="{esc(r["status"])}">{tds}</tr>')
    statuses = list(dict.fromkeys(t["status"]))
    options = "".join(f'<option value="{esc(s)}">{esc(s)}</option>' for s in statuses)
    return (
        '<div class="controls"><label>filter <input id="filter" type="search" '
        'placeholder="any text: model, strategy, reason…"></label> '
        f'<label>status <select id="status"><option value="">all</option>{options}</select>'
        '</label> <span id="shown"></span></div>'
        f'<div class="scroll"><table id="cells" class="sortable"><thead><tr>{head}</tr></thead>'
        f'<tbody>{"".join(rows)}</tbody></table></div>'
        '<p class="note">Click a header to sort (again to reverse); † = the strategy created or '
        're-initialised layers; bold = a winner whose interval clears every other strategy\'s '
        "in its dataset × model × device; <em>n.s.</em> = a gap that cannot be told from 0; "
        "grey hatched rows = not applicable (the strategy cannot run on that model), red rows = "
        "failures. Link keys: ?sort=" + ",".join(k for k, _, _ in columns)
        + "&amp;order=asc|desc&amp;filter=TEXT&amp;status=STATUS.</p>")


_HYPHENATED = re.compile(r"[\w.+]+(?:-[\w.+]+)+")


def keep_words(escaped: str) -> str:
    """Escaped prose with its hyphenated identifiers (post-convtranspose, measure-only) kept on
    one line: a browser would otherwise break them after the hyphen."""
    return _HYPHENATED.sub(lambda m: f'<span class="id">{m.group(0)}</span>', escaped)


_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")


def findings_section(body: list[str]) -> str:
    """The "What we found" lines (:func:`bench.report.findings.findings_body`, markdown) as
    HTML: escaped, `code` and **bold** kept, the numbered findings as a list. Code spans may
    wrap at spaces here (a command is longer than a 400 px screen) but hyphenated identifiers
    never break (:func:`keep_words`)."""
    out: list[str] = []
    for line in body:  # in order; consecutive numbered lines are one list
        if not line:
            continue
        text = _BOLD.sub(r"<b>\1</b>", _CODE.sub(r"<code>\1</code>", keep_words(esc(line))))
        numbered = re.match(r"\d+\. (.*)", text)
        if not numbered:
            out.append(f"<p>{text}</p>")
        elif out and out[-1].endswith("</ol>"):
            out[-1] = out[-1][:-len("</ol>")] + f"<li>{numbered.group(1)}</li></ol>"
        else:
            out.append(f'<ol class="findings"><li>{numbered.group(1)}</li></ol>')
    return f'<div id="findings-body">{"".join(out)}</div>'



def advice_section(advice: list[Advice], hidden: frozenset[str] = frozenset()) -> str:
    """The verdicts per dataset × model × device; ``hidden``: the constant columns ("dataset",
    "device") the page's header already names, left out so a narrow screen shows verdicts."""
    keep = [k not in hidden for k in ("dataset", "model", "device")]
    rows = [[*(c for c, k in zip((esc(a.dataset), esc(a.model), esc(a.device_name)), keep,
                                  strict=True) if k),
             *(keep_words(esc(verdict_text(v))) + (
                 f'<br><small>not compared: {keep_words(esc("; ".join(f"{s} ({w})" for s, w in v.excluded.items())))}</small>'  # noqa: E501
                 if v.excluded else "") for v in a.verdicts)]
            for a in advice]
    defs = "".join(f"<li><b>{esc(t)}</b>: {esc(DEFINITIONS[k])}</li>"
                   for k, t, _, _ in CRITERIA)
    head = [h for h, k in zip(("dataset", "model", "device"), keep, strict=True) if k]
    return (_table([*head, *(esc(t) for _, t, _, _ in CRITERIA)], rows, "advice")
            + f'<ul class="note">{defs}</ul>')


def _cell_runs(page: Page, r: pd.Series) -> pd.DataFrame:
    runs = page.runs
    return runs[(runs["dataset"] == r["dataset"]) & (runs["model"] == r["model"])
                & (runs["strategy"] == r["strategy"])
                & (runs["device_name"] == r["device_name"])].sort_values("seed")


def _ops_table(page: Page, seeds: pd.DataFrame) -> str:
    if page.ops is None:
        return "<p>no ops*.csv rows</p>"
    keep = set(zip(seeds["cell_hash"], seeds["device_name"], strict=True))
    o = page.ops[[k in keep for k in zip(page.ops["cell_hash"], page.ops["device_name"],
                                         strict=True)]]
    if o.empty:
        return "<p>no profiler rows for this cell</p>"
    agg = o.groupby("op", sort=False)[["self_cpu_ms", "self_device_ms"]].mean()
    by = "self_device_ms" if (agg["self_device_ms"].fillna(0) > 0).any() else "self_cpu_ms"
    agg = agg.sort_values(by, ascending=False).head(TOP_OPS)
    total = agg[by].sum() or 1.0
    rows = [[esc(op), esc(f"{v[by]:.3g}"), esc(f"{100 * v[by] / total:.1f}")]
            for op, v in agg.iterrows()]
    kind = "device" if by == "self_device_ms" else "CPU"
    return _table(["operator", f"self {kind} ms (mean over seeds)", f"% of these {len(rows)}"],
                  rows)


def _curve(page: Page, seeds: pd.DataFrame) -> str:
    if page.history is None:
        return "<p>no history*.csv rows</p>"
    keep = set(zip(seeds["cell_hash"], seeds["device_name"], strict=True))
    h = page.history[[k in keep for k in zip(page.history["cell_hash"],
                                             page.history["device_name"], strict=True)]]
    h = h.dropna(subset=["epoch", "test_acc"])
    if h.empty:
        return "<p>no evaluation points recorded</p>"
    points = {f"seed {int(s)}": list(zip(g["epoch"], g["test_acc"], strict=True))
              for s, g in h.groupby("seed")}
    cols = [c for c in ("seed", "epoch", "step", "train_loss", "test_acc", "elapsed_s")
            if c in h.columns]
    rows = [[esc(f"{100 * v:.2f}%" if c == "test_acc" else
                 (f"{v:.4g}" if isinstance(v, float) and not pd.isna(v) else v))
             for c, v in zip(cols, vals, strict=True)]
            for vals in h[cols].itertuples(index=False)]
    # One evaluation per seed (one epoch) is a lone dot, not a curve: the table says it all.
    curve = (curve_svg(points) if max(map(len, points.values())) > 1 else
             '<p class="note">One evaluation per seed: no curve to draw.</p>')
    return curve + _table(cols, rows)


def cell_details(page: Page) -> str:
    """One collapsible block per cell: provenance, the re-run command, curve and operators."""
    out = []
    for i, r in page.table.reset_index(drop=True).iterrows():
        seeds = _cell_runs(page, r)
        prov = []
        for _, s in seeds.iterrows():
            prov.append([esc(int(s["seed"])), esc(s["status"]), esc(s["mode"]),
                         esc(s.get("device_id") if not pd.isna(s.get("device_id")) else
                             s["device_name"]),
                         esc(str(s.get("git_sha", ""))[:12]), esc(s.get("torch_version", "")),
                         esc(s["timestamp"]), esc(s["cell_hash"])])
        commands = "\n".join(rerun_command(s, page.results_dir) for _, s in seeds.iterrows())
        reinit = (f"<p><b>Created / replaced layers:</b> {esc(r['reinitialized'])}</p>"
                  if r.get("reinitialized") else "")
        reason = f"<p><b>Reason:</b> {esc(r['reason'])}</p>" if r["reason"] else ""
        out.append(
            f'<details id="cell-{i}" class="cell-detail"><summary>{esc(r["dataset"])} · '
            f'{esc(r["model"])} · {esc(r["strategy"])} · {esc(r["device_name"])}</summary>'
            f"{reason}{reinit}<h4>Provenance</h4>"
            + _table(["seed", "status", "mode", "device_id", "git", "torch", "timestamp",
                      "cell_hash"], prov)
            + "<h4>Re-run (replaces its row)</h4>"
            f"<pre><code>{esc(commands)}</code></pre>"
            f"<h4>Learning curve</h4>{_curve(page, seeds)}"
            f"<h4>Top operators</h4>{_ops_table(page, seeds)}</details>")
    return "".join(out)


def compat_section(compat: pd.DataFrame | None) -> str:
    if compat is None:
        return "<p>No compat.csv: run <code>python -m bench doctor</code>.</p>"
    c = compat.drop_duplicates(["model", "strategy"], keep="last")
    strategies = list(dict.fromkeys(c["strategy"]))
    grid = {(m, s): r for m, s, r in zip(c["model"], c["strategy"],
                                         c.to_dict("records"), strict=True)}
    rows = []
    for m in dict.fromkeys(c["model"]):
        tds = [f"<th>{esc(m)}</th>"]
        for s in strategies:
            r = grid.get((m, s))
            if r is None:
                tds.append("<td></td>")
                continue
            ok = r["status"] == "ok"
            label = "ok" if ok else (r.get("error_class") or "failed")
            # Not applicable (cifarstem on a non-ResNet) is no failure: shaded apart.
            kind = "ok" if ok else "na" if label == "not-applicable" else "bad"
            px = r.get("min_input_px")
            if not ok and px and not pd.isna(px):
                label = f"{label} ≥{px}"
            tip = r.get("explanation") or r.get("error") or ""
            tds.append(f'<td class="{kind}" title="{esc(tip)}">'
                       f"{esc(label)}</td>")
        rows.append(f"<tr>{''.join(tds)}</tr>")
    head = "".join(f"<th>{esc(s)}</th>" for s in strategies)
    n_ok = int((c["status"] == "ok").sum())
    # The heatmap (charts) shows the matrix; the table, the same cells with each failure's
    # explanation, stays folded so the page does not show the matrix twice.
    return (f"<p>{n_ok} of {len(c)} model × strategy pairs build and run a step on the meta "
            "device; the compatibility chart above shows the matrix.</p>"
            f'<details id="compat-details"><summary>The matrix as a table ({len(rows)} models '
            f"× {len(strategies)} strategies; hover a failed cell for the explanation)</summary>"
            '<div class="controls"><label>filter <input id="compat-filter" type="search" '
            'placeholder="model or error class"></label></div>'
            '<div class="scroll" id="compat-scroll"><table id="compat" class="small"><thead>'
            f"<tr><th>model</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
            "</details>")


def charts_section(charts: list[Path]) -> str:
    out = []
    for n, path in enumerate(p for p in charts if p.suffix == ".svg"):
        svg = inline_svg(path.read_text(encoding="utf-8"), f"c{n}-")
        out.append(f'<figure id="chart-{esc(path.stem)}">{svg}<figcaption>'
                   f"{esc(path.stem.replace('_', ' '))}</figcaption></figure>")
    return "".join(out) or "<p>No charts were drawn.</p>"


# ---------------------------------------------------------------------------------------------
# The page

CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
       "img-src data:")


def render(page: Page) -> str:
    """The whole index.html text."""
    runs, table = page.runs, page.table
    profile = unique_value(runs, "profile") or Path(page.results_dir).name
    first, last = runs["_ts"].min(), runs["_ts"].max()
    prov = [f"{label} {unique_value(runs, col)}" for col, label in
            (("torch_version", "torch"), ("cuda_version", "CUDA"), ("git_sha", "git"))
            if unique_value(runs, col)]
    prov.append(f"runs {first:%Y-%m-%d %H:%M} – {last:%Y-%m-%d %H:%M} UTC")
    devices = "; ".join(f"{name}: {int((table['device_name'] == name).sum())} cells"
                        for name in dict.fromkeys(table["device_name"]))
    warnings = "".join(f"<li>{esc(w)}</li>" for w in page.warnings)
    if warnings:
        warnings = (f'<li class="warn"><details><summary><b>{len(page.warnings)} warning(s)'
                    f"</b> (as in summary.md)</summary><ul>{warnings}</ul></details></li>")
    command = f"python -m bench report {display_path(page.results_dir)}"
    constants = page_header.constant_columns(table)
    shared = "".join(f"<b>{esc(label)}:</b> <span class=\"id\">{esc(constants[key])}</span> · "
                     for key, _, label in page_header.CONSTANT_COLUMNS if key in constants)
    recipe = " · ".join(f"<b>{esc(label)}</b> {esc(text)}"
                        for label, text in page_header.recipe_items(runs))
    caveats = "".join(f"<li>{esc(c)}</li>" for c in
                      page_header.caveats(runs, page_header.read_config(page.results_dir)))
    links = " · ".join(f'<a href="{esc(href)}">{esc(text)}</a>' for text, href in
                       page_header.links(page.results_dir, page.out_dir or page.results_dir,
                                         page.inputs))
    found_link = '<a href="#findings">what we found</a> · ' if page.findings else ""
    body = (
        f"<h1>adaptbench results: profile {esc(profile)}</h1>"
        + (f'<p class="constants">{shared}every cell</p>' if shared else "")
        + (f'<p class="recipe"><b>Recipe:</b> {recipe}</p>' if recipe else "")
        + (f'<ul class="caveat">{caveats}</ul>' if caveats else "")
        + f"<p>Generated by <code>{esc(command)}</code> from {esc(', '.join(page.inputs))}; "
        "regenerate with the same command, never edit by hand.</p>"
        f"<p><b>Files:</b> {links}</p>"
        f"<ul><li><b>Device(s):</b> {esc(devices)}</li>"
        f"<li><b>Cells:</b> {len(table)} from {len(runs)} runs (cell × seed)</li>"
        f"<li><b>Provenance:</b> {esc(', '.join(prov))}</li>{warnings}</ul>"
        '<p id="url-note" role="status"></p><ul id="js-errors"></ul>'
        f'<nav>{found_link}<a href="#recommendation">recommendation</a> · '
        '<a href="#cells-h">cells</a> · '
        '<a href="#charts">charts</a> · <a href="#details">cell details</a> · '
        '<a href="#compatibility">compatibility</a></nav>'
        + (f'<h2 id="findings">What we found</h2>{findings_section(page.findings)}'
           if page.findings else "")
        + f'<h2 id="recommendation">Recommendation</h2>{advice_section(page.advice, frozenset(constants))}'
        '<h2 id="cells-h">Every cell</h2><p class="note">Accuracy: mean over the seeds that '
        "finished, with the interval it is judged by (Wilson over the test images for one seed; "
        "t over seeds, or Wilson where wider). Throughput: median over seeds with the p10–p90 "
        "spread of its timing windows. MFU: training FLOP/s over the measured matmul peak. "
        f"Peak MiB: tensor bytes of one training step.</p>"
        f"{cells_table(table, frozenset(constants))}"
        f'<h2 id="charts">Charts</h2>{charts_section(page.charts)}'
        '<h2 id="details">Cell details</h2><p class="note">Per cell: provenance of each seed, '
        "the command that re-runs it, its learning curve and its top profiler operators.</p>"
        f"{cell_details(page)}"
        f'<h2 id="compatibility">Compatibility matrix</h2>{compat_section(page.compat)}')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>adaptbench · {esc(profile)}</title><style>{CSS}</style>"
            f"<script>{ERROR_HOOK}</script></head><body>{body}"
            f"<script>{SCRIPT}</script></body></html>\n")


def write_index(page: Page, path: Path) -> Path:
    """Write :func:`render`'s page to ``path`` (UTF-8) and return the path."""
    path = Path(path)
    if page.out_dir is None:  # the links to the CSVs are relative to where the page is
        page = dataclasses.replace(page, out_dir=path.parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(page), encoding="utf-8")
    return path
