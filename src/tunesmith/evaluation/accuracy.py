"""Accuracy: normalised exact match, token F1, label accuracy and per-field JSON accuracy.

Every function returns per-example scores (1.0, 0.0, a fraction, or None where the example
does not apply) so that the comparison can bootstrap them and diff them example by example.
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)
_FIRST_WORD = re.compile(r"\W*([\w'-]+)")


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation: lower-case, drop punctuation and articles, squeeze spaces."""
    text = text.lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the normalised answer equals the normalised reference, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    """Harmonic mean of token precision and recall after normalisation (SQuAD F1).

    Two empty answers score 1.0; one empty answer scores 0.0.
    """
    pred = normalize_answer(prediction).split()
    ref = normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def parse_json_answer(text: str) -> tuple[bool, Any]:
    """Return (parsed, value) for a strict JSON answer; surrounding whitespace is allowed."""
    try:
        return True, json.loads(text.strip())
    except ValueError:
        return False, None


def extract_label(answer: str, json_field: str | None = None, first_word: bool = False) -> str:
    """The label an answer names: a JSON field's value when `json_field` is set, else the text.

    With `first_word`, only the first word counts, lower-cased ("Yes, because..." -> "yes").
    An answer that does not parse, or lacks the field, yields the empty string.
    """
    if first_word:
        match = _FIRST_WORD.match(extract_label(answer, json_field))
        return match.group(1).lower() if match else ""
    if json_field is None:
        return answer.strip()
    ok, value = parse_json_answer(answer)
    if ok and isinstance(value, dict) and isinstance(value.get(json_field), str):
        return value[json_field].strip()
    return ""


@dataclass
class LabelReport:
    """Label accuracy with a confusion summary: the most frequent (expected, predicted) errors."""

    accuracy: float
    per_example: list[float]
    per_label_recall: dict[str, float]
    top_confusions: list[tuple[str, str, int]] = field(default_factory=list)


def label_accuracy(predicted: list[str], expected: list[str], top: int = 10) -> LabelReport:
    """Exact label agreement (case-sensitive after stripping) and the commonest confusions."""
    if len(predicted) != len(expected):
        raise ValueError(f"{len(predicted)} predicted labels for {len(expected)} expected")
    hits = [float(p.strip() == e.strip()) for p, e in zip(predicted, expected, strict=True)]
    by_label: dict[str, list[float]] = {}
    errors: Counter[tuple[str, str]] = Counter()
    for p, e, hit in zip(predicted, expected, hits, strict=True):
        by_label.setdefault(e.strip(), []).append(hit)
        if not hit:
            errors[(e.strip(), p.strip() or "<none>")] += 1
    recall = {k: sum(v) / len(v) for k, v in sorted(by_label.items())}
    confusions = [(e, p, n) for (e, p), n in errors.most_common(top)]
    accuracy = sum(hits) / len(hits) if hits else 0.0
    return LabelReport(accuracy, hits, recall, confusions)


def json_field_scores(prediction: str, reference: str) -> dict[str, float] | None:
    """Per-field match (1.0/0.0) of a JSON object answer against a JSON object reference.

    Returns None when the reference is not a JSON object; a field missing from the answer,
    or an answer that does not parse, scores 0.0 for every reference field.
    """
    ref_ok, ref = parse_json_answer(reference)
    if not ref_ok or not isinstance(ref, dict):
        return None
    ok, value = parse_json_answer(prediction)
    value = value if ok and isinstance(value, dict) else {}
    return {key: float(key in value and value[key] == expected) for key, expected in ref.items()}


def json_field_accuracy(predictions: list[str], references: list[str]) -> dict[str, Any]:
    """Mean per-field accuracy, all-fields-correct rate, and per-example all-fields scores."""
    per_field: dict[str, list[float]] = {}
    per_example: list[float | None] = []
    for prediction, reference in zip(predictions, references, strict=True):
        scores = json_field_scores(prediction, reference)
        if scores is None:
            per_example.append(None)
            continue
        for key, hit in scores.items():
            per_field.setdefault(key, []).append(hit)
        per_example.append(float(all(scores.values())))
    fields = {k: sum(v) / len(v) for k, v in sorted(per_field.items())}
    scored = [s for s in per_example if s is not None]
    return {"fields": fields, "all_fields": sum(scored) / len(scored) if scored else None,
            "per_example": per_example}
