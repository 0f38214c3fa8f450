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
import standins  # tests/ is on sys.path under pytest
from _cli import exit_code
from _snapshots import snapshot

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
PUBLISHED = REPO / "results" / "cpu"
HOOKS = ("ADAPTBENCH_CELL_IMPL", "ADAPTBENCH_INJECT_FAULT", "ADAPTBENCH_CELL_RLIMIT_AS_MIB",
         "ADAPTBENCH_DATA", *standins.HOOKS)
FAKE_IMPL = standins.IMPL


def copy_results(tmp_path: Path) -> Path:
    """The published CPU results (runs, history, ops, env.json, ...) in a scratch directory."""
    rdir = tmp_path / "results"
    # A run's lock file stays after it (git-ignored, never published): not part of the copy.
    shutil.copytree(PUBLISHED, rdir, ignore=shutil.ignore_patterns("*.lock"))
    return rdir


def as_this_machines(rdir: Path) -> None:
    """Re-label the copied rows as this machine's: its device identity and the cell hashes it
    would give them, so they are done here whatever CPU runs the test (the published rows are
    one CPU model's, and another CPU runs every cell itself: a test keyed on "done" would
    otherwise skip everywhere but on that model, as CI's machines are)."""
    from bench import config
    from bench.identity import cell_hash, device_key, parent_device

    cfg = config.load("cpu")
    here = parent_device("cpu")
    path = rdir / "runs.csv"
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    for row in rows:
        cell = config.Cell(row["dataset"], row["model"], row["strategy"], int(row["seed"]))
        row.update(device_id=here["device_id"], device_name=here["device_name"],
                   cell_hash=cell_hash(cfg, cell, device_key("cpu")))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(buf.getvalue())


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



def refused(argv: list[str], capsys, root: Path) -> str:
    """Run ``argv`` in this process; assert exit 2, one stderr line, nothing changed under
    ``root``; return that line."""
    before = snapshot(root)
    code = exit_code(argv)
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


# --- 1b. found by the fuzzer (tests/test_results_fuzz.py) ----------------------------------

FUZZ_FOUND = [
    pytest.param({"seed": "nan"}, "line 2: column 'seed' holds 'nan', which is not a seed "
                 "(valid: a whole number 0..4294967295)", id="seed nan"),
    pytest.param({"seed": "1e300"}, "line 2: column 'seed' holds '1e300', which is not a seed",
                 id="seed 1e300"),
    pytest.param({"model": "resnet99"}, "line 2: column 'model': unknown model 'resnet99' (did "
                 "you mean resnet50, resnet34, resnet18?); valid torchvision classification "
                 "models: alexnet,", id="unknown model"),
    pytest.param({"strategy": "bogus"}, "line 2: column 'strategy': unknown adapter 'bogus'; "
                 "valid: channel: conv1,", id="unknown strategy"),
    pytest.param({"timestamp": "1e20"}, "runs.csv, line 2: timestamp '1e20' is not ISO-8601",
                 id="timestamp 1e20"),
]


@pytest.mark.parametrize("values, expected", FUZZ_FOUND)
@pytest.mark.parametrize("command", ["report", "advise"])
def test_a_row_the_fuzzer_broke_is_named_with_file_and_line(
        values, expected, command, tmp_path, capsys) -> None:
    """Once an IntCastingNaNError traceback (seed nan), a silently accepted model nobody can
    run, or a timestamp error naming only the file's base name."""
    rdir = copy_results(tmp_path)
    edit_runs(rdir, 2, **values)
    argv = (["report", str(rdir), "--out", str(tmp_path / "out")] if command == "report"
            else ["advise", "--model", "vgg16", "--results", str(rdir)])
    line = refused(argv, capsys, tmp_path)
    assert f"error: {rdir / 'runs.csv'}, {expected}" in line or (
        expected.startswith("runs.csv") and f"{rdir}/{expected}" in line), line
    assert not (tmp_path / "out").exists()


def test_a_column_renamed_with_a_newline_is_still_one_line(tmp_path, capsys) -> None:
    """The report listed the columns it found as they are: a header cell 'a\\nb' printed the
    error over two lines."""
    rdir = copy_results(tmp_path)
    path = rdir / "runs.csv"
    rows = list(csv.reader(io.StringIO(path.read_text())))
    rows[0][rows[0].index("seed")] = "a\nb"
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    path.write_text(buf.getvalue())
    line = refused(["advise", "--model", "resnet18", "--results", str(rdir)], capsys, tmp_path)
    assert f"error: {path} lacks column(s) seed:" in line and "strategy, 'a\\nb', status" in line


def test_a_field_over_the_csv_limit_is_named_by_resume_not_a_traceback(tmp_path) -> None:
    """csv.Error ("field larger than field limit") escaped bench.results' reader (plan, run)."""
    from bench import results

    rdir = copy_results(tmp_path)
    path = rdir / "runs.csv"
    text = path.read_text()
    path.write_text(text.replace(",", "," + "7" * 200_000 + ",", 1))
    with pytest.raises(results.ResultsError, match=r"runs.csv, line 1: not a well-formed CSV "
                                                   r"line \(field larger than field limit"):
        results.read_csv(path, "runs")


def test_a_byte_order_mark_reads_the_same_in_resume_and_the_report(tmp_path) -> None:
    """A spreadsheet's UTF-8 export starts with a BOM: the report read it, resume refused it
    as a foreign header ('\\ufeffschema_version')."""
    from bench import results
    from bench.report.load import read_runs

    rdir = copy_results(tmp_path)
    plain = results.read_csv(rdir / "runs.csv", "runs")
    (rdir / "runs.csv").write_bytes(b"\xef\xbb\xbf" + (rdir / "runs.csv").read_bytes())
    assert results.read_csv(rdir / "runs.csv", "runs") == plain
    assert len(read_runs(rdir)) == len(plain)


def test_plan_refuses_a_field_over_the_csv_limit_from_the_command_line(tmp_path) -> None:
    rdir = copy_results(tmp_path)
    path = rdir / "runs.csv"
    path.write_text(path.read_text().replace(",", "," + "7" * 200_000 + ",", 1))
    err = cli(["plan", "--profile", "cpu", "--fast", "--results-dir", str(rdir), "--device",
               "cpu"], tmp_path)
    assert "runs.csv, line 1: not a well-formed CSV line (field larger than field limit" in err


# --- 2. a final row that contradicts itself is not "done" ---------------------------------

def plan_json(rdir: Path, capsys) -> dict[str, dict]:
    """``plan --profile cpu --fast --json`` over ``rdir``: its cells by label."""
    import json

    assert exit_code(["plan", "--profile", "cpu", "--fast", "--json", "--results-dir", str(rdir),
                 "--device", "cpu"]) == 0
    doc = json.loads(capsys.readouterr().out)
    return {f"{c['model']}/{c['strategy']}/{c['seed']}": c for c in doc["cells"]}


def runs_line(rdir: Path, model: str, strategy: str, seed: int) -> int:
    """The line (as an editor numbers it) of that cell's row in ``rdir/runs.csv``."""
    rows = list(csv.DictReader(io.StringIO((rdir / "runs.csv").read_text())))
    (index,) = [i for i, r in enumerate(rows)
                if (r["model"], r["strategy"], r["seed"]) == (model, strategy, str(seed))]
    return index + 2


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
    as_this_machines(rdir)
    published = plan_json(rdir, capsys)
    assert published["resnet18/repeat3/0"]["done"], published["resnet18/repeat3/0"]
    edit_runs(rdir, runs_line(rdir, "resnet18", "repeat3", 0), **values)  # ok, full
    cells = plan_json(rdir, capsys)
    assert not cells["resnet18/repeat3/0"]["done"]
    assert why in cells["resnet18/repeat3/0"]["rerun_why"]
    assert cells["resnet18/droppools/0"]["done"]  # the untouched rows are still done
    assert cells["resnet18/repeat3/1"]["done"]


def test_a_measure_only_ok_row_without_accuracy_is_still_done() -> None:
    from bench import results

    row = {"status": "ok", "mode": "measure-only", "test_acc": "", "cell_hash": "h",
           "dataset": "mnist", "model": "m", "strategy": "s", "seed": "0"}
    assert results.rerun_reason(row) == ""
    assert "no test_acc" in results.rerun_reason({**row, "mode": "full"})


# --- 3. configuration values refused before any cell --------------------------------------

CONFIG_CASES = [
    pytest.param("[grid]\nseeds = [1.5]\n", [], "bad value [1.5] for 'seeds' (expected "
                 "comma-separated list of int): 1.5 is a float, not an integer",
                 id="TOML seed a float"),
    pytest.param("[grid]\nseeds = [0, true]\n", [], "bad value [0, True] for 'seeds' "
                 "(expected comma-separated list of int): True is a boolean, not an integer",
                 id="TOML seed a boolean"),
    pytest.param("[recipe]\nepochs = true\n", [], "bad value True for 'epochs' (expected int): "
                 "True is a boolean, not an integer", id="TOML int key a boolean"),
    pytest.param("", ["seeds=12345678901234567890"], "bad seed 12345678901234567890 in seeds; "
                 "valid: integers 0..4294967295", id="20-digit seed"),
    pytest.param("", ["seeds=-1"], "bad seed -1 in seeds; valid: integers 0..4294967295",
                 id="negative seed"),
    pytest.param("", ["num_threads=100000"], "num_threads must be in 0..1024 (0: torch's "
                 "default), got 100000", id="100000 threads"),
]


@pytest.mark.parametrize("toml, sets, expected", CONFIG_CASES)
@pytest.mark.parametrize("command", ["run", "plan"])
def test_a_bad_seed_or_thread_count_is_refused_before_any_cell(
        toml, sets, expected, command, tmp_path, monkeypatch, capsys) -> None:
    for name in HOOKS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ADAPTBENCH_CELL_IMPL", FAKE_IMPL)  # should a cell start after all
    profile = "smoke"
    if toml:
        profile = str(tmp_path / "bad.toml")
        (tmp_path / "bad.toml").write_text(toml)
    rdir = tmp_path / "results"
    argv = [command, "--profile", profile, *(a for s in sets for a in ("--set", s)),
            "--results-dir", str(rdir), "--device", "cpu"]
    line = refused(argv, capsys, tmp_path)
    assert expected in line, line
    assert not rdir.exists()


def test_whole_seeds_and_thread_counts_in_range_are_accepted() -> None:
    from bench import config

    cfg = config.load("smoke", ["seeds=0,4294967295", "num_threads=1024"])
    assert cfg.seeds == (0, 2**32 - 1) and cfg.num_threads == 1024


def test_a_huge_thread_count_is_refused_from_the_command_line(tmp_path) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if k not in HOOKS}
    env["ADAPTBENCH_CELL_IMPL"] = FAKE_IMPL
    rdir = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "bench", "run", "--profile", "smoke", "--set",
                           "num_threads=100000", "--results-dir", str(rdir), "--device", "cpu",
                           "--quiet"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stdout[-1500:] + proc.stderr[-1500:]
    assert proc.stderr.strip() == ("error: num_threads must be in 0..1024 (0: torch's default), "
                                   "got 100000")
    assert not rdir.exists()


# --- 5. an output path under a regular file -----------------------------------------------

@pytest.mark.parametrize("argv, expected", [
    pytest.param(["report", "{results}", "--out", "{tmp}/somefile/sub"],
                 "error: --out: {tmp}/somefile/sub cannot be created: {tmp}/somefile is a "
                 "file, not a directory", id="report --out under a file"),
    pytest.param(["report", "{results}", "--out", "{tmp}/somefile"],
                 "error: --out: {tmp}/somefile is a file; expected a directory",
                 id="report --out a file"),
    pytest.param(["doctor", "--models", "resnet18", "--strategies", "repeat3", "-q", "--out",
                  "{tmp}/somefile/sub/compat.csv"],
                 "doctor: error: --out: {tmp}/somefile/sub/compat.csv cannot be created: "
                 "{tmp}/somefile is a file, not a directory", id="doctor --out under a file"),
    pytest.param(["doctor", "--models", "resnet18", "--strategies", "repeat3", "-q", "--out",
                  "{tmp}"], "doctor: error: --out: {tmp} is a directory; expected a file name",
                 id="doctor --out a directory"),
    pytest.param(["doctor", "--models", "resnet18", "--strategies", "repeat3", "-q", "--out",
                  "{tmp}/c.csv", "--png", "{tmp}/somefile/c.png"],
                 "doctor: error: --png: {tmp}/somefile/c.png cannot be created",
                 id="doctor --png under a file"),
])
def test_an_output_path_under_a_file_is_one_line(argv, expected, tmp_path, capsys) -> None:
    rdir = copy_results(tmp_path)
    (tmp_path / "somefile").write_text("a regular file\n")
    fill = [a.replace("{results}", str(rdir)).replace("{tmp}", str(tmp_path)) for a in argv]
    before = snapshot(tmp_path)
    code = exit_code(fill)
    out, err = capsys.readouterr()
    assert code == 2, out[-1500:] + err[-1500:]
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert expected.replace("{tmp}", str(tmp_path)) in err, err
    assert snapshot(tmp_path) == before


def test_report_out_under_a_file_from_the_command_line(tmp_path) -> None:
    (tmp_path / "somefile").write_text("a regular file\n")
    err = cli(["report", str(PUBLISHED), "--out", str(tmp_path / "somefile" / "sub")], tmp_path)
    assert "somefile is a file, not a directory" in err


# --- 6. messages that say what was given and what is expected -----------------------------

def test_a_directory_as_profile_is_called_a_directory(tmp_path, capsys) -> None:
    (tmp_path / "profiles").mkdir()
    line = refused(["plan", "--profile", str(tmp_path / "profiles"), "--results-dir",
                    str(tmp_path / "results"), "--device", "cpu"], capsys, tmp_path)
    assert line == (f"error: profile {tmp_path / 'profiles'} is a directory; expected a profile "
                    "name (cpu, gpu, gpu-crosses, gpu-quick, smoke) or a .toml file")


def test_a_timm_pretrained_tag_is_refused_as_unsupported(tmp_path, capsys) -> None:
    pytest.importorskip("timm")
    line = refused(["plan", "--profile", "smoke", "--set", "models=timm:resnet18.a1_in1k",
                    "--results-dir", str(tmp_path / "results"), "--device", "cpu"],
                   capsys, tmp_path)
    assert "pretrained tag 'a1_in1k' in 'timm:resnet18.a1_in1k': timm tags (timm:NAME.TAG) " \
           "are not supported; name the architecture, timm:resnet18" in line, line


# --- the table in docs/failures.md ----------------------------------------------------------

# Row of the table -> text of its message that the tests above check (T is tmp_path).
DOC_ROWS = {
    "accuracy inf": "line 2, column 'test_acc': 'inf' is out of range (valid: [0, 1])",
    "accuracy 1e9": "column 'test_acc': '1e9' is out of range (valid: [0, 1])",
    "accuracy -5": "column 'test_acc': '-5' is out of range (valid: [0, 1])",
    "negative count": "column 'test_count': '-1000' is out of range (valid: a finite number "
                      ">= 0)",
    "fractional parameter count": "column 'params': '1.5' is not a whole number",
    **{c.id: c.values[2] for c in CONFIG_CASES
       if c.id in ("TOML seed a float", "TOML seed a boolean", "20-digit seed",
                   "100000 threads")},
    "report --out under a file": "error: --out: T/somefile/sub cannot be created: T/somefile "
                                 "is a file, not a directory",
    "doctor --out under a file": "doctor: error: --out: T/somefile/sub/compat.csv cannot be "
                                 "created: T/somefile is a file, not a directory",
    "a directory as --profile": "is a directory; expected a profile name (cpu, gpu, "
                                "gpu-crosses, gpu-quick, smoke) or a .toml file",
    "timm pretrained tag": "timm tags (timm:NAME.TAG) are not supported; name the "
                           "architecture, timm:resnet18",
    "runs.csv replaced by a directory": "R/runs.csv is a directory; a results file must be a "
                                        "regular file",
    "seed nan": "R/runs.csv, line 2: column 'seed' holds 'nan', which is not a seed (valid: a "
                "whole number 0..4294967295)",
    "unknown model": "R/runs.csv, line 2: column 'model': unknown model 'resnet99' (did you "
                     "mean resnet50, resnet34, resnet18?)",
    "unknown strategy": "R/runs.csv, line 2: column 'strategy': unknown adapter 'bogus'",
    "timestamp not a date": "R/runs.csv, line 2: timestamp '1e20' is not ISO-8601",
    "field over the CSV limit": "R/runs.csv, line 1: not a well-formed CSV line (field larger "
                                "than field limit (131072))",
    "a newline in a column name": "R/runs.csv lacks column(s) seed: it was written by a "
                                  "different schema or is not a runs file. Columns found: "
                                  "schema_version,",
}


def test_the_failures_doc_lists_these_cases_with_their_messages() -> None:
    doc = (REPO / "docs" / "failures.md").read_text()
    start = doc.index("## Hostile results directories and configuration")
    table = doc[start:doc.index("\n## ", start + 1)]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[0].isdigit():
            rows[cells[1]] = "|".join(cells[3:]).replace("`", "")
    assert set(rows) == set(DOC_ROWS), set(rows) ^ set(DOC_ROWS)
    for name, needle in DOC_ROWS.items():
        assert needle in rows[name], (name, needle, rows[name])
    ids = {p.id for p in BAD_VALUES} | {p.id for p in CONFIG_CASES} | {p.id for p in FUZZ_FOUND}
    assert {"seed nan", "unknown model", "unknown strategy"} <= ids
    assert {"accuracy inf", "accuracy 1e9", "accuracy -5", "negative count",
            "fractional parameter count", "20-digit seed", "100000 threads"} <= ids


# --- 4. the state of the results directory, before any cell --------------------------------

@pytest.mark.parametrize("command", ["plan", "run"])
@pytest.mark.parametrize("name", ["runs.csv", "history.csv", "env.json"])
def test_a_results_file_replaced_by_a_directory_is_refused_before_any_cell(
        command, name, tmp_path, monkeypatch, capsys) -> None:
    for hook in HOOKS:
        monkeypatch.delenv(hook, raising=False)
    monkeypatch.setenv("ADAPTBENCH_CELL_IMPL", FAKE_IMPL)  # should a cell start after all
    rdir = copy_results(tmp_path)
    (rdir / name).unlink()
    (rdir / name).mkdir()
    line = refused([command, "--profile", "smoke", "--results-dir", str(rdir), "--device",
                    "cpu"], capsys, tmp_path)  # history.csv, ops.csv, env.json untouched too
    assert line == (f"error: {rdir / name} is a directory; a results file must be a regular "
                    "file: move it away, or pass --results-dir for a fresh directory")
    assert not (rdir / "runs.lock").exists()
