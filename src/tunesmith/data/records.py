"""Plain records handed between rooms: messages, conversations and rejected rows."""

from __future__ import annotations

import functools
import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant", "tool")


@dataclass(frozen=True)
class RowRef:
    """Where a row came from: file, 1-based line (JSONL/CSV) or item (JSON/Parquet) number."""

    source: str
    line: int
    unit: str = "line"

    def __str__(self) -> str:
        return f"{self.source}:{self.unit} {self.line}" if self.unit != "line" else (
            f"{self.source}:{self.line}"
        )


@dataclass(frozen=True)
class Message:
    """One chat turn. `weight` 0 keeps an assistant turn in the prompt but out of the loss."""

    role: str
    content: str
    weight: int = 1


@dataclass
class Conversation:
    """A normalised example: ordered messages plus where it came from.

    `tools` holds the function schemas the model may call, in OpenAI form
    (`{"type": "function", "function": {"name", "description", "parameters"}}`), or None.
    """

    messages: list[Message]
    ref: RowRef
    meta: dict[str, Any] = field(default_factory=dict)
    tools: list[dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        msgs = []
        for m in self.messages:
            item: dict[str, Any] = {"role": m.role, "content": m.content}
            if m.weight != 1:
                item["weight"] = m.weight
            msgs.append(item)
        return {"messages": msgs, "tools": self.tools} if self.tools else {"messages": msgs}

    @property
    def trained_turns(self) -> int:
        return sum(1 for m in self.messages if m.role == "assistant" and m.weight)


@dataclass
class Reject:
    """A row that was dropped, with the rule that dropped it and the original content.

    Rows dropped after normalising (e.g. too long once tokenized) hold the normalised
    messages in `row` (row_form "messages") and the file's own row in `original`; the
    rejects file names them `normalised` and `original` (see `rejects_entry`).
    """

    ref: RowRef
    rule: str
    reason: str
    field: str | None = None
    row: Any = None
    row_form: str = "original"
    original: Any = None

    def describe(self) -> str:
        where = f"{self.ref}" + (f" field {self.field}" if self.field else "")
        return f"{where}: {self.reason}"

    def to_json(self) -> str:
        """One rejects.jsonl line, in the structure `data clean` writes too (see
        `rejects_entry`); rows dropped after normalising add their `normalised` messages."""
        original = self.row if self.row_form == "original" else self.original
        entry = rejects_entry(self.ref, "dropped", self.rule, self.reason, self.field, original)
        if self.row_form != "original":
            entry["normalised"] = self.row
        return dumps_strict(entry, ensure_ascii=False, default=str)


def json_kind(value: Any) -> str:
    """What a decoded JSON value is, in JSON's words: null, a boolean, a number, ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"  # from Parquet or Arrow: a date, bytes, ...


def rejects_entry(ref: RowRef, action: str, rule: str, reason: str, field_name: str | None,
                  original: Any) -> dict[str, Any]:
    """A rejects.jsonl entry, alike for training runs and `data clean`: where the row is
    (`ref`: source and line or item), what happened (`action`: dropped or changed), why
    (`rule`, `reason`, `field`) and the file's own row (`original`)."""
    return {"ref": {"source": ref.source, ref.unit: ref.line}, "action": action, "rule": rule,
            "reason": reason, "field": field_name, "original": original}


def dumps_strict(value: Any, **options: Any) -> str:
    """json.dumps that writes only standard JSON: a NaN or infinite float becomes null (with a
    warning), since strict parsers reject Python's bare NaN and Infinity."""
    try:
        return json.dumps(value, allow_nan=False, **options)
    except ValueError:
        pass
    _warn_nulls()
    return json.dumps(_finite(value), allow_nan=False, **options)


@functools.cache
def _warn_nulls() -> None:
    logger.warning("NaN or infinite values are written as null in JSON output (JSON has no NaN)")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
