"""The one result channel: a cell's result reaches the sweep on its result pipe, or not at all.

The local executors (``warm``, ``process``) run the stand-in cell of tests/standins.py; the
engines' executors (ray, submitit) hand back the same outcome as a return value, read by the
same function (:func:`bench.executors.protocol.from_wire`), checked here without an engine.
"""

from __future__ import annotations

import json
import math

import pytest
import standins  # tests/ is on sys.path under pytest

from bench import config
from bench.config import Config
from bench.executors import make_executor
from bench.executors.channel import reply_payload, request_line
from bench.executors.protocol import (
    child_env,
    child_outcome,
    failure_row,
    from_wire,
    result_row,
    to_wire,
)

LOCAL = ("warm", "process")


@pytest.fixture
def request_once(tmp_path, monkeypatch):
    """request_once(executor, behaviour) -> (outcome, printed lines, the executor's directory):
    one stand-in cell with ``behaviour`` (tests/standins.py) on a fresh executor."""
    monkeypatch.setenv("ADAPTBENCH_CELL_IMPL", standins.IMPL)
    for name in standins.HOOKS:
        monkeypatch.delenv(name, raising=False)
    cfg_path = tmp_path / "config.toml"
    cfg_path.write_text(config.to_toml(Config(epochs=1)))
    count = [0]

    def request(name: str, behaviour: str):
        count[0] += 1
        workdir = tmp_path / f"{name}-{count[0]}"
        workdir.mkdir()
        monkeypatch.setenv("ADAPTBENCH_FAKE", f"resnet18/cell={behaviour.format(dir=workdir)}")
        spec = {"config_path": str(cfg_path),
                "cell": {"dataset": "mnist", "model": "resnet18", "strategy": "cell",
                         "seed": 0}, "device": "cpu", "measure_only": False, "out_dir": None}
        lines: list[str] = []
        with make_executor(name, workdir, child_env("cpu", 1)) as ex:
            out = ex.request("run", spec, 60, lines.append)
        return out, lines, workdir

    return request


@pytest.mark.parametrize("name", LOCAL)
def test_nothing_but_the_result_pipe_makes_a_row(request_once, name) -> None:
    """A cell that printed a well-formed result line for its own request on stdout and left a
    finished cell's result.json where results used to be read, and then died, gets the row of
    a cell that died with nothing written; so does one that died half-way through writing its
    result. The forged line was relayed as what stdout is: progress."""
    killed, _, _ = request_once(name, "kill")
    forged, lines, workdir = request_once(name, "forge:{dir}")
    half, _, _ = request_once(name, "halfwrite")
    assert (workdir / "result.json").is_file()
    assert any(json.loads(line).get("payload") for line in lines if line.startswith("{"))
    for out in (killed, forged, half):
        assert out.payload is None and not out.timed_out and out.returncode == -9
    expected = failure_row(killed, 60)
    assert expected["status"] == "error"
    assert expected["reason"].startswith("killed by SIGKILL (exit -9)")
    assert failure_row(forged, 60) == failure_row(half, 60) == expected


@pytest.mark.parametrize("name", LOCAL)
def test_a_request_travels_on_stdin_and_its_result_on_the_pipe_alone(request_once,
                                                                     name) -> None:
    """No spec file and no result file: the executor's directory holds the process's log only,
    and the whole measured row came back, its progress line relayed before it."""
    out, lines, workdir = request_once(name, "ok")
    assert sorted(p.name for p in workdir.iterdir()) == [
        "worker.log" if name == "warm" else "stderr.log"]
    row, history, ops, _ = result_row(out, 60)
    assert row["status"] == "ok" and row["train_img_s"] == 123.5
    assert len(history) == 1 and ops[0]["op"] == "aten::convolution"
    assert lines[-1] == "epoch 1/1 fake mnist/resnet18/cell/seed0"


def test_a_result_line_counts_only_whole_and_for_its_own_request() -> None:
    line = json.dumps({"id": 4, "payload": {"row": {"status": "ok"}}}).encode()
    assert reply_payload(line, 4) == {"row": {"status": "ok"}}
    assert reply_payload(line, 3) is None  # another request's
    assert reply_payload(line[: len(line) // 2], 4) is None  # cut short
    assert reply_payload(b"epoch 1/3 loss 0.5", 4) is None  # not JSON
    assert reply_payload(b"[4]", 4) is None and reply_payload(None, 4) is None
    assert reply_payload(json.dumps({"id": 4, "payload": None}).encode(), 4) is None
    text = request_line(4, "estimate", {"cell": {"strategy": "a\nb"}})
    assert text.count("\n") == 1 and json.loads(text)["spec"]["cell"]["strategy"] == "a\nb"


def test_a_payload_of_the_wrong_shape_is_no_result() -> None:
    def payload(command: str, value: object) -> object:
        return child_outcome(command, value, returncode=None, timed_out=False, wall_s=1.0,
                             log="ValueError: bad\n").payload

    assert payload("run", {"row": {"status": "ok"}, "history": []}) is not None
    assert payload("run", {"row": "ok"}) is None
    assert payload("run", {"row": {}, "ops": {}}) is None
    assert payload("run", ["row"]) is None
    assert payload("estimate", {"estimate_s": 2.5}) == {"estimate_s": 2.5}
    for bad in (math.nan, -1.0, "2", True, None):
        assert payload("estimate", {"estimate_s": bad}) is None
    out = child_outcome("run", {"row": 1}, returncode=None, timed_out=False, wall_s=1.0,
                        log="x\nValueError: bad\n")
    assert failure_row(out, 60) == {
        "status": "error", "reason": "a worker finished the request without a result: "
                                     "ValueError: bad"}


def test_an_engines_return_value_is_read_as_a_local_outcome() -> None:
    """What a Ray actor or a submitit task returns (to_wire) is read back into the outcome it
    was, and a return value that is not one fails the way a process without a result does."""
    ok = child_outcome("run", {"row": {"status": "ok"}, "history": [], "ops": [],
                               "provenance": {"host": "n1"}},
                       returncode=None, timed_out=False, wall_s=2.0, log="ignored")
    killed = child_outcome("run", None, returncode=-9, timed_out=False, wall_s=3.0,
                           log="x" * 30000 + "\nlast words\n")
    for out in (ok, killed):
        back = from_wire("run", to_wire(out), concurrency=2)
        assert back.concurrency == 2
        assert (back.payload, back.returncode, back.timed_out, back.wall_s) == (
            out.payload, out.returncode, out.timed_out, out.wall_s)
    assert ok.log == "" and len(to_wire(killed)["log"]) == 20000  # a tail travels
    assert failure_row(from_wire("run", to_wire(killed)), 60) == failure_row(killed, 60)
    garbled = from_wire("run", {"payload": "row", "returncode": -9, "wall_s": 1.0})
    assert garbled.payload is None
    assert failure_row(garbled, 60)["reason"].startswith("killed by SIGKILL")
    assert from_wire("run", None).payload is None
