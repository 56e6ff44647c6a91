"""Normalise rows for an audit: conversation or reject, label, and the fields handled.

Unlike training, the audit keeps rejected rows beside the good ones so each check can name
rows by number, and it notes the per-message fields it handled or ignored.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.data.readers import RawRow, read_rows
from tunesmith.data.records import Conversation, Reject
from tunesmith.data.shapes import RowMapping, RowProblem, detect_shape, to_conversation

logger = logging.getLogger(__name__)

TEXT_COLUMNS = ("text", "sentence", "utterance", "query", "question")
LABEL_COLUMNS = ("label", "category", "intent", "class")
MESSAGE_KEYS = {"role", "content", "from", "value"}
HANDLED_KEYS = {"weight": "weight (0 masks the turn, 1 trains it)",
                "tool_calls": "tool_calls (trained as their JSON text)",
                "function_call": "function_call (trained as its JSON text)"}
TOOLS_NOTE = "row.tools (function schemas shown to the model)"
SHAPE_KEYS = {"messages", "conversations", "instruction", "input", "output", "system",
              "history", "prompt", "completion", "response", "text"}
_NON_WORD = re.compile(r"[\W_]+")


@dataclass
class FieldNotes:
    """Per-message fields handled or ignored, and the label column of a labelled table."""

    handled_fields: Counter = field(default_factory=Counter)
    ignored_fields: Counter = field(default_factory=Counter)
    label_field: str | None = None


def infer_label_mapping(row: dict[str, Any]) -> RowMapping | None:
    """Return a text-to-label mapping for a two-column table such as `text,category`."""
    keys = [k for k in row if k not in ("id", "idx")]
    text = [k for k in keys if k.lower() in TEXT_COLUMNS]
    label = [k for k in keys if k.lower() in LABEL_COLUMNS]
    if len(keys) != 2 or len(text) != 1 or len(label) != 1:
        return None
    return RowMapping(user=f"{{{text[0]}}}", assistant=f"{{{label[0]}}}", fields=[label[0]])


def _first_row_mapping(value: dict[str, Any], result: FieldNotes) -> RowMapping | None:
    try:
        detect_shape(value)
        return None
    except RowProblem:
        mapping = infer_label_mapping(value)
    if mapping is not None:
        result.label_field = mapping.fields[0]
        logger.info("labelled table: %s -> %s", mapping.user, mapping.assistant)
    return mapping


def _note_fields(value: dict[str, Any], shape: str, result: FieldNotes) -> None:
    """Count per-message fields that were handled, and any field the normaliser ignores."""
    if shape == "mapped":
        return
    for key in value:
        if key == "tools" and shape in ("messages", "sharegpt"):
            result.handled_fields[TOOLS_NOTE] += 1
        elif key not in SHAPE_KEYS:
            result.ignored_fields[f"row.{key}"] += 1
    items = value.get("messages") or value.get("conversations") or []
    for item in items if isinstance(items, list) else []:
        for key in item if isinstance(item, dict) else ():
            if key in HANDLED_KEYS:
                result.handled_fields[HANDLED_KEYS[key]] += 1
            elif key not in MESSAGE_KEYS:
                result.ignored_fields[f"message.{key}"] += 1


def normalise_text(text: str) -> str:
    """Fold case, width and punctuation so trivially different copies compare equal."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_NON_WORD.sub(" ", folded).split())


def prompt_text(conv: Conversation) -> str:
    """The turns before the last trained answer, one per line, without system messages.

    System prompts are usually shared boilerplate; left in, a long one makes every prompt
    look alike to the near-duplicate and contradiction checks.
    """
    last = _last_answer(conv)
    return "\n".join(m.content for m in conv.messages[:last] if m.role != "system")


def answer_text(conv: Conversation) -> str:
    """The last trained assistant answer."""
    return conv.messages[_last_answer(conv)].content


def full_text(conv: Conversation) -> str:
    """All turns of the conversation, one per line."""
    return "\n".join(m.content for m in conv.messages)


def _last_answer(conv: Conversation) -> int:
    for index in range(len(conv.messages) - 1, -1, -1):
        msg = conv.messages[index]
        if msg.role == "assistant" and msg.weight:
            return index
    return len(conv.messages) - 1


class RowNormaliser:
    """Turn a raw row into (conversation, reject, info).

    info holds the row's label (labelled tables), shape name and per-message field notes.
    Rejects carry no row content: a report needs only where and why.
    """

    def __init__(self, shape: str, mapping: RowMapping | None, label_field: str | None,
                 transform: Callable[[Any], tuple[Any, list[str]]] | None = None) -> None:
        self.shape, self.mapping, self.label_field = shape, mapping, label_field
        self.transform = transform

    def __call__(self, raw: RawRow) -> tuple[Conversation | None, Reject | None, dict]:
        if raw.value is None:
            return None, Reject(raw.ref, "BrokenRow", raw.error or "unreadable row"), {}
        value, cleaned = raw.value, False
        try:
            conv = to_conversation(value, raw.ref, self.shape, self.mapping)
            if self.transform:  # the raw row must be valid too: cleaning never rescues one
                value, cleaned = self.transform(value)[0], True
                conv = to_conversation(value, raw.ref, self.shape, self.mapping)
        except RowProblem as problem:
            reason = f"after cleaning: {problem.reason}" if cleaned else problem.reason
            return None, Reject(raw.ref, problem.rule, reason, problem.field), {}
        mapped = self.mapping is not None and bool(self.mapping.user)
        name = "mapped" if mapped else (self.shape if self.shape != "auto"
                                        else detect_shape(value))
        notes = FieldNotes()
        _note_fields(value, name, notes)
        info = {"shape": name, "handled": notes.handled_fields,
                "ignored": notes.ignored_fields}
        if self.label_field:
            info["label"] = str(value.get(self.label_field, "")).strip()
        return conv, None, info


def first_row_mapping(paths: Iterable[str | Path], shape: str,
                      mapping: RowMapping | None) -> tuple[RowMapping | None, str | None]:
    """The mapping and label field to use: given, or inferred from a two-column table."""
    if mapping is not None:
        return mapping, mapping.fields[0] if mapping.fields else None
    if shape != "auto":
        return None, None
    for path in paths:
        first = next(read_rows(path), None)
        if first is None or first.value is None:
            return None, None
        found = FieldNotes()
        inferred = _first_row_mapping(first.value, found)
        return inferred, found.label_field
    return None, None
