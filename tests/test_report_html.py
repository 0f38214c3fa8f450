"""index.html: self-contained, every value escaped, and — in a real headless browser (Debian's
``chromium``) — loads without errors, shows one row per cell and sorts.

The results are the report fixture with hostile names: a dataset called
``folder:/data/<odd>&"chars'<script>…`` and a failure reason carrying an ``<img onerror>``. Their
payloads would set ``data-pwned`` on ``<html>`` if they ever ran. The browser tests skip, saying
why, when no chromium is installed (CI installs it: .ci/run); the screenshot is copied to
``runs/ci-artifacts/report.png`` (git-ignored) for CI to keep.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from bench import report
from bench.__main__ import build_parser
from bench.report import html as report_html
from bench.report import page_sections
from bench.schema import SCHEMA_VERSION
from bench.sweep import parse_only

FIXTURES = Path(__file__).parent / "fixtures" / "report"
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "runs" / "ci-artifacts"
HOSTILE_DATASET = ("folder:/data/<odd>&\"chars'<script>document.documentElement"
                   ".setAttribute('data-pwned','script')</script>")
HOSTILE_REASON = ("<img src=x onerror=\"document.documentElement.setAttribute('data-pwned',"
                  "'img')\"> & out of memory")
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """The fixture's results with hostile names, reported once; (index.html, comparison)."""
    d = tmp_path_factory.mktemp("html") / "results" / "hostile"
    d.mkdir(parents=True)
    for name in ("runs.csv", "runs.shard-1-of-2.csv", "history.csv", "ops.csv"):
        df = pd.read_csv(FIXTURES / name, dtype=str, keep_default_na=False)
        df["dataset"] = HOSTILE_DATASET
        if "schema_version" in df:  # the version-1 fixture stands for current rows here
            df["schema_version"] = str(SCHEMA_VERSION)
        if "reason" in df:
            df.loc[df["status"] == "oom", "reason"] = HOSTILE_REASON
        df.to_csv(d / name, index=False)
    shutil.copy(FIXTURES / "compat.csv", d.parent / "compat.csv")
    report.build_report(d)
    return d / "index.html", report.comparison_table(report.read_runs(d))


class _Tags(HTMLParser):
    """Start tags (name, attrs) and the text of a document."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parse(text: str) -> _Tags:
    parser = _Tags()
    parser.feed(text)
    return parser


def _check_escaped(text: str) -> None:
    doc = _parse(text)
    names = [t for t, _ in doc.tags]
    assert names.count("script") == 2  # the error hook and the page's own script
    assert "img" not in names and "odd" not in names
    assert not any("onerror" in attrs for _, attrs in doc.tags)
    assert not any("data-pwned" in attrs for _, attrs in doc.tags)  # no payload ran / landed
    joined = "".join(doc.text)
    assert HOSTILE_DATASET in joined and HOSTILE_REASON in joined  # shown, as text


# --- the page itself (no browser needed) --------------------------------------------------


def test_every_value_is_escaped(page):
    index, _ = page
    text = index.read_text(encoding="utf-8")
    assert HOSTILE_DATASET not in text  # never raw
    assert "folder:/data/&lt;odd&gt;&amp;&quot;chars&#x27;&lt;script&gt;" in text
    _check_escaped(text)


def test_self_contained_one_row_per_cell(page):
    index, table = page
    text = index.read_text(encoding="utf-8")
    doc = _parse(text)
    assert not [t for t, a in doc.tags if t in ("link", "iframe", "img", "object")]
    assert not [a for _, a in doc.tags if "src" in a]  # nothing is fetched
    csp = [a["content"] for t, a in doc.tags if t == "meta" and "content" in a
           and a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0]
    assert text.count('<tr class="cell"') == len(table) == 7
    assert text.count('<details id="cell-') == 7
    assert sum(t == "svg" and "chart" in a.get("class", "") for t, a in doc.tags) == 7
    assert "Recommendation" in text and 'id="compat"' in text


def test_the_header_says_what_was_measured_and_links_the_files(page):
    """Recipe line, caveat box, links to the CSVs and docs, constant columns in the header."""
    index, _ = page
    text = index.read_text(encoding="utf-8")
    assert "script ran" not in text  # no debug text
    recipe = text.split('<p class="recipe">', 1)[1].split("</p>", 1)[0]
    for label in ("epochs", "training images", "seeds", "optimizer", "batch"):
        assert f"<b>{label}</b>" in recipe
    caveat = text.split('<ul class="caveat">', 1)[1].split("</ul>", 1)[0]
    assert "weights" in caveat  # randomly initialised, or not recorded: always said
    doc = _parse(text)
    hrefs = [a.get("href", "") for t, a in doc.tags if t == "a"]
    assert "runs.csv" in hrefs and "comparison.csv" in hrefs
    assert any(h.endswith("docs/results.md") for h in hrefs)
    # The hostile dataset is every cell's: shown once in the header, not as a column.
    heads = [a.get("data-key") for t, a in _parse(
        text.split('<table id="cells"', 1)[1].split("</thead>", 1)[0]).tags if t == "th"]
    assert "dataset" not in heads and "model" in heads and "strategy" in heads
    assert "dataset:</b>" in text.split('<p class="constants">', 1)[1].split("</p>", 1)[0]
    advice = text.split('<table class="advice">', 1)[1].split("</thead>", 1)[0]
    assert "<th>dataset</th>" not in advice and "<th>model</th>" in advice


def test_identifiers_never_break_and_tables_scroll(page):
    index, _ = page
    text = index.read_text(encoding="utf-8")
    assert "overflow-wrap:anywhere" not in text and "word-break" not in text
    assert "white-space:nowrap" in text.split(".id,code", 1)[1].split("}", 1)[0]
    doc = _parse(text)
    models = [a for t, a in doc.tags if t == "td" and a.get("data-v") == "resnet18"]
    assert models and all(a.get("class") == "id" for a in models)
    # every table in a horizontal scroll container
    assert text.count("<table") == text.count('<div class="scroll"') > 0


def test_hyphenated_identifiers_in_prose_stay_on_one_line():
    text = report_html.keep_words("tied: post-convtranspose 95.70% (measure-only: no accuracy)")
    assert '<span class="id">post-convtranspose</span>' in text
    assert '<span class="id">measure-only</span>' in text and "95.70%" in text


def test_not_applicable_is_shaded_apart_from_failures(page):
    index, _ = page
    text = index.read_text(encoding="utf-8")
    css = text.split("<style>", 1)[1].split("</style>", 1)[0]
    na = css.split("tr.cell[data-status=incompatible]>td{", 1)[1].split("}", 1)[0]
    failed = css.split("tr.cell[data-status=oom]>td", 1)[1].split("}", 1)[0]
    assert "background" in na and "background" in failed and na not in failed


def test_the_compatibility_table_is_folded_and_not_applicable_is_no_failure():
    """The heatmap shows the matrix; the table stays in a <details>, its n/a cells grey."""
    compat = pd.DataFrame({"model": ["vgg16", "vgg16", "vgg16"],
                           "strategy": ["cifarstem", "repeat3", "resize32"],
                           "status": ["failed", "failed", "ok"],
                           "error_class": ["not-applicable", "too-small", ""],
                           "explanation": ["ResNet only", "0x0 map", ""],
                           "min_input_px": [None, 32, None]})
    text = report_html.compat_section(compat)
    assert text.index('<details id="compat-details">') < text.index('<table id="compat"')
    assert text.rstrip().endswith("</details>")
    cells = {c: a.get("class") for c, (t, a) in zip(
        ("na", "bad", "ok"), [x for x in _parse(text).tags if x[0] == "td"], strict=True)}
    assert cells == {"na": "na", "bad": "bad", "ok": "ok"}
    css = report_html.CSS
    assert "#compat td.na{background:repeating-linear-gradient" in css


def test_the_findings_section_leads_the_page(page):
    index, _ = page
    text = index.read_text(encoding="utf-8")
    assert text.index('<h2 id="findings">What we found</h2>') < text.index(
        '<h2 id="recommendation">')
    body = text.split('<div id="findings-body">', 1)[1].split("</div>", 1)[0]
    assert "<b>Measured</b>" in body and "weights" in body  # what was measured, up front
    assert "`" not in body and "**" not in body  # markdown rendered, not shown raw
    html = report_html.findings_section(["**a** `post-convtranspose` x", "", "says how",
                                          "", "1. one `b`", "2. two", "", "after"])
    assert '<code><span class="id">post-convtranspose</span></code>' in html
    # Every paragraph where the lines put it: the list between "says how" and "after".
    assert html.endswith('x</p><p>says how</p><ol class="findings"><li>one <code>b</code>'
                         '</li><li>two</li></ol><p>after</p></div>')


def test_rerun_command_parses_as_the_cli_wants(page):
    _, table = page
    row = pd.Series({"profile": "fixture", "dataset": "mnist", "model": "vgg16",
                     "strategy": "conv1+resize32", "seed": 1})
    cmd = report_html.rerun_command(row, Path("results/fixture"))
    assert cmd == ("python -m bench run --profile fixture --only "
                   "dataset=mnist,model=vgg16,strategy=conv1+resize32,seed=1 "
                   "--results-dir results/fixture --force")
    args = build_parser().parse_args(shlex.split(cmd)[3:])
    grid = SimpleNamespace(datasets=["mnist"], models=["vgg16"], strategies=["conv1+resize32"],
                           seeds=[0, 1])
    assert parse_only(args.only, grid) == {"dataset": {"mnist"}, "model": {"vgg16"},
                                          "strategy": {"conv1+resize32"}, "seed": {"1"}}
    assert args.force and args.results_dir == "results/fixture"


def test_svg_ids_are_prefixed_per_chart():
    svg = ('<?xml version="1.0"?>\n<!DOCTYPE svg>\n<svg xmlns="http://www.w3.org/2000/svg">'
           '<!-- <b>title</b> --><defs><clipPath id="p1"/></defs>'
           '<use xlink:href="#g1"/><g clip-path="url(#p1)" id="g1"/></svg>')
    out = report_html.inline_svg(svg, "c3-")
    assert out.startswith('<svg class="chart"') and "<!--" not in out and "<?xml" not in out
    assert 'id="c3-p1"' in out and 'href="#c3-g1"' in out and "url(#c3-p1)" in out


# --- in a real browser ----------------------------------------------------------------------

needs_browser = pytest.mark.skipif(
    _browser() is None, reason="no headless browser: install Debian's chromium "
    "(apt-get install -y chromium; .ci/run does it in CI) to run the index.html browser tests")


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [_browser(), "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
           "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)


def _cells(dom: str) -> list[list[str]]:
    """data-v of every cell of every row of the cells table, in DOM order."""
    doc = _parse(dom.split('<table id="cells"', 1)[1].split("</table>", 1)[0])
    rows, current = [], None
    for tag, attrs in doc.tags:
        if tag == "tr" and attrs.get("class") == "cell":
            current = []
            rows.append(current)
        elif tag == "td" and current is not None:
            current.append(attrs.get("data-v", ""))
    return rows


def _keys(dom: str) -> list[str]:
    """data-key of the cells table's headers, in order (constant columns are left out)."""
    head = dom.split('<table id="cells"', 1)[1].split("</thead>", 1)[0]
    return [a["data-key"] for t, a in _parse(head).tags if t == "th"]


@needs_browser
def test_loads_without_errors_and_sorts_in_chromium(page, tmp_path):
    index, table = page
    keys = _keys(index.read_text(encoding="utf-8"))
    url = index.as_uri() + "?sort=test_acc&order=desc"
    run = _chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", url)
    dom = run.stdout
    assert run.returncode == 0 and "<html" in dom, run.stderr[-2000:]
    assert 'data-js="ok"' in dom, dom[:3000]  # the script ran to its end, no error recorded
    errors = dom.split('<ul id="js-errors">', 1)[1].split("</ul>", 1)[0]
    assert errors == "", errors
    _check_escaped(dom)  # also: no data-pwned attribute, so no hostile payload ran
    rows = _cells(dom)
    assert len(rows) == len(table) == 7
    acc = [r[keys.index("test_acc")] for r in rows]
    scored = [float(v) for v in acc if v]
    assert scored == sorted(scored, reverse=True) and len(scored) == 4
    assert acc[len(scored):] == [""] * (7 - len(scored))  # unscored cells last
    assert "script ran" not in dom  # no debug text
    assert dom.count('<svg class="chart"') == 7  # the charts are there once the script ran
    assert '<h2 id="findings">What we found</h2>' in dom and '<div id="findings-body">' in dom
    # Ascending by strategy name, and a filter that keeps the vgg16 rows only.
    url = index.as_uri() + "?sort=strategy&order=asc&filter=vgg16"
    dom = _chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", url).stdout
    rows = _cells(dom)
    names = [r[keys.index("strategy")] for r in rows]
    assert names == sorted(names)
    assert "4 of 7 cells" in dom and 'data-js="ok"' in dom


@needs_browser
def test_an_unknown_url_key_is_ignored_with_a_note_naming_the_valid_ones(page, tmp_path):
    """A mistyped link (?sort=acc, an unknown option) leaves a working page that says why."""
    index, table = page
    url = index.as_uri() + "?sort=acc&order=sideways&colour=red&filter=resnet18"
    run = _chromium(tmp_path, "--virtual-time-budget=5000", "--enable-logging=stderr",
                    "--dump-dom", url)
    dom = run.stdout
    assert 'data-js="ok"' in dom, dom[:3000]  # the script ran to its end
    assert dom.split('<ul id="js-errors">', 1)[1].split("</ul>", 1)[0] == ""
    assert "Uncaught" not in run.stderr, run.stderr[-2000:]  # no console error either
    note = dom.split('<p id="url-note"', 1)[1].split("</p>", 1)[0]
    assert 'sort key "acc" ignored; valid keys: ' in note
    assert "test_acc" in note and "train_img_s" in note
    assert 'order "sideways" ignored; valid: asc, desc' in note
    assert 'unknown option "colour" ignored' in note
    assert "3 of 7 cells" in dom  # the filter still applied
    assert dom.count('<svg class="chart"') == 7


@needs_browser
def test_screenshot_is_taken(page, tmp_path):
    index, _ = page
    shot = tmp_path / "report.png"
    run = _chromium(tmp_path, "--window-size=1400,1000", f"--screenshot={shot}",
                    index.as_uri())
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # not a blank page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "report.png")


def test_a_cell_evaluated_once_gets_no_curve_in_its_details():
    history = pd.read_csv(FIXTURES / "history.csv")
    seeds = history[history["strategy"] == "repeat3"][["cell_hash", "device_name"]]
    page = SimpleNamespace(history=history)
    assert '<svg class="curve"' in page_sections._curve(page, seeds.drop_duplicates())
    page = SimpleNamespace(history=history[history["epoch"] == 1])
    once = page_sections._curve(page, seeds.drop_duplicates())
    assert '<svg class="curve"' not in once and "no curve to draw" in once
    assert "<table" in once  # the evaluation itself is still listed
