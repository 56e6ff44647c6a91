"""Write the configuration reference (docs/config.md) from the schema's field metadata.

Run `python -m tunesmith.config.reference > docs/config.md` after changing the schema.
"""

from __future__ import annotations

import dataclasses
import typing

from tunesmith.config.schema import RunConfig


def reference() -> str:
    """Markdown tables, one per config section, generated from the schema."""
    lines = ["# Configuration reference", "",
             "Generated from `tunesmith/config/schema.py`; every key can be overridden on the "
             "command line as `section.key=value`.", ""]
    hints = typing.get_type_hints(RunConfig)
    top = [f for f in dataclasses.fields(RunConfig) if not dataclasses.is_dataclass(hints[f.name])]
    sections = [f for f in dataclasses.fields(RunConfig) if dataclasses.is_dataclass(
        hints[f.name])]
    lines += _table("top level", top, RunConfig())
    for section in sections:
        cls = hints[section.name]
        lines += _table(f"`{section.name}`", dataclasses.fields(cls), cls())
    return "\n".join(lines).rstrip() + "\n"


def _table(title: str, fields: typing.Iterable[dataclasses.Field], instance: object) -> list[str]:
    rows = [f"## {title}", "", "| key | default | meaning |", "|---|---|---|"]
    for f in fields:
        meaning = f.metadata.get("help", "")
        if f.metadata.get("choices"):
            meaning += f" (one of {', '.join(map(str, f.metadata['choices']))})"
        bounds = [f"{word} {f.metadata[key]}" for key, word in (("minimum", ">="),
                  ("maximum", "<=")) if f.metadata.get(key) is not None]
        if bounds:
            meaning += f" ({', '.join(bounds)})"
        default = getattr(instance, f.name)
        rows.append(f"| `{f.name}` | `{default!r}` | {meaning} |")
    return [*rows, ""]


if __name__ == "__main__":
    print(reference(), end="")
