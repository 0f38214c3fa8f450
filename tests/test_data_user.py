"""User datasets: ``folder:PATH`` and ``npz:PATH`` import into the verified cache, or are refused.

Every refusal is one line naming the file and the fix, exit code 2, and nothing cached: the data
root's ``cache/`` folder is compared before and after. The refusals are the table ``BAD`` below
(the README's "benchmark your own images" section and the bad-input table list them).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench import data, identity
from bench.__main__ import main
from bench.data import cache
from bench.data import user as userdata


def gray_folder(root: Path, *, classes: int = 3, per_class: int = 10, px: int = 40,
                layout: str = "flat", mode: str = "L") -> Path:
    """``classes`` class folders of ``per_class`` ``px``-px images whose class is a bright band
    (learnable), as ``root/<class>/`` (flat) or ``root/train|test/<class>/`` (split)."""
    rng = np.random.default_rng(0)
    splits = {"": per_class} if layout == "flat" else {"train": per_class, "test": per_class // 2}
    for split, count in splits.items():
        for c in range(classes):
            d = root / split / f"c{c}" if split else root / f"c{c}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                a = (rng.random((px, px)) * 60).astype(np.uint8)
                band = px // classes
                a[c * band:(c + 1) * band, :] += 150
                img = Image.fromarray(a, "L")
                (img.convert(mode) if mode != "L" else img).save(d / f"{i}.png")
    return root


def rgb_npz(path: Path, n_train: int = 48, n_test: int = 12, px: int = 32, n_classes: int = 4,
            **overrides: np.ndarray) -> Path:
    rng = np.random.default_rng(1)
    arrays = {"x_train": rng.integers(0, 256, (n_train, 3, px, px), dtype=np.uint8),
              "y_train": np.arange(n_train) % n_classes,
              "x_test": rng.integers(0, 256, (n_test, 3, px, px), dtype=np.uint8),
              "y_test": np.arange(n_test) % n_classes}
    arrays.update(overrides)
    np.savez(path, **arrays)
    return path


def cache_listing(root: Path) -> list[str]:
    base = root / "cache"
    return sorted(str(p.relative_to(base)) for p in base.rglob("*")) if base.exists() else []


# -- what an import gives --------------------------------------------------------------------


def test_a_flat_folder_gets_a_stratified_seeded_split(tmp_path) -> None:
    src = gray_folder(tmp_path / "scans")
    root = tmp_path / "root"
    info = data.get_info(f"folder:{src}", root)
    assert info.shape == (1, 40, 40) and info.classes == ("c0", "c1", "c2")
    assert (info.train_count, info.test_count) == (24, 6)
    assert info.train_label_counts == (8, 8, 8) and info.test_label_counts == (2, 2, 2)
    splits = data.load(f"folder:{src}", root)
    assert tuple(splits.train_x.shape) == (24, 1, 40, 40) and splits.train_x.dtype.is_floating_point is False
    # the pixels are the files' pixels: image 0 of class c1 is somewhere in one of the splits
    first = np.asarray(Image.open(src / "c1" / "0.png"))[None]
    every = np.concatenate([splits.train_x.numpy(), splits.test_x.numpy()])
    assert any(np.array_equal(first, x) for x in every)
    manifest = json.loads((root / "cache" / info.cache_key / "manifest.json").read_text())
    assert manifest["user"]["split"] == "stratified test=0.2 seed=0"
    assert 0 < manifest["user"]["mean"] < 1 and manifest["user"]["std"] > 0
    # another seed is another split (and another cache)
    other = data.get_info(f"folder:{src}?seed=3", root)
    assert other.cache_key != info.cache_key
    assert not np.array_equal(data.load(f"folder:{src}?seed=3", root).test_x.numpy(),
                              splits.test_x.numpy())


def test_train_and_test_folders_are_kept_and_size_resizes_on_import(tmp_path) -> None:
    src = gray_folder(tmp_path / "scans", layout="split", px=40)
    root = tmp_path / "root"
    info = data.get_info(f"folder:{src}?size=24", root)
    assert info.shape == (1, 24, 24) and (info.train_count, info.test_count) == (30, 15)
    assert info.user["split"] == "folders" and info.user["options"]["size"] == 24


def test_rgb_images_give_three_channels(tmp_path) -> None:
    src = gray_folder(tmp_path / "rgb", mode="RGB", px=32)
    info = data.get_info(f"folder:{src}", tmp_path / "root")
    assert info.shape == (3, 32, 32)


def test_npz_arrays_gray_and_rgb_with_class_names(tmp_path) -> None:
    root = tmp_path / "root"
    info = data.get_info(f"npz:{rgb_npz(tmp_path / 'rgb.npz')}", root)
    assert info.shape == (3, 32, 32) and info.num_classes == 4
    gray = rgb_npz(tmp_path / "gray.npz", x_train=np.zeros((8, 20, 20), np.uint8),
                   x_test=np.zeros((4, 20, 20), np.uint8), y_train=np.arange(8) % 2,
                   y_test=np.arange(4) % 2, classes=np.array(["cat", "dog", "eel"]))
    info = data.get_info(f"npz:{gray}", root)
    assert info.shape == (1, 20, 20) and info.classes == ("cat", "dog", "eel")


def test_a_changed_source_is_refused_until_rebuilt_and_its_cells_rehash(tmp_path) -> None:
    from bench import config

    src = gray_folder(tmp_path / "scans")
    root = tmp_path / "root"
    name = f"folder:{src}"
    assert main(["data", "fetch", "--dataset", name, "--data-root", str(root)]) == 0
    cfg = config.load("smoke", [f"datasets={name}", f"data_root={root}", "models=resnet18",
                                "strategies=conv1"])
    (cell,) = config.cells(cfg)
    before = identity.cell_hash(cfg, cell, "cpu")
    img = np.asarray(Image.open(src / "c0" / "0.png")).copy()
    img[0, 0] ^= 0xFF
    Image.fromarray(img, "L").save(src / "c0" / "0.png")
    cache._USER_INFOS.clear()  # a new process would not have verified it yet
    with pytest.raises(data.UserDatasetError, match="changed since they were imported.*--rebuild"):
        data.get_info(name, root)
    assert main(["data", "fetch", "--dataset", name, "--data-root", str(root), "--rebuild"]) == 0
    assert identity.cell_hash(cfg, cell, "cpu") != before  # the old rows are not resumed


def test_data_info_lists_imported_user_datasets(tmp_path, capsys) -> None:
    src = gray_folder(tmp_path / "scans")
    root = tmp_path / "root"
    assert main(["data", "fetch", "--dataset", f"folder:{src}", "--data-root", str(root)]) == 0
    capsys.readouterr()
    assert main(["data", "info", "--data-root", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"folder:{src}  imported 1x40x40 classes=3 train=24 test=6" in out


# -- refusals ----------------------------------------------------------------------------------


def _empty_class(d: Path) -> str:
    gray_folder(d)
    (d / "c3").mkdir()
    return f"folder:{d}"


def _one_class(d: Path) -> str:
    gray_folder(d, classes=1)
    return f"folder:{d}"


def _not_an_image(d: Path) -> str:
    gray_folder(d)
    (d / "c1" / "notes.txt").write_text("hello")
    return f"folder:{d}"


def _corrupt_image(d: Path) -> str:
    gray_folder(d)
    (d / "c2" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    return f"folder:{d}"


def _mixed_sizes(d: Path) -> str:
    gray_folder(d)
    Image.fromarray(np.zeros((32, 32), np.uint8), "L").save(d / "c1" / "odd.png")
    return f"folder:{d}"


def _mixed_channels(d: Path) -> str:
    gray_folder(d)
    Image.fromarray(np.zeros((40, 40, 3), np.uint8), "RGB").save(d / "c1" / "colour.png")
    return f"folder:{d}"


def _not_square(d: Path) -> str:
    for c in ("a", "b"):
        (d / c).mkdir(parents=True)
        Image.fromarray(np.zeros((20, 30), np.uint8), "L").save(d / c / "0.png")
        Image.fromarray(np.zeros((20, 30), np.uint8), "L").save(d / c / "1.png")
    return f"folder:{d}?test=0.5"


def _test_class_missing_in_train(d: Path) -> str:
    gray_folder(d, layout="split")
    (d / "test" / "c9").mkdir()
    Image.fromarray(np.zeros((40, 40), np.uint8), "L").save(d / "test" / "c9" / "0.png")
    return f"folder:{d}"


def _train_without_test(d: Path) -> str:
    gray_folder(d / "train")
    return f"folder:{d}"


def _file_link_out(d: Path) -> str:
    gray_folder(d / "data")
    outside = d / "secret.png"
    Image.fromarray(np.zeros((40, 40), np.uint8), "L").save(outside)
    os.symlink(outside, d / "data" / "c0" / "link.png")
    return f"folder:{d / 'data'}"


def _dir_link_out(d: Path) -> str:
    gray_folder(d / "data")
    gray_folder(d / "elsewhere")
    os.symlink(d / "elsewhere" / "c0", d / "data" / "c9")
    return f"folder:{d / 'data'}"


def _npz(**overrides):
    def make(d: Path) -> str:
        d.mkdir(parents=True)
        return f"npz:{rgb_npz(d / 'x.npz', **overrides)}"
    return make


def _npz_missing_key(d: Path) -> str:
    d.mkdir(parents=True)
    np.savez(d / "x.npz", x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.arange(4) % 2)
    return f"npz:{d / 'x.npz'}"


def _npz_pickled(d: Path) -> str:
    d.mkdir(parents=True)
    obj = np.empty(2, dtype=object)
    obj[:] = [np.zeros(3), "x"]
    np.savez(d / "x.npz", x_train=obj, y_train=np.arange(2), x_test=obj, y_test=np.arange(2))
    return f"npz:{d / 'x.npz'}"


def _not_npz(d: Path) -> str:
    d.mkdir(parents=True)
    (d / "x.npz").write_bytes(b"not a zip file at all")
    return f"npz:{d / 'x.npz'}"


BAD = [
    pytest.param(_empty_class, "class folder .*c3 is empty", id="empty class folder"),
    pytest.param(_one_class, "needs at least 2 class sub-folders, found only 'c0'", id="one class"),
    pytest.param(_not_an_image, "notes.txt is not an image file", id="non-image file"),
    pytest.param(_corrupt_image, "cannot read image .*3.png", id="corrupt image"),
    pytest.param(_mixed_sizes, r"odd.png is 32x32 px but .* is 40x40.*\?size=N",
                 id="mixed sizes without size"),
    pytest.param(_mixed_channels, "colour.png has 3 channel.* but .* has 1", id="mixed channels"),
    pytest.param(_not_square, "only square images", id="non-square images"),
    pytest.param(_test_class_missing_in_train, r"test class\(es\) \['c9'\] have no folder",
                 id="test class the training split lacks"),
    pytest.param(_train_without_test, "train exists but .*test does not", id="train/ without test/"),
    pytest.param(_file_link_out, "link.png links to .*secret.png, outside", id="file symlink out"),
    pytest.param(_dir_link_out, "c9 is a link to .*elsewhere/c0, outside", id="folder symlink out"),
    pytest.param(_npz(y_train=np.arange(48) % 4 - 1), "y_train has label -1, outside 0..",
                 id="npz negative label"),
    pytest.param(_npz(classes=np.array(["a", "b"])), r"y_train has label 3, outside 0..1 \(2 classes named",
                 id="npz label beyond classes"),
    pytest.param(_npz(y_test=np.full(12, 3), y_train=np.arange(48) % 3,
                      classes=np.array(list("abcd"))),
                 r"y_test has label\(s\) \[3\] that y_train lacks", id="npz test class not in train"),
    pytest.param(_npz(x_train=np.zeros((48, 3, 32, 32), np.float32)), "x_train is float32; it must be uint8",
                 id="npz float pixels"),
    pytest.param(_npz(x_train=np.zeros((48, 32, 32, 3), np.uint8)), r"looks like N×H×W×C",
                 id="npz channels last"),
    pytest.param(_npz(y_train=np.arange(40) % 4), "x_train has 48 images but y_train 40 labels",
                 id="npz length mismatch"),
    pytest.param(_npz_missing_key, r"lacks array\(s\) \['x_test', 'y_test'\]", id="npz missing arrays"),
    pytest.param(_npz_pickled, r"x.npz: member 'x_train.npy' holds Python objects",
                 id="npz object arrays (pickle)"),
    pytest.param(_not_npz, r"x.npz is not an .npz \(zip\) file", id="npz not a zip"),
    pytest.param(lambda d: f"folder:{d}/nowhere", "nowhere is not a directory", id="no such folder"),
    pytest.param(lambda d: f"folder:{gray_folder(d)}?size=0", "bad size='0'.*1..4096",
                 id="bad size option"),
    pytest.param(lambda d: f"folder:{gray_folder(d)}?colour=red", "bad option 'colour'.*size, test, seed",
                 id="unknown option"),
    pytest.param(lambda d: f"npz:{d}/x.npz?size=3", "valid options for npz: none", id="npz option"),
]


@pytest.mark.parametrize("make, expected", BAD)
def test_a_bad_user_dataset_is_refused_by_fetch_naming_the_file_and_caches_nothing(
        make, expected, tmp_path, capsys) -> None:
    name = make(tmp_path / "src")
    root = tmp_path / "root"
    root.mkdir()
    assert main(["data", "fetch", "--dataset", name, "--data-root", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert __import__("re").search(expected, err), err
    assert cache_listing(root) == []


@pytest.mark.parametrize("make, expected", [BAD[0], BAD[3], BAD[12], BAD[22]])
def test_run_refuses_a_bad_user_dataset_before_any_cell(make, expected, tmp_path, capsys) -> None:
    name = make(tmp_path / "src")
    root, rdir = tmp_path / "root", tmp_path / "results"
    root.mkdir()
    code = main(["run", "--profile", "smoke", "--results-dir", str(rdir), "--device", "cpu",
                 "--quiet", "--set", f"datasets={name}", "--set", f"data_root={root}"])
    assert code == 2
    assert __import__("re").search(expected, capsys.readouterr().err)
    assert not rdir.exists() and cache_listing(root) == []


def test_the_name_parser_keeps_the_path_and_options() -> None:
    spec = userdata.parse("folder:~/scans dir?size=64&test=0.25&seed=2")
    assert spec.path == Path("~/scans dir").expanduser() and spec.size == 64
    assert (spec.test, spec.seed) == (0.25, 2)
    assert userdata.is_user_dataset("npz:x.npz") and not userdata.is_user_dataset("mnist")
    with pytest.raises(userdata.UserDataError, match="no path after 'folder:'"):
        userdata.parse("folder:")


# -- end to end: run, report, doctor on two shapes that are not 1x28x28 ---------------------------

TINY = ["models=resnet18", "seeds=0", "train_size=0", "test_size=0", "batch_size=8", "epochs=1", "warmup_steps=1",
        "window_steps=1", "profile_steps=0", "num_threads=1", "peak_tflops=1",
        "cell_timeout_s=180", "contended_retries=0"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["folder 1x40x40", "npz 3x32x32"])
def test_a_user_dataset_runs_end_to_end_through_run_report_and_doctor(kind, tmp_path,
                                                                      capsys) -> None:
    from bench import results

    if kind.startswith("folder"):
        name = f"folder:{gray_folder(tmp_path / 'scans')}"
        wanted = {"conv1": "ok", "repeat3": "ok", "repeat3+resize64": "ok",
                  "none+pad48": "incompatible"}  # gray into an RGB conv: explained, not run
        shape = "1x40x40"
    else:
        name = f"npz:{rgb_npz(tmp_path / 'rgb.npz')}"
        wanted = {"none+pad48": "ok", "none+resize64": "ok", "repeat3": "incompatible",
                  "conv1": "incompatible"}
        shape = "3x32x32"
    root, rdir = tmp_path / "root", tmp_path / "results"
    root.mkdir()
    sets = [f"datasets={name}", f"data_root={root}", f"strategies={','.join(wanted)}", *TINY]
    argv = ["run", "--profile", "smoke", "--results-dir", str(rdir), "--device", "cpu", "--quiet"]
    for item in sets:
        argv += ["--set", item]
    assert main(argv) == 0
    rows = {r["strategy"]: r for r in results.read_csv(rdir / "runs.csv", "runs")}
    assert {s: r["status"] for s, r in rows.items()} == wanted
    for r in rows.values():
        assert r["dataset"] == name and r["input_shape"] == shape
        if r["status"] == "ok":
            assert r["data_digest"] and float(r["train_img_s"]) > 0
            assert 0 <= float(r["test_acc"]) <= 1 and r["test_count"] in ("6", "12")
        else:
            assert "channel" in r["reason"]
    assert main(["report", str(rdir)]) == 0
    summary = (rdir / "summary.md").read_text()
    assert name in summary
    capsys.readouterr()
    compat = tmp_path / "compat.csv"
    assert main(["doctor", "--dataset", name, "--data-root", str(root), "--models", "resnet18", "vgg16", "--strategies",
                 *wanted, "--out", str(compat), "--no-png", "--quiet"]) == 0
    doctor_rows = {(r["model"], r["strategy"]): r["status"]
                   for r in __import__("csv").DictReader(compat.open())}
    for spec, status in wanted.items():  # the doctor agrees with the run on resnet18
        assert doctor_rows[("resnet18", spec)] == ("ok" if status == "ok" else "failed")


def bad_input_table() -> str:
    """docs/failures.md's "Bad user datasets" rows: every case of ``BAD`` run through ``data fetch``,
    its message with the temporary folder written ``SRC``."""
    from _datafixtures import fetch_messages_table

    return fetch_messages_table(BAD)


def test_the_readme_docs_list_every_bad_user_dataset_with_its_message() -> None:
    """docs/failures.md (linked from the README) lists every case of ``BAD`` with its message."""
    failures = (Path(__file__).resolve().parent.parent / "docs" / "failures.md").read_text()
    assert bad_input_table() in failures, (
        "regenerate: python tests/test_data_user.py, into docs/failures.md")


if __name__ == "__main__":  # python tests/test_data_user.py: the table of docs/failures.md
    print(bad_input_table())


# -- a user dataset smaller than the profile's subset sizes is used whole -----------------------

def test_a_small_user_dataset_is_used_whole_with_a_note_and_its_cells_say_so(tmp_path,
                                                                             capsys) -> None:
    """`--profile cpu` asks 1,500 training and 500 validation images; a 48-image npz is used
    whole, not refused,
    and the cell's config (so its hash, estimate and row) carries the sizes it really uses."""
    from bench import config

    name = f"npz:{rgb_npz(tmp_path / 'rgb.npz')}"  # 48 train, 12 test
    root = tmp_path / "root"
    root.mkdir()
    sets = [f"datasets={name}", f"data_root={root}", "models=resnet18",
            "strategies=none+pad48", "seeds=0", "batch_size=8"]
    argv = ["plan", "--profile", "cpu", "--fast", "--json", "--device", "cpu"]
    for item in sets:
        argv += ["--set", item]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert f"note: {name} has 48 training and 12 test images" in err, err
    # The cpu profile holds 500 of its 2,000 images out for validation: a quarter, kept.
    assert "val_size=500 -> 12" in err and "train_size=1500 -> 36" in err, err
    assert "larger than" not in err
    cfg = config.load("cpu", sets)
    cell = config.cells(cfg)[0]
    fitted = identity.for_cell(cfg, cell)
    assert (fitted.train_size, fitted.test_size, fitted.val_size) == (36, 12, 12)
    # The hash names the sizes used: the same as asking for them outright.
    exact = config.load("cpu", [*sets, "train_size=36", "test_size=12", "val_size=12"])
    assert identity.cell_hash(cfg, cell) == identity.cell_hash(exact, cell)


def test_a_builtin_dataset_is_still_refused_a_subset_larger_than_it(tmp_path) -> None:
    from bench.data import registry

    info = registry.DATASETS["mnist"]
    assert data.fit_sizes("mnist", info, 70_000, 20_000, 0) == (70_000, 20_000, 0, "")
