"""Bad inputs: one clear line naming the bad value, exit code 2, and not one results file touched.

Every case runs against a results directory that already holds a finished run (two stand-in
cells: runs.csv, history.csv, ops.csv, config.toml, env.json, runs.lock). Before and after, the
bytes and modification times of every file in it are compared: a refused command writes nothing,
not even the lock file. The cases go through ``bench.__main__.main`` in this process (argument
parsing and validation come before any cell starts); a few also run as ``python -m bench`` to
prove the exit code end to end. The README's bad-input table lists the same cases.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import standins  # tests/ is on sys.path under pytest
from _cli import exit_code
from _snapshots import snapshot

from bench import results
from bench.__main__ import main

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
FAKE_IMPL = standins.IMPL
HOOKS = ("ADAPTBENCH_CELL_IMPL", "ADAPTBENCH_INJECT_FAULT", "ADAPTBENCH_CELL_RLIMIT_AS_MIB",
         "ADAPTBENCH_DATA", *standins.HOOKS)
GRID = ["--set", "models=resnet18", "--set", "strategies=repeat3,conv1", "--set", "train_size=64",
        "--set", "test_size=40", "--set", "batch_size=16"]


def smoke(*args: str) -> list[str]:
    """``run --profile smoke`` with the prior run's grid, then ``args`` (later --set wins)."""
    return ["run", "--profile", "smoke", *GRID, *args]


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# (argv, text stderr must contain). {results} is the results directory, {inputs} a folder of
# bad profiles and data roots. run/plan get --results-dir {results} --device cpu unless given.
CASES = [
    # profiles and config files
    pytest.param(["run", "--profile", "nope"], "unknown profile 'nope'", id="unknown profile"),
    pytest.param(["run", "--profile", "{inputs}/none.toml"], "none.toml",
                 id="profile file missing"),
    pytest.param(["run", "--profile", "{inputs}/dir.toml"], "dir.toml",
                 id="profile path unreadable (a directory)"),
    pytest.param(["run", "--profile", "{inputs}/invalid.toml"], "invalid.toml is not valid TOML",
                 id="profile not TOML"),
    pytest.param(["run", "--profile", "{inputs}/latin1.toml"], "cannot read profile",
                 id="profile not UTF-8"),
    pytest.param(["run", "--profile", "{inputs}/table.toml"], "unknown table [train]",
                 id="unknown table in profile"),
    pytest.param(["run", "--profile", "{inputs}/type.toml"], "bad value 'two' for 'epochs'",
                 id="wrong type in profile"),
    # keys and values
    pytest.param(smoke("--set", "epoch=1"), "unknown config key 'epoch'", id="unknown key"),
    pytest.param(smoke("--set", "epochs"), "bad override 'epochs'", id="override without ="),
    pytest.param(smoke("--set", "epochs=two"), "bad value 'two' for 'epochs'",
                 id="non-numeric int"),
    pytest.param(smoke("--set", "lr=fast"), "bad value 'fast' for 'lr'", id="non-numeric float"),
    pytest.param(smoke("--set", "seeds=0,a"), "bad value '0,a' for 'seeds'",
                 id="non-numeric seed"),
    pytest.param(smoke("--set", "channels_last=maybe"), "bad value 'maybe' for 'channels_last'",
                 id="not a boolean"),
    pytest.param(smoke("--set", "precision=fp8"), "bad value 'fp8' for 'precision'; valid: fp32",
                 id="unknown precision"),
    pytest.param(smoke("--set", "optimizer=adam"), "'adam' for 'optimizer'; valid: sgd, adamw",
                 id="unknown optimizer"),
    pytest.param(smoke("--executor", "dask"), "bad value 'dask' for 'executor'; valid: warm, "
                 "process, ray, submitit", id="unknown executor"),
    pytest.param(smoke("--set", "executor=threads"), "bad value 'threads' for 'executor'; "
                 "valid: warm, process, ray, submitit", id="unknown executor in a profile key"),
    pytest.param(["plan", "--profile", "smoke", "--executor", "dask"],
                 "bad value 'dask' for 'executor'; valid: warm, process, ray, submitit",
                 id="plan: unknown executor"),
    pytest.param(smoke("--executor", "ray", "--set", "pack=0"),
                 "bad value 0 for 'pack'; valid: a positive integer", id="ray: no cell per device"),
    pytest.param(smoke("--set", "pack=0"), "bad value 0 for 'pack'; valid: a positive integer "
                 "(cells sharing one device at once) or auto", id="pack zero"),
    pytest.param(smoke("--set", "pack=-1"), "bad value -1 for 'pack'; valid: a positive "
                 "integer (cells sharing one device at once) or auto", id="pack negative"),
    pytest.param(smoke("--set", "pack=x"), "bad value 'x' for 'pack'; valid: a positive "
                 "integer (cells sharing one device at once) or auto", id="pack not a number"),
    pytest.param(smoke("--executor", "ray", "--set", "pack=auto"),
                 "pack=auto is for the warm and process executors", id="ray: pack auto"),
    pytest.param(smoke("--executor", "ray", "--set", "ray_address=head-node"),
                 "bad value 'head-node' for 'ray_address'; valid: \"\" (a Ray instance",
                 id="ray: an address without a port"),
    pytest.param(smoke("--executor", "submitit", "--set", "slurm_cluster=pbs"),
                 "bad value 'pbs' for 'slurm_cluster'; valid: auto, slurm, local, debug",
                 id="submitit: unknown cluster"),
    pytest.param(smoke("--set", "epochs=0"), "epochs must be > 0, got 0", id="zero epochs"),
    pytest.param(smoke("--set", "epochs=-1"), "epochs must be > 0, got -1",
                 id="negative epochs"),
    pytest.param(smoke("--set", "batch_size=0"), "batch_size must be > 0, got 0",
                 id="zero batch size"),
    pytest.param(smoke("--set", "batch_size=-16"), "batch_size must be > 0, got -16",
                 id="negative batch size"),
    pytest.param(smoke("--set", "train_size=-5"), "train_size must be >= 0, got -5",
                 id="negative subset"),
    pytest.param(smoke("--set", "warmup_frac=1.5"), "warmup_frac must be in [0, 1), got 1.5",
                 id="fraction out of range"),
    pytest.param(smoke("--set", "cell_timeout_s=0"), "cell_timeout_s must be > 0",
                 id="zero timeout"),
    pytest.param(smoke("--set", "lr=nan"), "lr must be a finite number >= 0, got nan",
                 id="NaN learning rate"),
    pytest.param(smoke("--set", "momentum=inf"), "momentum must be a finite number in [0, 1)",
                 id="infinite momentum"),
    pytest.param(smoke("--set", "label_smoothing=1.5"), "label_smoothing must be in [0, 1]",
                 id="label smoothing above 1"),
    pytest.param(smoke("--set", "seeds=0,0"), "seeds lists a value twice",
                 id="duplicate seed"),
    pytest.param(smoke("--set", "models="), "bad value '' for 'models'", id="empty grid list"),
    # the grid
    pytest.param(smoke("--set", "models=resnet18,vgg17"), "unknown model 'vgg17'",
                 id="unknown model"),
    pytest.param(smoke("--set", "strategies=repeat4"), "unknown adapter 'repeat4'",
                 id="unknown strategy"),
    pytest.param(smoke("--set", "strategies=repeat3+"), "malformed strategy 'repeat3+'",
                 id="malformed strategy spec"),
    pytest.param(smoke("--set", "strategies=resize224+repeat3"),
                 "malformed strategy 'resize224+repeat3'", id="strategy parts swapped"),
    pytest.param(smoke("--set", "strategies=resize0"), "'resize0'", id="bad strategy parameter"),
    pytest.param(smoke("--set", "datasets=cifar10"), "unknown dataset 'cifar10'",
                 id="unknown dataset"),
    # data
    pytest.param(smoke("--set", "train_size=70000"), "train_size=70000 is larger than the mnist",
                 id="train subset larger than the dataset"),
    pytest.param(smoke("--set", "test_size=20000"), "test_size=20000 is larger than the mnist",
                 id="test subset larger than the dataset"),
    pytest.param(smoke("--set", "val_size=60000"), "val_size=60000 leaves no mnist training",
                 id="validation split takes everything"),
    pytest.param(smoke("--set", "batch_size=128"), "batch_size=128 is larger than the mnist",
                 id="batch larger than the training subset"),
    pytest.param(smoke("--set", "data_root={inputs}/nowhere"), "nowhere' does not exist",
                 id="missing data root"),
    pytest.param(smoke("--set", "data_root={inputs}/corrupt"), "manifest.json is unreadable",
                 id="corrupt data cache"),
    # weights: refused once, before any cell, not one error row per cell
    pytest.param(smoke("--set", "weights={inputs}/none.pt"), "none.pt does not exist",
                 id="weights file missing"),
    pytest.param(smoke("--set", "weights={inputs}"), "is not a file", id="weights a directory"),
    pytest.param(smoke("--set", "weights={inputs}/garbage.pt"), "cannot read weights file",
                 id="weights file garbage"),
    pytest.param(smoke("--set", "weights={inputs}/other_model.pt"), "do not fit ResNet",
                 id="weights of another model"),
    pytest.param(smoke("--set", "models=resnet18,vgg16",
                       "--set", "per_model=vgg*:weights={inputs}/none.pt"),
                 "none.pt' for model vgg16", id="per-model weights missing"),
    # selection, devices, results directory
    pytest.param(smoke("--shard", "3/2"), "bad --shard '3/2'", id="shard 3/2"),
    pytest.param(smoke("--shard", "a/b"), "bad --shard 'a/b'", id="shard not numbers"),
    pytest.param(smoke("--only", "model=resnet50"), "'resnet50' is not in this profile's models",
                 id="only: value not in the grid"),
    pytest.param(smoke("--only", "colour=red"), "bad --only item 'colour=red'",
                 id="only: unknown key"),
    pytest.param(smoke("--device", "tpu"), "unknown device 'tpu'", id="unknown device"),
    pytest.param(smoke("--device", "cuda"), "CUDA is not available", id="cuda without a GPU",
                 marks=pytest.mark.skipif("_cuda()", reason="this machine has CUDA")),
    pytest.param(smoke("--results-dir", "{results}/runs.csv"), "runs.csv cannot be created",
                 id="results dir is a file"),
    pytest.param(smoke("--ddp"), "--ddp trains each cell with every torchrun rank",
                 id="ddp without torchrun"),
    pytest.param(["run", "--publish", "--profile", "smoke"],
                 "--publish: profile smoke cannot be published: seeds = [0]",
                 id="publish one seed"),
    # the command line itself and the other commands
    pytest.param(["frob"], "invalid choice: 'frob'", id="unknown command"),
    pytest.param(["run"], "--profile", id="missing --profile"),
    pytest.param(["plan", "--profile", "smoke", "--set", "epochs=zero"], "'zero'",
                 id="plan: bad value"),
    pytest.param(["report", "{results}/missing"], "missing does not exist",
                 id="report: no such directory"),
    pytest.param(["report", "{results}", "--compat", "{inputs}/none.csv"], "none.csv",
                 id="report: missing compat file"),
    pytest.param(["data", "fetch", "--dataset", "cifar10", "--data-root", "{inputs}"],
                 "unknown dataset 'cifar10'", id="data: unknown dataset"),
]

# Also run as `python -m bench` (a subprocess each) to prove the exit code end to end: two
# refused before torch is imported (a fraction of a second), one after the grid is checked.
END_TO_END = ["unknown profile", "non-numeric float", "missing data root"]


@pytest.fixture(scope="module")
def prior_run(tmp_path_factory) -> Path:
    """A results directory from a finished two-cell run (stand-in cells: fast)."""
    rdir = tmp_path_factory.mktemp("prior") / "results"
    with pytest.MonkeyPatch.context() as mp:
        for name in HOOKS:
            mp.delenv(name, raising=False)
        mp.setenv("ADAPTBENCH_CELL_IMPL", FAKE_IMPL)
        assert main(["run", "--profile", "smoke", "--results-dir", str(rdir), "--device", "cpu",
                     "--quiet", *GRID]) == 0
    assert len(results.read_csv(rdir / "runs.csv", "runs")) == 2
    return rdir


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Bad profiles and data roots."""
    d = tmp_path_factory.mktemp("inputs")
    (d / "dir.toml").mkdir()
    (d / "invalid.toml").write_text("[recipe]\nepochs = = 1\n")
    (d / "latin1.toml").write_bytes(b"# caf\xe9\n[recipe]\nepochs = 1\n")
    (d / "table.toml").write_text('[grid]\nmodels = ["resnet18"]\n[train]\nepochs = 1\n')
    (d / "type.toml").write_text('[recipe]\nepochs = "two"\n')
    (d / "corrupt" / "cache" / "mnist").mkdir(parents=True)
    (d / "corrupt" / "cache" / "mnist" / "manifest.json").write_text("{not json")
    write_bad_weights(d)
    return d


def write_bad_weights(d: Path) -> None:
    """``garbage.pt`` (not a checkpoint) and ``other_model.pt`` (a state dict, not a ResNet's)."""
    import torch

    (d / "garbage.pt").write_bytes(b"not a checkpoint\x00\x01\x02" * 8)
    torch.save(torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(),
                                   torch.nn.Linear(4, 10)).state_dict(), d / "other_model.pt")


@pytest.fixture
def results_dir(prior_run, tmp_path, monkeypatch) -> Path:
    for name in HOOKS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ADAPTBENCH_CELL_IMPL", FAKE_IMPL)  # should anything start a cell
    import shutil

    rdir = tmp_path / "results"
    shutil.copytree(prior_run, rdir)
    return rdir


def fill(argv: list[str], rdir: Path, inputs: Path) -> list[str]:
    args = [a.replace("{results}", str(rdir)).replace("{inputs}", str(inputs)) for a in argv]
    if args[0] in ("run", "plan") and len(args) > 1:
        if "--results-dir" not in args:
            args += ["--results-dir", str(rdir)]
        if "--device" not in args:
            args += ["--device", "cpu"]
    return args



def test_the_failures_doc_lists_every_case_with_its_message() -> None:
    """docs/failures.md's "Bad input" table has a row per case, named by the case's id, whose
    message holds the text the case checks ({inputs} written IN): a changed message or a new
    case cannot leave the table behind (two rows had gone stale and five were missing)."""
    doc = (REPO / "docs" / "failures.md").read_text()
    start = doc.index("## Bad input")
    table = doc[start:doc.index("\n## ", start + 1)]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[0].isdigit():
            rows[cells[1]] = "|".join(cells[3:]).replace("`", "")
    for case in CASES:
        name, needle = case.id, case.values[1].replace("{inputs}/", "IN/")
        assert name in rows, f"docs/failures.md has no row {name!r}"
        assert needle.replace("`", "") in rows[name], (name, needle, rows[name])


def test_there_are_at_least_twenty_cases() -> None:
    assert len(CASES) >= 20
    ids = [c.id for c in CASES]
    assert len(set(ids)) == len(ids) and set(END_TO_END) <= set(ids)


@pytest.mark.parametrize("argv, expected", CASES)
def test_bad_input_exits_2_names_the_value_and_changes_nothing(
        argv, expected, results_dir, inputs, capsys) -> None:
    before = snapshot(results_dir)
    code = exit_code(fill(argv, results_dir, inputs))
    out, err = capsys.readouterr()
    assert code == 2, out[-1500:] + err[-1500:]
    assert expected in err
    assert "Traceback" not in err and "cells to run" not in out  # refused before any cell
    assert snapshot(results_dir) == before


@pytest.mark.slow
def test_bad_inputs_exit_2_from_the_real_command_line(results_dir, inputs) -> None:
    cases = {c.id: c.values for c in CASES if c.id in END_TO_END}
    before = snapshot(results_dir)
    procs = {}
    for name, (argv, expected) in cases.items():  # started together: ~one torch import of wall
        procs[name] = (subprocess.Popen([sys.executable, "-m", "bench",
                                         *fill(argv, results_dir, inputs)],
                                        cwd=REPO, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True), expected)
    for name, (proc, expected) in procs.items():
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 2, (name, err[-2000:])
        assert expected in err and err.startswith("error: ") and "Traceback" not in err, name
    assert snapshot(results_dir) == before


# --- refused from the real command line, into a results directory that does not exist yet ---
# A non-finite float, and weights no cell could load: before these checks every cell started
# and each became an `error` (or `diverged`) row. Any cell that does start is the stand-in, so
# a regression fails fast: exit 0 and a results directory.
WEIGHTS_CHOICES = ('"" (random init)', '"imagenet"', "readable state dict")
FRESH_CASES = [
    pytest.param(["lr=nan"], ["lr must be a finite number >= 0, got nan"], id="lr=nan"),
    pytest.param(["lr=inf"], ["lr must be a finite number >= 0, got inf"], id="lr=inf"),
    pytest.param(["weights=/nonexistent.pt"],
                 ["bad weights '/nonexistent.pt' for model resnet18", "does not exist",
                  *WEIGHTS_CHOICES], id="weights missing"),
    pytest.param(["weights={tmp}/garbage.pt"],
                 ["garbage.pt' for model resnet18", "cannot read weights file", *WEIGHTS_CHOICES],
                 id="weights garbage"),
    pytest.param(["weights={tmp}/other_model.pt"],
                 ["other_model.pt' for model resnet18", "do not fit ResNet", *WEIGHTS_CHOICES],
                 id="weights of another model"),
    pytest.param(["weights=imagenet"],
                 ["bad weights 'imagenet' for model resnet18", "are not cached", "offline",
                  *WEIGHTS_CHOICES], id="imagenet weights offline, not cached"),
]


@pytest.mark.parametrize("sets, expected", FRESH_CASES)
def test_refused_from_the_command_line_before_any_cell(sets, expected, tmp_path) -> None:
    write_bad_weights(tmp_path)
    (tmp_path / "torch-home").mkdir()  # an empty torch hub: no ImageNet weights cached
    env = {k: v for k, v in os.environ.items() if k not in HOOKS}
    env.update(ADAPTBENCH_CELL_IMPL=FAKE_IMPL, ADAPTBENCH_OFFLINE="1",
               TORCH_HOME=str(tmp_path / "torch-home"))
    rdir = tmp_path / "results"
    argv = [sys.executable, "-m", "bench", "run", "--profile", "smoke", *GRID,
            *(a for s in sets for a in ("--set", s.replace("{tmp}", str(tmp_path)))),
            "--results-dir", str(rdir), "--device", "cpu", "--quiet"]
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 2, proc.stdout[-1500:] + proc.stderr[-1500:]
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    for text in expected:
        assert text in proc.stderr, (text, proc.stderr)
    assert not rdir.exists()  # nothing written, not even the directory


def test_weights_that_fit_are_accepted_and_only_the_cells_run_are_checked(tmp_path) -> None:
    """A torchvision-layout state dict of the model passes; so does an AdaptedModel checkpoint
    for the strategy it was saved from, but not for another; ``--only`` narrows what is checked.
    """
    import torch

    import strategies
    from bench import config, sweep

    plain, adapted = tmp_path / "resnet18.pt", tmp_path / "resnet18_conv1.pt"
    model = strategies.build("resnet18", "conv1", num_classes=10)
    torch.save(model.backbone.state_dict(), plain)
    torch.save(model.state_dict(), adapted)
    grid = ["models=resnet18,vgg16", "strategies=conv1", "per_model="]
    cfg = config.load("smoke", [*grid, f"weights={plain}"])
    resnet = [c for c in config.cells(cfg) if c.model == "resnet18"]
    config.check_weights(cfg, resnet)
    with pytest.raises(config.ConfigError, match=r"resnet18\.pt' for model vgg16: .*do not fit VGG"):
        config.check_weights(cfg)
    opts = sweep.SweepOptions(profile="smoke", overrides=[*grid, f"weights={plain}"],
                              results_dir=str(tmp_path / "results"), only=["model=resnet18"],
                              device="cpu")
    assert {c.model for c in sweep.prepare(opts).cells} == {"resnet18"}

    config.check_weights(config.load("smoke", [*grid, f"weights={adapted}"]), resnet)
    other = config.load("smoke", ["models=resnet18", "strategies=repeat3",
                                  f"weights={adapted}"])
    with pytest.raises(config.ConfigError, match=r"does not fit resnet18 with repeat3"):
        config.check_weights(other)
