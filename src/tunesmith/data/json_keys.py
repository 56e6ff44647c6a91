"""Find keys a JSON object repeats: Python's json module keeps the last value of a repeated
key and drops the others without a word, so a row holding one is rejected instead.

`key_recorder` gives an `object_pairs_hook` that notes such objects while a decoder runs;
only when it noted one is the parsed value walked to name the key's path, so rows without
repeats pay one dict() per object and nothing more.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

Pairs = list[tuple[str, Any]]


class RepeatedKeys(dict):
    """An object whose text repeats a key: the last values as a dict, every pair in `pairs`."""

    def __init__(self, pairs: Pairs) -> None:
        super().__init__(pairs)
        self.pairs = pairs
        self.key = _first_repeat(pairs)
        self.count = sum(1 for key, _ in pairs if key == self.key)


def _first_repeat(pairs: Pairs) -> str:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            return key
        seen.add(key)
    raise ValueError("no key is repeated")


def key_recorder() -> tuple[Callable[[Pairs], dict[str, Any]], list[RepeatedKeys]]:
    """An object_pairs_hook for json, and the list where it puts each object repeating a key.

    Clear the list before each row; a non-empty list means the row holds a repeated key.
    """
    found: list[RepeatedKeys] = []

    def hook(pairs: Pairs) -> dict[str, Any]:
        value = dict(pairs)
        if len(value) == len(pairs):
            return value
        repeated = RepeatedKeys(pairs)
        found.append(repeated)
        return repeated

    return hook, found


def first_reason(value: Any, reason: Callable[[Any, str], str | None],
                 where: str = "") -> str | None:
    """The first `reason(part, path)` that is not None, over `value` and every part inside
    it, depth first; paths read like `messages[2].content`."""
    found = reason(value, where)
    if found:
        return found
    items = (value.items() if isinstance(value, dict) else enumerate(value)
             if isinstance(value, list) else ())
    for key, item in items:
        inner = f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}" if where else key
        found = first_reason(item, reason, inner)
        if found:
            return found
    return None


def repeated_key_reason(value: Any, where: str = "") -> str | None:
    """Why a parsed row must be rejected for a repeated key (naming its path), or None."""
    return first_reason(value, _repeated, where)


def _repeated(value: Any, where: str) -> str | None:
    if not isinstance(value, RepeatedKeys):
        return None
    path = f"{where}.{value.key}" if where else value.key
    return (f"duplicate key {path}: given {value.count} times in one object; JSON "
            "readers keep only the last value and silently drop the others; keep one value")


def dumps_with_repeats(value: Any, default: Callable[[Any], Any] | None = None) -> str:
    """The value as JSON text with every repeated key written again, so a rejected row
    keeps all its values (json.dumps would write the last one only)."""
    if isinstance(value, dict):
        pairs = value.pairs if isinstance(value, RepeatedKeys) else value.items()
        inner = (f"{json.dumps(key, ensure_ascii=False)}: {dumps_with_repeats(item, default)}"
                 for key, item in pairs)
        return "{" + ", ".join(inner) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(dumps_with_repeats(item, default) for item in value) + "]"
    return json.dumps(value, ensure_ascii=False, default=default)
