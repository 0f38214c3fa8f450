""""What we found": generated findings, claimed only where the report's statistics separate.

Each results directory is a runs.csv built from the report fixture's first row (mnist resnet18
repeat3, ok, full, 500 test images), one row per cell × seed, so the intervals are known.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import report
from bench.report import findings as report_findings
from bench.report import readme as report_readme
from bench.report.findings import findings_for
from bench.report.readme import ReadmeError, fill_readme, readme_block
from bench.schema import SCHEMA_VERSION

FIXTURES = Path(__file__).parent / "fixtures" / "report"


def _dir(tmp_path: Path, rows: list[dict], name: str = "r") -> Path:
    """A results dir whose runs.csv holds ``rows`` over the fixture's first row."""
    header, first, *_ = (FIXTURES / "runs.csv").read_text().splitlines()
    base = dict(zip(header.split(","), first.split(","), strict=True))
    base["schema_version"] = str(SCHEMA_VERSION)
    columns = list(dict.fromkeys([*base, *(k for r in rows for k in r)]))
    lines = [",".join(columns)]
    for i, r in enumerate(rows):
        row = {**base, "cell_hash": f"{i:016x}", "timestamp": f"2025-06-01T10:{i:02d}:00+00:00",
               **{k: str(v) for k, v in r.items()}}
        lines.append(",".join(row.get(c, "") for c in columns))
    d = tmp_path / name
    d.mkdir(parents=True)
    (d / "runs.csv").write_text("\n".join(lines) + "\n")
    return d


def _cell(strategy: str, accs: list[float], img_s: float, mem: float = 512.0,
          **extra: object) -> list[dict]:
    """One row per seed of one cell: its accuracies, a tight window spread around ``img_s``."""
    return [{"strategy": strategy, "seed": s, "test_acc": a, "train_img_s": img_s,
             "train_img_s_p10": 0.97 * img_s, "train_img_s_p90": 1.03 * img_s,
             "peak_mem_mib": mem, **extra} for s, a in enumerate(accs)]


def _numbered(lines: list[str]) -> list[str]:
    return [line for line in lines if line[:1].isdigit() and ". " in line[:4]]


def test_one_seed_claims_no_finding(tmp_path):
    d = _dir(tmp_path, [*_cell("repeat3", [0.95], 100), *_cell("resize32", [0.60], 50)])
    body = findings_for(d)
    assert any("One seed per cell: no finding is claimed" in line for line in body)
    assert _numbered(body) == []
    # What was measured is still said up front, weights and seeds included.
    assert body[0].startswith("**Measured**") and "seeds 1 (0)" in body[0]


def test_a_separated_winner_is_named_with_its_interval_and_file(tmp_path):
    d = _dir(tmp_path, [*_cell("repeat3", [0.95, 0.951, 0.949], 100, mem=500),
                        *_cell("resize32", [0.60, 0.61, 0.59], 20, mem=900)])
    body = findings_for(d)
    items = _numbered(body)
    assert len(items) == 2, body
    assert "**resnet18: `repeat3` has the best accuracy**, 95.00% [" in items[0]
    assert "its 95% interval clears the other 1's" in items[0]
    assert items[0].endswith(f"(`{report_findings.shown_path(d)}/runs.csv`)")
    # The costliest (slowest windows) strategy: what it costs and what it buys, with intervals.
    cost = items[1]
    assert "`resize32` trains at 20 img/s" in cost and "against 100 img/s" in cost
    assert "5.0× slower (4.7–5.3× by the window spreads)" in cost and "900 MiB of peak memory against 500 (1.80×)" in cost
    assert "loses accuracy: -35.00 pp [" in cost


def test_a_tie_names_the_cheapest_of_the_tied_set(tmp_path):
    d = _dir(tmp_path, [*_cell("repeat3", [0.90, 0.92, 0.91], 100),
                        *_cell("resize32", [0.905, 0.915, 0.91], 30)])
    items = _numbered(findings_for(d))
    assert "**resnet18: no clear winner**" in items[0]
    assert "take the cheapest of the tied set, `repeat3`, at 100 img/s" in items[0]
    assert "its window spread clear of the others'" in items[0]
    assert "for no accuracy gain that can be told from zero: " in items[1]


def test_a_tied_strategy_whose_interval_reaches_chance_is_not_the_one_to_take(tmp_path):
    # vgg16 on the cpu profile: resize32 at 10.1 / 24.5 / 22.3% is tied with the others and
    # the fastest, but its interval reaches 10% (chance on MNIST's ten classes).
    d = _dir(tmp_path, [*_cell("repeat3", [0.30, 0.32, 0.31], 10),
                        *_cell("droppools", [0.25, 0.33, 0.29], 20),
                        *_cell("resize32", [0.101, 0.245, 0.223], 50)])
    (item, *_) = _numbered(findings_for(d))
    assert "**resnet18: no clear winner**" in item
    assert "take the cheapest of the tied set, `droppools`, at 20 img/s" in item
    assert "(`resize32` not taken: its interval reaches chance, 10%)" in item


def test_the_costliest_strategy_is_weighed_against_the_pick_not_a_skipped_one(tmp_path):
    # vgg16 on the cpu profile: the costliest strategy was compared with resize32, the fastest,
    # which the finding before it had just declined to offer; it is compared with the pick now.
    d = _dir(tmp_path, [*_cell("repeat3", [0.30, 0.32, 0.31], 10),
                        *_cell("droppools", [0.25, 0.33, 0.29], 20),
                        *_cell("resize32", [0.101, 0.245, 0.223], 50)])
    (_, cost, *_) = _numbered(findings_for(d))
    assert "the costliest strategy**, `repeat3` trains at 10 img/s" in cost
    assert "against 20 img/s (p10–p90 19.4–20.6) for `droppools` (the pick above), 2.0× slower" \
        in cost and "resize32" not in cost
    # With no pick (or the pick itself the costliest) the fastest is the reference, as before.
    d = _dir(tmp_path, [*_cell("repeat3", [0.95, 0.951, 0.949], 10),
                        *_cell("droppools", [0.60, 0.61, 0.59], 20),
                        *_cell("resize32", [0.50, 0.51, 0.49], 50)], "winner-costliest")
    (best, cost, *_) = _numbered(findings_for(d))
    assert "`repeat3` has the best accuracy" in best
    assert "for `resize32`, 5.0× slower" in cost and "the pick above" not in cost


def test_a_contended_or_measure_only_cell_is_never_named(tmp_path):
    contended = _dir(tmp_path, [*_cell("repeat3", [0.95, 0.951, 0.949], 100, contended="true",
                                       cpu_share=0.5),
                                *_cell("resize32", [0.60, 0.61, 0.59], 20)], "c")
    items = _numbered(findings_for(contended))
    assert "no winner named**: `repeat3` leads" in items[0] and "contended" in items[0]
    assert not any("has the best accuracy" in i for i in items)
    # A contended cell is not the costliest or the fastest either: only one timed cell is left.
    assert len(items) == 1
    timed_only = _dir(tmp_path, [*_cell("repeat3", [0.95, 0.951, 0.949], 100),
                                 *_cell("resize32", [0.60, 0.61, 0.59], 20),
                                 *[{**r, "mode": "measure-only", "test_acc": ""}
                                   for r in _cell("resize224", [0, 0, 0], 5)]], "m")
    items = _numbered(findings_for(timed_only))
    assert "no winner named**: resize224 (measure-only) could run" in items[0]
    assert "`resize224` trains at 5 img/s" in items[1]
    assert "what it buys is not measured: `resize224` has no accuracy (measure-only)" in items[1]


def test_superseded_rows_are_left_out(tmp_path):
    old = [{**r, "schema_version": "1"} for r in _cell("resize32", [0.99, 0.99, 0.99], 500)]
    d = _dir(tmp_path, [*_cell("repeat3", [0.95, 0.951, 0.949], 100),
                        *_cell("droppools", [0.60, 0.61, 0.59], 20), *old])
    body = "\n".join(findings_for(d))
    assert "resize32" not in body and "`repeat3` has the best accuracy" in body
    only_old = _dir(tmp_path, old, "old")
    assert findings_for(only_old)[0].startswith("No finding is claimed. No current rows")


def test_at_most_five_findings(tmp_path):
    rows = []
    for model in ("resnet18", "vgg16", "resnet50"):
        rows += [{**r, "model": model} for r in
                 [*_cell("repeat3", [0.95, 0.951, 0.949], 100),
                  *_cell("resize32", [0.60, 0.61, 0.59], 20)]]
    body = findings_for(_dir(tmp_path, rows))
    assert len(_numbered(body)) == 5
    assert body[-1] == "1 more in `summary.md`'s tables and recommendation."


def test_summary_and_page_carry_the_section(tmp_path):
    d = _dir(tmp_path, [*_cell("repeat3", [0.95, 0.951, 0.949], 100),
                        *_cell("resize32", [0.60, 0.61, 0.59], 20)])
    report.build_report(d)
    md = (d / "summary.md").read_text()
    assert "## What we found" in md and "`repeat3` has the best accuracy" in md
    assert md.index("## What we found") < md.index("## Recommendation")
    page = (d / "index.html").read_text()
    assert '<h2 id="findings">What we found</h2>' in page
    assert '<a href="#findings">' in page
    assert "<b>resnet18: <code>repeat3</code> has the best accuracy</b>" in page
    assert '<ol class="findings"><li>' in page


def test_fill_readme_replaces_only_its_block():
    begin = report_readme.markers("results/x")[0]
    end = report_readme.markers("results/x")[1]
    text = f"# t\n\nkeep\n{begin}\nold line\n{end}\nkeep too\n"
    new = fill_readme(text, "results/x", ["one", "", "two"])
    assert new == f"# t\n\nkeep\n{begin}\none\n\ntwo\n{end}\nkeep too\n"
    assert readme_block(new, "results/x") == ["one", "", "two"]
    assert fill_readme(new, "results/x", ["one", "", "two"]) == new  # idempotent
    with pytest.raises(ReadmeError, match="no findings block for results/y"):
        fill_readme(text, "results/y", ["x"])


def test_cli_readme_option(tmp_path, capsys):
    d = _dir(tmp_path, [*_cell("repeat3", [0.95, 0.951, 0.949], 100),
                        *_cell("resize32", [0.60, 0.61, 0.59], 20)])
    label = report_findings.shown_path(d)
    readme = tmp_path / "README.md"
    readme.write_text("intro\n" + report_readme.markers(label)[0] + "\n"
                      + report_readme.markers(label)[1] + "\nend\n")
    assert report.main([str(d), "--readme", str(readme)]) == 0
    assert readme_block(readme.read_text(), label) == findings_for(d)
    assert readme.read_text().startswith("intro\n") and readme.read_text().endswith("end\n")
    # A table block, where the README has one, is the headline table of the same rows.
    readme.write_text(readme.read_text() + "\n".join(report_readme.markers(label, "table"))
                      + "\n")
    assert report.main([str(d), "--readme", str(readme)]) == 0
    table = readme_block(readme.read_text(), label, "table")
    assert table == report_readme.table_for(d)
    assert table[0].startswith("| model | strategy | test acc % | train img/s")
    assert any("`repeat3` | **95.00 ± 0.10**" in line for line in table), table
    assert readme_block(readme.read_text(), label) == findings_for(d)  # untouched by it
    bare = tmp_path / "OTHER.md"
    bare.write_text("no markers\n")
    assert report.main([str(d), "--readme", str(bare)]) == 2
    assert "no findings block for" in capsys.readouterr().err
    assert bare.read_text() == "no markers\n"


def test_an_interval_is_never_shown_past_0_or_100_percent(tmp_path):
    """Three scattered seeds give a t interval below 0; an accuracy is not, so it stops at 0."""
    d = _dir(tmp_path, [*_cell("repeat3", [0.20, 0.21, 0.19], 100),
                        *_cell("resize32", [0.05, 0.40, 0.10], 30)])
    items = _numbered(findings_for(d))
    assert "`resize32` 18.33% [0.00, " in items[0] and "[-" not in items[0]
