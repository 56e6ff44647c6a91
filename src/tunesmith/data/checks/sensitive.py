"""Sensitive data: e-mail addresses, phone numbers, payment cards, IBANs, national IDs, IPs,
API keys and other secrets, found by pattern and confirmed by checksum or entropy."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

KINDS = ("PRIVATE_KEY", "API_KEY", "CARD", "IBAN", "NATIONAL_ID", "EMAIL", "IP", "PHONE",
         "SECRET")


@dataclass(frozen=True)
class Finding:
    """One sensitive span: its kind and character offsets in the text."""

    kind: str
    start: int
    end: int


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum used by payment card numbers."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def iban_valid(text: str) -> bool:
    """The ISO 13616 mod-97 check of an IBAN (spaces ignored)."""
    compact = text.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def shannon_entropy(text: str) -> float:
    """Bits per character of the text's own character distribution."""
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def _card(match: re.Match) -> bool:
    digits = re.sub(r"\D", "", match.group())
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn_valid(digits)


def _phone(match: re.Match) -> bool:
    return 9 <= sum(c.isdigit() for c in match.group()) <= 15


def _secret(match: re.Match) -> bool:
    token = match.group()
    if not (any(c.isdigit() for c in token) and any(c.isalpha() for c in token)):
        return False
    if any(len(part) >= 5 and part.isalpha() and (part.islower() or part.istitle())
           for part in re.split(r"[/_+.-]", token)):
        return False  # a URL path or file name: words between separators, not random text
    if match.string[max(0, match.start() - 7) : match.start()] == "base64,":
        return False  # inline data (an image in a data: URI), not a credential
    if re.fullmatch(r"[0-9a-fA-F]+", token):
        return len(token) >= 32 and shannon_entropy(token) >= 3.0
    return shannon_entropy(token) >= 4.0


_KEY_PREFIXES = (
    r"sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}", r"(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}",
    r"AKIA[0-9A-Z]{16}", r"gh[pousr]_[A-Za-z0-9]{36,}", r"github_pat_[A-Za-z0-9_]{22,}",
    r"xox[abprs]-[A-Za-z0-9-]{10,}", r"AIza[0-9A-Za-z_-]{35}", r"glpat-[A-Za-z0-9_-]{20,}",
    r"hf_[A-Za-z0-9]{30,}", r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}",
)
_DIGIT = re.compile(r"\d")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"

# (kind, pattern, cheap precondition on the text, confirmation of a match)
PATTERNS: list[tuple[str, re.Pattern, Callable[[str], bool], Callable[[re.Match], bool]]] = [
    ("PRIVATE_KEY", re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----[\s\S]*?"
                               r"(?:-----END (?:[A-Z]+ )?PRIVATE KEY-----|$)"),
     lambda t: "PRIVATE KEY" in t, lambda m: True),
    ("API_KEY", re.compile(r"(?<![A-Za-z0-9])(?:" + "|".join(_KEY_PREFIXES) + ")"),
     lambda t: True, lambda m: True),
    ("CARD", re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])"),
     lambda t: True, _card),
    ("IBAN", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"),
     lambda t: True, lambda m: iban_valid(m.group())),
    ("NATIONAL_ID", re.compile(
        r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b"  # US social security number
        r"|\b[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b"),  # UK NINO
     lambda t: True, lambda m: True),
    ("EMAIL", re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
     lambda t: "@" in t, lambda m: True),
    ("IP", re.compile(rf"(?<![\d.])(?:{_OCTET}\.){{3}}{_OCTET}(?![\d.])"
                      r"|(?<![\w:])(?:[0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}(?![\w:])"),
     lambda t: "." in t or ":" in t, lambda m: True),
    ("PHONE", re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?"
                         r"\d{2,4}(?:[ .-]\d{2,4}){1,4}(?![\w-])"),
     lambda t: True, _phone),
    ("SECRET", re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{24,}={0,2}"),
     lambda t: True, _secret),
]


def find_sensitive(text: str) -> list[Finding]:
    """Non-overlapping findings in text order; earlier kinds in KINDS win overlaps."""
    if "@" not in text and "PRIVATE KEY" not in text and not _DIGIT.search(text):
        return []
    taken: list[Finding] = []
    for kind, pattern, worth, confirm in PATTERNS:
        if not worth(text):
            continue
        for match in pattern.finditer(text):
            span = Finding(kind, match.start(), match.end())
            if confirm(match) and not any(_overlap(span, t) for t in taken):
                taken.append(span)
    return sorted(taken, key=lambda f: f.start)


def _overlap(a: Finding, b: Finding) -> bool:
    return a.start < b.end and b.start < a.end


def redact(text: str, findings: list[Finding] | None = None) -> str:
    """Replace every finding with a typed placeholder such as `<EMAIL>`."""
    findings = find_sensitive(text) if findings is None else findings
    for finding in sorted(findings, key=lambda f: f.start, reverse=True):
        text = text[: finding.start] + f"<{finding.kind}>" + text[finding.end :]
    return text


def mask(value: str) -> str:
    """Show only the edges of a sensitive value, for reports."""
    if len(value) <= 6:
        return "*" * len(value)
    return value[:2] + "*" * (len(value) - 4) + value[-2:]
