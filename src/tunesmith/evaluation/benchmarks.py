"""Readers for the public evaluation sets: SQuAD-style QA, BoolQ and multiple choice."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tunesmith.data.json_keys import key_recorder, repeated_key_reason
from tunesmith.errors import DataError, DataFileNotFound

_BOOLQ_SPLIT = "\nQuestion: "


@dataclass(frozen=True)
class GroundedQA:
    """A question with its source passage and gold answer; `group` names the article."""

    passage: str
    question: str
    answer: str
    group: str
    ref: str


@dataclass(frozen=True)
class MultipleChoice:
    """A multiple-choice question: the prompt text, the options and the gold index."""

    query: str
    choices: list[str]
    gold: int
    ref: str


def _open(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataFileNotFound(f"no such evaluation file: {path}")
    return path


def read_squad(path: str | Path) -> list[GroundedQA]:
    """Every question of a SQuAD v1.1 JSON file, with its paragraph and first gold answer."""
    path = _open(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))["data"]
    except (ValueError, KeyError, TypeError) as err:
        raise DataError(f"{path}: expected SQuAD v1.1 JSON with a 'data' list ({err})") from None
    items = []
    for article in data:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                items.append(GroundedQA(paragraph["context"], qa["question"],
                                        qa["answers"][0]["text"], article["title"],
                                        f"{path.name}:{qa['id']}"))
    return items


def _jsonl(path: Path) -> list[tuple[int, dict]]:
    rows = []
    hook, repeats = key_recorder()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append((number, json.loads(line, object_pairs_hook=hook)))
        except ValueError as err:
            raise DataError(f"{path}:{number}: not valid JSON ({err})") from None
        if repeats:  # a scored benchmark must not drop a value silently
            raise DataError(f"{path}:{number}: {repeated_key_reason(rows[-1][1])}")
    return rows


def read_boolq(path: str | Path) -> list[GroundedQA]:
    """BoolQ rows `{"query": "Passage: ...\\nQuestion: ...", "choices": [no, yes], "gold"}`."""
    path = _open(path)
    items = []
    for number, row in _jsonl(path):
        query = row.get("query", "")
        head, sep, question = query.rpartition(_BOOLQ_SPLIT)  # a passage may hold the marker
        if not sep or not head.startswith("Passage: ") or row.get("gold") not in (0, 1):
            raise DataError(f"{path}:{number}: expected query 'Passage: ...\\nQuestion: ...' "
                            f"and gold 0 or 1")
        passage = head.removeprefix("Passage: ")
        items.append(GroundedQA(passage, question.strip().rstrip("?") + "?",
                                row["choices"][row["gold"]], f"boolq-{number}",
                                f"{path.name}:{number}"))
    return items


def read_multiple_choice(path: str | Path) -> list[MultipleChoice]:
    """Rows `{"query": str, "choices": [str, ...], "gold": int}` (ARC in the gauntlet layout)."""
    path = _open(path)
    items = []
    for number, row in _jsonl(path):
        choices, gold = row.get("choices"), row.get("gold")
        if (not isinstance(row.get("query"), str) or not isinstance(choices, list)
                or not isinstance(gold, int) or not 0 <= gold < len(choices)):
            raise DataError(f"{path}:{number}: expected query (string), choices (list) and "
                            f"gold (an index into choices)")
        items.append(MultipleChoice(row["query"], [str(c) for c in choices], gold,
                                    f"{path.name}:{number}"))
    return items
