"""The report: tables and charts from hand-made CSV fixtures (tests/fixtures/report/).

The fixture is a tiny CPU "profile": resnet18 with three strategies × two seeds, and vgg16 with
one incompatible, one measure-only, one OOM and one half-diverged cell. runs.csv holds a stale
row for resnet18/conv1/seed1 that runs.shard-1-of-2.csv replaces with a later one.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from bench import report
from bench.report import ReportError, build_report, comparison_table, headline_table, read_runs
from bench.report.stats import mean_ci, pareto_mask, t_quantile, welch_diff_ci
from bench.schema import SCHEMA_VERSION

FIXTURES = Path(__file__).parent / "fixtures" / "report"
RESULT_FILES = ("runs.csv", "runs.shard-1-of-2.csv", "history.csv", "ops.csv")
CHARTS = ("accuracy_vs_throughput", "accuracy_delta", "peak_memory",
          "learning_curves_epoch", "learning_curves_time", "compatibility", "op_time_shares")


def _results_dir(tmp_path: Path, files=RESULT_FILES, compat: bool = True) -> Path:
    """Lay the fixtures out like results/<profile>/ with the doctor's compat.csv beside it."""
    d = tmp_path / "results" / "fixture"
    d.mkdir(parents=True)
    for name in files:
        shutil.copy(FIXTURES / name, d / name)
        if name.startswith("runs"):
            # The fixture was written in the version-1 layout, which marks its rows superseded
            # (out of charts and recommendations); it stands for current rows here.
            lines = (d / name).read_text().splitlines(keepends=True)
            (d / name).write_text(lines[0] + "".join(
                f"{SCHEMA_VERSION}," + line.split(",", 1)[1] if line.startswith("1,") else line
                for line in lines[1:]))
    if compat:
        shutil.copy(FIXTURES / "compat.csv", d.parent / "compat.csv")
    return d


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, list[Path]]:
    """The whole report, built once (drawing the charts is the slow part)."""
    d = _results_dir(tmp_path_factory.mktemp("report"))
    return d, build_report(d)


# --- the report from the fixture -------------------------------------------------------------


def test_report_writes_every_file(built):
    d, written = built
    expected = {d / "summary.md", d / "comparison.csv", d / "index.html"}
    expected |= {d / "charts" / f"{c}.{ext}" for c in CHARTS for ext in ("png", "svg")}
    assert set(written) == expected
    for path in expected:
        assert path.stat().st_size > 0, path
    assert (d / "charts" / "peak_memory.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_header_tables_and_reasons(built):
    d, _ = built
    md = (d / "summary.md").read_text()
    assert md.startswith("# Results: profile `fixture`")
    assert "`python -m bench report " in md.splitlines()[2]
    assert "Fixture CPU @ 2.0GHz (cpu): 7 cells" in md
    assert "11 runs" in md and "1 measure-only" in md and "1 oom" in md
    assert "## mnist · resnet18 · Fixture CPU @ 2.0GHz" in md
    assert "## mnist · vgg16 · Fixture CPU @ 2.0GHz" in md
    # Failed and measure-only cells stay, with their reason / estimate.
    assert "incompatible [1]" in md and "Output size is too small" in md
    assert "oom [2]" in md and "out of memory at batch 64" in md
    assert "measure-only (full run est. 90 min)" in md
    assert "ok 1/2, diverged 1/2 [3]" in md
    # Two seeds each and overlapping intervals: nothing is bold, the tie is named instead,
    # and a gap that cannot be resolved says so (Newcombe over 500 images beats Welch here).
    assert "| `resize32` | 95.00 ± 0.14 (n=2) |" in md
    assert "No clear winner: `resize32`, `repeat3`, `conv1` tied" in md
    assert "-2.20 [-5.25, +0.80] n.s." in md
    assert "![accuracy vs throughput](charts/accuracy_vs_throughput.png)" in md


def test_comparison_csv_numbers(built):
    d, _ = built
    df = pd.read_csv(d / "comparison.csv")
    assert len(df) == 7
    row = df.set_index(["model", "strategy"]).loc[("resnet18", "conv1")]
    # The stale 0.5 row in runs.csv lost to the later shard row.
    assert row["test_acc_mean"] == pytest.approx(0.946)
    assert row["test_acc_n"] == 2
    assert row["train_img_s_median"] == pytest.approx(150.0)
    assert row["params"] == 11168842
    # resize32 has the top mean but overlaps conv1; the lone scored vgg16 cell is not the best,
    # since post-convtranspose (measure-only) and repeat3+resize224 (oom) have no accuracy.
    assert set(df.loc[df["is_top"], "strategy"]) == {"resize32", "conv1+resize32"}
    assert not df["is_best"].any()
    assert set(df.loc[df["model"] == "vgg16", "missing_acc"]) == {
        "post-convtranspose (measure-only), repeat3+resize224 (oom)"}
    assert row["test_images"] == 500  # test_size
    mo = df.set_index("strategy").loc["post-convtranspose"]
    assert mo["status"] == "measure-only" and mo["estimate_s"] == 5400
    assert math.isnan(mo["test_acc_mean"]) and mo["peak_mem_mib"] == 2100


def test_cli_writes_and_prints_headline(tmp_path, capsys):
    d = _results_dir(tmp_path, files=("runs.csv",), compat=False)
    out = tmp_path / "out"
    assert report.main([str(d), "--out", str(out), "--headline"]) == 0
    stdout = capsys.readouterr().out
    assert "wrote " in stdout and "| model | strategy | test acc % |" in stdout
    assert "learning curves skipped" in stdout
    assert (out / "summary.md").is_file()
    assert (out / "charts" / "accuracy_vs_throughput.svg").is_file()
    assert not (out / "charts" / "compatibility.png").exists()


# --- statistics ----------------------------------------------------------------------------


@pytest.mark.parametrize(("df", "expected"), [
    (1, 12.706205), (2, 4.302653), (3, 3.182446), (5, 2.570582), (10, 2.228139),
    (30, 2.042272), (120, 1.979930), (1e9, 1.959964)])
def test_t_quantile_matches_tables(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-6)


def test_mean_ci_known_case():
    # n = 2: half-width = t(0.975, 1) * s / sqrt(2), s = 0.01 / sqrt(2).
    ci = mean_ci([0.98, 0.99])
    assert ci.mean == pytest.approx(0.985)
    assert ci.std == pytest.approx(0.00707107, rel=1e-5)
    assert ci.half_width == pytest.approx(12.706205 * 0.005, rel=1e-6)
    one = mean_ci([0.9])
    assert one.n == 1 and math.isnan(one.lo)


def test_welch_known_case():
    # var 2.5 and 10, n 5 each: se^2 = 2.5, df = 6.25 / (0.0625 + 1) = 5.882; t = 2.458824.
    d = welch_diff_ci([1, 2, 3, 4, 5], [2, 4, 6, 8, 10])
    assert d.diff == -3
    assert d.df == pytest.approx(100 / 17)
    assert d.hi - d.diff == pytest.approx(2.458824 * math.sqrt(2.5), rel=1e-6)
    assert not d.significant
    assert welch_diff_ci([0.9, 0.91, 0.92], [0.97, 0.98, 0.99]).significant


def test_pareto_frontier_constructed():
    # (throughput, accuracy): C dominates B; D ties A on accuracy but is slower;
    # E equals C exactly (both stay); F has no accuracy.
    x = [100, 50, 60, 80, 60, 500, float("nan")]
    y = [0.90, 0.95, 0.97, 0.90, 0.97, 0.80, 0.99]
    assert pareto_mask(x, y) == [True, False, True, False, True, True, False]


# --- bad input -----------------------------------------------------------------------------


def _write(d: Path, name: str, text: str) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_text(text)


def test_bad_csv_names_the_missing_columns(tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    shutil.copy(FIXTURES / "bad_runs.csv", d / "runs.csv")
    with pytest.raises(ReportError, match=r"runs\.csv lacks column\(s\) strategy, seed, status"):
        build_report(d)


@pytest.mark.parametrize(("content", "message"), [
    ("", "is empty"),
    (None, "header but no rows"),
    ("mixed", r"schema versions \['9'\] .* newer than this harness"),
    ("status", "status 'finished' is not one of ok, incompatible"),
    ("number", "column 'train_img_s': 'fast' is not a number"),
    ("truncated", "column 'timestamp' is empty"),
])
def test_bad_inputs_give_a_clear_message(tmp_path, content, message):
    d = tmp_path / "r"
    header, *rows = (FIXTURES / "runs.csv").read_text().splitlines()
    cols = header.split(",")
    if content == "":
        _write(d, "runs.csv", "")
    elif content is None:
        _write(d, "runs.csv", header + "\n")
    elif content == "mixed":
        _write(d, "runs.csv", "\n".join([header, *rows]) + "\n")
        _write(d, "runs.rank1.csv", "\n".join([header, "9" + rows[0][1:]]) + "\n")
    else:
        cells = rows[0].split(",")
        if content == "status":
            cells[cols.index("status")] = "finished"
        elif content == "number":
            cells[cols.index("train_img_s")] = "fast"
        else:
            cells = cells[:cols.index("timestamp")]
        _write(d, "runs.csv", "\n".join([header, ",".join(cells)]) + "\n")
    with pytest.raises(ReportError, match=message):
        build_report(d)


def test_cli_exit_2_without_traceback(tmp_path, capsys):
    assert report.main([str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: results directory") and "Traceback" not in err
    d = tmp_path / "empty"
    d.mkdir()
    assert report.main([str(d)]) == 2
    assert "no runs*.csv" in capsys.readouterr().err
    d2 = _results_dir(tmp_path, files=("runs.csv",), compat=False)
    assert report.main([str(d2), "--compat", str(tmp_path / "missing.csv")]) == 2
    assert "compat file" in capsys.readouterr().err


# --- grouping ------------------------------------------------------------------------------


def test_devices_are_kept_apart(tmp_path):
    d = _results_dir(tmp_path, files=("runs.csv",), compat=False)
    runs = pd.read_csv(d / "runs.csv", dtype=str)
    # On the other device every seed of a strategy scores the same, far apart: a clear winner.
    acc = {"resize32": "0.99", "repeat3": "0.7", "conv1": "0.6"}
    other = runs.assign(device_name="Other CPU", train_img_s="1.0",
                        test_acc=runs["strategy"].map(acc).fillna(runs["test_acc"]))
    other.to_csv(d / "runs.rank1.csv", index=False)
    merged = read_runs(d)
    # Same cell hashes on two devices are two results, not duplicates.
    assert len(merged) == 2 * 9  # runs.csv: 9 cell hashes, on each of two devices
    table = comparison_table(merged)
    assert set(table["device_name"]) == {"Fixture CPU @ 2.0GHz", "Other CPU"}
    assert len(table) == 2 * 6
    # Judged per device: the fixture CPU's resnet18 strategies overlap, the other's do not.
    best = table[table["is_best"]]
    assert best[["device_name", "strategy"]].values.tolist() == [["Other CPU", "resize32"]]
    head = headline_table(table)
    assert "| device |" in head.splitlines()[0] and "Other CPU" in head


def test_headline_table_is_compact(tmp_path):
    d = _results_dir(tmp_path, compat=False)
    text = headline_table(read_runs(d))  # a runs table is aggregated first
    lines = text.strip().splitlines()
    assert lines[0] == "| model | strategy | test acc % | train img/s | peak MiB | status |"
    assert len(lines) == 2 + 7
    assert "| resnet18 | `resize32` | 95.00 ± 0.14 | 116 | 563 | ok |" in lines  # tied: no bold
    assert "| vgg16 | `repeat3` | — | — | — | incompatible |" in lines


def _gpu_check_files(d: Path, ceilings: str | None = None) -> None:
    """What python -m bench.tools.gpu_check leaves beside the sweep's CSVs."""
    (d / "ceilings.json").write_text(ceilings or (
        '{"bf16_matmul_tflops": 700.4, "tf32_matmul_tflops": 350.0, "fp32_matmul_tflops": 50.0,'
        ' "copy_gb_s": 2900.0, "device_name": "Fixture GPU"}'))
    (d / "baseline.csv").write_text(
        "model,strategy,batch_size,device_name,naive_w0_img_s,naive_w8_img_s,"
        "harness_fp32_img_s,harness_bf16_img_s,naive_best_img_s,ratio_fp32,ratio_bf16\n"
        "vgg16,resize224,128,Fixture GPU,900,1000,1650,3000,1000,1.65,3.0\n")


def test_gpu_check_ceilings_and_baseline_join_the_summary(tmp_path):
    d = _results_dir(tmp_path, files=("runs.csv",), compat=False)
    _gpu_check_files(d)
    build_report(d)
    md = (d / "summary.md").read_text()
    assert "## Device ceilings (Fixture GPU)" in md
    assert "bf16 matmul 700 TFLOP/s" in md and "copy 2900 GB/s" in md
    assert "| vgg16 | `resize224` | 128 | 1,000 | 1,650 | 1.65× | 3,000 | 3.00× |" in md
    assert "ceilings.json, baseline.csv" in md.splitlines()[2]  # named as inputs
    assert "| MFU % |" in md


def test_a_broken_ceilings_file_is_named(tmp_path):
    d = _results_dir(tmp_path, files=("runs.csv",), compat=False)
    _gpu_check_files(d, ceilings='{"bf16_matmul_tflops": 1}')
    with pytest.raises(ReportError, match=r"ceilings.json is not a gpu_check ceilings file"):
        build_report(d)


def test_a_cell_rerun_under_a_new_recipe_replaces_its_old_row(tmp_path):
    d = _results_dir(tmp_path, files=("runs.csv",), compat=False)
    text = (d / "runs.csv").read_text().splitlines()
    header = text[0].split(",")
    old = dict(zip(header, text[1].split(","), strict=True))  # resnet18 repeat3 seed 0
    new = {**old, "cell_hash": "ffffffffffffffff", "lr": "0.02", "test_acc": "0.777",
           "timestamp": "2030-01-01T00:00:00+00:00"}
    (d / "runs.csv").write_text("\n".join([*text, ",".join(new[c] for c in header)]) + "\n")
    runs = read_runs(d)
    assert runs.attrs["superseded"] == 1
    kept = runs[(runs["model"] == old["model"]) & (runs["strategy"] == old["strategy"])
                & (runs["seed"] == int(old["seed"]))]
    assert kept["cell_hash"].tolist() == ["ffffffffffffffff"]  # not averaged with the old row
    build_report(d)
    md = (d / "summary.md").read_text()
    assert "**Superseded:** 1 older rows" in md
    assert "MFU above 100%" not in md
    table = comparison_table(runs).set_index(["model", "strategy"])
    others = runs[(runs["model"] == old["model"]) & (runs["strategy"] == old["strategy"])]
    assert table.loc[(old["model"], old["strategy"]), "test_acc_n"] == len(others)
    assert table.loc[(old["model"], old["strategy"]), "test_acc_mean"] == pytest.approx(
        others["test_acc"].mean())
    assert 0.777 in others["test_acc"].tolist()


def test_an_impossible_mfu_is_flagged(tmp_path):
    d = _results_dir(tmp_path, files=("runs.csv",), compat=False)
    text = (d / "runs.csv").read_text().splitlines()
    header = text[0].split(",")
    row = dict(zip(header, text[1].split(","), strict=True))
    text[1] = ",".join({**row, "mfu": "3.3", "peak_tflops": "0.016"}[c] for c in header)
    (d / "runs.csv").write_text("\n".join(text) + "\n")
    build_report(d)
    assert "**Warning:** 1 rows report MFU above 100%" in (d / "summary.md").read_text()


# --- who is "best": intervals, not point estimates -------------------------------------------


def _runs_dir(tmp_path: Path, rows: list[dict], name: str = "r") -> Path:
    """A results dir whose runs.csv holds ``rows``: each overrides the fixture's first row
    (mnist resnet18 repeat3 seed 0, ok) and gets its own cell hash and timestamp. Keys the
    fixture lacks (test_count, device_id, peak_fresh_tflops) become extra columns."""
    header, first, *_ = (FIXTURES / "runs.csv").read_text().splitlines()
    base = dict(zip(header.split(","), first.split(","), strict=True))
    base["schema_version"] = str(SCHEMA_VERSION)  # current rows unless a test says otherwise
    columns = list(base) + [k for r in rows for k in r if k not in base]
    columns = list(dict.fromkeys(columns))
    out = []
    for i, r in enumerate(rows):
        row = {**base, "cell_hash": f"{i:016x}", "timestamp": f"2025-06-01T10:{i:02d}:00+00:00",
               **{k: str(v) for k, v in r.items()}}
        out.append(",".join(row.get(c, "") for c in columns))
    d = tmp_path / name
    _write(d, "runs.csv", "\n".join([",".join(columns), *out]) + "\n")
    return d


def _summary(d: Path) -> str:
    """summary.md's text without drawing charts (the slow part)."""
    runs = read_runs(d)
    return report.summary_markdown(runs, comparison_table(runs), d, ["runs.csv"], [], [], d)


def _acc_cells(md: str) -> list[str]:
    """The accuracy cell of every row of the per-table sections."""
    return [line.split(" | ")[1] for line in md.splitlines()
            if line.startswith("| `") and "(n=" in line]


def test_one_seed_at_chance_has_no_best(tmp_path):
    # The audit's case: vgg16 at chance on 1,000 test images, 10.60% vs 9.60%, one seed.
    d = _runs_dir(tmp_path, [
        {"model": "vgg16", "strategy": "post-convtranspose", "test_acc": 0.106, "test_size": 1000},
        {"model": "vgg16", "strategy": "droppools", "test_acc": 0.096, "test_size": 1000}])
    table = comparison_table(read_runs(d))
    assert not table["is_best"].any()
    assert table["is_top"].tolist() == [True, False]
    md = _summary(d)
    assert not any(c.startswith("**") for c in _acc_cells(md))
    assert "No clear winner: `post-convtranspose`, `droppools` tied" in md
    assert "**" not in headline_table(table).split("\n", 2)[2]
    assert "| `droppools` | 9.60 (n=1) |" in md and "-1.00 [-3.66, +1.65] n.s." in md


def test_a_full_cell_at_chance_says_so_with_the_steps_it_trained(tmp_path):
    """10.6% and 14.9% on 10 classes did not leave chance (within 5 points of 10%); 15.0% and
    a measure-only cell (no accuracy) get no such note."""
    d = _runs_dir(tmp_path, [
        {"model": "vgg16", "strategy": "post-convtranspose", "test_acc": 0.106,
         "train_size": 2000, "batch_size": 32, "epochs": 1},
        {"model": "vgg16", "strategy": "droppools", "test_acc": 0.149, "train_size": 2000,
         "batch_size": 32, "epochs": 2},
        {"model": "vgg16", "strategy": "resize32", "test_acc": 0.150, "train_size": 2000},
        {"model": "vgg16", "strategy": "resize224", "test_acc": "", "mode": "measure-only",
         "reason": "over budget"}])
    table = comparison_table(read_runs(d)).set_index("strategy")
    assert table.loc["post-convtranspose", "chance_note"].startswith(
        "did not leave chance: 10.60% against 10.00% for 10 classes after 62 training steps "
        "(1 epoch of 2,000 images at batch 32)")
    assert "after 124 training steps (2 epochs of 2,000" in table.loc["droppools", "chance_note"]
    assert table.loc["resize32", "chance_note"] == ""
    assert table.loc["resize224", "chance_note"] == ""
    md = _summary(d)
    rows = {line.split(" | ")[0]: line for line in md.splitlines() if line.startswith("| `")}
    assert rows["| `post-convtranspose`"].endswith("| ok [1] |")
    assert rows["| `resize32`"].endswith("| ok |")
    assert "[1] did not leave chance: 10.60% against 10.00%" in md
    assert "Too few steps for this model under this recipe" in md
    assert "| vgg16 | `droppools` | 14.90 |" in md and "| ok (at chance) |" in md


def test_a_clear_one_seed_winner_is_still_bold(tmp_path):
    d = _runs_dir(tmp_path, [
        {"strategy": "resize32", "test_acc": 0.95, "test_size": 1000},
        {"strategy": "repeat3", "test_acc": 0.80, "test_size": 1000}])
    table = comparison_table(read_runs(d))
    assert table["is_best"].tolist() == [True, False]
    md = _summary(d)
    assert "| `resize32` | **95.00 (n=1)** |" in md
    assert "Best accuracy: `resize32`" in md and "one seed" in md
    assert "| resnet18 | `resize32` | **95.00** |" in headline_table(table)


def test_one_seed_shows_its_wilson_interval(tmp_path):
    # 90% of 1,000 images: Wilson 95% [87.98, 91.71], ±1.86 pp.
    d = _runs_dir(tmp_path, [{"strategy": "resize32", "test_acc": 0.9, "test_size": 1000},
                             {"strategy": "repeat3", "test_acc": 0.5, "test_size": 1000}])
    md = _summary(d)
    assert "| `resize32` | **90.00 (n=1)** | [87.98, 91.71] ±1.86 Wilson, 1,000 img |" in md
    row = comparison_table(read_runs(d)).iloc[0]
    assert (row["test_acc_ci_lo"], row["test_acc_ci_hi"]) == pytest.approx(
        (0.879848, 0.917091), abs=1e-6)


@pytest.mark.parametrize(("extra", "images"), [
    ({"test_count": 10000, "test_size": 1000}, 10000),  # the new column wins
    ({"test_count": "", "test_size": 1000}, 1000),      # empty: test_size
    ({"test_size": 0}, 10000),                          # the whole mnist test split
])
def test_the_image_count_behind_the_interval(tmp_path, extra, images):
    d = _runs_dir(tmp_path, [{"test_acc": 0.9, **extra}])
    row = comparison_table(read_runs(d)).iloc[0]
    assert row["test_images"] == images
    lo, hi = row["test_acc_ci_lo"], row["test_acc_ci_hi"]
    z = 1.959963984540054
    half = z / (1 + z * z / images) * math.sqrt(0.09 / images + z * z / (4 * images ** 2))
    assert (hi - lo) / 2 == pytest.approx(half, rel=1e-6)


def test_identical_seeds_are_not_infinitely_certain(tmp_path):
    # Three identical seeds per strategy, 1 pp apart on 1,000 images. The old code gave both a
    # zero-width t interval, called the 95% one best and the gap significant.
    rows = [{"strategy": s, "seed": seed, "test_acc": acc, "test_size": 1000}
            for s, acc in (("resize32", 0.95), ("repeat3", 0.94)) for seed in range(3)]
    table = comparison_table(read_runs(_runs_dir(tmp_path, rows))).set_index("strategy")
    assert not table["is_best"].any()
    top = table.loc["resize32"]
    assert top["test_acc_ci_hi"] - top["test_acc_ci_lo"] == pytest.approx(
        0.961870 - 0.934687, abs=1e-5)  # Wilson over the 1,000 images, not zero
    assert not table.loc["repeat3", "diff_significant"]
    assert table.loc["repeat3", "diff_ci_lo"] < 0 < table.loc["repeat3", "diff_ci_hi"]


def test_throughput_is_bold_only_when_its_spread_clears_the_rest(tmp_path):
    def rows(p10_fast):
        return [{"strategy": "resize32", "train_img_s": 200, "train_img_s_p10": p10_fast,
                 "train_img_s_p90": 210},
                {"strategy": "repeat3", "train_img_s": 150, "train_img_s_p10": 140,
                 "train_img_s_p90": 160}]
    clear = comparison_table(read_runs(_runs_dir(tmp_path, rows(190), "a")))
    assert clear["train_img_s_is_best"].tolist() == [True, False]
    assert "| **200** |" in _summary(_runs_dir(tmp_path, rows(190), "b"))
    overlap = _runs_dir(tmp_path, rows(155), "c")
    assert not comparison_table(read_runs(overlap))["train_img_s_is_best"].any()
    md = _summary(overlap)
    assert "**200**" not in md and "**150**" not in md
    assert not comparison_table(read_runs(_runs_dir(tmp_path, rows(""), "d")))[
        "train_img_s_is_best"].any()  # no p10: no interval, no bold


def test_measured_columns_without_an_interval_are_not_bold(tmp_path):
    d = _runs_dir(tmp_path, [
        {"strategy": "resize32", "eval_img_s": 900, "peak_mem_mib": 100, "best_acc": 0.99},
        {"strategy": "repeat3", "eval_img_s": 100, "peak_mem_mib": 900, "best_acc": 0.5}])
    md = _summary(d)
    for text in ("**900**", "**100**", "**99.00**"):
        assert text not in md


# --- provenance and peak warnings -------------------------------------------------------------


def _warnings(md: str) -> list[str]:
    return [line for line in md.splitlines() if line.startswith("- **Warning:**")]


@pytest.mark.parametrize(("column", "values", "what"), [
    ("git_sha", ("abc1234", "def5678"), "different commits (git_sha)"),
    ("torch_version", ("2.14.1", "2.11.0"), "different torch versions (torch_version)"),
    ("host_cpu", ("Fixture CPU (2 logical cores)", "Fixture CPU (16 logical cores)"),
     "different host CPUs (host_cpu)"),
])
def test_mixed_provenance_in_one_table_is_warned(tmp_path, column, values, what):
    d = _runs_dir(tmp_path, [{"strategy": "resize32", column: values[0]},
                             {"strategy": "repeat3", column: values[1]}])
    warnings = _warnings(_summary(d))
    assert len(warnings) == 1 and what in warnings[0]
    assert f"{values[0]} (1 rows)" in warnings[0] and "mnist · resnet18 ·" in warnings[0]


def test_two_devices_sharing_a_name_never_share_a_table(tmp_path):
    """A 2-core and a 16-core slice of one CPU model both read "Fixture CPU": their exact
    device_id keeps them apart (each its own table), so neither is averaged into the other."""
    d = _runs_dir(tmp_path, [
        {"strategy": "resize32", "device_id": "cpu | Fixture CPU | 2 logical cores | avx2"},
        {"strategy": "resize32", "device_id": "cpu | Fixture CPU | 16 logical cores | avx2"}])
    runs = report.read_runs(d)
    assert runs["device_name"].nunique() == 2
    table = report.comparison_table(runs)
    assert len(table) == 2 and (table["n_runs"] == 1).all()


def test_provenance_differing_between_tables_only_is_fine(tmp_path):
    d = _runs_dir(tmp_path, [{"model": "resnet18", "git_sha": "abc1234"},
                             {"model": "vgg16", "git_sha": "def5678"},
                             {"model": "vgg16", "strategy": "conv1", "git_sha": "def5678",
                              "device_id": ""}])
    assert _warnings(_summary(d)) == []


def test_a_peak_measured_under_load_is_flagged(tmp_path):
    d = _runs_dir(tmp_path, [
        {"strategy": "resize32", "peak_tflops": 100, "peak_fresh_tflops": 70},   # 30% off
        {"strategy": "repeat3", "peak_tflops": 100, "peak_fresh_tflops": 90},    # 10%: fine
        {"strategy": "conv1", "peak_tflops": 100, "peak_fresh_tflops": ""}])     # not measured
    warnings = _warnings(_summary(d))
    assert len(warnings) == 1
    assert warnings[0].startswith("- **Warning:** 1 rows' matmul peak differs by more than 20%")
    assert "mnist/resnet18/resize32 seed 0" in warnings[0] and "repeat3" not in warnings[0]
    # Files from before the column existed (schema 1) report without it and warn nothing.
    old = _runs_dir(tmp_path, [{"strategy": "resize32", "peak_tflops": 100}], "old")
    assert "peak_fresh_tflops" not in read_runs(old).columns and _warnings(_summary(old)) == []


def test_the_cli_prints_the_warnings(tmp_path, capsys):
    d = _runs_dir(tmp_path, [{"strategy": "resize32", "git_sha": "abc1234"},
                             {"strategy": "repeat3", "git_sha": "def5678"}])
    assert report.main([str(d), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "warning: rows compared in one table come from different commits" in err
    md = (tmp_path / "out" / "summary.md").read_text()
    assert "**Warning:** rows compared in one table come from different commits" in md


# --- charts that do not mislead ---------------------------------------------------------------


def _two_panel_table(tmp_path: Path) -> pd.DataFrame:
    """resnet18 near 95% and vgg16 near 50%: per-panel axes would zoom each to its own span."""
    d = _runs_dir(tmp_path, [
        {"strategy": "resize32", "test_acc": 0.95, "test_size": 1000},
        {"strategy": "conv1", "test_acc": 0.94, "test_size": 1000, "reinitialized": "conv1"},
        {"model": "vgg16", "dataset": "npz:/data/x.npz", "strategy": "resize32",
         "test_acc": 0.50, "test_size": 1000},
        # A user dataset of unknown size and no test count: no interval can be drawn.
        {"model": "vgg16", "dataset": "npz:/data/x.npz", "strategy": "conv1", "test_acc": 0.40,
         "test_size": 0}])
    return comparison_table(read_runs(d))


def _palette(table):
    from bench.report import charts as report_charts
    return (report_charts.strategy_palette(table["strategy"]),
            report_charts.strategy_markers(table["strategy"]))


def test_accuracy_panels_share_one_axis_by_default(tmp_path):
    from bench.report import charts as report_charts
    table = _two_panel_table(tmp_path)
    fig = report_charts.accuracy_vs_throughput(table, *_palette(table))
    shared = {tuple(round(v, 6) for v in ax.get_ylim()) for ax in fig.axes}
    assert len(shared) == 1
    bottom, top = shared.pop()
    assert bottom < 40 and top >= 95.0  # every point's interval fits on the one axis
    own = report_charts.accuracy_vs_throughput(table, *_palette(table), shared_axis=False)
    assert len({ax.get_ylim() for ax in own.axes}) == 2
    assert "one accuracy axis for all panels" in fig.get_suptitle()


def test_every_point_has_interval_bars_and_created_layers_are_ringed(tmp_path):
    from matplotlib.container import ErrorbarContainer

    from bench.report import charts as report_charts
    table = _two_panel_table(tmp_path)
    fig = report_charts.accuracy_vs_throughput(table, *_palette(table))
    bars = [c for ax in fig.axes for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 4
    # x: the p10-p90 spread of every point (the fixture row has one); y: the 95% CI, except
    # vgg16/conv1, whose test image count is unknown: drawn hollow and named in the legend.
    assert all(c.has_xerr for c in bars)
    assert sum(c.has_yerr for c in bars) == 3
    hollow = [c for c in bars if not c.has_yerr]
    assert hollow[0].lines[0].get_markerfacecolor() == "white"
    rings = [line for ax in fig.axes for line in ax.lines
             if line.get_markerfacecolor() == "none" and line.get_markersize() == 13]
    assert len(rings) == 1  # resnet18/conv1 only: its row has a reinitialized value
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "ring: layers created / re-initialised" in labels
    assert "hollow: no interval (test count unknown)" in labels
    mem = report_charts.peak_memory(table, _palette(table)[0])
    ticks = [t.get_text() for ax in mem.axes for t in ax.get_yticklabels()]
    assert "conv1 †" in ticks and "resize32" in ticks
    assert sum(isinstance(c, ErrorbarContainer) for ax in mem.axes for c in ax.containers) == 4


def test_summary_marks_created_layers_and_recommends(built):
    d, _ = built
    md = (d / "summary.md").read_text()
    assert "| `conv1` † |" in md and "† the strategy created or replaced layers" in md
    assert "| `repeat3` |" in md  # no layer created: no mark
    assert "## Recommendation" in md and "| mnist | resnet18 | Fixture CPU @ 2.0GHz |" in md


def test_cli_per_panel_axis_option(tmp_path, capsys):
    d = _results_dir(tmp_path, files=("runs.csv",), compat=False)
    assert report.main([str(d), "--no-shared-axis"]) == 0
    assert "index.html" in capsys.readouterr().out
    svg = (d / "charts" / "accuracy_vs_throughput.svg").read_text()
    assert svg.startswith("<?xml")


def test_packed_throughput_is_never_mixed_with_solo_or_ranked_against_it(tmp_path):
    """Rows whose cell shared its device (concurrency > 1, ray's pack) are a figure of their
    own: a cell with solo rows is measured by them alone; a cell with packed rows only shows
    them marked, and is never the fastest against solo cells."""
    def row(strategy, seed, img_s, concurrency):
        return {"strategy": strategy, "seed": seed, "train_img_s": img_s,
                "train_img_s_p10": img_s * 0.95, "train_img_s_p90": img_s * 1.05,
                "concurrency": concurrency}
    d = _runs_dir(tmp_path, [row("resize32", 0, 100, 1), row("resize32", 1, 40, 4),
                             row("repeat3", 0, 300, 4), row("conv1", 0, 50, "")])
    t = comparison_table(read_runs(d)).set_index("strategy")
    assert t.loc["resize32", "train_img_s_median"] == 100  # not the median of 100 and 40
    assert t.loc["repeat3", "train_img_s_median"] == 300
    assert t.loc[["resize32", "repeat3", "conv1"], "train_img_s_packed"].tolist() == [1, 4, 1]
    assert t["train_img_s_is_best"].to_dict() == {"resize32": True, "repeat3": False,
                                                  "conv1": False}
    md = _summary(d)
    assert "300 (packed ×4)" in md and "| **100** |" in md


def test_no_learning_curve_chart_when_every_cell_was_evaluated_once(tmp_path):
    """One epoch per cell would draw a lone dot per line: the chart is left out, with a note;
    the fixture's three epochs still draw it."""
    from bench.report import charts as report_charts

    table = comparison_table(read_runs(_results_dir(tmp_path, files=("runs.csv",),
                                                    compat=False)))
    history = pd.read_csv(FIXTURES / "history.csv")
    written, notes = report_charts.write_charts(table, history, None, None, tmp_path / "a")
    assert any(p.stem == "learning_curves_epoch" for p in written)
    one_epoch = history[history["epoch"] == 1]
    written, notes = report_charts.write_charts(table, one_epoch, None, None, tmp_path / "b")
    assert not any(p.stem.startswith("learning_curves") for p in written)
    assert any("evaluated once (one epoch)" in n for n in notes)


def test_measure_only_memory_bars_are_hatched(tmp_path):
    from bench.report import charts as report_charts

    d = _runs_dir(tmp_path, [
        {"strategy": "resize32", "test_acc": 0.95, "test_size": 1000},
        {"strategy": "resize224", "mode": "measure-only", "test_acc": "", "test_size": 1000}])
    table = comparison_table(read_runs(d))
    assert set(table["status"]) == {"ok", "measure-only"}
    fig = report_charts.peak_memory(table, _palette(table)[0])
    ax = fig.axes[0]
    hatches = {t.get_text(): bar.get_hatch()
               for t, bar in zip(ax.get_yticklabels(), ax.patches, strict=True)}
    assert hatches["resize224"] and not hatches["resize32"]
    assert "hatched = measure-only" in fig.get_suptitle()


def test_measure_only_operator_bars_are_hatched():
    from bench.report import charts as report_charts

    ops = pd.read_csv(FIXTURES / "ops.csv")
    first = ops.iloc[0]
    timed = frozenset({(first["model"], first["device_name"], first["strategy"])})
    fig = report_charts.op_time_shares(ops, measure_only=timed)
    hatched = {bar.get_hatch() or "" for ax in fig.axes for bar in ax.patches}
    assert "///" in hatched and "" in hatched  # that cell's bars only
    assert "hatched = measure-only" in fig.get_suptitle()
    plain = report_charts.op_time_shares(ops)
    assert not any(bar.get_hatch() for ax in plain.axes for bar in ax.patches)


def test_the_gap_chart_zooms_each_panel_to_its_gaps_with_their_intervals(tmp_path):
    """The shared accuracy axis keeps a one-point gap small; the gap chart gives each panel its
    own scale, draws every gap's 95% interval and lists a measure-only cell without a point."""
    from matplotlib.container import ErrorbarContainer

    from bench.report import charts as report_charts

    d = _runs_dir(tmp_path, [
        {"strategy": "resize32", "test_acc": 0.95, "test_size": 1000},
        {"strategy": "conv1", "test_acc": 0.94, "test_size": 1000},
        {"strategy": "resize224", "mode": "measure-only", "test_acc": "", "test_size": 1000},
        {"model": "vgg16", "strategy": "resize32", "test_acc": 0.50, "test_size": 1000},
        {"model": "vgg16", "strategy": "conv1", "test_acc": 0.30, "test_size": 1000}])
    table = comparison_table(read_runs(d))
    fig = report_charts.accuracy_delta(table, *_palette(table))
    resnet, vgg = fig.axes
    assert resnet.get_xlim()[1] - resnet.get_xlim()[0] < 6  # a one-point gap spans a sixth
    assert vgg.get_xlim()[0] < -20 < resnet.get_xlim()[0]
    bars = [c for c in resnet.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 2 and all(c.has_xerr for c in bars)
    assert [t.get_text() for t in resnet.get_yticklabels()] == ["resize32", "conv1", "resize224"]
    texts = [t.get_text() for t in resnet.texts]
    assert "measure-only: no accuracy" in texts and "top" in texts and "-1.0 n.s." in texts
    shared = report_charts.accuracy_vs_throughput(table, *_palette(table))
    assert shared.axes[0].get_ylim() == shared.axes[1].get_ylim()  # the scatter stays shared


def test_measure_only_cells_sit_hollow_at_the_foot_of_the_accuracy_chart(tmp_path):
    from bench.report import charts as report_charts

    d = _runs_dir(tmp_path, [
        {"strategy": "resize32", "test_acc": 0.95, "test_size": 1000},
        {"strategy": "resize224", "mode": "measure-only", "test_acc": "", "test_size": 1000,
         "train_img_s": 7.0, "train_img_s_p10": 6.8, "train_img_s_p90": 7.2}])
    table = comparison_table(read_runs(d))
    fig = report_charts.accuracy_vs_throughput(table, *_palette(table))
    ax = fig.axes[0]
    foot = [line for line in ax.lines if list(line.get_xdata()) == [7.0]]
    assert len(foot) == 1 and foot[0].get_markerfacecolor() == "white"
    assert ax.get_xlim()[0] < 7.0  # inside the panel's throughput range
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "hollow at the foot: measure-only (img/s, no accuracy)" in labels
    assert "not shown" not in fig.get_suptitle()  # it is shown


def test_throughput_ticks_label_the_whole_drawn_span(tmp_path):
    """A cell whose slowest window ran at 5 img/s stretches the axis to 5; its labels must
    reach there too, not stop at the medians' 100-400 as when the ticks followed them alone."""
    import math as _math

    from bench.report import charts as report_charts

    d = _runs_dir(tmp_path, [
        {"strategy": "resize32", "test_acc": 0.95, "test_size": 1000, "train_img_s": 300,
         "train_img_s_p10": 5, "train_img_s_p90": 320},
        {"strategy": "conv1", "test_acc": 0.94, "test_size": 1000, "train_img_s": 400,
         "train_img_s_p10": 390, "train_img_s_p90": 410}])
    table = comparison_table(read_runs(d))
    fig = report_charts.accuracy_vs_throughput(table, *_palette(table))
    fig.canvas.draw()
    ax = fig.axes[0]
    left, right = ax.get_xlim()
    labelled = [t.get_position()[0] for t in ax.get_xticklabels()
                if t.get_text() and left <= t.get_position()[0] <= right]
    span = _math.log10(right / left)
    assert left < 5 and labelled
    assert _math.log10(min(labelled) / left) < 0.5 * span  # a label in the left half
    assert _math.log10(right / max(labelled)) < 0.5 * span
