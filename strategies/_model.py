"""Building: backbone (torchvision or timm, :mod:`strategies.sources`) + weights + adapters
-> :class:`AdaptedModel`."""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torchvision
from torch import Tensor, nn

from . import sources
from ._init import family_label, family_of, init_like_family
from ._registry import Spec, StrategyError, parse_spec

_AUX_PREFIXES = ("AuxLogits.", "aux1.", "aux2.")


def list_models(source: str | None = "torchvision") -> list[str]:
    """Model names of ``source`` (``"torchvision"``, ``"timm"``, or None for every installed
    source); timm's are written ``timm:NAME``. See :func:`strategies.sources.list_models`."""
    return sources.list_models(source)


def check_model_name(model_name: str) -> None:
    """Raise :class:`StrategyError` naming ``model_name``, close matches and the valid names
    (or how to list them) unless a source has it (:func:`strategies.sources.check_model_name`)."""
    sources.check_model_name(model_name)


class AdaptedModel(nn.Module):
    """A torchvision or timm model adapted to small images.

    ``forward(x)``: float ``(N, in_channels, H, W)`` (1×28×28 for MNIST; whatever shape the
    dataset declares) -> logits ``(N, num_classes)``.
    The input adaptation (resize, pad, channel repeat, upsampling stem) is the ``adapt``
    sub-module, so it runs on the model's device and counts in FLOPs, time and memory.

    Attributes: ``model_name``; ``spec`` (canonical, e.g. ``repeat3+resize224``); ``preset``
    (the preset name it was built from, or None); ``reinitialized`` (paths, from this module,
    of layers the strategy replaced or added with fresh random weights); ``init_rules`` (the
    same layers in the same order, each as ``"path (rule)"``, e.g.
    ``"backbone.conv1 (ResNet: kaiming_normal_ fan_out relu)"``: the init each one got, see
    :mod:`strategies._init`; the path is the text before the first ``" ("``);
    ``effective_input_px``
    (side in px of the image the ImageNet-shaped body sees, after any upsampling stem);
    ``backbone_input_px`` (side reaching ``backbone``); ``notes`` (what the adapters did).
    """

    def __init__(self, backbone: nn.Module, adapt: nn.Sequential, *, model_name: str, spec: Spec,
                 num_classes: int, input_px: int, effective_input_px: int, in_channels: int = 1,
                 backbone_input_px: int, reinitialized: list[str], notes: list[str],
                 init_rules: dict[str, str] | None = None) -> None:
        super().__init__()
        self.adapt = adapt
        self.backbone = backbone
        self.model_name = model_name
        self.spec = str(spec)
        self.preset = spec.preset
        self.num_classes = num_classes
        self.input_px = input_px
        self.in_channels = in_channels
        self.effective_input_px = effective_input_px
        self.backbone_input_px = backbone_input_px
        self.reinitialized = list(dict.fromkeys(reinitialized))
        rules = init_rules or {}
        self.init_rules = [f"{path} ({rules[path]})" if path in rules else path
                           for path in self.reinitialized]
        self.notes = notes

    def forward(self, x: Tensor) -> Tensor:
        out = self.backbone(self.adapt(x))
        # Inception-style named tuples, should aux heads ever be switched back on.
        return out if isinstance(out, Tensor) else out.logits

    def extra_repr(self) -> str:
        return (f"model_name={self.model_name!r}, spec={self.spec!r}, "
                f"effective_input_px={self.effective_input_px}")


@dataclass
class Adaptation:
    """Build-time state the adapters read and change. Paths are relative to the AdaptedModel."""

    model_name: str
    backbone: nn.Module
    input_px: int
    effective_input_px: int
    backbone_input_px: int
    in_channels: int = 1  # channels of the dataset's images (1 gray, 3 RGB, ...)
    num_classes: int | None = None  # outputs of the backbone (adapters that rebuild it need it)
    pretrained: bool = False  # the backbone's weights were loaded (a file), not drawn at random
    input_ops: list[tuple[str, nn.Module]] = field(default_factory=list)
    reinitialized: list[str] = field(default_factory=list)
    init_rules: dict[str, str] = field(default_factory=dict)  # path -> the init it got, last wins
    notes: list[str] = field(default_factory=list)
    undo: list[tuple[str, nn.Module]] | None = None  # (name, original) per replacement, if kept

    def _initialise(self, module: nn.Module, pytorch_default: str | None) -> dict[str, str]:
        """Initialise the newly created ``module`` by the family rule, or keep PyTorch's default
        (``pytorch_default`` is the reason); ``{layer name in module: rule text}``."""
        if pytorch_default is None:
            return init_like_family(self.backbone, module)
        return {n: f"PyTorch default: {pytorch_default}" for n, m in module.named_modules()
                if next(m.parameters(recurse=False), None) is not None}

    def _record(self, path: str, rule: str) -> None:
        self.reinitialized.append(path)
        self.init_rules[path] = rule

    def replace(self, name: str, module: nn.Module, *, fresh: bool = True,
                pytorch_default: str | None = None) -> None:
        """Swap backbone layer ``name`` for ``module``.

        ``fresh``: ``module`` was just created, so it is re-initialised by the family's rule
        (:func:`~strategies._init.init_like_family`) and recorded in ``reinitialized``. The rule
        replaces whatever init the module was built with, so an adapter replacing a layer an
        earlier one created leaves it with the family's init, never with PyTorch's default.
        ``pytorch_default``: keep PyTorch's default init instead (only the post's exact stem
        does), this text being the reason recorded. ``fresh=False``: the weights are not new
        (``sumrgb`` folds them; an Identity has none).
        """
        if self.undo is not None:
            self.undo.append((name, self.backbone.get_submodule(name)))
        self.backbone.set_submodule(name, module)
        if fresh:
            rules = self._initialise(module, pytorch_default)
            self._record(f"backbone.{name}",
                         " | ".join(dict.fromkeys(rules.values())) or "no parameters")

    def add_input_op(self, name: str, module: nn.Module) -> None:
        """Append an input transformation, run in order before the backbone. Layers in it that
        hold parameters are new: initialised by the family's rule and recorded one by one."""
        self.input_ops.append((name, module))
        for n, rule in self._initialise(module, None).items():
            self._record(f"adapt.{name}.{n}" if n else f"adapt.{name}", rule)


def adapt(backbone: nn.Module, model_name: str, spec: str | Spec, *, input_px: int = 28,
          in_channels: int = 1, num_classes: int | None = None,
          reinitialized: list[str] | None = None,
          undo: list[tuple[str, nn.Module]] | None = None,
          pretrained: bool = False) -> AdaptedModel:
    """Apply ``spec`` to an already built ``backbone`` (changed in place) -> AdaptedModel.

    The spatial part runs first (it may rebuild early layers), then the channel part (which
    finds the first convolution of the result). ``undo``: a list that receives
    ``(layer name, original layer)`` for every replacement, so that :func:`restore` can give
    the backbone back unchanged (the doctor reuses one backbone for many strategies).
    Every layer an adapter creates is initialised by ``backbone``'s family rule
    (:mod:`strategies._init`), whatever order the parts run in; ``init_rules`` records which.
    ``pretrained``: ``backbone`` holds loaded weights (``native1`` then folds them as the
    library does instead of drawing the constructor's init).
    """
    parsed = spec if isinstance(spec, Spec) else parse_spec(spec)
    if num_classes is None:
        num_classes = _guess_num_classes(backbone)
    ctx = Adaptation(model_name, backbone, input_px, input_px, input_px, in_channels=in_channels,
                     num_classes=num_classes, pretrained=pretrained, undo=undo)
    family = family_of(backbone)
    for name in reinitialized or []:
        # Left as the constructor drew them (no matching weights): the family's rule by definition.
        ctx._record(f"backbone.{name}", f"{family_label(family or type(backbone))} constructor init")
    for part in parsed.parts():
        part.adapter.apply(ctx, part.value)
    adapt_seq = nn.Sequential()
    for name, module in ctx.input_ops:
        adapt_seq.add_module(name, module)
    return AdaptedModel(backbone, adapt_seq, model_name=model_name, spec=parsed,
                        num_classes=num_classes, input_px=input_px, in_channels=in_channels,
                        effective_input_px=ctx.effective_input_px,
                        backbone_input_px=ctx.backbone_input_px,
                        reinitialized=ctx.reinitialized, notes=ctx.notes,
                        init_rules=ctx.init_rules)


def restore(backbone: nn.Module, undo: list[tuple[str, nn.Module]]) -> None:
    """Put back the layers :func:`adapt` replaced (in reverse order), emptying ``undo``."""
    while undo:
        name, original = undo.pop()
        backbone.set_submodule(name, original)


def _guess_num_classes(backbone: nn.Module) -> int:
    last = [m for m in backbone.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if not last:
        return 0
    m = last[-1]
    return m.out_features if isinstance(m, nn.Linear) else m.out_channels


def _construct(model_name: str, num_classes: int, meta: bool, **kwargs: Any) -> nn.Module:
    """The source's random-init constructor (:func:`strategies.sources.construct`)."""
    return sources.construct(model_name, num_classes, meta=meta, **kwargs)


def build_backbone(model_name: str, num_classes: int = 10, weights: str | None = None,
                   device: str | torch.device = "cpu") -> tuple[nn.Module, list[str]]:
    """The plain model (torchvision, or timm for ``timm:NAME``) with ``num_classes`` outputs,
    and the layers left random.

    ``weights``: None or "" (random init), ``"imagenet"`` (torchvision's default weights enum,
    from the torch hub cache or downloaded when online; for timm, timm's default pretrained
    file from the Hugging Face cache, downloaded by timm only when online), or a path to a
    state dict in the library's layout. Layers whose shapes differ from the weights (the
    classifier head when ``num_classes != 1000``) keep their random init and are returned by
    name. On ``device="meta"`` weights are checked for availability but not loaded.
    """
    check_model_name(model_name)
    if not isinstance(num_classes, int) or num_classes < 1:
        raise StrategyError(f"num_classes must be a positive integer, got {num_classes!r}")
    meta = torch.device(device).type == "meta"
    weights = weights or None
    if weights is None:
        model = _construct(model_name, num_classes, meta)
        return model.to(device), []
    if weights == "imagenet" and sources.source_of(model_name) == "timm":
        return _timm_pretrained(model_name, num_classes, meta, device)
    if weights == "imagenet":
        weights_enum = _imagenet_weights(model_name)
        if meta:
            return _construct(model_name, num_classes, meta=True), []
        pretrained = _construct(model_name, 1000, meta=False, weights=weights_enum)
        fresh = _construct(model_name, num_classes, meta=False)
        reinit = _transplant_mismatched(pretrained, fresh)
        return pretrained.to(device), reinit
    path = Path(weights)
    if not path.is_file():
        raise StrategyError(
            f"bad weights {weights!r}: valid values are none (random init), 'imagenet', or the "
            "path to an existing state-dict file")
    model = _construct(model_name, num_classes, meta)
    if meta:
        return model, []
    state = _read_state_dict(path)
    if any(k.startswith("backbone.") for k in state):
        # An AdaptedModel checkpoint: build() loads it after adaptation.
        return model.to(device), []
    reinit = load_matching(model, state, source=str(path))
    return model.to(device), reinit


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise StrategyError(f"cannot read weights file {path}: {exc}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise StrategyError(f"weights file {path} does not hold a state dict")
    return state


def load_matching(model: nn.Module, state: dict[str, Tensor], source: str) -> list[str]:
    """Load every tensor whose name and shape match; return the layers left as initialised.

    Names missing from ``state`` or unexpected in it (other than auxiliary heads) mean the file
    belongs to another model: that is an error, not a silent partial load.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own and not k.startswith(_AUX_PREFIXES)]
    if missing or unexpected:
        raise StrategyError(
            f"weights {source} do not fit {type(model).__name__}: missing {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
            f"{'...' if len(unexpected) > 5 else ''}")
    matching = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
    model.load_state_dict(matching, strict=False)
    skipped = [k for k in own if k not in matching]
    return list(dict.fromkeys(k.rsplit(".", 1)[0] for k in skipped))


def _transplant_mismatched(target: nn.Module, donor: nn.Module) -> list[str]:
    """Replace every leaf of ``target`` whose parameter shapes differ from ``donor``'s."""
    replaced = []
    donor_modules = dict(donor.named_modules())
    for name, module in list(target.named_modules()):
        other = donor_modules.get(name)
        if other is None or next(module.children(), None) is not None:
            continue
        mine = {k: v.shape for k, v in module.named_parameters(recurse=False)}
        theirs = {k: v.shape for k, v in other.named_parameters(recurse=False)}
        if mine != theirs:
            target.set_submodule(name, other)
            replaced.append(name)
    return replaced


def _online(url: str, timeout_s: float = 3.0) -> bool:
    """Can we open a TCP connection to ``url``'s host within ``timeout_s``? Never hangs."""
    if os.environ.get("ADAPTBENCH_OFFLINE"):
        return False
    host = urlparse(url).hostname or ""
    result: list[bool] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, 443), timeout=timeout_s).close()
            result.append(True)
        except OSError:
            result.append(False)

    # getaddrinfo has no timeout of its own: run it on a daemon thread and stop waiting.
    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout_s)
    return bool(result and result[0])


def _timm_pretrained(model_name: str, num_classes: int, meta: bool,
                     device: str | torch.device) -> tuple[nn.Module, list[str]]:
    """timm's own pretrained build (its head and first-conv adaptation rules), from the cached
    file when there is one; the head is left at the constructor's init when ``num_classes``
    differs from the checkpoint's, and returned by name."""
    info = _imagenet_weights(model_name)
    reinit = list(info.classifier) if num_classes != info.num_classes else []
    if meta:
        return _construct(model_name, num_classes, meta=True), reinit
    # ``file`` makes timm load that path instead of asking the hub (no network, no HF lookup).
    overlay = {"pretrained_cfg_overlay": {"file": str(info.cached)}} if info.cached else {}
    model = _construct(model_name, num_classes, meta=False, pretrained=True, **overlay)
    return model.to(device), reinit


def _imagenet_weights(model_name: str) -> Any:
    """torchvision's DEFAULT ImageNet weights enum, after making sure the file is obtainable;
    for ``timm:`` models the :class:`~strategies.sources.TimmWeights` (cached file, or None
    when timm may download it because this machine is online)."""
    if sources.source_of(model_name) == "timm":
        return _timm_weights_obtainable(model_name)
    weights = torchvision.models.get_model_weights(model_name).DEFAULT
    filename = Path(urlparse(weights.url).path).name
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if cached.is_file() or _online(weights.url):
        return weights
    raise StrategyError(
        f"ImageNet weights for {model_name} are not cached at {cached} and this machine is "
        f"offline. Fix: on a machine with network run `python -c \"import torchvision; "
        f"torchvision.models.get_model_weights('{model_name}').DEFAULT.get_state_dict()\"`, copy "
        f"~/.cache/torch/hub/checkpoints/{filename} to {cached.parent}/ here (or point TORCH_HOME "
        f"at a copy), or pass weights=<path to a state dict>; weights=None trains from scratch.")


def build(model_name: str, spec: str, num_classes: int = 10, weights: str | None = None,
          device: str | torch.device = "cpu", *, input_px: int = 28,
          in_channels: int = 1) -> AdaptedModel:
    """Build ``model_name`` adapted by ``spec``: raw ``(N, in_channels, input_px, input_px)``
    -> logits. ``input_px`` (side, px) and ``in_channels`` are the dataset's image shape.

    The model is initialised on the CPU (same random init on every device, given the seed) and
    then moved to ``device``; ``device="meta"`` builds a weightless model for shape checks.
    Raises :class:`StrategyError` for a bad spec, model or weights, and
    :class:`NotApplicableError` when the strategy does not fit the model's family.
    """
    parsed = parse_spec(spec)
    check_model_name(model_name)
    if not isinstance(input_px, int) or input_px < 1:
        raise StrategyError(f"input_px must be a positive integer, got {input_px!r}")
    if not isinstance(in_channels, int) or isinstance(in_channels, bool) or in_channels < 1:
        raise StrategyError(f"in_channels must be a positive integer, got {in_channels!r}")
    dev = torch.device(device)
    meta = dev.type == "meta"
    backbone, reinit = build_backbone(model_name, num_classes, weights,
                                      device="meta" if meta else "cpu")
    model = adapt(backbone, model_name, parsed, input_px=input_px, in_channels=in_channels,
                  num_classes=num_classes, reinitialized=reinit, pretrained=bool(weights))
    if weights and weights != "imagenet" and not meta:
        state = _read_state_dict(Path(weights))
        if any(k.startswith("backbone.") for k in state):
            try:
                model.load_state_dict(state)
            except RuntimeError as exc:
                raise StrategyError(
                    f"weights {weights} do not fit {model_name} with {model.spec}: {exc}") from None
            model.reinitialized = []
            model.init_rules = []
    return model.to(dev)


def _timm_weights_obtainable(model_name: str) -> sources.TimmWeights:
    info = sources.timm_weights(model_name)
    if info.cached is not None:
        return info
    if info.hf_hub_id and _online("https://huggingface.co"):
        return info
    if not info.hf_hub_id and _online(info.url):
        return info
    bare = model_name.partition(":")[2]
    where = (info.expected_path() if info.hf_hub_id else
             Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(info.url).path).name)
    source = (f"Hugging Face repo {info.hf_hub_id}, file {' or '.join(info.filenames)}"
              if info.hf_hub_id else info.url)
    copy = (f"~/.cache/huggingface/hub/{where.parents[2].name} to {where.parents[3]}/ here (or "
            "point HF_HOME or HF_HUB_CACHE at a copy)" if info.hf_hub_id else
            f"{where.name} to {where.parent}/ here")
    raise StrategyError(
        f"timm's ImageNet weights for {model_name} ({source}) are not cached at {where} and "
        f"this machine is offline. Fix: on a machine with network run `python -c \"import "
        f"timm; timm.create_model('{bare}', pretrained=True)\"`, copy {copy}, or pass "
        f"weights=<path to a state dict>; weights=None trains from scratch.")
