"""Row quality notes that are legal but suspicious: repetitive answers, mixed system usage."""

from __future__ import annotations

import re

REPEAT_MIN_WORDS = 50
# a template slot left unfilled: {{name}}, {{ user.name }} (Jinja/Mustache style)
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][\w.]*)\s*\}\}")
REPEAT_DISTINCT_SHARE = 0.2


def repetitive(text: str) -> bool:
    """True when a long text is mostly the same few word triples over and over."""
    words = text.split()
    if len(words) < REPEAT_MIN_WORDS:
        return False
    triples = list(zip(words, words[1:], words[2:], strict=False))
    return len(set(triples)) / len(triples) < REPEAT_DISTINCT_SHARE


def placeholders(text: str) -> list[str]:
    """The unfilled template slots of a text, as written: ['{{name}}', '{{author}}']."""
    return sorted({f"{{{{{name}}}}}" for name in _PLACEHOLDER.findall(text)})
