"""A property-based fuzzer of the results readers (issue 27): ``report``, ``advise`` and
``plan`` over a copy of the published ``results/cpu`` whose ``runs.csv``, ``history.csv`` and
``ops.csv`` are mutated from a grammar: bad numbers (inf, NaN, 1e309, -5, hex, 20 digits),
renamed models and strategies, emptied or changed seeds and timestamps, missing, extra or
renamed columns, truncated lines and files, a byte-order mark, NUL and other binary junk, CR
line ends, huge fields and stray quotes.

The property (tests/_fuzz.py): the command succeeds (report: summary.md, comparison.csv and
index.html written under --out) and leaves the results directory as it was, or it is one
line on stderr, exit code 2, with the results directory unchanged and no --out folder.
Each failure it found is an explicit case of tests/test_results_hostile.py.
"""

from __future__ import annotations

import csv
import io
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._fuzz import FAST, SLOW, assert_refusal_is_one_line, call
from tests._snapshots import snapshot

PUBLISHED = Path(__file__).resolve().parent.parent / "results" / "cpu"
# Edits aimed at what the readers key on (seeds, names, timestamps), drawn as often as all
# the others together: a 30-example lane must reach them, not only the generic values.
AIMED = [("seed", v) for v in ("nan", "none", "1e300", "-1", "1.5", "", "7")] + [
    ("model", v) for v in ("resnet99", "", "timm:nosuchnet", "vgg16", "RESNET18")] + [
    ("strategy", v) for v in ("bogus", "repeat3+", "", "none+pad48", "droppools")] + [
    ("timestamp", v) for v in ("1e20", "yesterday", "", "2026-13-45T99:00:00Z")] + [
    ("test_acc", v) for v in ("inf", "nan", "-5", "1e9")] + [
    ("status", "OK "), ("mode", "fast"), ("schema_version", "5.0"), ("cell_hash", "")]
FILES = ("runs.csv", "runs.csv", "runs.csv", "history.csv", "ops.csv")
COLUMNS = {"runs.csv": ["test_acc", "best_acc", "seed", "model", "strategy", "status", "mode",
                        "timestamp", "schema_version", "cell_hash", "params", "train_img_s",
                        "mfu", "final_train_loss", "dataset", "reason", "device_name",
                        "peak_mem_mib", "test_count", "input_shape"],
           "history.csv": ["epoch", "test_acc", "train_loss", "elapsed_s", "per_class_acc",
                           "seed", "cell_hash", "device_name"],
           "ops.csv": ["self_cpu_ms", "calls", "op", "self_cpu_mem_mib", "cell_hash"]}
VALUES = st.one_of(
    st.sampled_from(["inf", "-inf", "nan", "NaN", "none", "", "1e309", "-5", "1e9", "0x10",
                     "1_000", " 0.5", "1.5", "-0", "9" * 20, "abc", "\x00", "resnet99",
                     "RESNET18", "timm:nosuchnet", "repeat3+", "none+pad48", "vgg16",
                     "droppools", "2026-13-45T99:00:00Z", "1e20", "ok ", "measure-only",
                     "7", "0.25", "[not json", "[0.5, 0.5]", "\ufeffx", "a\nb", '"']),
    st.text(max_size=8),
)


@st.composite
def mutation(draw) -> tuple:
    """One edit of one results file."""
    if draw(st.booleans()):
        column, value = draw(st.sampled_from(AIMED))
        return ("runs.csv", "set", column, value, draw(st.integers(2, 13)), 0.5, b"\0")
    name = draw(st.sampled_from(FILES))
    kind = draw(st.sampled_from(["set"] * 6 + ["drop-column", "extra-column", "rename-column",
                                               "truncate", "bom", "junk", "crlf", "lone-cr",
                                               "huge-field", "duplicate-row", "no-header",
                                               "empty"]))
    return (name, kind, draw(st.sampled_from(COLUMNS[name])), draw(VALUES),
            draw(st.integers(2, 14)), draw(st.floats(0.01, 0.99)),
            draw(st.binary(min_size=1, max_size=16)))


def _edit_rows(blob: bytes, fn) -> bytes:
    # newline="": a lone CR written by an earlier edit is data here, not an error of this test
    # This file's own edits must read the huge fields it writes; the limit is process-wide, so
    # it is restored at once (left raised, it hid the readers' own field-limit refusal from the
    # tests that run after this file).
    old = csv.field_size_limit(1 << 24)
    try:
        rows = list(csv.reader(io.StringIO(blob.decode("utf-8", "surrogateescape"),
                                           newline="")))
    finally:
        csv.field_size_limit(old)
    fn(rows)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue().encode("utf-8", "surrogateescape")


def apply(rdir: Path, change: tuple) -> None:
    name, kind, column, value, line, where, junk = change
    path = rdir / name
    blob = path.read_bytes()
    if kind in ("set", "drop-column", "extra-column", "rename-column", "duplicate-row",
                "no-header"):
        def fn(rows: list[list[str]]) -> None:
            if not rows:  # emptied by an earlier edit
                return
            header = rows[0]
            at = header.index(column) if column in header else 0
            row = rows[min(line, len(rows)) - 1] if len(rows) > 1 else header
            if kind == "set" and len(rows) > 1:
                row[at] = value
            elif kind == "drop-column":
                for r in rows:
                    del r[at:at + 1]
            elif kind == "extra-column":
                for r in rows:
                    r.append(value if r is not header else "extra")
            elif kind == "rename-column":
                header[at] = value or "renamed"
            elif kind == "duplicate-row" and len(rows) > 1:
                rows.append(list(row))
            elif kind == "no-header":
                del rows[0]
        blob = _edit_rows(blob, fn)
    elif kind == "truncate":
        blob = blob[:int(len(blob) * where)]
    elif kind == "bom":
        blob = b"\xef\xbb\xbf" + blob
    elif kind == "junk":
        at = int(len(blob) * where)
        blob = blob[:at] + junk + blob[at:]
    elif kind == "crlf":
        blob = blob.replace(b"\n", b"\r\n")
    elif kind == "lone-cr":
        at = int(len(blob) * where)
        blob = blob[:at] + b"\r" + blob[at:]
    elif kind == "huge-field":
        blob = blob.replace(b",", b"," + b"7" * 200_000 + b",", 1)
    elif kind == "empty":
        blob = b""
    path.write_bytes(blob)


def _argv(command: str, rdir: Path, out: Path) -> list[str]:
    if command == "report":
        return ["report", str(rdir), "--out", str(out)]
    if command == "advise":
        return ["advise", "--model", "resnet18", "--results", str(rdir)]
    return ["plan", "--profile", "cpu", "--fast", "--json", "--results-dir", str(rdir),
            "--device", "cpu"]


def check_command(command: str, changes: list[tuple]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rdir, out = Path(tmp) / "results", Path(tmp) / "out"
        shutil.copytree(PUBLISHED, rdir, ignore=shutil.ignore_patterns("*.lock"))
        for change in changes:
            apply(rdir, change)
        before = snapshot(rdir)
        code, stdout, err = call(_argv(command, rdir, out))
        assert snapshot(rdir) == before, "the results directory was written to"
        if code == 0:
            if command == "report":
                assert {"summary.md", "comparison.csv", "index.html"} <= {
                    p.name for p in out.iterdir()}, sorted(out.iterdir())
            else:
                assert stdout.strip(), "success with nothing printed"
            return
        assert_refusal_is_one_line(code, err)
        assert not out.exists(), "a refused report left its --out folder"


# report draws charts (seconds an example): advise reads the same files through the same
# reader, so it is drawn more often.
COMMANDS = st.sampled_from(["advise", "advise", "advise", "report", "plan"])
CHANGES = st.lists(mutation(), min_size=1, max_size=3)


@FAST
@given(command=COMMANDS, changes=CHANGES)
def test_fuzz_results_readers_succeed_or_refuse_in_one_line(command, changes) -> None:
    check_command(command, changes)


@pytest.mark.slow
@settings(SLOW, max_examples=200)  # ~1 s an example on 2 cores (report's charts)
@given(command=COMMANDS, changes=CHANGES)
def test_fuzz_results_readers_many_examples(command, changes) -> None:
    check_command(command, changes)
