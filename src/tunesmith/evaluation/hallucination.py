"""Hallucination rate: the share of answers with content their source does not support.

The deterministic check looks at three kinds of content in an answer:

- numbers (digits or number words; "1,000" = "1000" = "one thousand" is not handled, but
  "three" = "3" is) must appear in the source;
- names (capitalised words that are not common function words, so also months and places)
  must appear in the source, case-insensitively;
- content words (the rest, minus stop words) are looked up after a light suffix strip; the
  share found is the answer's support.

An answer is flagged when any number or name is unsupported, or when its support is below
`min_support`. The default threshold comes from calibration on labelled probes built from
XQuAD-en and BoolQ (see `grounding_probes` and `bench/hallucination_calibration.py`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Calibrated by bench/hallucination_calibration.py (best F1 on the calibration half).
DEFAULT_MIN_SUPPORT = 0.55

_TOKEN = re.compile(r"\d[\d,]*(?:\.\d+)?|[A-Za-z][A-Za-z'\-]*")
_NUMBER_WORDS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12",
    "twenty": "20", "thirty": "30", "forty": "40", "fifty": "50", "hundred": "100",
}
STOP_WORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before
being below between both but by can could did do does doing down during each either few for
from further had has have having he her here hers herself him himself his how i if in into is
it its itself just me more most my myself neither no nor not now of off on once only or other
our ours ourselves out over own same she should so some such than that the their theirs them
themselves then there these they this those through to too under until up very was we were
what when where which while who whom why will with would yes you your yours yourself
yourselves answer true false correct according passage text question however therefore
thus since many much may might must shall still yet within without upon via per its
""".split())  # noqa: SIM905 - a word list reads best as text


def _stem(word: str) -> str:
    """Lower-case and strip a possessive and one common suffix (a crude, stable stemmer)."""
    word = word.lower().removesuffix("'s").strip("'-")
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def _number(token: str) -> str | None:
    """The canonical digits of a numeric token or number word, else None."""
    if token[0].isdigit():
        return token.replace(",", "").rstrip(".")
    return _NUMBER_WORDS.get(token.lower())


@dataclass
class SourceIndex:
    """The numbers and word stems of a source text."""

    numbers: set[str]
    stems: set[str]

    @classmethod
    def of(cls, text: str) -> SourceIndex:
        tokens = _TOKEN.findall(text)
        numbers = {n for n in map(_number, tokens) if n is not None}
        return cls(numbers, {_stem(t) for t in tokens if not t[0].isdigit()})


@dataclass
class GroundingCheck:
    """What an answer claims that its source does not contain."""

    unsupported_numbers: list[str] = field(default_factory=list)
    unsupported_names: list[str] = field(default_factory=list)
    unsupported_words: list[str] = field(default_factory=list)
    content_words: int = 0

    @property
    def support(self) -> float:
        """Share of content words found in the source (1.0 when there are none)."""
        if not self.content_words:
            return 1.0
        return 1 - len(self.unsupported_words) / self.content_words

    def hallucinated(self, min_support: float = DEFAULT_MIN_SUPPORT) -> bool:
        return bool(self.unsupported_numbers or self.unsupported_names) or (
            self.support < min_support)


def check_answer(answer: str, source: str | SourceIndex) -> GroundingCheck:
    """Compare an answer's numbers, names and content words with its source."""
    index = source if isinstance(source, SourceIndex) else SourceIndex.of(source)
    check = GroundingCheck()
    for token in _TOKEN.findall(answer):
        number = _number(token)
        if number is not None:
            if number not in index.numbers:
                check.unsupported_numbers.append(token)
            continue
        stem = _stem(token)
        if token.lower() in STOP_WORDS or len(stem) < 3:
            continue
        if token[0].isupper():
            if stem not in index.stems:
                check.unsupported_names.append(token)
            continue
        check.content_words += 1
        if stem not in index.stems:
            check.unsupported_words.append(token)
    return check


def hallucination_flags(answers: list[str], sources: list[str],
                        min_support: float = DEFAULT_MIN_SUPPORT) -> list[float]:
    """Per-example 1.0 (hallucinated) or 0.0 (supported); the mean is the hallucination rate."""
    if len(answers) != len(sources):
        raise ValueError(f"{len(answers)} answers for {len(sources)} sources")
    return [float(check_answer(a, s).hallucinated(min_support))
            for a, s in zip(answers, sources, strict=True)]


def precision_recall(predicted: list[bool], actual: list[bool]) -> dict[str, float]:
    """Precision, recall and F1 of the positive (hallucinated) class, plus accuracy."""
    tp = sum(p and a for p, a in zip(predicted, actual, strict=True))
    fp = sum(p and not a for p, a in zip(predicted, actual, strict=True))
    fn = sum(a and not p for p, a in zip(predicted, actual, strict=True))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    correct = sum(p == a for p, a in zip(predicted, actual, strict=True))
    return {"precision": precision, "recall": recall, "f1": f1,
            "accuracy": correct / len(actual) if actual else 0.0, "count": len(actual)}


def calibrate(checks: list[GroundingCheck], actual: list[bool]) -> float:
    """The min_support in 0.00..1.00 (step 0.05) with the best F1 on labelled answers."""
    best, best_f1 = DEFAULT_MIN_SUPPORT, -1.0
    for step in range(21):
        min_support = step / 20
        predicted = [c.hallucinated(min_support) for c in checks]
        f1 = precision_recall(predicted, actual)["f1"]
        if f1 > best_f1:
            best, best_f1 = min_support, f1
    return best
