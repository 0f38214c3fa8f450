"""Hostile user datasets (issue 27): no traceback, no hang, no memory blow-up, nothing left behind.

Each case of ``HOSTILE`` builds a bad ``folder:`` or ``npz:`` source that once crashed, hung or
blew up the import; ``data fetch`` must now refuse it with one line on stderr, exit code 2, and
nothing under the data root's ``cache/``. The table of docs/failures.md ("Hostile user
datasets") is printed by ``.venv/bin/python tests/test_data_user_hostile.py`` and checked here.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.__main__ import main
from tests.test_data_user import cache_listing, gray_folder, rgb_npz

REPO = Path(__file__).resolve().parent.parent


def _npz(**overrides):
    def make(d: Path) -> str:
        d.mkdir(parents=True)
        return f"npz:{rgb_npz(d / 'x.npz', **overrides)}"
    return make


def _npy_bytes(header: dict, payload: bytes) -> bytes:
    from numpy.lib import format as npformat

    buf = io.BytesIO()
    npformat.write_array_header_1_0(buf, header)
    return buf.getvalue() + payload


def _forged_header(d: Path) -> str:
    """x_train.npy whose header asks for 10^6 x 1 x 1000 x 1000 uint8 (1 TB), 16 bytes of data."""
    d.mkdir(parents=True)
    path = rgb_npz(d / "x.npz")
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members["x_train.npy"] = _npy_bytes(
        {"descr": "|u1", "fortran_order": False, "shape": (10**6, 1, 1000, 1000)}, b"\0" * 16)
    with zipfile.ZipFile(path, "w") as zf:
        for name, blob in members.items():
            zf.writestr(name, blob)
    return f"npz:{path}"


def _zip_of_text(d: Path) -> str:
    d.mkdir(parents=True)
    with zipfile.ZipFile(d / "x.npz", "w") as zf:
        zf.writestr("x_train.txt", "1 2 3")
        zf.writestr("readme.md", "hello")
    return f"npz:{d / 'x.npz'}"


def _fifo_image(d: Path) -> str:
    gray_folder(d, per_class=3)
    os.mkfifo(d / "c1" / "x.png")
    return f"folder:{d}"


def _link_to_parent(d: Path) -> str:
    gray_folder(d, per_class=3)
    (d / "c0" / "up").symlink_to("..")
    return f"folder:{d}"


def _link_to_itself(d: Path) -> str:
    gray_folder(d, per_class=3)
    (d / "c0" / "self.png").symlink_to("self.png")
    return f"folder:{d}"


def _bomb(d: Path) -> str:
    """A 1-bit 15000x15000 PNG: 225 M pixels, over twice Pillow's limit, ~30 kB on disk."""
    gray_folder(d, per_class=3)
    Image.new("1", (15000, 15000)).save(d / "c0" / "bomb.png")
    return f"folder:{d}"


def _non_utf8_file(d: Path) -> str:
    gray_folder(d, per_class=3)
    os.rename(d / "c0" / "0.png", os.fsencode(d / "c0") + b"/\xff.png")
    return f"folder:{d}"


def _non_utf8_folder(d: Path) -> str:
    gray_folder(d, per_class=3)
    os.rename(d / "c2", os.fsencode(d) + b"/c\xe92")
    return f"folder:{d}"


def _pixel_mode(d: Path) -> str:
    gray_folder(d, per_class=3)
    Image.new("LA", (40, 40)).save(d / "c1" / "la.png")
    return f"folder:{d}"


def _split_sizes(d: Path) -> str:
    gray_folder(d / "train", per_class=3)
    gray_folder(d / "test", per_class=3, px=32)
    return f"folder:{d}"


def _patch_zip_headers(path: Path, local_at: int, central_at: int, patch) -> None:
    """``patch(buffer, offset)`` at byte ``local_at`` of every local file header and
    ``central_at`` of every central directory entry of the zip at ``path``."""
    blob = bytearray(path.read_bytes())
    for signature, at in ((b"PK\x03\x04", local_at), (b"PK\x01\x02", central_at)):
        i = blob.find(signature)
        while i >= 0:
            patch(blob, i + at)
            i = blob.find(signature, i + 4)
    path.write_bytes(bytes(blob))


def _encrypted(d: Path) -> str:
    """The "encrypted" flag bit set on every member: zipfile raises RuntimeError (a password)."""
    d.mkdir(parents=True)
    path = rgb_npz(d / "x.npz")
    _patch_zip_headers(path, 6, 8, lambda b, i: b.__setitem__(i, b[i] | 1))
    return f"npz:{path}"


def _compression_99(d: Path) -> str:
    """Compression method 99 on every member: zipfile raises NotImplementedError."""
    d.mkdir(parents=True)
    path = rgb_npz(d / "x.npz")
    _patch_zip_headers(path, 8, 10, lambda b, i: b.__setitem__(slice(i, i + 2), b"\x63\x00"))
    return f"npz:{path}"


def _newline_class(d: Path) -> str:
    gray_folder(d, per_class=3)
    (d / "c\n9").mkdir()
    return f"folder:{d}"


def _non_utf8_npz_path(d: Path) -> str:
    d.mkdir(parents=True)
    path = os.fsencode(d) + b"/\xff.npz"
    os.rename(rgb_npz(d / "x.npz"), path)
    return f"npz:{os.fsdecode(path)}"


def _non_utf8_root(d: Path) -> str:
    root = Path(os.fsdecode(os.fsencode(d) + b"/\xe9t\xe9"))
    gray_folder(root, per_class=3)
    return f"folder:{root}"


def _stray_beside_splits(d: Path) -> str:
    gray_folder(d / "train", per_class=3)
    gray_folder(d / "test", per_class=3)
    gray_folder(d / "c7", classes=1, per_class=3)
    return f"folder:{d}"


def _dangling_link(d: Path) -> str:
    gray_folder(d, per_class=3)
    (d / "c0" / "gone.png").symlink_to("moved.png")
    return f"folder:{d}"


HOSTILE = [
    pytest.param(_npz(y_train=np.r_[np.arange(47) % 4, 10**8]),
                 r"y_train has label 100000000, over the limit of 10000 classes",
                 id="npz label 10^8"),
    pytest.param(_npz(y_train=np.r_[np.arange(47) % 4, 2**63 - 1]),
                 r"y_train has label 9223372036854775807, over the limit of 10000 classes",
                 id="npz label 2^63-1"),
    pytest.param(_npz(y_train=np.arange(48) % 2 * 1000, y_test=np.arange(12) % 2 * 1000),
                 r"labels 0..1000 with 999 of them unused \(e.g. 1\).*renumber",
                 id="npz sparse labels"),
    pytest.param(_npz(y_train=(np.arange(48) % 4).astype(np.uint64),
                      y_test=np.array([*range(3), 2**64 - 1] * 3, dtype=np.uint64)),
                 r"y_test has label 18446744073709551615, over the limit",
                 id="npz uint64 label 2^64-1"),
    pytest.param(_forged_header, r"x_train.npy' declares shape \(1000000, 1, 1000, 1000\) "
                 r"uint8 = 931 GiB, over the limit", id="npz forged 1 TB header"),
    pytest.param(_zip_of_text, r"is a zip but holds no .npy arrays \(members: 'x_train.txt'",
                 id="npz zip without .npy members"),
    pytest.param(_npz(x_train=np.zeros((48, 1, 0, 0), np.uint8),
                      x_test=np.zeros((12, 1, 0, 0), np.uint8)),
                 r"x_train images are 0x0 px", id="npz 0x0-pixel images"),
    pytest.param(_fifo_image, r"c1/x.png is a FIFO \(named pipe\), not an image file",
                 id="FIFO named .png"),
    pytest.param(_link_to_parent, r"c0/up and .* are the same folder .*symlink loop",
                 id="symlink to its parent folder"),
    pytest.param(_link_to_itself, r"c0/self.png is a symlink loop", id="symlink to itself"),
    pytest.param(_bomb, r"c0/bomb.png is too many pixels to decode safely", id="decompression bomb"),
    pytest.param(_non_utf8_file, r"the name b'.*/c0/\\xff.png' is not valid UTF-8",
                 id="non-UTF-8 file name"),
    pytest.param(_non_utf8_folder, r"the name b'.*/c\\xe92' is not valid UTF-8",
                 id="non-UTF-8 folder name"),
    pytest.param(_pixel_mode, r"^error: folder:\S+: \S+/c1/la.png has pixel mode 'LA'; valid",
                 id="pixel mode, one message"),
    pytest.param(_split_sizes, r"test/c0/0.png is 32x32 px, 1 channel\(s\), but \S+/train/c0/"
                 r"0.png is 40x40 px", id="train/test size mismatch"),
    # Found by the fuzzer (tests/test_data_user_fuzz.py); each once crashed, printed two
    # lines, or imported what it should have refused.
    pytest.param(_encrypted, r"x.npz: member 'x_train.npy' is not a readable .npy array "
                 r"\(File .* is encrypted, password required", id="npz encrypted member"),
    pytest.param(_compression_99, r"member 'x_train.npy' is not a readable .npy array \(That "
                 r"compression method is not supported\)", id="npz unknown compression"),
    pytest.param(_npz(classes=np.array([], dtype="U1")), r"classes is empty; it names the "
                 r"classes in label order", id="npz empty classes"),
    pytest.param(_npz(classes=np.array(["cat", "dog", "cat", "owl"])),
                 r"classes names 'cat' twice \(labels 0 and 2\)", id="npz class named twice"),
    pytest.param(_newline_class, r"the name '\S+/c\\n9' holds the control character "
                 r"'\\n'", id="newline in a class folder name"),
    pytest.param(lambda d: f"folder:{d}/no\nwhere", r"^error: bad dataset 'folder:\S+/no"
                 r"\\nwhere': it holds the control character '\\n'",
                 id="newline in the dataset name"),
    pytest.param(_non_utf8_npz_path, r"^error: bad dataset b'npz:\S+/\\xff.npz': its path is "
                 r"not valid UTF-8", id="non-UTF-8 npz path"),
    pytest.param(_non_utf8_root, r"^error: bad dataset b'folder:\S+/\\xe9t\\xe9': its path "
                 r"is not valid UTF-8", id="non-UTF-8 folder path"),
    pytest.param(_stray_beside_splits, r"src/c7 is a folder beside \S+/train and \S+/test, "
                 r"which would be left out of both splits", id="class folder beside train/test"),
    pytest.param(_dangling_link, r"src/c0/gone.png is a dangling symlink \(to moved.png, "
                 r"which does not exist\)", id="dangling symlink"),
]


@pytest.mark.parametrize("make, expected", HOSTILE)
def test_a_hostile_user_dataset_is_one_line_exit_2_and_caches_nothing(
        make, expected, tmp_path, capsys) -> None:
    name = make(tmp_path / "src")
    root = tmp_path / "root"
    root.mkdir()
    assert main(["data", "fetch", "--dataset", name, "--data-root", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err and err.count("error:") == 1, err
    assert re.search(expected, err), err
    # A path is never "outside" itself (a message once said "X links to R, outside R"), nor
    # named twice in a row (one once said "npz:SRC/x.npz: SRC/x.npz: member ...").
    assert not re.search(r"(\S+), outside \1\b", err), err
    assert not re.search(r"(\S{4,}): \1:", err), err
    assert cache_listing(root) == []


@pytest.mark.parametrize("where", ["root", "cache"])
def test_a_data_root_or_cache_that_is_a_file_is_one_line_before_any_import(
        where, tmp_path, capsys) -> None:
    """Once an OSError traceback from the cache write, after every image had been read."""
    name = f"npz:{rgb_npz(tmp_path / 'x.npz')}"
    root = tmp_path / "root"
    if where == "root":
        root.write_text("a file")
    else:
        root.mkdir()
        (root / "cache").write_text("a file")
    assert main(["data", "fetch", "--dataset", name, "--data-root", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    bad = root if where == "root" else root / "cache"
    assert err == (f"error: --data-root: {bad} is a file, not a directory; pass a data folder "
                   "(default: $ADAPTBENCH_DATA or ./data)")
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(
        ["x.npz", "root", *(["cache"] if where == "cache" else [])])


def test_a_dead_writers_temporary_cache_folder_is_removed_by_the_next_data_command(
        tmp_path, capsys) -> None:
    """``kill -9`` during a cache write leaves ``.tmp-<name>-pid<PID>-*``; the next ``data``
    command removes it (its pid is gone) and says so; a live writer's folder is kept."""
    from bench.data import stale
    cache_dir = tmp_path / "root" / "cache"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(dead.stdout)  # that process has exited: nothing runs under its pid now
    left = cache_dir / f".tmp-npz-x.npz-0123456789-pid{pid}-abc_12"
    left.mkdir(parents=True)
    (left / "train_x.npy").write_bytes(b"\0" * 1_000_000)
    live = cache_dir / f".tmp-npz-y.npz-0123456789-pid{os.getppid()}-def_34"
    live.mkdir()
    assert main(["data", "info", "--data-root", str(tmp_path / "root")]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "temporary folder" in line]
    assert len(lines) == 1 and left.name in lines[0] and "1.0 MB" in lines[0], out
    assert not left.exists() and live.exists()
    assert stale.temp_prefix("npz-x").startswith(".tmp-npz-x-pid")


def test_importing_an_npz_peaks_within_a_small_multiple_of_its_size(tmp_path) -> None:
    """A ~30 MB npz: the import's peak RSS increase stays under 4x the file (it was ~15x)."""
    path = rgb_npz(tmp_path / "x.npz", n_train=9000, n_test=1000, n_classes=10)
    script = ("import resource, sys\n"
              "from bench.data.cli import main\n"
              "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
              "assert main(['fetch', '--dataset', 'npz:' + sys.argv[1], '--data-root', "
              "sys.argv[2]]) == 0\n"
              "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n")
    done = subprocess.run([sys.executable, "-c", script, str(path), str(tmp_path / "root")],
                          capture_output=True, text=True, cwd=REPO, check=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    increase_kb = int(done.stdout.strip().splitlines()[-1])
    assert increase_kb * 1024 < 4 * path.stat().st_size, (increase_kb, path.stat().st_size)


def _printable(text: str) -> str:
    """``text`` as one line of UTF-8: an undecodable byte (a surrogate escape) as ``\\xNN``,
    a control character as its escape (``\\n``)."""
    return "".join(f"\\x{ord(c) - 0xdc00:02x}" if 0xdc80 <= ord(c) <= 0xdcff
                   else repr(c)[1:-1] if ord(c) < 32 or ord(c) == 127 else c for c in text)


def hostile_table() -> str:
    """docs/failures.md's "Hostile user datasets" rows, the temporary folder written ``SRC``."""
    from _datafixtures import fetch_messages_table

    return fetch_messages_table(HOSTILE, _printable)


def test_the_docs_list_every_hostile_user_dataset_with_its_message() -> None:
    failures = (REPO / "docs" / "failures.md").read_text()
    assert hostile_table() in failures, (
        "regenerate: python tests/test_data_user_hostile.py, into docs/failures.md")


if __name__ == "__main__":  # python tests/test_data_user_hostile.py: the table of docs/failures.md
    print(hostile_table())
