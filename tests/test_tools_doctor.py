"""bench/tools/doctor.py: the model × strategy compatibility matrix (meta device)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

import strategies
from bench.tools import doctor
from strategies.explain import min_input_px


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == doctor.COLUMNS
        return list(reader)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path, dict]:
    out = tmp_path_factory.mktemp("doctor") / "compat.csv"
    code = doctor.main(["--models", "vgg16", "vit_b_16", "resnet18", "--strategies", "repeat3",
                        "resize224", "droppools", "cifarstem", "--out", str(out), "--jobs", "1",
                        "-q"])
    rows = {(r["model"], r["strategy"]): r for r in read_rows(out)}
    return code, out, rows


def test_doctor_writes_the_csv_and_the_heatmap(matrix: tuple[int, Path, dict]) -> None:
    code, out, rows = matrix
    assert code == 0
    assert len(rows) == 3 * 4
    png = out.with_suffix(".png")
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"


def test_doctor_finds_vgg16_needs_32_px(matrix: tuple[int, Path, dict]) -> None:
    row = matrix[2]["vgg16", "repeat3"]
    assert (row["status"], row["error_class"], row["min_input_px"]) == ("failed", "too-small",
                                                                         "32")
    assert "Output size is too small" in row["error"]
    assert "features.30 (MaxPool2d)" in row["explanation"] and "1×1" in row["explanation"]
    assert row["effective_input_px"] == "28"


def test_doctor_finds_vits_exact_224(matrix: tuple[int, Path, dict]) -> None:
    row = matrix[2]["vit_b_16", "repeat3"]
    assert (row["status"], row["error_class"], row["min_input_px"]) == ("failed", "exact-size",
                                                                         "224")
    assert "exactly 224×224" in row["explanation"]
    assert matrix[2]["vit_b_16", "resize224"]["status"] == "ok"


def test_doctor_measures_the_working_cells(matrix: tuple[int, Path, dict]) -> None:
    rows = matrix[2]
    vgg = rows["vgg16", "resize224"]
    assert vgg["status"] == "ok" and vgg["effective_input_px"] == "224"
    # torchvision's _ops for vgg16 at 224: 15.47 GMACs = 30.94 GFLOPs (2 per multiply-add).
    assert float(vgg["gflops_fwd_per_img"]) == pytest.approx(30.94, rel=0.01)
    assert int(vgg["params"]) == pytest.approx(134.3e6, rel=0.01)
    assert rows["vgg16", "droppools"]["status"] == "ok"
    assert rows["vgg16", "cifarstem"]["error_class"] == "not-applicable"
    assert all(rows["resnet18", s]["status"] == "ok" for s in ("repeat3", "droppools",
                                                                "cifarstem", "resize224"))


def test_min_input_px_search() -> None:
    vgg = strategies.build_backbone("vgg16", device="meta")[0]
    assert min_input_px(vgg, 3, 28) == (32, False)
    vit = strategies.build_backbone("vit_b_32", device="meta")[0]
    assert min_input_px(vit, 3, 28, hint_px=224) == (224, True)


def test_regnet_builds_on_meta_through_the_cpu_fallback() -> None:
    (row,) = doctor.check_model("regnet_x_400mf", ["repeat3"])
    assert row["status"] == "ok" and int(row["params"]) > 1e6


def test_table_lists_every_cell() -> None:
    rows = doctor.check_model("vgg16", ["repeat3", "resize32"])
    text = doctor.render_table(rows, ["repeat3", "resize32"], explain=True)
    assert ">=32px" in text and "ok" in text and "vgg16 × repeat3:" in text


@pytest.mark.parametrize(("argv", "message"), [
    (["--models", "vgg17"], "unknown model 'vgg17'"),
    (["--models", "nosuch*"], "no model matches"),
    (["--models", "vgg16", "--strategies", "repeat3+"], "empty part"),
    (["--models", "vgg16", "--strategies", "resize0"], "between 1 and"),
    (["--models", "vgg16", "--strategies", "resize-5"], "between 1 and"),
    (["--models", "vgg16", "--strategies", "resize224+pad32"], "two spatial parts"),
    (["--models", "vgg16", "--strategies", "bogus"], "unknown adapter"),
    (["--models", "vgg16", "--input", "5x28x28"], "square images with 1 to 4 channels"),
    (["--models", "vgg16", "--input", "1x28x30"], "square images with 1 to 4 channels"),
    (["--models", "vgg16", "--dataset", "mnist", "--input", "1x28x28"], "not both"),
    (["--models", "vgg16", "--dataset", "nope"], "unknown dataset 'nope'"),
    (["--models", "vgg16", "--input", "28"], "expected CxHxW"),
    (["--models", "vgg16", "--strategies", "cifarstem"], "ResNet family"),
])
def test_bad_input_exits_2(argv: list[str], message: str, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "compat.csv"
    assert doctor.main([*argv, "--out", str(out), "--jobs", "1", "-q", "--no-png"]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_other_input_size(tmp_path: Path) -> None:
    out = tmp_path / "c.csv"
    assert doctor.main(["--models", "vgg16", "--strategies", "repeat3", "--input", "1x32x32",
                        "--out", str(out), "--no-png", "-q", "--jobs", "1"]) == 0
    (row,) = read_rows(out)
    assert row["status"] == "ok" and row["effective_input_px"] == "32"


@pytest.mark.slow
def test_python_m_bench_doctor(tmp_path: Path) -> None:
    out = tmp_path / "c.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.tools.doctor", "--models", "resnet18", "alexnet", "--strategies",
         "repeat3", "--out", str(out), "--no-png"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "resnet18" in proc.stdout and "alexnet" in proc.stdout
    rows = {r["model"]: r for r in read_rows(out)}
    assert rows["resnet18"]["status"] == "ok"
    assert rows["alexnet"]["error_class"] == "too-small" and rows["alexnet"]["min_input_px"] == "63"
