"""The adapter registry and the spec grammar ``[channel][+spatial]`` or a preset name.

Machinery only: the adapters themselves live in ``channels.py``, ``spatial.py`` and ``post.py``
and register here with :func:`register`, the way torchvision's ``@register_model`` does.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

KINDS = ("channel", "spatial")
# "none" is the explicit empty channel part: the raw 1-channel batch goes in unchanged.
NO_CHANNEL = "none"


class StrategyError(ValueError):
    """A bad spec, model name or weights value, or a strategy that cannot apply.

    The message names the bad part and the valid choices; command-line tools exit with 2.
    """


class NotApplicableError(StrategyError):
    """A well-formed strategy that does not fit this model's family (``cifarstem`` on VGG)."""


@dataclass(frozen=True)
class Adapter:
    """One registered adapter: a channel or spatial transformation of a model.

    ``apply(ctx, value)`` mutates the :class:`~strategies._model.Adaptation` ``ctx``; ``value``
    is the integer written after the name (``224`` in ``resize224``) or None.
    """

    name: str
    kind: str
    apply: Callable[[Any, int | None], None]
    arg: str = "none"  # "none" | "required" | "optional": the integer after the name
    arg_name: str = "N"
    min_arg: int = 1
    max_arg: int = 4096
    summary: str = ""  # one sentence; "{n}" stands for the argument
    surgery: bool = False  # changes the backbone's layers, not just the input
    takes_channel: bool = True  # False: the adapter brings its own one-channel stem

    @property
    def display(self) -> str:
        """How the adapter is written: ``resize<N>``, ``droppools[<K>]``, ``conv1``."""
        if self.arg == "required":
            return f"{self.name}<{self.arg_name}>"
        if self.arg == "optional":
            return f"{self.name}[<{self.arg_name}>]"
        return self.name

    def describe(self, value: int | None = None) -> str:
        if "{n}" in self.summary:
            return self.summary.replace("{n}", str(value) if value is not None else self.arg_name)
        if value is not None and self.arg != "none":
            return f"{self.summary} ({self.arg_name} = {value}.)"
        return self.summary


@dataclass(frozen=True)
class Part:
    """One parsed part of a spec: an adapter and its optional integer argument."""

    name: str
    value: int | None = None

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}{self.value}"

    @property
    def adapter(self) -> Adapter:
        return _ADAPTERS[self.name]


@dataclass(frozen=True)
class Spec:
    """A parsed strategy: at most one channel part and at most one spatial part.

    ``channel`` / ``spatial`` are the canonical part texts (``"repeat3"``, ``"resize224"``) or
    None. ``str(spec)`` is the canonical spec (channel first); ``parse_spec(str(spec)) == spec``.
    ``preset`` remembers the preset name the spec came from (not part of equality).
    """

    channel: str | None = None
    spatial: str | None = None
    preset: str | None = field(default=None, compare=False)

    @property
    def channel_part(self) -> Part | None:
        return _parse_part(self.channel) if self.channel else None

    @property
    def spatial_part(self) -> Part | None:
        return _parse_part(self.spatial) if self.spatial else None

    def __str__(self) -> str:
        if self.channel is None and self.spatial is None:
            return NO_CHANNEL
        if self.channel is None:
            text = str(self.spatial)
            # A bare spatial name that is also a preset would parse back as the preset.
            return f"{NO_CHANNEL}+{text}" if text in PRESETS else text
        if self.spatial is None:
            return str(self.channel)
        return f"{self.channel}+{self.spatial}"

    def parts(self) -> list[Part]:
        """The parts in the order they are applied: spatial first, then channel."""
        return [p for p in (self.spatial_part, self.channel_part) if p is not None]


_ADAPTERS: dict[str, Adapter] = {}

# Preset name -> (canonical spec, one-sentence description). Filled by the adapter modules.
PRESETS: dict[str, str] = {}
PRESET_DOCS: dict[str, str] = {}

F = TypeVar("F", bound=Callable[..., None])


def _first_sentence(doc: str | None) -> str:
    text = " ".join((doc or "").split("\n\n")[0].split())
    return text


def register(kind: str, name: str | None = None, *, arg: str = "none", arg_name: str = "N",
             min_arg: int = 1, max_arg: int = 4096, surgery: bool = False,
             takes_channel: bool = True) -> Callable[[F], F]:
    """Register an adapter function ``fn(ctx, value)`` under ``name`` (default: its name).

    The first paragraph of its docstring is the one-sentence description used by
    :func:`describe`; write ``{n}`` where the integer argument should appear.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown adapter kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    if arg not in ("none", "required", "optional"):
        raise ValueError(f"arg must be 'none', 'required' or 'optional', got {arg!r}")

    def decorator(fn: F) -> F:
        key = name or fn.__name__
        if key in _ADAPTERS or key == NO_CHANNEL:
            raise ValueError(f"adapter {key!r} is already registered")
        _ADAPTERS[key] = Adapter(key, kind, fn, arg, arg_name, min_arg, max_arg,
                                 _first_sentence(fn.__doc__), surgery, takes_channel)
        return fn

    return decorator


def register_preset(name: str, spec: str, doc: str) -> None:
    """A named strategy: ``name`` stands for the canonical ``spec``."""
    if name in PRESETS:
        raise ValueError(f"preset {name!r} is already registered")
    parsed = _parse_parts(spec)
    PRESETS[name] = str(parsed)
    PRESET_DOCS[name] = doc


def get(name: str) -> Adapter:
    """The adapter for a part (``resize224`` -> the ``resize`` adapter)."""
    return _parse_part(name).adapter


def list_strategies(kind: str | None = None) -> list[str]:
    """Adapter and preset names as written in a spec (``resize<N>``, ``droppools[<K>]``).

    ``kind`` in {"channel", "spatial", "preset"}; None lists all of them.
    """
    if kind is not None and kind not in (*KINDS, "preset"):
        raise StrategyError(f"unknown strategy kind {kind!r}; valid kinds: channel, spatial, preset")
    names: list[str] = []
    for k in KINDS:
        if kind in (None, k):
            names += sorted(a.display for a in _ADAPTERS.values() if a.kind == k)
    if kind in (None, "preset"):
        names += list(PRESETS)
    return names


def _valid_parts() -> str:
    channel = ", ".join([*list_strategies("channel"), NO_CHANNEL])
    spatial = ", ".join(list_strategies("spatial"))
    presets = ", ".join(PRESETS)
    return f"channel: {channel}; spatial: {spatial}; presets: {presets}"


_PART_RE = re.compile(r"^([a-z][a-z_]*?)(-?\d+)?$")


def _parse_part(text: str) -> Part:
    """``conv1`` -> Part('conv1'); ``resize224`` -> Part('resize', 224)."""
    if text in _ADAPTERS and _ADAPTERS[text].arg != "required":
        return Part(text)
    match = _PART_RE.match(text)
    adapter = _ADAPTERS.get(match.group(1)) if match else None
    if adapter is None or adapter.arg == "none":
        hint = difflib.get_close_matches(text, list(dict.fromkeys([*_ADAPTERS, *PRESETS])), n=2)
        maybe = f" (did you mean {' or '.join(hint)}?)" if hint else ""
        raise StrategyError(f"unknown adapter {text!r}{maybe}; valid: {_valid_parts()}")
    raw = match.group(2)
    if raw is None:
        if adapter.arg == "required":
            raise StrategyError(
                f"adapter {text!r} needs a size: write {adapter.display}, e.g. "
                f"{adapter.name}{max(adapter.min_arg, 32)}")
        return Part(adapter.name)
    value = int(raw)
    if not adapter.min_arg <= value <= adapter.max_arg:
        raise StrategyError(
            f"bad value in {text!r}: {adapter.display} needs {adapter.arg_name} between "
            f"{adapter.min_arg} and {adapter.max_arg}, got {value}")
    return Part(adapter.name, value)


def _parse_parts(text: str) -> Spec:
    tokens = text.split("+")
    if len(tokens) > 2:
        raise StrategyError(
            f"malformed strategy {text!r}: at most two parts, channel+spatial "
            f"(e.g. repeat3+resize224); valid: {_valid_parts()}")
    if any(not t for t in tokens):
        raise StrategyError(
            f"malformed strategy {text!r}: empty part around '+' "
            f"(write channel+spatial, e.g. repeat3+resize224)")
    channel: Part | None = None
    spatial: Part | None = None
    saw_none = False
    for i, token in enumerate(tokens):
        if token == NO_CHANNEL:
            if i != 0 or saw_none:
                raise StrategyError(
                    f"malformed strategy {text!r}: {NO_CHANNEL!r} can only be the channel part, "
                    f"written first (e.g. none+resize224)")
            saw_none = True
            continue
        part = _parse_part(token)
        kind = part.adapter.kind
        if kind == "channel":
            if channel is not None or saw_none:
                raise StrategyError(
                    f"malformed strategy {text!r}: two channel parts; give one of "
                    f"{', '.join(list_strategies('channel'))}")
            if spatial is not None:
                raise StrategyError(
                    f"malformed strategy {text!r}: write the channel part first: "
                    f"{part}+{spatial}")
            channel = part
        else:
            if spatial is not None:
                raise StrategyError(
                    f"malformed strategy {text!r}: two spatial parts ({spatial} and {part}); "
                    f"give one of {', '.join(list_strategies('spatial'))}")
            spatial = part
    if spatial is not None and not spatial.adapter.takes_channel and channel is not None:
        raise StrategyError(
            f"bad strategy {text!r}: {spatial} brings its own one-channel stem, so it takes no "
            f"channel part; write {spatial}")
    return Spec(str(channel) if channel else None, str(spatial) if spatial else None)


def parse_spec(spec: str) -> Spec:
    """Parse ``channel+spatial`` (either part optional) or a preset name into a :class:`Spec`.

    Raises :class:`StrategyError` naming the bad part and the valid choices.
    """
    if not isinstance(spec, str):
        raise StrategyError(f"strategy must be a string, got {type(spec).__name__}")
    text = spec.strip().lower()
    if not text:
        raise StrategyError(f"empty strategy; valid: {_valid_parts()}")
    if text in PRESETS:
        parsed = _parse_parts(PRESETS[text])
        return Spec(parsed.channel, parsed.spatial, preset=text)
    return _parse_parts(text)


def canonical(spec: str) -> str:
    """The canonical form of a spec or preset: ``resize224`` -> ``repeat3+resize224``."""
    return str(parse_spec(spec))


def describe(spec: str) -> str:
    """One plain sentence (or two) saying what a strategy does to the model and its input."""
    parsed = parse_spec(spec)
    if parsed.preset is not None:
        expansion = "" if parsed.preset == str(parsed) else f" ({parsed})"
        return f"{parsed.preset}{expansion}: {PRESET_DOCS[parsed.preset]}"
    channel, spatial = parsed.channel_part, parsed.spatial_part
    pieces = [p.adapter.describe(p.value) for p in (channel, spatial) if p]
    if channel is None and (spatial is None or spatial.adapter.takes_channel):
        pieces.insert(0, "Feed the one-channel batch unchanged (RGB models reject it).")
    return f"{parsed}: " + " ".join(pieces)
