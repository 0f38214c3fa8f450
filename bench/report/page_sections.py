"""The sections of ``index.html``: the sortable cells table, the findings and the advice, each cell's
details (its seeds, top operators and learning curve), the compatibility matrix and the charts.

Every value from the results is escaped here (:func:`~bench.report.page_common.esc`).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from bench.report.advise import CRITERIA, DEFINITIONS, Advice, verdict_text
from bench.report.fmt import fmt_num
from bench.report.markdown import speed_text
from bench.report.page_common import (
    TOP_OPS,
    Page,
    curve_svg,
    esc,
    fmt_pct,
    inline_svg,
    num_html,
    rerun_command,
    table_html,
)

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
            (num_html(r["test_acc_mean"]), acc), (num_html(r["test_acc_ci_lo"]), ci),
            (num_html(r["test_acc_n"]), esc(int(r["test_acc_n"]))),
            (num_html(r["diff_vs_best"]) if not r["is_top"] else "0", diff),
            (num_html(r["train_img_s_median"]), speed),
            (num_html(r["mfu_median"]), "—" if pd.isna(r["mfu_median"])
             else f"{100 * r['mfu_median']:.1f}"),
            (num_html(r["peak_mem_mib"]), esc(fmt_num(r["peak_mem_mib"]))),
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
    return (table_html([*head, *(esc(t) for _, t, _, _ in CRITERIA)], rows, "advice")
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
    return table_html(["operator", f"self {kind} ms (mean over seeds)", f"% of these {len(rows)}"],
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
    return curve + table_html(cols, rows)


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
            + table_html(["seed", "status", "mode", "device_id", "git", "torch", "timestamp",
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
