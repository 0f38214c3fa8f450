"""bench advise: a strategy is recommended only where its interval clears every other one's.

Synthetic runs.csv rows (the report fixture's first row, overridden) make one strategy win
clearly, or two tie; the published results/cpu and results/gpu must get an answer for vgg16 and
resnet18.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench import report
from bench.report import advise
from bench.report.stats import pick_best, ratio_interval

FIXTURES = Path(__file__).parent / "fixtures" / "report"
ROOT = Path(__file__).resolve().parents[1]


def _runs_dir(tmp_path: Path, rows: list[dict], name: str = "r") -> Path:
    """A results dir whose runs.csv holds ``rows``, each overriding the fixture's first row
    (mnist resnet18 repeat3 seed 0, ok: 3 epochs, 500 test images)."""
    header, first, *_ = (FIXTURES / "runs.csv").read_text().splitlines()
    base = dict(zip(header.split(","), first.split(","), strict=True))
    columns = list(dict.fromkeys([*base, *(k for r in rows for k in r)]))
    lines = [",".join(columns)]
    for i, r in enumerate(rows):
        row = {**base, "cell_hash": f"{i:016x}", "timestamp": f"2025-06-01T10:{i:02d}:00+00:00",
               **{k: str(v) for k, v in r.items()}}
        lines.append(",".join(row.get(c, "") for c in columns))
    d = tmp_path / name
    d.mkdir()
    (d / "runs.csv").write_text("\n".join(lines) + "\n")
    return d


def _verdicts(d: Path) -> dict[str, advise.Verdict]:
    runs = report.read_runs(d)
    (only,) = advise.advise(runs, report.comparison_table(runs))
    return {v.criterion: v for v in only.verdicts}


# The fixture's epoch: 2,000 training images in whole batches of 64.
EPOCH_IMAGES = 2000 // 64 * 64


def _cell(strategy, acc, epoch_s, mem, **extra) -> dict:
    """One seed of one strategy on 1,000 test images whose timed windows ran an epoch in
    ``epoch_s`` seconds; window-to-window spread ±5%."""
    rate = EPOCH_IMAGES / epoch_s if epoch_s != "" else ""  # "": a measure-only cell
    return {"strategy": strategy, "test_acc": acc, "test_size": 1000, "epoch_s": epoch_s,
            "train_img_s": rate, "train_img_s_p10": 0.95 * rate if rate != "" else "",
            "train_img_s_p90": 1.05 * rate if rate != "" else "", "peak_mem_mib": mem, **extra}


def test_a_clear_winner_on_every_criterion(tmp_path):
    d = _runs_dir(tmp_path, [_cell("resize32", 0.95, 10, 500), _cell("repeat3", 0.80, 40, 900)])
    v = _verdicts(d)
    assert {k: x.pick.winner for k, x in v.items()} == {
        "accuracy": "resize32", "acc_per_s": "resize32", "memory": "resize32"}
    # Accuracy per training second = test_acc % / window seconds: 95 / (3 x 10 s).
    value, lo, hi = v["acc_per_s"].values["resize32"]
    assert value == pytest.approx(95 / 30)
    acc = v["accuracy"].values["resize32"]
    assert lo == pytest.approx(acc[1] / (30 * 100 / 95))  # slowest time: the p10 throughput
    assert hi == pytest.approx(acc[2] / (30 * 100 / 105))
    text = advise.advice_text(advise.advise(report.read_runs(d),
                                            report.comparison_table(report.read_runs(d))))
    assert "best accuracy:" in text and "resize32 — 95.00% [" in text
    assert "its interval clears the other 1" in text and "no clear winner" not in text


def test_two_tied_strategies_are_named_not_picked(tmp_path):
    # 1 pp apart on 1,000 images (Wilson intervals overlap); similar speed; memory within 1%.
    d = _runs_dir(tmp_path, [_cell("resize32", 0.95, 10, 500), _cell("repeat3", 0.94, 10.5, 503),
                             _cell("conv1", 0.50, 10, 2000)])
    v = _verdicts(d)
    for key in ("accuracy", "acc_per_s", "memory"):
        assert v[key].pick.winner is None, key
        assert set(v[key].pick.tied) == {"resize32", "repeat3"}, key
    assert v["accuracy"].pick.tied[0] == "resize32"  # the top one first
    assert v["memory"].pick.tied[0] == "resize32"    # lower is better
    line = advise.verdict_text(v["accuracy"])
    assert line.startswith("no clear winner — tied: resize32 95.00% [")
    assert "repeat3 94.00% [" in line and "conv1" not in line


def test_chance_and_measure_only_cells_sit_out_with_a_reason(tmp_path):
    d = _runs_dir(tmp_path, [
        _cell("resize32", 0.90, 40, 500),
        _cell("droppools", 0.11, 1, 600),  # fast but at chance (10 classes): not efficient
        _cell("resize224", "", 99, 300, mode="measure-only", test_acc="", best_acc="")])
    v = _verdicts(d)
    # resize32 is the top one, but resize224 has no accuracy and might have won: no winner.
    assert v["acc_per_s"].pick.top == "resize32" and v["acc_per_s"].pick.winner is None
    assert v["acc_per_s"].missing == "resize224 (measure-only)"
    assert "at chance" in v["acc_per_s"].excluded["droppools"]
    assert v["accuracy"].excluded["resize224"] == "measure-only: no accuracy"
    # Memory was measured by the measure-only cell: it competes, and wins.
    assert v["memory"].pick.winner == "resize224"


def test_no_spread_means_no_winner(tmp_path):
    rows = [_cell("resize32", 0.95, 10, 500, train_img_s_p10="", train_img_s_p90=""),
            _cell("repeat3", 0.80, 40, 900)]
    v = _verdicts(_runs_dir(tmp_path, rows))
    assert v["acc_per_s"].pick.winner is None  # a missing p10/p90 cannot separate
    assert math.isnan(v["acc_per_s"].values["resize32"][1])
    assert "(no interval)" in advise.verdict_text(v["acc_per_s"])


def test_pick_best_and_ratio_interval():
    assert pick_best({"a": (5, 4, 6), "b": (2, 1, 3)}).winner == "a"
    assert pick_best({"a": (5, 4, 6), "b": (2, 1, 3)}, higher_is_better=False).winner == "b"
    tie = pick_best({"a": (5, 3, 7), "b": (4, 2, 6), "c": (1, 0, 2)})
    assert (tie.top, tie.winner, tie.tied) == ("a", None, ("a", "b"))
    assert pick_best({"a": (1, math.nan, math.nan), "b": (0, 0, 0.5)}).tied == ("a", "b")
    assert pick_best({"only": (1, 0, 2)}).winner == "only"
    assert pick_best({}).top is None
    assert ratio_interval((10, 8, 12), (2, 1, 4)) == (5, 2, 12)
    assert math.isnan(ratio_interval((10, 8, 12), (0, 0, 0))[0])


def test_summary_md_carries_the_recommendation(tmp_path):
    d = _runs_dir(tmp_path, [_cell("resize32", 0.95, 10, 500), _cell("repeat3", 0.80, 40, 900)])
    runs = report.read_runs(d)
    table = report.comparison_table(runs)
    lines = advise.advice_markdown(advise.advise(runs, table))
    assert "## Recommendation" in lines
    row = next(line for line in lines if line.startswith("| mnist | resnet18 |"))
    assert row.count("resize32 —") == 3


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    d = _runs_dir(tmp_path, [_cell("resize32", 0.95, 10, 500)])
    assert advise.main(["--model", "nosuchnet", "--results", str(d)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'nosuchnet'" in err and "valid: resnet18" in err
    assert advise.main(["--model", "resnet18", "--dataset", "cifar", "--results", str(d)]) == 2
    assert "dataset 'cifar'" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert advise.main(["--model", "resnet18", "--results", str(empty)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no runs*.csv" in err


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
@pytest.mark.parametrize("model", ["vgg16", "resnet18"])
def test_published_results_get_an_answer(profile, model, capsys):
    results = ROOT / "results" / profile
    assert advise.main(["--model", model, "--results", str(results)]) == 0
    out = capsys.readouterr().out
    if set(report.read_runs(results)["superseded"]) != {""} and "No current rows" in out:
        return  # every published row is superseded (results/gpu, schema 1): no answer at all
    strategies = set(report.read_runs(results).query("model == @model")["strategy"])
    for _, title, _, _ in advise.CRITERIA:
        line = next(x for x in out.splitlines() if x.strip().startswith(title + ":"))
        answer = line.split(":", 1)[1].strip()
        named = answer.split(" — ")[0]
        assert named in ("no clear winner", "no winner named") or named in strategies, line


def test_no_winner_while_a_compatible_strategy_has_no_accuracy(tmp_path):
    """resize32 clears repeat3 clearly, but droppools ran measure-only: it might have won, so
    neither the table, its winner line nor advise names a winner, and each says which is
    missing. An incompatible strategy could not have competed and blocks nothing."""
    from bench.report.markdown import winner_line

    rows = [_cell("resize32", 0.95, 10, 500), _cell("repeat3", 0.80, 40, 900),
            _cell("droppools", "", "", 700, mode="measure-only", reason="over budget")]
    runs = report.read_runs(_runs_dir(tmp_path, rows))
    table = report.comparison_table(runs)
    assert not table["is_best"].any() and table["is_top"].sum() == 1
    assert set(table["missing_acc"]) == {"droppools (measure-only)"}
    line = winner_line(table)
    assert line.startswith("No winner named: droppools (measure-only)") and "**" not in line
    assert "**" not in report.headline_table(table)
    (only,) = advise.advise(runs, table)
    v = {x.criterion: x for x in only.verdicts}
    assert v["accuracy"].pick.winner is None and v["acc_per_s"].pick.winner is None
    assert advise.verdict_text(v["accuracy"]) == (
        "no winner named — no accuracy for droppools (measure-only)")
    assert v["memory"].pick.winner == "resize32"  # measured by every strategy: still decided

    incompatible = _cell("cifarstem", "", "", "", status="incompatible", reason="ResNet only")
    runs = report.read_runs(_runs_dir(tmp_path, rows[:2] + [incompatible], "r2"))
    table = report.comparison_table(runs)
    assert table.loc[table["strategy"] == "resize32", "is_best"].item()
    assert set(table["missing_acc"]) == {""}


def test_fastest_is_never_marked_on_fewer_than_the_minimum_windows(tmp_path):
    """resize32's 200 img/s clears repeat3's 100 on p10/p90, but over a single timed window
    that spread is no spread: not bold; with five windows it is."""
    fast = {"train_img_s": 200, "train_img_s_p10": 190, "train_img_s_p90": 210}
    for windows, name in ((1, "one"), (5, "five")):
        rows = [_cell("resize32", 0.95, 10, 500, **fast, timed_windows=windows),
                _cell("repeat3", 0.80, 40, 900, timed_windows=20)]
        table = report.comparison_table(report.read_runs(_runs_dir(tmp_path, rows, name)))
        marked = table.loc[table["strategy"] == "resize32", "train_img_s_is_best"].item()
        assert marked == (windows >= 5), windows


def test_superseded_rows_stay_out_of_headlines_charts_and_advice(tmp_path, capsys):
    """Schema-1 rows (old recipe, default init) are marked superseded: advise and the report's
    --headline say plainly that no current rows exist, and no chart or recommendation is made
    from them; the full tables keep them."""
    from bench.report.cli import main as report_main

    rows = [_cell("resize32", 0.95, 10, 500, schema_version=1),
            _cell("repeat3", 0.80, 40, 900, schema_version=1)]
    d = _runs_dir(tmp_path, rows)
    runs = report.read_runs(d)
    assert set(runs["superseded"]) == {advise_reason := runs["superseded"].iloc[0]}
    assert advise_reason.startswith("schema 1:") and "default init" in advise_reason
    assert advise.main(["--model", "resnet18", "--results", str(d)]) == 0
    out = capsys.readouterr().out
    assert "No current rows" in out and "resize32" not in out
    assert report_main([str(d), "--headline"]) == 0
    out = capsys.readouterr().out
    assert "No current rows" in out and "no headline table" in out and "**" not in out
    assert not (d / "charts").exists() or not any((d / "charts").iterdir())
    summary = (d / "summary.md").read_text()
    assert "## Recommendation" not in summary and "No current rows" in summary
    # A current row beside them: only it reaches the recommendation.
    d2 = _runs_dir(tmp_path, rows + [_cell("droppools", 0.9, 10, 500, seed=1,
                                             schema_version=4)], "r2")
    current, note = report.read_runs(d2), ""
    from bench.report.load import current_runs
    current, note = current_runs(current)
    assert list(current["strategy"]) == ["droppools"] and "2 rows produced by a superseded" in note


def test_a_chart_of_an_earlier_report_goes_when_every_row_is_superseded(tmp_path):
    """results/gpu kept the charts an earlier report drew from its schema-1 rows, and the README
    showed one: a report that draws none (every row superseded) removes the report's own chart
    files, and leaves any other file in charts/ alone."""
    from bench.report.cli import main as report_main

    d = _runs_dir(tmp_path, [_cell("resize32", 0.95, 10, 500, schema_version=1),
                             _cell("repeat3", 0.80, 40, 900, schema_version=1)])
    (d / "charts").mkdir()
    stale = [d / "charts" / f"{stem}.{ext}" for stem in ("accuracy_vs_throughput", "peak_memory")
             for ext in ("png", "svg")]
    for path in stale:
        path.write_bytes(b"drawn from the rows an earlier method produced")
    mine = d / "charts" / "notes.txt"
    mine.write_text("not the report's")
    assert report_main([str(d)]) == 0
    assert [p.name for p in stale if p.exists()] == []
    assert mine.read_text() == "not the report's"


def test_accuracy_per_second_comes_from_the_windows_not_the_epochs_wall_clock(tmp_path):
    """results/cpu: three cells' epoch_s was 2.2-2.4x their windows' time (a busy host between
    windows) and droppools, at 1.0x, was named the most efficient. The windows decide now."""
    slow_wall = _cell("resize32", 0.95, 10, 500)
    slow_wall["epoch_s"] = 24  # the epoch's wall clock: 2.4x what its windows measured
    d = _runs_dir(tmp_path, [slow_wall, _cell("droppools", 0.80, 12, 500)])
    v = _verdicts(d)["acc_per_s"]
    assert v.values["resize32"][0] == pytest.approx(95 / 30)
    assert v.pick.top == "resize32"


def test_a_contended_cell_is_never_named(tmp_path):
    d = _runs_dir(tmp_path, [
        _cell("resize32", 0.95, 10, 500, contended="true", cpu_share=0.4, schema_version=5),
        _cell("repeat3", 0.80, 40, 900, contended="false", cpu_share=0.95, schema_version=5)])
    v = _verdicts(d)
    assert v["accuracy"].pick.winner is None and v["accuracy"].withheld == "resize32"
    assert "not named" in advise.verdict_text(v["accuracy"])
    assert "resize32" not in v["acc_per_s"].values  # its seconds are the host's
    assert v["acc_per_s"].excluded["resize32"].startswith("contended")
    assert v["memory"].pick.winner is None
    table = report.comparison_table(report.read_runs(d))
    top = table[table["strategy"] == "resize32"].iloc[0]
    assert top["contended"] and top["is_top"] and not top["is_best"]
    assert not table["train_img_s_is_best"].any()
    md = report.markdown.winner_line(table)
    assert "No winner named" in md and "contended" in md


def test_every_table_marks_a_contended_cell_and_says_when_none_was_checked(tmp_path):
    from bench.report import markdown

    flagged = _runs_dir(tmp_path, [
        _cell("resize32", 0.95, 10, 500, contended="true", cpu_share=0.4, schema_version=5),
        _cell("repeat3", 0.80, 40, 900, contended="false", cpu_share=0.95, schema_version=5)],
        name="flagged")
    table = report.comparison_table(report.read_runs(flagged))
    lines = "\n".join(markdown._table_markdown(table))
    row = next(x for x in lines.splitlines() if x.startswith("| `resize32`"))
    assert "contended, CPU share 0.40" in row and "ok, contended" in row
    assert "top (contended)" in row
    assert "**" not in row  # never bold
    assert "(contended)" in markdown.headline_table(table)
    old = _runs_dir(tmp_path, [_cell("resize32", 0.95, 10, 500), _cell("repeat3", 0.8, 40, 900)],
                    name="old")
    old_lines = markdown._table_markdown(report.comparison_table(report.read_runs(old)))
    assert any("Contention was not measured" in x for x in old_lines)


def test_the_chart_crosses_a_contended_point_and_keeps_it_off_the_frontier(tmp_path):
    from bench.report import charts

    d = _runs_dir(tmp_path, [
        _cell("resize32", 0.95, 10, 500, contended="true", cpu_share=0.4, schema_version=5),
        _cell("repeat3", 0.80, 5, 900, contended="false", cpu_share=0.95, schema_version=5)])
    table = report.comparison_table(report.read_runs(d))
    fig = charts.accuracy_vs_throughput(table, charts.strategy_palette(table["strategy"]),
                                        charts.strategy_markers(table["strategy"]))
    (ax,) = fig.axes[:1]
    crosses = [ln for ln in ax.get_lines() if ln.get_marker() == "x"]
    assert len(crosses) == 1 and crosses[0].get_xdata()[0] == pytest.approx(EPOCH_IMAGES / 10)
    # Both would be on the frontier (resize32 more accurate, repeat3 faster); contended,
    # resize32 is not, so no frontier line of two points is drawn
    assert not [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert any("contended" in t for t in labels)
