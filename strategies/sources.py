"""Model sources: which library a model name's constructor comes from. One lookup for all.

A model name is ``NAME`` (torchvision, the default: ``resnet18``) or ``SOURCE:NAME``
(``timm:resnet18``). Every place that lists, checks or constructs a model goes through here::

    from strategies import sources
    sources.list_models()              # torchvision's names, then timm's (when installed)
    sources.list_models("timm")        # ['timm:bat_resnext26ts', ...]
    sources.check_model_name("timm:resnet18")   # raises StrategyError naming a bad one
    sources.construct("timm:resnet18", 10, meta=True, in_chans=1)

Construction here is the *random-init* constructor only (``pretrained=False`` for timm, no
``weights`` enum for torchvision unless passed in ``kwargs``); weights are
:mod:`strategies._model`'s business. timm is optional (``pip install '.[timm]'``): it is
imported only when a ``timm:`` name is used, so torchvision-only runs never pay for it.
"""

from __future__ import annotations

import difflib
import importlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from ._registry import StrategyError

DEFAULT_SOURCE = "torchvision"
TIMM_EXTRA = "timm"  # the name of the optional dependency group in pyproject.toml
TIMM_VERSION = "1.0.31"  # the release adaptbench is tested with


@dataclass(frozen=True)
class Source:
    """One model library: ``names()`` lists its architectures (bare, without the prefix),
    ``build(name, num_classes, in_chans, **kwargs)`` constructs one on the current default
    device, ``in_chans`` None meaning the library's default (3)."""

    name: str
    names: Callable[[], list[str]]
    build: Callable[..., nn.Module]
    hint: str  # how to list the names, for error messages

    def prefix(self, bare: str) -> str:
        """The full model name: ``resnet18`` -> ``timm:resnet18`` (torchvision: unchanged)."""
        return bare if self.name == DEFAULT_SOURCE else f"{self.name}:{bare}"


SOURCES: dict[str, Source] = {}


def register_source(source: Source) -> Source:
    """Add a model source; a second source of the same name is refused."""
    if source.name in SOURCES:
        raise ValueError(f"model source {source.name!r} is already registered")
    SOURCES[source.name] = source
    return source


# -------------------------------------------------------------------------------- torchvision

# Inception-style models: no auxiliary heads (so forward returns plain logits), an explicit
# init_weights (silences torchvision's warning about the default changing), and no
# transform_input: that re-normalises ImageNet-normalised RGB, which our gray batches are not
# (and it indexes three channels, which a one-channel first conv does not get).
TORCHVISION_KWARGS: dict[str, dict[str, Any]] = {
    "googlenet": {"aux_logits": False, "init_weights": True, "transform_input": False},
    "inception_v3": {"aux_logits": False, "init_weights": True, "transform_input": False},
}


def _torchvision_names() -> list[str]:
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


def _torchvision_build(name: str, num_classes: int, in_chans: int | None = None,
                       **kwargs: Any) -> nn.Module:
    import torchvision

    if in_chans not in (None, 3):
        # torchvision's constructors have no such argument (vision #2152, #6822, #7356):
        # the channel adapters (conv1, native1, sumrgb) change the first layer instead.
        raise StrategyError(f"torchvision models take no in_chans (got {in_chans}); use a "
                            "channel adapter such as conv1 or native1")
    kwargs = {**TORCHVISION_KWARGS.get(name, {}), **kwargs}
    get_model = torchvision.models.get_model
    if kwargs.get("weights") is None:
        return get_model(name, num_classes=num_classes, **kwargs)
    # torchvision's builder sets these itself to load the checkpoint (aux heads included);
    # the aux heads are dropped afterwards, as the builder does for aux_logits=False.
    kwargs.pop("init_weights", None)
    kwargs.pop("aux_logits", None)
    model = get_model(name, num_classes=num_classes, **kwargs)
    if getattr(model, "aux_logits", False):
        model.aux_logits = False
        for attr in ("AuxLogits", "aux1", "aux2"):
            if hasattr(model, attr):
                setattr(model, attr, None)
    return model


register_source(Source(DEFAULT_SOURCE, _torchvision_names, _torchvision_build,
                       hint="`python -m bench list`"))


# -------------------------------------------------------------------------------------- timm

def timm_module() -> ModuleType:
    """``import timm``, or a :class:`StrategyError` saying how to install the extra."""
    try:
        return importlib.import_module("timm")
    except ImportError as exc:
        raise StrategyError(
            f"timm: models need the optional timm package, which is not installed ({exc}). "
            f"Install it with `pip install '.[{TIMM_EXTRA}]'` in the adaptbench checkout (or "
            f"`pip install timm=={TIMM_VERSION}`)") from None


def timm_available() -> bool:
    """True when ``import timm`` works (nothing is raised)."""
    try:
        timm_module()
    except StrategyError:
        return False
    return True


@lru_cache(maxsize=1)
def _timm_names_cached() -> tuple[str, ...]:
    return tuple(timm_module().list_models())


def _timm_names() -> list[str]:
    timm_module()  # raise the install hint (also when an earlier call cached the names)
    return list(_timm_names_cached())


def _timm_build(name: str, num_classes: int, in_chans: int | None = None,
                **kwargs: Any) -> nn.Module:
    timm = timm_module()
    if in_chans is not None:
        kwargs["in_chans"] = in_chans
    # pretrained=False: timm never reaches for the network; weights are loaded by _model.
    kwargs.setdefault("pretrained", False)
    return timm.create_model(name, num_classes=num_classes, **kwargs)


register_source(Source("timm", _timm_names, _timm_build,
                       hint="`python -m bench list --source timm`"))


# ------------------------------------------------------------------------------------ lookup

def split_name(model_name: str) -> tuple[Source, str]:
    """``"timm:resnet18"`` -> (the timm source, ``"resnet18"``); a bare name is torchvision's.

    Raises :class:`StrategyError` for an unknown source prefix (the name itself is not checked).
    """
    if not isinstance(model_name, str) or not model_name:
        raise StrategyError(f"a model name must be a non-empty string, got {model_name!r}")
    prefix, sep, bare = model_name.partition(":")
    if not sep:
        return SOURCES[DEFAULT_SOURCE], model_name
    source = SOURCES.get(prefix)
    if source is None or source.name == DEFAULT_SOURCE:
        # One spelling per model (names key the results): torchvision's are written bare.
        valid = ", ".join(f"{s}:NAME" if s != DEFAULT_SOURCE else "NAME (torchvision)"
                          for s in SOURCES)
        raise StrategyError(f"unknown model source {prefix!r} in {model_name!r}; valid forms: "
                            f"{valid}")
    if source.name == "timm" and "." in bare:
        # timm names weights as NAME.TAG; no architecture name has a dot. The harness builds
        # the architecture and loads weights through the weights key, never by tag.
        arch, _, tag = bare.partition(".")
        raise StrategyError(f"pretrained tag {tag!r} in {model_name!r}: timm tags "
                            f"(timm:NAME.TAG) are not supported; name the architecture, "
                            f"timm:{arch}, and choose weights with the weights key "
                            '("" random init, "imagenet", or a state-dict file)')
    return source, bare


def source_of(model_name: str) -> str:
    """The source's name: ``"torchvision"`` or ``"timm"``."""
    return split_name(model_name)[0].name


def list_models(source: str | None = None) -> list[str]:
    """Full model names (``timm:``-prefixed for timm) of ``source``, or of every source.

    ``source=None``: torchvision's, then timm's when timm is installed (skipped silently when
    it is not; ask ``list_models("timm")`` for the install hint). Unknown ``source``:
    :class:`StrategyError` naming the valid ones.
    """
    if source is None:
        return [name for s in SOURCES for name in
                (list_models(s) if s == DEFAULT_SOURCE or timm_available() else [])]
    chosen = SOURCES.get(source)
    if chosen is None:
        raise StrategyError(f"unknown model source {source!r}; valid: {', '.join(SOURCES)}")
    return [chosen.prefix(n) for n in chosen.names()]


def check_model_name(model_name: str) -> None:
    """Raise :class:`StrategyError` unless ``model_name`` names a model of a known source.

    The message names the bad value, close matches, and the valid names (torchvision's,
    listed) or the command that lists them (timm's 1,300-odd). A bare name that only timm has
    is pointed at its ``timm:`` spelling.
    """
    source, bare = split_name(model_name)
    valid = source.names()
    if bare in valid:
        return
    hint = [source.prefix(n) for n in difflib.get_close_matches(bare, valid, n=3)]
    if source.name == DEFAULT_SOURCE and timm_available() and bare in _timm_names_cached():
        hint.insert(0, f"timm:{bare}")  # a timm architecture written without its prefix
    maybe = f" (did you mean {', '.join(hint)}?)" if hint else ""
    if source.name == DEFAULT_SOURCE:
        raise StrategyError(
            f"unknown model {model_name!r}{maybe}; valid torchvision classification models: "
            f"{', '.join(valid)}; timm models are written timm:NAME")
    raise StrategyError(
        f"unknown model {model_name!r}{maybe}: {bare!r} is not one of timm's {len(valid)} "
        f"architectures; list them with {source.hint} (or timm.list_models())")


@contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Construct on the CPU but move each parameter to meta as it is registered.

    For constructors that compute with real tensors (RegNet's widths, so it cannot run under
    ``torch.device('meta')``) but whose weights need not exist for shape probing.
    """
    original = nn.Module.register_parameter

    def register_parameter(self: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None and param.device.type != "meta":
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        original(self, name, param)

    nn.Module.register_parameter = register_parameter  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = original  # type: ignore[method-assign]


def construct(model_name: str, num_classes: int, *, meta: bool = False,
              in_chans: int | None = None, **kwargs: Any) -> nn.Module:
    """The model ``model_name`` with ``num_classes`` outputs, randomly initialised by its own
    constructor (on the CPU), or weightless on the meta device (``meta=True``: shapes only).

    ``in_chans``: input channels for sources whose constructor takes them (timm); None is the
    library's default (3). ``kwargs`` go to the constructor (torchvision: ``weights=``).
    The name is checked first (:func:`check_model_name`).
    """
    check_model_name(model_name)
    source, bare = split_name(model_name)
    if not meta:
        return source.build(bare, num_classes, in_chans, **kwargs)
    try:
        with torch.device("meta"):
            return source.build(bare, num_classes, in_chans, **kwargs)
    except (NotImplementedError, RuntimeError):
        # "Cannot copy out of meta tensor" (RegNet; timm models that compute a schedule with
        # .item()): a CPU construction whose weights go to meta as they are registered.
        with parameters_on_meta():
            model = source.build(bare, num_classes, in_chans, **kwargs)
        return model.to("meta")


# ------------------------------------------------------------------- timm's pretrained files

def hf_hub_cache() -> Path:
    """The Hugging Face hub cache directory, read from the environment now (huggingface_hub
    reads it once, at import): ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
    ``${XDG_CACHE_HOME:-~/.cache}/huggingface/hub``."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "huggingface")
    return Path(home).expanduser() / "hub"


@dataclass(frozen=True)
class TimmWeights:
    """Where timm's default pretrained weights of one architecture live.

    ``hf_hub_id`` (``timm/resnet18.a1_in1k``) and ``filenames`` (tried in order) on the
    Hugging Face hub; ``url`` the older GitHub release file, or ""; ``classifier`` the head's
    module names; ``num_classes`` of the checkpoint; ``cached`` the first file found in the
    local caches (HF hub cache, then the torch hub checkpoints), or None.
    """

    model_name: str
    hf_hub_id: str
    filenames: tuple[str, ...]
    url: str
    classifier: tuple[str, ...]
    num_classes: int
    cached: Path | None

    def expected_path(self) -> Path:
        """Where the HF hub cache would hold the first file (``<revision>``: any snapshot)."""
        repo = "models--" + self.hf_hub_id.replace("/", "--")
        return hf_hub_cache() / repo / "snapshots" / "<revision>" / self.filenames[0]


def timm_weights(model_name: str) -> TimmWeights:
    """The pretrained-weights facts of a ``timm:`` model, looked up in the caches only (this
    never touches the network). Raises :class:`StrategyError` when timm has none for it."""
    check_model_name(model_name)
    _, bare = split_name(model_name)
    cfg = timm_module().models.get_pretrained_cfg(bare)
    hf_hub_id = (getattr(cfg, "hf_hub_id", None) or "") if cfg is not None else ""
    url = (getattr(cfg, "url", None) or "") if cfg is not None else ""
    if not hf_hub_id and not url:
        raise StrategyError(f"timm has no pretrained weights for {model_name}; valid weights: "
                            "none (random init) or the path to a state dict")
    named = getattr(cfg, "hf_hub_filename", None)
    filenames = (named,) if named else ("model.safetensors", "pytorch_model.bin")
    cached = _hf_cached(hf_hub_id, filenames) if hf_hub_id else None
    if cached is None and url:
        legacy = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
        cached = legacy if legacy.is_file() else None
    classifier = cfg.classifier or ()
    return TimmWeights(model_name, hf_hub_id, filenames, url,
                       (classifier,) if isinstance(classifier, str) else tuple(classifier),
                       int(cfg.num_classes or 1000), cached)


def _hf_cached(repo_id: str, filenames: tuple[str, ...]) -> Path | None:
    """The cached snapshot file of ``repo_id`` (the ``main`` ref's, else any snapshot's)."""
    repo = hf_hub_cache() / ("models--" + repo_id.replace("/", "--"))
    ref = repo / "refs" / "main"
    revisions = [ref.read_text().strip()] if ref.is_file() else []
    snapshots = repo / "snapshots"
    if snapshots.is_dir():
        revisions += sorted(p.name for p in snapshots.iterdir() if p.name not in revisions)
    for name in filenames:
        for revision in revisions:
            path = snapshots / revision / name
            if path.is_file():
                return path
    return None
