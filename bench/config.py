"""Profiles and overrides -> one frozen :class:`Config`.

A profile is a TOML file in ``bench/configs/`` (or any path) with four tables:
``[grid]`` (what to run), ``[recipe]`` (how to train), ``[data]`` (how much data) and
``[measure]`` (how to measure). Keys are unique across tables, so the resolved config is one
flat dataclass and an override is just ``--set key=value``::

    python -m bench run --profile cpu --set epochs=2 --set models=resnet18,vgg16

List-valued keys take comma-separated values. Unknown keys and values of the wrong type are
rejected with :class:`ConfigError`, naming the valid choices.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from bench.errors import ConfigError  # noqa: F401 - re-exported: bench.config.ConfigError
from bench.executors import NAMES as EXECUTOR_NAMES  # noqa: E402 - light: no torch

CONFIG_DIR = Path(__file__).parent / "configs"

SECTIONS = ("grid", "recipe", "data", "measure")


@dataclass(frozen=True)
class Config:
    """Every knob of a sweep. Units are in the names or the comments."""

    # -- [grid]: the cells --------------------------------------------------------------
    datasets: tuple[str, ...] = ("mnist",)  # built-in names, folder:PATH or npz:PATH
    models: tuple[str, ...] = ("resnet18",)  # torchvision names, or timm:NAME
    strategies: tuple[str, ...] = ("repeat3",)  # presets or channel+spatial specs
    seeds: tuple[int, ...] = (0,)  # one cell per seed: initialisation and batch order

    # -- [recipe]: how one cell trains ---------------------------------------------------
    epochs: int = 1  # passes over the training subset
    batch_size: int = 128  # images per training step (global under --ddp)
    optimizer: str = "sgd"  # sgd | adamw
    # Defaults measured on MNIST: plain VGG16 (no BatchNorm) stayed at chance with lr 0.05
    # (H100, full epoch); lr 0.02 with gradients clipped to norm 1 learned (73% after 125
    # steps at 32 px on CPU; 96-98% in one epoch on an H100) where lr 0.01 unclipped was still
    # at 19%; vgg16_bn at 32 px on CPU: 58% clipped, chance unclipped. The same clip held
    # resnet50 to 25% after one epoch on the H100 (97.7% unclipped) and resnet18 to 85% on CPU
    # (92% unclipped), so only VGG is clipped: see per_model.
    lr: float = 0.02  # peak learning rate, reached at the end of warm-up
    momentum: float = 0.9  # SGD momentum (AdamW keeps torch's betas)
    nesterov: bool = True  # Nesterov momentum (SGD only)
    weight_decay: float = 5e-4  # on weights, not biases or norms (AdamW: decoupled)
    schedule: str = "cosine"  # cosine | onecycle | constant
    warmup_frac: float = 0.1  # fraction of all steps spent warming up linearly
    label_smoothing: float = 0.0  # cross-entropy label smoothing, 0..1
    grad_clip: float = 0.0  # max grad norm; 0 disables clipping
    # fp32 | bf16 | fp16 (autocast; fp16 adds a grad scaler) | auto: what the device runs
    # natively (bench.device.auto_recipe; the row records the resolved value)
    precision: str = "fp32"
    channels_last: bool | str = False  # NHWC layout; "auto" as for precision
    # What "auto" precision / layout resolved to per model, "model=precision/layout" (layout
    # nchw | channels_last): set by a CPU sweep from its measurement (bench.engine.autotune,
    # saved as auto-choices.json) before any cell starts; a user may pin it. Read before the
    # ISA rule; not part of a cell's hash (the hash keeps "auto" and the device identity).
    auto_choices: tuple[str, ...] = ()
    # torch.compile (true | false | auto: on for CUDA cells where the cost model expects the
    # compile time to be bought back, bench.plan.fastpath); compile time is reported as compile_s,
    # never in throughput; the row records the resolved value
    compile: bool | str = False
    # CUDA graphs of the whole training and evaluation step (true | false | auto: on for CUDA
    # cells the cost model finds launch-bound, bench.plan.fastpath); capture time is capture_s, never
    # in throughput; the row records the resolved value and fast_path_reason says why
    graphs: bool | str = False
    deterministic: bool = False  # deterministic algorithms, for reproducible CPU tests
    weights: str = ""  # "" (random init) | "imagenet" | path to a state dict
    num_threads: int = 0  # torch intra-op threads on CPU; 0 keeps torch's default
    # Per-model recipe changes, "pattern:key=value" (fnmatch on the model name, applied in
    # order): the recipe a cell trains with is the one above plus every matching entry.
    per_model: tuple[str, ...] = ("vgg*:grad_clip=1.0",)

    # -- [data] ---------------------------------------------------------------------------
    train_size: int = 0  # stratified subset of the training split; 0 = all of it
    test_size: int = 0  # stratified subset of the test split; 0 = all of it
    val_size: int = 0  # held out of train for validation; 0 = evaluate on test
    data_root: str = ""  # "" = $ADAPTBENCH_DATA or ./data

    # -- [measure] ------------------------------------------------------------------------
    warmup_steps: int = 5  # training steps excluded from throughput timing
    window_steps: int = 5  # steps per timed window; throughput is the median over windows
    max_steps_per_epoch: int = 0  # cap on steps per epoch (dry runs); 0 = the whole epoch
    target_acc: float = 0.99  # accuracy for time_to_target_s / epochs_to_target
    eval_every_steps: int = 0  # extra evaluations for time-to-target; 0 = per epoch only
    profile_steps: int = 3  # active steps of the separate torch.profiler window; 0 = off
    profile_top_ops: int = 15  # operators kept per cell in ops.csv
    save_trace: bool = False  # also save a gzipped Chrome trace of the profiled window
    measure_only_steps: int = 30  # steps timed for a measure-only cell (see cell_budget_s)
    # Re-timings of a CPU cell whose windows got under 80% of its threads' CPU time
    # (bench.engine.contention): 0..5 passes of at most 10 windows of extra steps, after the
    # training; a cell still contended after them is kept, marked contended, never a winner.
    contended_retries: int = 2
    cell_budget_s: float = 0.0  # cells estimated above this run measure-only; 0 = no budget
    cell_timeout_s: float = 3600.0  # a cell's process is killed after this many seconds
    # How cells get a process (bench.executors): "warm" = one long-lived worker runs cell
    # after cell; "process" = a fresh process per cell. Not part of a cell's hash.
    executor: str = "warm"
    # ray executor: "" = start a Ray instance on this machine (its CPUs and GPUs) for the
    # sweep; "auto" or "host:port" = join a cluster started with `ray start --head`.
    ray_address: str = ""
    # Cells sharing one device at once (1 = one at a time). warm / process: N worker processes
    # on the sweep's device, each pulling the next cell (CPU: each gets cores/N torch threads);
    # "auto" sizes N from the cells' measured memory and the device's (bench.executors.pack).
    # ray: N actors per GPU (num_gpus=1/pack) or per node's CPUs. Packed rows say so
    # (concurrency column) and their throughput is never ranked against a solo one.
    pack: int | str = 1
    # submitit executor: Slurm partition ("" = the cluster's default), the folder of its job
    # files and logs ("" = logs/submitit under the results directory), how many array tasks
    # run at once, and which cluster (auto = Slurm when sbatch is found, else local processes;
    # local = submitit's local executor, what the tests use).
    slurm_partition: str = ""
    slurm_folder: str = ""
    slurm_parallelism: int = 16
    slurm_cluster: str = "auto"
    peak_tflops: float = 0.0  # peak for MFU; 0 = measure it once per device with a matmul

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in fields(self)}

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


GRID_KEYS = ("datasets", "models", "strategies", "seeds")
# Keys that change what a cell measures. Sweep-level keys (the grid lists, timeouts,
# budgets, data_root) are left out so that a cell's hash names the experiment, not the run;
# so is peak_tflops, the denominator of the mfu column, which gpu_check measures afresh on
# every lease (a few TFLOP/s apart) and which must not stop a later lease from resuming.
# The executor is left out too: the same cell run warm or in a fresh process is one
# experiment (its row names the executor), so switching executors resumes; so are the
# executors' own settings (where they run; a packed row says so in its concurrency column).
# contended_retries too: how hard a busy host is retried, not what is measured (the row says
# how many re-measures it took), so existing rows resume.
EXECUTOR_KEYS = ("executor", "ray_address", "pack", "slurm_partition", "slurm_folder",
                 "slurm_parallelism", "slurm_cluster")
_NOT_HASHED = set(GRID_KEYS) | {"cell_timeout_s", "cell_budget_s", "data_root", "save_trace",
                                "peak_tflops", "contended_retries", "auto_choices",
                                *EXECUTOR_KEYS}

_FIELDS = {f.name: f for f in fields(Config)}
_DEFAULTS = Config()


def valid_keys() -> list[str]:
    return sorted(_FIELDS)


def _coerce(key: str, value: Any) -> Any:
    """Convert a TOML or command-line value to the type of ``Config.key``."""
    if key not in _FIELDS:
        raise ConfigError(f"unknown config key {key!r}; valid keys: {', '.join(valid_keys())}")
    if key == "pack":
        return _coerce_pack(value)
    default = getattr(_DEFAULTS, key)
    try:
        if isinstance(default, tuple):
            items = value if isinstance(value, (list, tuple)) else [
                s.strip() for s in str(value).split(",") if s.strip()]
            if not items and key not in ("per_model", "auto_choices"):
                raise ValueError("empty list")
            elem = _strict_int if key == "seeds" else str
            return tuple(elem(v) for v in items)
        if isinstance(default, bool):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if key in _AUTO_KEYS and text == "auto":
                return "auto"
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError("not a boolean (true/false" + (" or auto)" if key in _AUTO_KEYS
                                                            else ")"))
        if isinstance(default, int):
            return _strict_int(value)
        if isinstance(default, float):
            return float(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        expected = (("comma-separated list of " + ("int" if key == "seeds" else "str"))
                    if isinstance(default, tuple) else type(default).__name__)
        raise ConfigError(
            f"bad value {value!r} for {key!r} (expected {expected}): {exc}") from None


def _coerce_pack(value: Any) -> int | str:
    """``pack``: an integer, or ``"auto"`` (validate checks the integer's range)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        return _strict_int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"bad value {value!r} for 'pack'; valid: {PACK_CHOICES}") from None


def _strict_int(value: Any) -> int:
    """An int from TOML or the command line. A TOML float (1.5, even 2.0) or boolean (true) is
    refused, not truncated: ``int(1.5) == int(True) == 1`` would silently run another seed."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is a boolean, not an integer")
    if isinstance(value, float):
        raise ValueError(f"{value!r} is a float, not an integer")
    return value if isinstance(value, int) else int(str(value).strip())


# Keys that take "auto": precision and channels_last resolve per device (resolve_auto),
# compile and graphs per cell from the cost model (bench.plan.fastpath).
_AUTO_KEYS = ("precision", "channels_last", "compile", "graphs")

_CHOICES = {
    "optimizer": ("sgd", "adamw"),
    "schedule": ("cosine", "onecycle", "constant"),
    "precision": ("fp32", "bf16", "fp16", "auto"),
    "channels_last": (True, False, "auto"),
    "compile": (True, False, "auto"),
    "graphs": (True, False, "auto"),
    "executor": EXECUTOR_NAMES,
    "slurm_cluster": ("auto", "slurm", "local", "debug"),
}
_POSITIVE = ("epochs", "batch_size", "window_steps", "slurm_parallelism")
# pack's valid values, in every refusal of a bad one.
PACK_CHOICES = "a positive integer (cells sharing one device at once) or auto"
MAX_CONTENDED_RETRIES = 5
_NON_NEGATIVE = ("train_size", "test_size", "val_size", "warmup_steps", "max_steps_per_epoch",
                 "eval_every_steps", "profile_steps", "profile_top_ops", "measure_only_steps",
                 "num_threads", "contended_retries")


@dataclass(frozen=True)
class _Range:
    """A valid interval for a float key; ``high=None`` means unbounded above."""

    low: float
    high: float | None = None
    low_open: bool = False
    high_open: bool = True

    def __contains__(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        if self.high is None:
            return above
        return above and (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return (f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
                f"{')' if self.high_open else ']'}")


# Every float key and its valid range. NaN and infinity are never valid: float("nan") fails
# every comparison, so a plain `value < 0` check would wave lr=nan through to every cell.
_FLOAT_RANGES: dict[str, _Range] = {
    "lr": _Range(0.0),
    "momentum": _Range(0.0, 1.0),
    "weight_decay": _Range(0.0),
    "warmup_frac": _Range(0.0, 1.0),
    "label_smoothing": _Range(0.0, 1.0, high_open=False),  # torch's CrossEntropyLoss refuses > 1
    "grad_clip": _Range(0.0),
    "target_acc": _Range(0.0, 1.0, low_open=True, high_open=False),
    "cell_budget_s": _Range(0.0),
    "cell_timeout_s": _Range(0.0, low_open=True),
    "peak_tflops": _Range(0.0),
}


# What the engine hands to torch, bounded here so a bad value is one refusal before any cell
# and not one error row per cell. Seeds: 0..2**32-1, what every seeding API takes
# (torch.manual_seed takes up to 2**64-1 and wraps negatives, numpy's default_rng refuses
# negatives, its legacy np.random.seed and many libraries stop at 2**32-1); a 20-digit seed
# overflowed torch in the cell. Threads: 0 (torch's default) or up to 1024, a fixed bound
# and not the core count, so a profile validates the same on a login node and on the compute
# node that runs it; torch.set_num_threads(100000) crashed the cell (SIGSEGV).
MAX_SEED = 2**32 - 1
MAX_THREADS = 1024


def validate(cfg: Config) -> Config:
    """Check ranges and choices; raise :class:`ConfigError` naming the bad value."""
    for key, choices in _CHOICES.items():
        if getattr(cfg, key) not in choices:
            raise ConfigError(
                f"bad value {getattr(cfg, key)!r} for {key!r}; valid: {', '.join(choices)}")
    for key in _POSITIVE:
        if getattr(cfg, key) <= 0:
            raise ConfigError(f"{key} must be > 0, got {getattr(cfg, key)!r}")
    for key in _NON_NEGATIVE:
        if getattr(cfg, key) < 0:
            raise ConfigError(f"{key} must be >= 0, got {getattr(cfg, key)!r}")
    if cfg.pack != "auto" and (isinstance(cfg.pack, bool) or not isinstance(cfg.pack, int)
                               or cfg.pack < 1):
        raise ConfigError(f"bad value {cfg.pack!r} for 'pack'; valid: {PACK_CHOICES}")
    if cfg.contended_retries > MAX_CONTENDED_RETRIES:  # bounded: a busy host must not loop
        raise ConfigError(f"contended_retries must be 0..{MAX_CONTENDED_RETRIES}, "
                          f"got {cfg.contended_retries!r}")
    for key, valid in _FLOAT_RANGES.items():
        value = getattr(cfg, key)
        if value not in valid:
            finite = "" if math.isfinite(value) else "a finite number "
            raise ConfigError(f"{key} must be {finite}{valid}, got {value!r}")
    _check_ray_address(cfg.ray_address)
    for seed in cfg.seeds:
        if not 0 <= seed <= MAX_SEED:
            raise ConfigError(f"bad seed {seed} in seeds; valid: integers 0..{MAX_SEED} "
                              "(2**32 - 1)")
    if cfg.num_threads > MAX_THREADS:
        raise ConfigError(f"num_threads must be in 0..{MAX_THREADS} (0: torch's default), got "
                          f"{cfg.num_threads}")
    for key in GRID_KEYS:
        if len(set(getattr(cfg, key))) != len(getattr(cfg, key)):
            raise ConfigError(f"{key} lists a value twice: {list(getattr(cfg, key))}")
    for entry in cfg.per_model:
        pattern, key, value = parse_per_model(entry)
        validate(cfg.replace(per_model=(), **{key: value}))
    parse_auto_choices(cfg.auto_choices)
    # Models of an optional source (timm:NAME) are checked where the grid is read, so an
    # unknown name or a missing extra is refused before any cell starts; a grid of plain
    # torchvision names imports nothing here (loading a config stays fast without torch).
    sourced = [m for m in cfg.models if ":" in m]
    if sourced:
        check_models(sourced)
    return cfg


def _check_ray_address(address: str) -> None:
    """``""``, ``"auto"``, ``host:port`` or ``ray://host:port`` (port 1-65535)."""
    if address in ("", "auto"):
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if sep and host and port.isdigit() and 0 < int(port) < 65536:
        return
    raise ConfigError(f"bad value {address!r} for 'ray_address'; valid: \"\" (a Ray instance "
                      "on this machine), auto (the cluster `ray start` joined), host:port, "
                      "ray://host:port")


def check_models(models: tuple[str, ...] | list[str]) -> None:
    """Every name in ``models`` is a model of its source (``resnet18``: torchvision,
    ``timm:resnet18``: timm); else :class:`ConfigError` naming it, close matches and the valid
    names (or how to list them), or how to install a missing source (``pip install '.[timm]'``).
    Imports torch (and timm for ``timm:`` names)."""
    from strategies import StrategyError, sources

    for model in models:
        try:
            sources.check_model_name(model)
        except StrategyError as exc:
            raise ConfigError(f"bad model {model!r} in models: {exc}") from None


_LAYOUTS = {"nchw": False, "channels_last": True}


def parse_auto_choices(entries: tuple[str, ...]) -> dict[str, tuple[str, bool]]:
    """``("resnet18=fp32/nchw",)`` -> ``{"resnet18": ("fp32", False)}``; ConfigError names a
    bad entry and the valid form."""
    out: dict[str, tuple[str, bool]] = {}
    for entry in entries:
        model, eq, value = entry.partition("=")
        precision, slash, layout = value.partition("/")
        if (not eq or not slash or not model.strip() or precision not in ("fp32", "bf16", "fp16")
                or layout not in _LAYOUTS):
            raise ConfigError(f"bad auto_choices entry {entry!r}: expected model=precision/layout "
                              "with precision fp32 | bf16 | fp16 and layout nchw | "
                              "channels_last, e.g. resnet18=fp32/nchw")
        out[model.strip()] = (precision, _LAYOUTS[layout])
    return out


def resolve_auto(cfg: Config, device: str | Any, model: str = "") -> Config:
    """``cfg`` with ``precision`` / ``channels_last`` = ``"auto"`` replaced: on CPU by
    ``model``'s entry of ``auto_choices`` when it has one (what the sweep measured,
    :mod:`bench.engine.autotune`), else by what ``device`` runs natively
    (:func:`bench.device.auto_recipe`). The cell hash keeps ``"auto"``: it names the device
    identity too, and a results directory keeps its measured choice (auto-choices.json)."""
    if cfg.precision != "auto" and cfg.channels_last != "auto":
        return cfg
    measured = parse_auto_choices(cfg.auto_choices).get(model) if model else None
    if measured is not None and not str(device).startswith("cuda"):
        precision, layout = measured
        return cfg.replace(precision=precision if cfg.precision == "auto" else cfg.precision,
                           channels_last=(layout if cfg.channels_last == "auto"
                                          else cfg.channels_last))
    from bench import device as device_mod

    auto = device_mod.auto_recipe(device)
    return cfg.replace(
        precision=auto["precision"] if cfg.precision == "auto" else cfg.precision,
        channels_last=auto["channels_last"] if cfg.channels_last == "auto" else cfg.channels_last)


def parse_per_model(entry: str) -> tuple[str, str, Any]:
    """``"vgg*:grad_clip=1.0"`` -> ``("vgg*", "grad_clip", 1.0)``; only [recipe] keys."""
    pattern, sep, assignment = entry.partition(":")
    key, eq, value = assignment.partition("=")
    if not sep or not eq or not pattern.strip() or not key.strip():
        raise ConfigError(f"bad per_model entry {entry!r}: expected pattern:key=value, "
                          "e.g. vgg*:grad_clip=1.0")
    key = key.strip()
    if key not in _RECIPE_KEYS or key in _NOT_PER_MODEL:
        raise ConfigError(f"bad per_model entry {entry!r}: {key!r} is not a recipe key; valid: "
                          f"{', '.join(k for k in _RECIPE_KEYS if k not in _NOT_PER_MODEL)}")
    return pattern.strip(), key, _coerce(key, value.strip())


def for_model(cfg: Config, model: str) -> Config:
    """The config one model's cells train with: ``cfg`` plus its matching per_model entries."""
    changes: dict[str, Any] = {}
    for entry in cfg.per_model:
        pattern, key, value = parse_per_model(entry)
        if fnmatch.fnmatchcase(model, pattern):
            changes[key] = value
    return cfg.replace(per_model=(), **changes)


def list_profiles() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


def profile_path(profile: str) -> Path:
    """A profile name (``cpu``) or a path to a TOML file."""
    candidate = Path(profile)
    if candidate.is_dir():  # not "unknown": say what it is and what is expected
        raise ConfigError(f"profile {profile} is a directory; expected a profile name "
                          f"({', '.join(list_profiles())}) or a .toml file")
    if candidate.suffix == ".toml":
        if not candidate.is_file():
            raise ConfigError(f"profile file not found or unreadable: {profile}")
        return candidate
    path = CONFIG_DIR / f"{profile}.toml"
    if not path.is_file():
        raise ConfigError(
            f"unknown profile {profile!r}; valid profiles: {', '.join(list_profiles())} "
            "(or a path to a .toml file)")
    return path


def parse_override(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"bad override {text!r}: expected key=value")
    return key.strip(), value.strip()


def load(profile: str, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Resolve a profile plus ``key=value`` overrides into a validated :class:`Config`."""
    path = profile_path(profile)
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read profile {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"profile {path} is not valid TOML: {exc}") from None
    values: dict[str, Any] = {}
    for section, table in raw.items():
        if section not in SECTIONS or not isinstance(table, dict):
            raise ConfigError(
                f"unknown table [{section}] in {path}; valid tables: {', '.join(SECTIONS)}")
        for key, value in table.items():
            values[key] = _coerce(key, value)
    for text in overrides:
        key, value = parse_override(text)
        values[key] = _coerce(key, value)
    return validate(Config(**values))


def profile_name(profile: str) -> str:
    return Path(profile).stem


@dataclass(frozen=True)
class Cell:
    """One point of the grid."""

    dataset: str
    model: str
    strategy: str
    seed: int

    def label(self) -> str:
        return f"{self.dataset}/{self.model}/{self.strategy}/seed{self.seed}"


def cells(cfg: Config) -> list[Cell]:
    """The grid in a stable order: dataset, model, strategy, seed."""
    return [Cell(d, m, s, seed) for d in cfg.datasets for m in cfg.models
            for s in cfg.strategies for seed in cfg.seeds]


WEIGHT_CHOICES = ('"" (random init), "imagenet" (torchvision\'s ImageNet weights, cached in the '
                  'torch hub directory or downloadable; for timm:NAME, timm\'s default pretrained '
                  'file, in the Hugging Face cache or downloadable), or the path to a readable '
                  'state dict of the model')


def check_weights(cfg: Config, grid: list[Cell] | None = None) -> None:
    """Every cell of ``grid`` (default: all of ``cfg``'s) can get its ``weights``; else raise.

    Checked once, before any cell starts, with the machinery the cells use
    (:mod:`strategies._model`) on weightless meta-device models: ``"imagenet"`` must be cached
    or downloadable; a path must be a file ``torch.load`` reads (read once, however many cells
    use it) holding a state dict whose names fit the model -- or, for an AdaptedModel
    checkpoint (keys ``backbone.*``), the model as the cell's strategy adapts it. Otherwise
    every cell would fail the same way in its own process, one ``error`` row each.

    Raises :class:`ConfigError` naming the value, the model and the valid choices. Needs torch,
    imported here only when some cell has weights, so that loading a config stays fast.
    """
    grid = cells(cfg) if grid is None else grid
    # Per model: per_model entries may give models different weights.
    wanted = sorted({(for_model(cfg, c.model).weights, c.model, c.dataset, c.strategy)
                     for c in grid})
    if not any(weights for weights, *_ in wanted):
        return
    import strategies

    states: dict[str, dict[str, Any]] = {}  # path -> state dict, each file read once
    seen: set[tuple[str, ...]] = set()  # what has been checked, at the granularity it depends on
    for weights, model, dataset, strategy in wanted:
        if weights:
            try:
                _check_one_weights(weights, model, dataset, strategy, states, seen,
                                   cfg.data_root)
            except strategies.StrategyError as exc:
                raise ConfigError(f"bad weights {weights!r} for model {model}: "
                                  f"{str(exc).rstrip('.')}; valid weights: {WEIGHT_CHOICES}"
                                  ) from None


def _short_load_error(text: str, path: Path) -> str:
    """torch's load errors run to paragraphs of advice; keep the reason."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return f"cannot read weights file {path}"
    if "Weights only load failed" not in text:
        head, dot, _ = lines[0].partition(". ")  # the first sentence names the problem
        return head if dot else lines[0][:300]
    marker = next((i for i, line in enumerate(lines) if line.endswith("WeightsUnpickler error:")),
                  None)
    reason = lines[marker + 1] if marker is not None and marker + 1 < len(lines) else ""
    return (f"cannot read weights file {path}: not a checkpoint torch.load(weights_only=True) "
            f"can read" + (f" ({reason})" if reason else ""))


def _check_one_weights(weights: str, model: str, dataset: str, strategy: str,
                       states: dict[str, dict[str, Any]], seen: set[tuple[str, ...]],
                       data_root: str = "") -> None:
    """Raise :class:`strategies.StrategyError` if one cell could not get ``weights``.

    ``states`` caches the files read; ``seen`` the checks passed (ImageNet availability per
    model, which may wait seconds for the network; a plain state dict per model and dataset).
    """
    import warnings

    import strategies
    from bench.data import get_info
    from strategies import _model

    if weights == "imagenet":
        if (weights, model) not in seen:
            _model._imagenet_weights(model)  # cached, or this machine is online
            seen.add((weights, model))
        return
    path = Path(weights)
    if not path.is_file():
        raise strategies.StrategyError(
            f"{weights} is not a file" if path.exists() else f"{weights} does not exist")
    if weights not in states:
        try:
            states[weights] = _model._read_state_dict(path)
        except strategies.StrategyError as exc:
            raise strategies.StrategyError(_short_load_error(str(exc), path)) from None
    state = states[weights]
    info = get_info(dataset, data_root or None)
    num_classes = info.num_classes
    adapted = any(k.startswith("backbone.") for k in state)  # an AdaptedModel checkpoint
    key = (weights, model, str(num_classes), info.shape_text, strategy if adapted else "")
    if key in seen:
        return
    seen.add(key)
    with warnings.catch_warnings():
        # "copying from a non-meta parameter ... to a meta parameter ... is a no-op": the point
        # here is the names and shapes, not the values.
        warnings.simplefilter("ignore", UserWarning)
        if not adapted:
            backbone, _ = _model.build_backbone(model, num_classes, None, device="meta")
            _model.load_matching(backbone, state, source=weights)
            return
        try:
            net = strategies.build(model, strategy, num_classes=num_classes, device="meta",
                                   input_px=info.shape[1], in_channels=info.shape[0])
        except strategies.StrategyError:
            return  # the cell is recorded "incompatible" before it loads any weights
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise strategies.StrategyError(
                f"the AdaptedModel checkpoint {weights} does not fit {model} with {net.spec}: "
                f"{' '.join(str(exc).split())[:500]}") from None


def to_toml(cfg: Config) -> str:
    """The resolved config as TOML, by table, for saving beside results."""
    section_of = {}
    for section, keys in _SECTION_KEYS.items():
        for key in keys:
            section_of[key] = section
    out: list[str] = []
    for section in SECTIONS:
        out.append(f"[{section}]")
        for key, value in cfg.to_dict().items():
            if section_of.get(key) == section:
                out.append(f"{key} = {_toml_value(value)}")
        out.append("")
    return "\n".join(out)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


_SECTION_KEYS = {
    "grid": GRID_KEYS,
    "recipe": ("epochs", "batch_size", "optimizer", "lr", "momentum", "nesterov", "weight_decay",
               "schedule", "warmup_frac", "label_smoothing", "grad_clip", "precision",
               "channels_last", "auto_choices", "compile", "graphs", "deterministic", "weights", "num_threads",
               "per_model"),
    "data": ("train_size", "test_size", "val_size", "data_root"),
    "measure": ("warmup_steps", "window_steps", "max_steps_per_epoch", "target_acc",
                "eval_every_steps", "profile_steps", "profile_top_ops", "save_trace",
                "measure_only_steps", "contended_retries", "cell_budget_s", "cell_timeout_s", "peak_tflops",
                *EXECUTOR_KEYS),
}
assert set().union(*_SECTION_KEYS.values()) == set(_FIELDS), "every key belongs to one table"
assert set(_FLOAT_RANGES) == {k for k, v in _DEFAULTS.to_dict().items() if isinstance(v, float)}, \
    "every float key has a valid range"
_RECIPE_KEYS = _SECTION_KEYS["recipe"]
_NOT_PER_MODEL = ("per_model", "auto_choices")  # per model already
