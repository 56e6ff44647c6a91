"""Plain records handed between rooms: messages, conversations and rejected rows."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

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
    """A normalised example: ordered messages plus where it came from."""

    messages: list[Message]
    ref: RowRef
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        msgs = []
        for m in self.messages:
            item: dict[str, Any] = {"role": m.role, "content": m.content}
            if m.weight != 1:
                item["weight"] = m.weight
            msgs.append(item)
        return {"messages": msgs}

    @property
    def trained_turns(self) -> int:
        return sum(1 for m in self.messages if m.role == "assistant" and m.weight)


@dataclass
class Reject:
    """A row that was dropped, with the rule that dropped it and the original content.

    Rows dropped after normalising (e.g. too long once tokenized) hold the normalised
    messages in `row` (row_form "messages") and the file's own row in `original`.
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
        payload = asdict(self)
        payload["ref"] = {"source": self.ref.source, self.ref.unit: self.ref.line}
        if self.row_form == "original":
            del payload["row_form"], payload["original"]
        return json.dumps(payload, ensure_ascii=False, default=str)
