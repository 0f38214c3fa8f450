"""A published run has at least three seeds and a validation split (bench/results/publish.py):
``run --publish``, which ``make publish`` passes, refuses any other before a cell starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import config
from bench.results.publish import PUBLISH_MIN_SEEDS, publish_problem
from tests._cli import exit_code

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("profile", ["cpu", "gpu", "gpu-crosses"])
def test_the_profiles_that_publish_answers_are_publishable(profile):
    assert publish_problem(config.load(profile), profile) == ""


def test_one_seed_or_no_validation_split_is_named_with_what_would_do():
    why = publish_problem(config.load("gpu-quick"), "gpu-quick")
    assert why.startswith("profile gpu-quick cannot be published")
    assert "seeds = [0] (a published run needs" in why and f"at least {PUBLISH_MIN_SEEDS}" in why
    assert "val_size" not in why  # gpu-quick has its split
    why = publish_problem(config.load("cpu", ["seeds=4", "val_size=0"]))
    assert "seeds = [4]" in why and "val_size = 0" in why
    assert publish_problem(config.load("cpu", ["seeds=7,8,9"])) == ""


def test_run_publish_refuses_before_any_cell_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "published"
    assert exit_code(["run", "--publish", "--profile", "gpu-quick", "--device", "cpu",
                      "--results-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert "error: --publish: profile gpu-quick cannot be published: seeds = [0]" in err
    assert not out.exists()
    # Without --publish the same profile is a check one may run anywhere: no refusal of this kind.
    assert exit_code(["plan", "--profile", "gpu-quick", "--device", "cuda", "--fast",
                      "--results-dir", str(out)]) == 0
    assert "cannot be published" not in capsys.readouterr().err


def test_make_publish_passes_publish():
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\npublish:", 1)[1].split("\n\n", 1)[0]
    assert "bench run --publish " in recipe
