"""Per-row extras of the audit scan (quality flags, word counts, sensitive findings) and
their merge into whole-side totals; everything kept is bounded per row or by vocabulary."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tunesmith.data.checks import sensitive
from tunesmith.data.checks.duplicates import word_hashes
from tunesmith.data.checks.features import Chunk, Texts
from tunesmith.data.checks.quality import placeholders, repetitive
from tunesmith.data.checks.rows import full_text
from tunesmith.data.records import Conversation

LIST_LIMIT = 50
PAIR_MERGE_EVERY = 64  # chunks between folding distinct word-pair hashes together
# distinct word pairs are counted exactly up to this many, then estimated from the smallest
# PAIR_SKETCH hashes (k-minimum values; relative error about 1/sqrt(PAIR_SKETCH) = 0.1%)
PAIR_SKETCH = 1 << 20

_PAIR_MIX = np.uint64(0x9E3779B97F4A7C15)  # word-pair hash: h(a) * mix + h(b), mod 2**64



def _spread(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: uniform 64-bit hashes, which the k-minimum estimate needs."""
    values = values ^ (values >> np.uint64(30))
    values = values * np.uint64(0xBF58476D1CE4E5B9)
    values = values ^ (values >> np.uint64(27))
    values = values * np.uint64(0x94D049BB133111EB)
    return values ^ (values >> np.uint64(31))


Finder = Callable[[str], list[sensitive.Finding]]


def row_extras(finder: Finder) -> Callable[[Conversation, Texts, dict, dict], None]:
    """A row hook that records the audit's per-row extras into the chunk's `extra`."""

    def hook(conv: Conversation, texts: Texts, info: dict, extra: dict) -> None:
        local = len(extra.setdefault("has_system", []))
        extra["has_system"].append(any(m.role == "system" for m in conv.messages))
        extra.setdefault("repetitive", []).append(any(
            m.role == "assistant" and repetitive(m.content) for m in conv.messages))
        words = texts.key.split()
        extra.setdefault("key_words", []).append(len(words))
        extra.setdefault("answer_words", []).append(len(texts.answer.split()))
        extra.setdefault("vocab", Counter()).update(words)
        hashes = word_hashes(texts.key)
        extra.setdefault("pairs", []).append(_spread(hashes[:-1] * _PAIR_MIX + hashes[1:]))
        extra["pair_total"] = extra.get("pair_total", 0) + max(0, len(words) - 1)
        for name in ("shape",):
            extra.setdefault("shapes", Counter())[info.get(name)] += 1
        extra.setdefault("handled", Counter()).update(info.get("handled", {}))
        extra.setdefault("ignored", Counter()).update(info.get("ignored", {}))
        if "tokens" in info:
            extra.setdefault("tokens", []).append(info["tokens"])
        text = full_text(conv)
        slots = placeholders(text)
        extra.setdefault("placeholder_rows", []).append(bool(slots))
        extra.setdefault("placeholders", Counter()).update(slots)
        found = finder(text)
        if found:
            extra.setdefault("sensitive", []).append(
                (local, [(f.kind, sensitive.mask(text[f.start:f.end])) for f in found]))

    return hook


@dataclass
class Extras:
    """Whole-side totals of the per-row extras."""

    has_system: list[np.ndarray] = field(default_factory=list)
    repetitive: list[np.ndarray] = field(default_factory=list)
    placeholder_rows: list[np.ndarray] = field(default_factory=list)
    placeholders: Counter = field(default_factory=Counter)
    key_words: list[np.ndarray] = field(default_factory=list)
    tokens: list[np.ndarray] = field(default_factory=list)
    answer_words: int = 0
    vocab: Counter = field(default_factory=Counter)
    pairs: list[np.ndarray] = field(default_factory=list)
    pair_total: int = 0
    shapes: Counter = field(default_factory=Counter)
    handled: Counter = field(default_factory=Counter)
    ignored: Counter = field(default_factory=Counter)
    sensitive: list[tuple[int, list[tuple[str, str]]]] = field(default_factory=list)
    sensitive_kinds: Counter = field(default_factory=Counter)
    sensitive_by_kind: dict[str, list[int]] = field(default_factory=dict)
    sensitive_rows: int = 0
    usable: int = 0
    chunks: int = 0

    def merge(self, chunk: Chunk) -> None:
        """Fold one chunk's extras in (positions become side-wide)."""
        extra, offset = chunk.extra, self.usable
        self.usable += len(chunk.positions)
        self.chunks += 1
        for name, dtype in (("has_system", np.bool_), ("repetitive", np.bool_),
                            ("placeholder_rows", np.bool_), ("key_words", np.int32)):
            getattr(self, name).append(np.array(extra.get(name, []), dtype=dtype))
        if extra.get("tokens"):
            self.tokens.append(np.array(extra["tokens"], dtype=np.int64).reshape(-1, 3))
        self.answer_words += sum(extra.get("answer_words", []))
        for name in ("vocab", "shapes", "handled", "ignored", "placeholders"):
            getattr(self, name).update(extra.get(name, Counter()))
        pairs = extra.get("pairs", [])
        self.pairs.append(np.unique(np.concatenate(pairs)) if pairs else np.zeros(0, np.uint64))
        self.pair_total += extra.get("pair_total", 0)
        if self.chunks % PAIR_MERGE_EVERY == 0:
            self.pairs = [self._smallest_pairs()]
        self._merge_sensitive(extra.get("sensitive", []), offset)

    def _merge_sensitive(self, found: list, offset: int) -> None:
        for local, items in found:
            self.sensitive_rows += 1
            self.sensitive_kinds.update(kind for kind, _ in items)
            for kind, _ in items:
                listed = self.sensitive_by_kind.setdefault(kind, [])
                if len(listed) < LIST_LIMIT:
                    listed.append(offset + local)
            if len(self.sensitive) < LIST_LIMIT:
                self.sensitive.append((offset + local, items))

    def column(self, name: str) -> np.ndarray:
        parts = getattr(self, name)
        return np.concatenate(parts) if parts else np.zeros(0, np.int32)

    def _smallest_pairs(self) -> np.ndarray:
        return np.unique(np.concatenate(self.pairs))[:PAIR_SKETCH] if self.pairs else (
            np.zeros(0, np.uint64))

    def distinct_pairs(self) -> tuple[int, bool]:
        """Distinct word pairs, and whether the count is an estimate."""
        kept = self._smallest_pairs()
        if len(kept) < PAIR_SKETCH:
            return len(kept), False
        return round((PAIR_SKETCH - 1) * 2.0**64 / (float(kept[-1]) + 1.0)), True


def sensitive_section(extras: Extras, refs: Any) -> dict:
    """Counts per kind, rows per kind (listed up to LIST_LIMIT) and masked examples."""
    examples = [{"row": refs[position], "found": [{"kind": kind, "value": value}
                                                  for kind, value in items]}
                for position, items in extras.sensitive]
    return {"rows": extras.sensitive_rows, "counts": dict(extras.sensitive_kinds.most_common()),
            "rows_by_kind": {kind: [refs[p] for p in rows]
                             for kind, rows in extras.sensitive_by_kind.items()},
            "examples": examples}


def quality_section(extras: Extras, refs: Any, limit: int = LIST_LIMIT) -> dict:
    """Rows with repetitive answers or unfilled template slots ({{name}}), and rows missing
    a system message most rows have."""
    with_system = extras.column("has_system").astype(bool)
    share = float(with_system.mean()) if len(with_system) else 0.0
    missing = np.flatnonzero(~with_system) if share >= 0.5 else np.zeros(0, int)
    repeats = np.flatnonzero(extras.column("repetitive").astype(bool))
    slots = np.flatnonzero(extras.column("placeholder_rows").astype(bool))
    return {
        "repetitive_answers": len(repeats),
        "repetitive_answer_rows": [refs[int(i)] for i in repeats[:limit]],
        "unfilled_placeholders": len(slots),
        "unfilled_placeholder_rows": [refs[int(i)] for i in slots[:limit]],
        "placeholder_counts": dict(extras.placeholders.most_common(10)),
        "system_message_share": round(share, 4),
        "missing_system_message": len(missing),
        "missing_system_message_rows": [refs[int(i)] for i in missing[:limit]],
    }
