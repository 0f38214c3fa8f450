"""``python -m bench``: every bad input is one clear line, exit code 2, and no file written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import main

REPO = Path(__file__).resolve().parent.parent


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("args, message", [
    (["--profile", "nope"], "unknown profile 'nope'; valid profiles: cpu, gpu, gpu-crosses, gpu-quick"),
    (["--profile", "smoke", "--set", "epoch=1"], "unknown config key 'epoch'; valid keys:"),
    (["--profile", "smoke", "--set", "models=resnet18,vgg17"], "unknown model 'vgg17'"),
    (["--profile", "smoke", "--set", "strategies=repeat4"], "repeat4"),
    (["--profile", "smoke", "--set", "datasets=cifar10"],
     "unknown dataset 'cifar10' in datasets; valid: fashion-mnist, mnist"),
    (["--profile", "smoke", "--only", "model=resnet50"], "valid: resnet18, vgg16"),
    (["--profile", "smoke", "--shard", "3/2"], "bad --shard '3/2'"),
    (["--profile", "smoke", "--device", "tpu"], "unknown device 'tpu'; valid: auto, cpu, cuda"),
])
@pytest.mark.parametrize("command", ["run", "plan"])
def test_bad_input_exits_2_naming_the_bad_value(tmp_path, capsys, command, args, message) -> None:
    out = tmp_path / "results"
    assert main([command, *args, "--results-dir", str(out), "--device", "cpu"]
                if "--device" not in args else [command, *args, "--results-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert not out.exists()


def test_strategy_errors_list_the_valid_parts(capsys, tmp_path) -> None:
    assert main(["run", "--profile", "smoke", "--set", "strategies=repeat4", "--results-dir",
                 str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "repeat3" in err  # the valid choices are named


def test_cuda_requested_without_cuda_is_refused(capsys, tmp_path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["run", "--profile", "smoke", "--device", "cuda",
                 "--results-dir", str(tmp_path / "r")]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
    # Timing cells needs the device, so a timed plan is refused too ...
    assert main(["plan", "--profile", "smoke", "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_gpu_run_can_be_planned_without_a_gpu(capsys, tmp_path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the plan would use it")
    # ... but the cost model alone (--fast) answers "how long on a GPU?" before renting one.
    assert main(["plan", "--profile", "gpu-quick", "--device", "cuda", "--fast",
                 "--results-dir", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "32 cells on cuda" in out and "no CUDA on this machine" in out
    assert "fashion-mnist/resnet50/droppools/seed0" in out
    assert "TOTAL ETA" in out and "4 incompatible" in out
    assert not (tmp_path / "r").exists()


def test_a_plan_names_the_device_model_and_the_range_to_expect(capsys, tmp_path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the plan would use it")
    assert main(["plan", "--profile", "gpu-quick", "--device", "cuda", "--device-model", "h200",
                 "--fast", "--only", "model=resnet18,strategy=repeat3",
                 "--results-dir", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "--device-model prices another (h200 here)" in out
    (line,) = [x for x in out.splitlines() if x.strip().startswith("on h200: likely")]
    assert "x0.87 (p10 x0.74, p90 x1.35)" in line  # the spread of bench/plan/speeds.py
    # A model of another device kind is refused like any bad input.
    assert main(["plan", "--profile", "smoke", "--device", "cpu", "--device-model", "h200",
                 "--fast", "--results-dir", str(tmp_path / "r")]) == 2
    assert "unknown cpu device model 'h200'; known: epyc-avx2" in capsys.readouterr().err


def test_the_h200_is_priced_as_the_h100_until_a_lease_measures_it() -> None:
    from bench import config
    from bench.plan import costmodel, planner
    from bench.plan.speeds import RATIO_SPREAD

    cfg = config.load("gpu-quick")
    cell = config.cells(cfg)[0]
    h100, h200 = costmodel.CostModel("cuda"), costmodel.CostModel("cuda", "h200")
    assert h200.estimate(cfg, cell).seconds == h100.estimate(cfg, cell).seconds > 0
    p10, mid, p90 = planner.eta_range("cuda", 100.0)
    assert (p10, mid, p90) == pytest.approx([100 * r for r in RATIO_SPREAD["cuda"]])
    assert p10 < mid < 100.0 < p90


def test_plan_prints_every_cell_and_the_total_eta(capsys, tmp_path) -> None:
    assert main(["plan", "--profile", "smoke", "--fast", "--device", "cpu",
                 "--results-dir", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    for label in ("mnist/resnet18/repeat3/seed0", "mnist/vgg16/resize32/seed0"):
        assert label in out
    assert "incompatible" in out and "TOTAL ETA" in out and "4 cells" in out
    assert not (tmp_path / "r").exists()  # planning writes nothing


def test_plan_marks_the_budget_and_measure_only(capsys, tmp_path) -> None:
    # An empty results dir: the published results/cpu would mark the cell as already done.
    # resize224 is not in the cpu grid (it would make every vgg16 cell measure-only): asked for.
    assert main(["plan", "--profile", "cpu", "--fast", "--device", "cpu", "--set",
                 "strategies=resize32,resize224", "--set", "seeds=0", "--only",
                 "model=vgg16,strategy=resize224",
                 "--results-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "measure-only" in out and "over budget" in out and "1 measure-only" in out


def test_auto_profile_says_which(capsys) -> None:
    import torch

    assert main(["plan", "--profile", "auto", "--fast", "--only", "model=resnet18,strategy=repeat3",
                 "--set", "seeds=0"]) == 0
    out = capsys.readouterr().out
    expected = "profile auto -> gpu" if torch.cuda.is_available() else "profile auto -> cpu"
    assert expected in out


def test_list_names_models_strategies_datasets_and_profiles(capsys) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("profiles:", "smoke", "gpu-quick", "datasets:", "fashion-mnist", "preset:",
                 "post-convtranspose", "channel:", "conv1", "resnet50", "vgg16_bn"):
        assert word in out


def test_list_does_not_cut_a_profile_description_mid_sentence(capsys) -> None:
    """Each profile's first header sentence is printed whole (wrapped), however many lines."""
    from bench import config
    from bench.__main__ import _profile_summary

    assert main(["list"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "7 min 38 s on one H100 (must stay under 8;" in out  # gpu-quick: onto line 2
    assert "with its recipe, data and measurement settings" in out  # gpu-crosses'
    for name in config.list_profiles():
        summary = _profile_summary(config.profile_path(name))
        assert summary and summary in out
        assert summary.count("(") == summary.count(")"), summary  # not cut inside a bracket
        assert not summary.endswith((" and", " of", ",", " the")), summary


def _help(*args: str) -> None:
    with pytest.raises(SystemExit) as stop:
        main([*args, "--help"])
    assert stop.value.code == 0


def test_help_names_no_fixed_image_shape_and_run_help_lists_examples_and_keys(capsys) -> None:
    from bench import config

    _help()
    top = capsys.readouterr().out
    assert "1x28x28" not in top and "CxHxW" in top  # any dataset shape, not MNIST's only
    _help("run")
    run_help = capsys.readouterr().out
    assert "examples:" in run_help and "python -m bench run --profile smoke" in run_help
    words = set(run_help.replace(",", " ").split())
    assert set(config.valid_keys()) <= words, set(config.valid_keys()) - words


def test_list_keys_gives_every_key_its_type_default_and_meaning(capsys) -> None:
    """Read from the Config table's own comments: a key without one fails here."""
    from bench import config, config_keys

    docs = config_keys.key_docs()
    assert sorted(d.key for d in docs) == config.valid_keys()
    for doc in docs:
        assert doc.meaning and doc.type and doc.default, doc
    by_key = {d.key: d for d in docs}
    assert by_key["train_size"].meaning.startswith("stratified subset of the training split")
    assert by_key["optimizer"].type == "one of sgd, adamw" and by_key["epochs"].default == "1"
    # a block comment covers the keys after it, up to a key with its own comment
    assert by_key["slurm_cluster"].meaning.startswith("submitit executor:")
    assert not by_key["momentum"].meaning.startswith("Defaults measured")
    assert main(["list", "keys"]) == 0
    out = capsys.readouterr().out
    for doc in docs:
        assert f"  {doc.key} = {doc.default}   ({doc.type})" in out


def test_the_module_runs_as_a_program() -> None:
    proc = cli("--help")
    assert proc.returncode == 0
    for command in ("run", "plan", "list", "doctor", "report", "data"):
        assert command in proc.stdout
    bad = cli("run", "--profile", "nope")
    assert bad.returncode == 2 and "unknown profile 'nope'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_report_is_dispatched_to_its_owner(tmp_path) -> None:
    proc = cli("report", str(tmp_path / "missing"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr


@pytest.mark.parametrize("command", ["run", "plan", "advise", "report"])
def test_every_subcommand_spells_the_results_directory_the_same(command, capsys) -> None:
    """--results DIR everywhere (bench/cli_args.py), --results-dir its alias; --help lists both."""
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    assert "--results DIR, --results-dir DIR" in capsys.readouterr().out


def test_run_and_plan_take_results_as_results_dir() -> None:
    from bench.__main__ import build_parser

    for flag in ("--results", "--results-dir"):
        for command in ("run", "plan"):
            args = build_parser().parse_args([command, "--profile", "smoke", flag, "out/x",
                                              "--set", "epochs=1", "--device", "cpu"])
            assert (args.results_dir, args.overrides, args.device) == ("out/x", ["epochs=1"],
                                                                       "cpu")


def test_report_takes_the_directory_either_way(tmp_path, capsys) -> None:
    from bench.report import cli as report_cli

    missing = str(tmp_path / "missing")
    for argv in ([missing], ["--results", missing], ["--results-dir", missing]):
        assert report_cli.main(argv) == 2
        assert "does not exist" in capsys.readouterr().err
    for argv in ([], [missing, "--results", str(tmp_path)]):
        with pytest.raises(SystemExit) as done:
            report_cli.main(argv)
        assert done.value.code == 2
