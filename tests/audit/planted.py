"""A generated chat file with planted faults, and the line numbers of every planted one."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

SENSITIVE = {
    "EMAIL": "You can write to maria.lopez@example.org about it.",
    "PHONE": "Call the desk on +1 415 555 0132 tomorrow.",
    "CARD": "The card on file is 4539 1488 0343 6467 for this order.",
    "IBAN": "Send it to DE89 3704 0044 0532 0130 00 please.",
    "NATIONAL_ID": "His social security number is 536-22-8714 on the form.",
    "IP": "The server answers on 10.20.30.40 inside the office.",
    "API_KEY": "Use the key sk-proj-Q3v9TtW2xLm8Rk4Hs7Yp1Bn6 for it.",
    "SECRET": "The token is kJ8s9Qw2Lm4Zx7Vb3Nc6Pq1Rt5Yh0Gd for the job.",
}
NOT_SENSITIVE = [
    "Order 4539 1488 0343 6468 failed its check digit and is not a card.",
    "The meeting is on 2024-03-15 at 10:30 in room 12.",
    "Version 3.11 ships with 120 fixes across 45 modules.",
]


@dataclass
class Planted:
    """Where each planted fault is, by 1-based line number."""

    path: Path
    exact: set[int] = field(default_factory=set)
    near: set[int] = field(default_factory=set)
    contradictions: set[frozenset[int]] = field(default_factory=set)
    sensitive: dict[str, set[int]] = field(default_factory=dict)
    empty: set[int] = field(default_factory=set)
    long: set[int] = field(default_factory=set)
    rows: int = 0


def _sentence(rng: random.Random, vocab: list[str], n: int) -> str:
    return " ".join(rng.choice(vocab) for _ in range(n)).capitalize() + "."


def _row(prompt: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": prompt},
                         {"role": "assistant", "content": answer}]}


def write_planted(path: Path, seed: int = 0, clean_rows: int = 60) -> Planted:
    """Write the file: clean rows first, then each kind of fault."""
    rng = random.Random(seed)
    vocab = sorted({"".join(rng.choice("bcdfghklmnprstvz") + rng.choice("aeiou")
                            for _ in range(3)) for _ in range(3000)})
    rows = [_row(_sentence(rng, vocab, 12), _sentence(rng, vocab, 15))
            for _ in range(clean_rows)]
    planted = Planted(path)

    def add(row: dict) -> int:
        rows.append(row)
        return len(rows)

    for source in (0, 1, 2):  # exact copies after case and spacing changes
        msgs = rows[source]["messages"]
        planted.exact.add(add(_row("  " + msgs[0]["content"].upper(), msgs[1]["content"])))
    for source in (3, 4, 5):  # near copies: last answer word replaced
        msgs = rows[source]["messages"]
        words = msgs[1]["content"].split()
        words[-1] = "zzzqqq."
        planted.near.add(add(_row(msgs[0]["content"], " ".join(words))))
    for _ in range(3):  # the same prompt with two unrelated answers
        prompt = _sentence(rng, vocab, 12)
        a = add(_row(prompt, _sentence(rng, vocab, 15)))
        b = add(_row(prompt, _sentence(rng, vocab, 15)))
        planted.contradictions.add(frozenset({a, b}))
    for kind, text in SENSITIVE.items():
        planted.sensitive[kind] = {add(_row(_sentence(rng, vocab, 10), text))}
    for text in NOT_SENSITIVE:
        add(_row(_sentence(rng, vocab, 10), text))
    planted.empty = {add(_row(_sentence(rng, vocab, 10), "")),
                     add(_row(_sentence(rng, vocab, 10), "  \n "))}
    planted.long = {add(_row(_sentence(rng, vocab, 10), _sentence(rng, vocab, 400)))
                    for _ in range(2)}
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    planted.rows = len(rows)
    return planted


def lines_of(refs: list[str]) -> set[int]:
    """Line numbers from `file:line` row references."""
    return {int(ref.rsplit(":", 1)[1]) for ref in refs}
