"""Row quality notes that are legal but suspicious: repetitive answers, mixed system usage."""

from __future__ import annotations

from collections.abc import Sequence

from tunesmith.data.records import Conversation

REPEAT_MIN_WORDS = 50
REPEAT_DISTINCT_SHARE = 0.2


def repetitive(text: str) -> bool:
    """True when a long text is mostly the same few word triples over and over."""
    words = text.split()
    if len(words) < REPEAT_MIN_WORDS:
        return False
    triples = list(zip(words, words[1:], words[2:], strict=False))
    return len(set(triples)) / len(triples) < REPEAT_DISTINCT_SHARE


def quality_notes(convs: Sequence[Conversation], refs: Sequence[str], limit: int = 50) -> dict:
    """Rows with repetitive answers, and rows missing a system message most rows have."""
    with_system = [any(m.role == "system" for m in c.messages) for c in convs]
    share = sum(with_system) / len(convs) if convs else 0.0
    missing = [refs[i] for i, has in enumerate(with_system) if not has] if share >= 0.5 else []
    repeats = [refs[i] for i, c in enumerate(convs)
               if any(m.role == "assistant" and repetitive(m.content) for m in c.messages)]
    return {
        "repetitive_answers": len(repeats),
        "repetitive_answer_rows": repeats[:limit],
        "system_message_share": round(share, 4),
        "missing_system_message": len(missing),
        "missing_system_message_rows": missing[:limit],
    }
