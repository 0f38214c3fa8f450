"""Every ``--set`` key with its type, default and one-line meaning, read from :class:`Config`.

The meaning of a key is the comment the config's own table gives it (``bench/config.py``): its
trailing comment, or else the first sentence of the comment block directly above it (a block
covers the keys that follow it up to the first key with a comment of its own). Nothing is
written twice, so the help cannot drift from the table.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass

from bench import config as config_mod

_FIELD = re.compile(r"^    (\w+): [^=]+= (.*?)(?:\s+#\s?(.*))?$")
# A sentence ends at a full stop followed by a capital (not "e.g. x" or "1.5").
_SENTENCE_END = re.compile(r"\.(?=\s+[A-Z\"`]|$)")


@dataclass(frozen=True)
class KeyDoc:
    """One config key as ``bench list keys`` prints it."""

    key: str
    table: str  # grid | recipe | data | measure
    type: str  # e.g. "int", "list of str", "bool | auto", "one of sgd, adamw"
    default: str  # as it would be written after --set key=
    meaning: str


def _first_sentence(text: str) -> str:
    match = _SENTENCE_END.search(text)
    return text[: match.start() + 1] if match else text


def _meanings() -> dict[str, str]:
    """key -> meaning, from the comments of the Config class body."""
    lines, _ = inspect.getsourcelines(config_mod.Config)
    out: dict[str, str] = {}
    block: list[str] = []
    after_field = False  # a comment after a key starts the next key's block
    for line in lines:
        text = line.strip()
        if not text or text.startswith("# --") or text.startswith("def "):
            block, after_field = [], False
            continue
        if text.startswith("#"):
            if after_field:
                block, after_field = [], False
            block.append(text.lstrip("#").strip())
            continue
        match = _FIELD.match(line.rstrip())
        if not match:
            continue
        after_field = True
        key, _, trailing = match.groups()
        if trailing:
            out[key] = trailing.strip()
            block = []  # the block above speaks of the keys before this one
        elif block:
            out[key] = _first_sentence(" ".join(block))
    return out


def _type(key: str, default: object) -> str:
    choices = config_mod._CHOICES.get(key)
    if choices:
        return "one of " + ", ".join(str(c).lower() for c in choices)
    if isinstance(default, tuple):
        return "list of " + ("int" if key == "seeds" else "str") + " (comma-separated)"
    return type(default).__name__


def _default(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value) or '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    return '""' if value == "" else str(value)


def key_docs() -> list[KeyDoc]:
    """Every config key, table by table in the order the profiles write them."""
    meanings = _meanings()
    defaults = config_mod.Config().to_dict()
    return [KeyDoc(key, table, _type(key, getattr(config_mod.Config(), key)),
                   _default(getattr(config_mod.Config(), key)), meanings.get(key, ""))
            for table, keys in config_mod._SECTION_KEYS.items() for key in keys
            if key in defaults]


def keys_by_table(width: int = 96) -> str:
    """The key names table by table, wrapped to ``width`` characters (for ``run --help``)."""
    import textwrap

    return "\n".join(textwrap.fill(", ".join(keys), width=width, initial_indent=f"  [{table}] ",
                                   subsequent_indent="    ")
                     for table, keys in config_mod._SECTION_KEYS.items())
