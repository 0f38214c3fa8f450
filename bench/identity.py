"""A cell's identity: the hashes that name an experiment and the hardware key inside them.

One owner for "is this the same experiment?": :func:`cell_hash` (the cell, every setting that
affects it, the hardware), :func:`config_hash` (the whole resolved config) and
:func:`device_key` (the exact device identity of :mod:`bench.device`, plus `` | ddp xW`` for a
cell trained by W ranks together). Resume, the plan, the ranks and the report all key on these.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from bench import results
from bench.config import _NOT_HASHED, Cell, Config, for_model, resolve_auto


def for_cell(cfg: Config, cell: Cell) -> Config:
    """The config one cell trains with: its model's per_model entries, and the subset sizes its
    dataset really has (:func:`bench.data.fit_sizes`: a small user dataset is used whole).

    Every place that names or runs a cell (its hash, the plan's estimate, the child's run, the
    row) goes through here, so the sizes a row reports are the sizes it trained on and hashed.
    """
    from bench import data as data_mod  # torch: imported where a cell is named, not on import

    cfg = for_model(cfg, cell.model)
    if not data_mod.user.is_user_dataset(cell.dataset):
        return cfg  # built-ins: check_sizes refuses a size too large; no file read here
    info = data_mod.get_info(cell.dataset, cfg.data_root or None)
    train, test, val, _ = data_mod.fit_sizes(cell.dataset, info, cfg.train_size,
                                             cfg.test_size, cfg.val_size)
    if (train, test, val) == (cfg.train_size, cfg.test_size, cfg.val_size):
        return cfg
    return cfg.replace(train_size=train, test_size=test, val_size=val)


def effective(cfg: Config, cell: Cell, device: str | Any) -> Config:
    """THE config a cell runs with on ``device``: :func:`for_cell` (its model's per_model
    entries, the sizes its dataset really has), then ``"auto"`` precision and layout resolved
    for the device. The engine, cost model, planner, sweep and overhead check all ask this."""
    return resolve_auto(for_cell(cfg, cell), device, cell.model)


def cell_hash(cfg: Config, cell: Cell, device_kind: str = "") -> str:
    """Short hash naming one experiment: the cell, every setting that affects it, the hardware.

    Resume keys on it, so changing the recipe or the device re-runs the cell.
    """
    # Hash the recipe the cell really trains with, so adding a per_model entry re-runs only
    # the cells it changes (and a small user dataset's hash names the sizes it used).
    cfg = for_cell(cfg, cell)
    payload = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_HASHED | {"per_model"}}
    if payload.get("graphs") is False:
        # graphs=false is how every cell ran before the key existed: the same experiment, so
        # its hash is unchanged and earlier rows still resume.
        del payload["graphs"]
    payload.update(dataclasses.asdict(cell), device_kind=device_kind)
    from bench import data as data_mod

    if data_mod.user.is_user_dataset(cell.dataset):
        # A user's files can change under the same name: a re-imported dataset is a new
        # experiment, never resumed from rows of the old files (built-ins are fixed by checksum).
        info = data_mod.get_info(cell.dataset, cfg.data_root or None)
        payload["data_fingerprint"] = (info.user or {}).get("fingerprint", "")
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def config_hash(cfg: Config) -> str:
    blob = json.dumps(cfg.to_dict(), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def device_suffix(world: int) -> str:
    """What ``device_id`` (and so a cell's hash) gains for a cell trained by ``world`` ranks."""
    return f" | ddp x{world}" if world > 1 else ""


def device_key(device: str, ddp_world: int = 1) -> str:
    """What a cell's hash knows of the hardware: its exact identity (:mod:`bench.device`).

    The same machine resumes its own rows; another machine -- another CPU model, stepping,
    core count or ISA, another GPU or GPU count -- runs every cell itself and adds its rows
    beside them, even with published results in the directory. A cell trained by
    ``ddp_world`` > 1 ranks together (``--ddp``) is another experiment: `` | ddp xW`` is added.
    """
    return parent_device(device)["device_id"] + device_suffix(ddp_world)


_DEVICES: dict[str, dict[str, str]] = {}


_HOST: dict[str, str] = {}


def parent_provenance(device: str) -> dict[str, str]:
    """Where this (the sweep's) process runs: ``device`` as :func:`parent_device` names it,
    the host CPU and the library versions; gathered once per process. What env.json records,
    and the one fallback of a row whose cell process reported no provenance of its own."""
    if not _HOST:  # the device has its own cache (parent_device), which the hashes share
        _HOST.update(host_cpu=results.host_cpu(), **results.software_versions())
    return {**parent_device(device), **_HOST}


def parent_device(device: str) -> dict[str, str]:
    """device, device_name and device_id of ``device`` as this (the sweep's) process sees it."""
    if device not in _DEVICES:
        try:
            _DEVICES[device] = results.device_info(device)
        except Exception:  # noqa: BLE001
            _DEVICES[device] = {"device": device.split(":")[0], "device_name": "unknown",
                                "device_id": f"{device.split(':')[0]} | unknown"}
    return _DEVICES[device]
