"""The results store: schema, atomic writes that survive a full disk, merging, the lock."""

from __future__ import annotations

import errno
import os

import pytest

from bench import results
from bench.results import HISTORY_COLUMNS, OPS_COLUMNS, RUN_COLUMNS, ResultsError


def run_row(cell_hash: str, status: str = "ok", timestamp: str = "2025-01-01T00:00:00Z",
            **extra) -> dict:
    row = {"schema_version": results.SCHEMA_VERSION, "cell_hash": cell_hash, "profile": "t",
           "dataset": "mnist", "model": "resnet18", "strategy": "repeat3", "seed": 0,
           "status": status, "mode": "full", "timestamp": timestamp, "test_acc": 0.5}
    row.update(extra)
    return row


def test_the_schema_is_the_contracts() -> None:
    assert RUN_COLUMNS[0] == "schema_version" and RUN_COLUMNS[-1] == "timestamp"
    assert len(set(RUN_COLUMNS)) == len(RUN_COLUMNS) == 76
    for col in ("cell_hash", "status", "reason", "mode", "estimate_s", "git_sha", "git_dirty",
                "config_hash", "device_name", "cudnn_version", "host_cpu"):
        assert col in RUN_COLUMNS
    assert HISTORY_COLUMNS[-1] == "per_class_acc" and "elapsed_s" in HISTORY_COLUMNS
    assert OPS_COLUMNS[-6:] == ("op", "self_cpu_ms", "self_device_ms", "calls",
                                "self_cpu_mem_mib", "self_device_mem_mib")
    assert set(results.PROVENANCE_COLUMNS) <= set(RUN_COLUMNS)


def test_values_are_formatted_for_csv() -> None:
    assert results.format_value(None) == ""
    assert results.format_value(float("nan")) == ""
    assert results.format_value(True) == "true"
    assert results.format_value(0.1) == "0.1"
    assert results.format_value([0.5, 1.0]) == "[0.5,1.0]"
    assert results.normalize_row({"op": "aten::mm"}, OPS_COLUMNS)["cell_hash"] == ""


def test_a_written_file_reads_back(tmp_path) -> None:
    path = tmp_path / "runs.csv"
    results.upsert(path, "runs", [run_row("a"), run_row("b", reason='a "quoted", comma')], set())
    rows = results.read_csv(path, "runs")
    assert [r["cell_hash"] for r in rows] == ["a", "b"]
    assert rows[1]["reason"] == 'a "quoted", comma'
    assert rows[0]["schema_version"] == str(results.SCHEMA_VERSION)
    assert not list(tmp_path.glob("*.tmp"))


def test_upsert_replaces_a_row_without_duplicates(tmp_path) -> None:
    path = tmp_path / "runs.csv"
    results.upsert(path, "runs", [run_row("a"), run_row("b")], set())
    results.upsert(path, "runs", [run_row("a", test_acc=0.9)], {"a"})
    rows = results.read_csv(path, "runs")
    assert sorted(r["cell_hash"] for r in rows) == ["a", "b"]
    assert next(r for r in rows if r["cell_hash"] == "a")["test_acc"] == "0.9"


def test_a_full_disk_leaves_the_previous_file_byte_identical(tmp_path, monkeypatch) -> None:
    path = tmp_path / "runs.csv"
    results.upsert(path, "runs", [run_row("a")], set())
    before = path.read_bytes()

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(ResultsError, match="No space left.*unchanged"):
        results.upsert(path, "runs", [run_row("b")], set())
    assert path.read_bytes() == before
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_hand_edited_header_is_refused(tmp_path) -> None:
    path = tmp_path / "runs.csv"
    path.write_text("cell_hash,status\nabc,ok\n")
    with pytest.raises(ResultsError, match="missing.*hand"):
        results.read_csv(path, "runs")


def test_a_truncated_row_is_refused_with_its_line(tmp_path) -> None:
    path = tmp_path / "history.csv"
    results.upsert(path, "history", [{"cell_hash": "a", "epoch": 1}], set())
    with open(path, "a") as fh:
        fh.write("b,mnist,resnet18\n")
    with pytest.raises(ResultsError, match="line 3"):
        results.read_csv(path, "history")


def test_unknown_schema_versions_are_refused(tmp_path) -> None:
    path = tmp_path / "runs.csv"
    results.upsert(path, "runs", [run_row("a"), run_row("b", schema_version=9)], set())
    with pytest.raises(ResultsError,
                       match=rf"schema versions \['{results.SCHEMA_VERSION}', '9'\]"):
        results.read_csv(path, "runs")


def test_read_dir_merges_shards_and_the_newest_row_wins(tmp_path) -> None:
    results.write_cell(tmp_path, "", run_row("a", status="error"),
                       [{"cell_hash": "a", "epoch": 1}], [])
    results.write_cell(tmp_path, ".shard-1-of-2",
                       run_row("a", timestamp="2025-01-02T00:00:00Z"),
                       [{"cell_hash": "a", "epoch": 1}, {"cell_hash": "a", "epoch": 2}],
                       [{"cell_hash": "a", "op": "aten::mm"}])
    results.write_cell(tmp_path, ".shard-2-of-2", run_row("b", status="timeout", seed=1), [], [])
    runs = {r["cell_hash"]: r for r in results.read_dir(tmp_path, "runs")}
    assert runs["a"]["status"] == "ok" and runs["b"]["status"] == "timeout"
    assert len(results.read_dir(tmp_path, "history")) == 2  # only the winning file's rows
    assert results.done_hashes(tmp_path) == {"a"}  # timeout is retried


def test_history_without_a_runs_row_is_stale(tmp_path) -> None:
    results.upsert(tmp_path / "history.csv", "history", [{"cell_hash": "x", "epoch": 1}], set())
    assert results.read_dir(tmp_path, "history") == []


def test_final_statuses_are_the_resume_rule() -> None:
    assert results.FINAL_STATUSES == {"ok", "incompatible", "diverged", "oom"}
    assert set(results.STATUSES) - results.FINAL_STATUSES == {"error", "timeout"}


def test_rank_files_merge_into_the_main_file(tmp_path) -> None:
    results.write_cell(tmp_path, "", run_row("a", status="error"), [], [])
    results.write_cell(tmp_path, ".rank0", run_row("a", timestamp="2025-02-01T00:00:00Z"),
                       [{"cell_hash": "a", "epoch": 1}], [])
    results.write_cell(tmp_path, ".rank1", run_row("b"), [], [{"cell_hash": "b", "op": "x"}])
    assert results.merge_files(tmp_path, [".rank0", ".rank1"], "") == 2
    assert sorted(p.name for p in tmp_path.glob("*.csv")) == ["history.csv", "ops.csv",
                                                              "runs.csv"]
    rows = {r["cell_hash"]: r for r in results.read_csv(tmp_path / "runs.csv", "runs")}
    assert rows["a"]["status"] == "ok" and set(rows) == {"a", "b"}


def test_file_names_match_the_readers_glob() -> None:
    assert results.file_name("runs") == "runs.csv"
    assert results.file_name("ops", results.shard_suffix(2, 4)) == "ops.shard-2-of-4.csv"
    assert results.shard_suffix(1, 1) == ""
    assert results.file_name("history", results.rank_suffix("", 1)) == "history.rank1.csv"


def test_a_second_run_is_refused_naming_the_holder(tmp_path) -> None:
    first = results.DirLock(tmp_path).acquire("python -m bench run --profile smoke")
    try:
        with pytest.raises(results.LockError, match=f"pid {os.getpid()}.*--profile smoke"):
            results.DirLock(tmp_path).acquire("second")
        results.DirLock(tmp_path, "runs.shard-1-of-2").acquire().release()  # other files: fine
    finally:
        first.release()
    results.DirLock(tmp_path).acquire().release()


def test_git_info_outside_a_checkout_is_unknown(tmp_path) -> None:
    assert results.git_info(tmp_path) == {"git_sha": "unknown", "git_dirty": ""}


def test_host_cpu_names_the_cores() -> None:
    assert "logical cores" in results.host_cpu()


# --- the schema: one owner of every column, one rule for the current row --------------------

def test_every_column_has_a_dtype_and_a_meaning_and_units_where_measured() -> None:
    from bench import schema

    for kind, columns in schema.TABLES.items():
        for col in columns:
            assert col.dtype in ("str", "int", "float", "bool", "json"), (kind, col)
            assert col.meaning, (kind, col.name)
            if col.name.endswith(("_s", "_mib", "_img_s")):
                assert col.unit, (kind, col.name)
    assert set(schema.STATUSES) == {s.value for s in schema.Status}
    assert schema.FINAL_STATUSES < set(schema.STATUSES)


def test_the_glossary_states_the_evaluation_batch_and_the_mfu_caveat() -> None:
    """The column meanings say what the code does: the evaluation batch factor the engine and
    the cost model use, and that 3 x forward overstates MFU (no input gradient for layer 1)."""
    from bench import schema
    from bench.plan.steps import EVAL_BATCH_FACTOR

    words = {2: "twice", 3: "three times", 4: "four times"}
    batch = next(c for c in schema.TABLES["runs"] if c.name == "batch_size").meaning
    assert f"evaluation uses {words[EVAL_BATCH_FACTOR]} this" in batch
    mfu = next(c for c in schema.TABLES["runs"] if c.name == "mfu").meaning
    assert "overstated" in mfu and "input gradient" in mfu


def test_an_unknown_key_is_an_error_not_a_silent_drop(monkeypatch) -> None:
    from bench import schema

    monkeypatch.setenv(schema.STRICT_ENV, "1")
    with pytest.raises(schema.SchemaError, match="self_cpu_mem_mibs"):
        results.normalize_row({"op": "aten::mm", "self_cpu_mem_mibs": 1.0}, OPS_COLUMNS)
    # the profiler's memory columns are part of the schema now, not thrown away
    assert results.normalize_row({"op": "aten::mm", "self_cpu_mem_mib": 1.5},
                                 OPS_COLUMNS)["self_cpu_mem_mib"] == "1.5"


def test_a_version_1_file_is_read_onto_version_2_without_loss(tmp_path) -> None:
    from bench import schema

    old_columns = schema.LEGACY_COLUMNS["runs"][0]
    old = {c: "" for c in old_columns}
    old.update(schema_version="1", cell_hash="h1", dataset="mnist", model="m", strategy="s",
               seed="0", status="ok", mode="full", test_acc="0.5", device_name="Old GPU",
               timestamp="2026-01-01T00:00:00Z")
    path = tmp_path / "runs.csv"
    path.write_text(results.to_csv_text([old], old_columns))
    (row,) = results.read_csv(path, "runs")
    assert tuple(row) == RUN_COLUMNS and row["test_acc"] == "0.5" and row["device_id"] == ""
    # an upsert rewrites the file in the current layout and keeps the old row as it was
    results.upsert(path, "runs", [{**run_row("h2"), "device_id": "cpu | X"}], {"h2"})
    assert path.read_text().splitlines()[0] == ",".join(RUN_COLUMNS)
    assert {r["schema_version"] for r in results.read_csv(path, "runs")} == {
        "1", str(results.SCHEMA_VERSION)}


def _read_legacy_row(tmp_path, columns, **values: str) -> dict[str, str]:
    """One finished row written in an older layout (``columns``), read back as today's."""
    old = {c: "" for c in columns}
    old.update(dataset="mnist", model="m", strategy="s", seed="0", status="ok", mode="full",
               timestamp="2026-01-01T00:00:00Z", **values)
    path = tmp_path / "runs.csv"
    path.write_text(results.to_csv_text([old], columns))
    (row,) = results.read_csv(path, "runs")
    return row


def test_a_version_2_file_is_read_onto_the_current_layout_without_loss(tmp_path) -> None:
    from bench import schema

    old_columns = schema.LEGACY_COLUMNS["runs"][1]
    assert "device_id" in old_columns and "input_shape" not in old_columns
    row = _read_legacy_row(tmp_path, old_columns, schema_version="2", cell_hash="h1",
                           test_acc="0.25", device_id="cpu | X")
    assert tuple(row) == RUN_COLUMNS and row["test_acc"] == "0.25"
    assert row["device_id"] == "cpu | X" and row["input_shape"] == row["data_digest"] == ""


def test_a_version_3_file_reads_with_every_version_4_column_empty(tmp_path) -> None:
    """Every row before version 4 ran eager, alone on its device, in one process: the readers
    take the empty graphs/concurrency/world_size as exactly that."""
    from bench import schema

    old_columns = schema.LEGACY_COLUMNS["runs"][2]
    assert "executor" in old_columns and "graphs" not in old_columns
    row = _read_legacy_row(tmp_path, old_columns, schema_version="3", cell_hash="h3",
                           compile="false", executor="warm")
    assert tuple(row) == RUN_COLUMNS and row["executor"] == "warm" and row["compile"] == "false"
    assert row["graphs"] == row["capture_s"] == row["fast_path_reason"] == ""
    assert row["concurrency"] == row["world_size"] == ""


def test_a_version_4_file_reads_with_the_contention_columns_empty(tmp_path) -> None:
    """results/cpu is schema 4: contention was not measured there, so nothing is flagged."""
    from bench import schema

    old_columns = schema.LEGACY_COLUMNS["runs"][3]
    assert "graphs" in old_columns and "cpu_share" not in old_columns
    row = _read_legacy_row(tmp_path, old_columns, schema_version="4", cell_hash="h4",
                           train_img_s="60.9")
    assert tuple(row) == RUN_COLUMNS and row["train_img_s"] == "60.9"
    assert row["cpu_share"] == row["contended"] == row["train_img_s_pooled"] == ""
    assert row["load_start"] == row["remeasured"] == row["threads"] == ""


def test_the_current_row_of_a_cell_is_its_newest_for_every_reader(tmp_path) -> None:
    def row(h: str, ts: str, seed: int = 0, device_id: str = "cpu | A") -> dict:
        return run_row(h, timestamp=ts, seed=seed, device_id=device_id)

    rows = [row("old-recipe", "2026-01-01T00:00:00Z"), row("new-recipe", "2026-01-02T00:00:00Z"),
            row("other-seed", "2026-01-01T00:00:00Z", seed=1),
            row("other-machine", "2026-01-01T00:00:00Z", device_id="cpu | B")]
    path = tmp_path / "runs.csv"
    path.write_text(results.to_csv_text([results.normalize_row(r, RUN_COLUMNS) for r in rows],
                                        RUN_COLUMNS))
    current, superseded = results.read_current_runs(tmp_path)
    assert {r["cell_hash"] for r in current} == {"new-recipe", "other-seed", "other-machine"}
    assert superseded == 1
    assert results.done_hashes(tmp_path) == {"new-recipe", "other-seed", "other-machine"}
