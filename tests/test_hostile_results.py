"""Hostile results directories, configuration values and output paths (issue 27, part 2).

Each case is a results directory copied from the published ``results/cpu`` and edited the way a
careless or hostile user would, or a configuration value or ``--out`` path no run can use.
Every one must be one line on stderr that names the bad value, exit code 2, and nothing
written. Most cases run through ``bench.__main__.main`` in this process (fast); one per kind
also runs as ``python -m bench`` to prove the exit code end to end. docs/failures.md's table
"Hostile results directories and configuration" lists the same cases (checked below).
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import main

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
PUBLISHED = REPO / "results" / "cpu"
HOOKS = ("ADAPTBENCH_CELL_IMPL", "ADAPTBENCH_INJECT_FAULT", "ADAPTBENCH_CELL_RLIMIT_AS_MIB",
         "ADAPTBENCH_FAKE", "ADAPTBENCH_DATA")
FAKE_IMPL = f"{TESTS / 'test_sweep.py'}:fake_run_cell"


def copy_results(tmp_path: Path) -> Path:
    """The published CPU results (runs, history, ops, env.json, ...) in a scratch directory."""
    rdir = tmp_path / "results"
    shutil.copytree(PUBLISHED, rdir)
    return rdir


def edit_runs(rdir: Path, line: int, **values: str) -> None:
    """Set columns of one runs.csv row (``line`` as an editor numbers it: 2 is the first row)."""
    path = rdir / "runs.csv"
    rows = list(csv.reader(io.StringIO(path.read_text())))
    header = rows[0]
    for key, value in values.items():
        rows[line - 1][header.index(key)] = value
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    path.write_text(buf.getvalue())


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Bytes and mtime (ns) of every file under ``root``."""
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def call(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own errors
        return int(exc.code or 0)


def refused(argv: list[str], capsys, root: Path) -> str:
    """Run ``argv`` in this process; assert exit 2, one stderr line, nothing changed under
    ``root``; return that line."""
    before = snapshot(root)
    code = call(argv)
    out, err = capsys.readouterr()
    assert code == 2, out[-1500:] + err[-1500:]
    assert "Traceback" not in err and err.startswith("error: "), err
    assert len(err.strip().splitlines()) == 1, err
    assert snapshot(root) == before
    return err.strip()


def cli(argv: list[str], root: Path) -> str:
    """``python -m bench argv`` in a subprocess; the same assertions as :func:`refused`."""
    before = snapshot(root)
    proc = subprocess.run([sys.executable, "-m", "bench", *argv], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout[-1500:] + proc.stderr[-1500:]
    err = proc.stderr.strip()
    assert err.startswith("error: ") and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert snapshot(root) == before
    return err


# --- 1. values out of their schema range --------------------------------------------------

BAD_VALUES = [
    pytest.param("test_acc", "inf", "[0, 1]", id="accuracy inf"),
    pytest.param("test_acc", "1e9", "[0, 1]", id="accuracy 1e9"),
    pytest.param("test_acc", "-5", "[0, 1]", id="accuracy -5"),
    pytest.param("best_acc", "1.5", "[0, 1]", id="best accuracy 1.5"),
    pytest.param("test_count", "-1000", "a finite number >= 0", id="negative count"),
    pytest.param("train_img_s", "-inf", "a finite number >= 0", id="negative throughput"),
    pytest.param("params", "1.5", "not a whole number", id="fractional parameter count"),
]


@pytest.mark.parametrize("column, value, valid", BAD_VALUES)
@pytest.mark.parametrize("command", ["report", "advise"])
def test_a_value_out_of_range_is_named_with_file_line_and_column(
        column, value, valid, command, tmp_path, capsys) -> None:
    rdir = copy_results(tmp_path)
    edit_runs(rdir, 2, **{column: value})
    argv = (["report", str(rdir), "--out", str(tmp_path / "out")] if command == "report"
            else ["advise", "--model", "resnet18", "--results", str(rdir)])
    line = refused(argv, capsys, tmp_path)
    assert f"runs.csv, line 2, column {column!r}: {value!r}" in line and valid in line, line
    assert not (tmp_path / "out").exists()


def test_resume_refuses_an_out_of_range_value_too(tmp_path) -> None:
    """bench.results' reader (resume, plan) applies the same ranges as the report."""
    from bench import results

    rdir = copy_results(tmp_path)
    edit_runs(rdir, 3, eval_peak_mem_mib="-1")
    with pytest.raises(results.ResultsError, match=r"line 3, column 'eval_peak_mem_mib': '-1' "
                                                   r"is out of range"):
        results.read_csv(rdir / "runs.csv", "runs")


def test_the_published_results_pass_the_ranges() -> None:
    from bench import results

    for rdir in (REPO / "results" / "cpu", REPO / "results" / "gpu"):
        for kind in results.KINDS:
            for path in results.kind_files(rdir, kind):
                assert results.read_csv(path, kind), path


def test_report_and_advise_refuse_an_infinite_accuracy_from_the_command_line(tmp_path) -> None:
    rdir = copy_results(tmp_path)
    edit_runs(rdir, 2, test_acc="inf")
    err = cli(["report", str(rdir)], tmp_path)
    assert "line 2, column 'test_acc': 'inf' is out of range (valid: [0, 1])" in err
    err = cli(["advise", "--model", "resnet18", "--results", str(rdir)], tmp_path)
    assert "column 'test_acc': 'inf'" in err


# --- 2. a final row that contradicts itself is not "done" ---------------------------------

def plan_json(rdir: Path, capsys) -> dict[str, dict]:
    """``plan --profile cpu --fast --json`` over ``rdir``: its cells by label."""
    import json

    assert call(["plan", "--profile", "cpu", "--fast", "--json", "--results-dir", str(rdir),
                 "--device", "cpu"]) == 0
    doc = json.loads(capsys.readouterr().out)
    return {f"{c['model']}/{c['strategy']}": c for c in doc["cells"]}


@pytest.mark.parametrize("values, why", [
    pytest.param({"test_acc": ""}, "status ok but has no test_acc", id="accuracy emptied"),
    pytest.param({"test_acc": "nan"}, "status ok but has no test_acc", id="accuracy nan"),
    pytest.param({"model": "resnet34"}, "names model 'resnet34', not 'resnet18'",
                 id="model renamed"),
    pytest.param({"seed": "7"}, "names seed '7', not '0'", id="seed changed"),
])
def test_an_edited_ok_row_is_not_done_and_the_plan_says_why(values, why, tmp_path,
                                                            capsys) -> None:
    rdir = copy_results(tmp_path)
    published = plan_json(rdir, capsys)
    if not published["resnet18/repeat3"]["done"]:
        pytest.skip("results/cpu was measured on another CPU: its cells are not done here")
    edit_runs(rdir, 4, **values)  # line 4: resnet18/repeat3, ok, full, test_acc 0.922
    cells = plan_json(rdir, capsys)
    assert not cells["resnet18/repeat3"]["done"]
    assert why in cells["resnet18/repeat3"]["rerun_why"]
    assert cells["resnet18/droppools"]["done"]  # the untouched rows are still done


def test_a_measure_only_ok_row_without_accuracy_is_still_done() -> None:
    from bench import results

    row = {"status": "ok", "mode": "measure-only", "test_acc": "", "cell_hash": "h",
           "dataset": "mnist", "model": "m", "strategy": "s", "seed": "0"}
    assert results.rerun_reason(row) == ""
    assert "no test_acc" in results.rerun_reason({**row, "mode": "full"})
