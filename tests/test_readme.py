"""The README's column glossary is generated from the results schema, so it cannot drift."""

from __future__ import annotations

from pathlib import Path

from bench import schema

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_glossary_is_the_schemas() -> None:
    text = README.read_text()
    assert schema.GLOSSARY_BEGIN in text and schema.GLOSSARY_END in text
    assert schema.fill_glossary(text) == text, (
        "README glossary is stale: run `python -m bench.schema --write README.md`")
    for kind, columns in schema.COLUMNS.items():
        for name in columns:
            assert f"| `{name}` |" in text, (kind, name)
