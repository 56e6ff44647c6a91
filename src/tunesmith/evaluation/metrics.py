"""Answer metrics: normalised exact match, JSON validity and per-field accuracy."""

from __future__ import annotations

import json
import re
import string
from collections import defaultdict
from typing import Any

_SPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Lower-case, collapse whitespace and strip surrounding punctuation and spaces."""
    return _SPACE.sub(" ", text.lower()).strip().strip(string.punctuation + " ")


def parse_json(text: str) -> tuple[bool, Any]:
    """Return (parsed, value) for a strict JSON answer (surrounding whitespace allowed)."""
    try:
        return True, json.loads(text.strip())
    except (json.JSONDecodeError, ValueError):
        return False, None


def exact_match(prediction: str, reference: str) -> bool:
    """JSON answers match when they parse to equal values; text answers after `normalize`."""
    ref_ok, ref_value = parse_json(reference)
    if ref_ok and isinstance(ref_value, dict | list):
        ok, value = parse_json(prediction)
        return ok and value == ref_value
    return normalize(prediction) == normalize(reference)


def answer_metrics(predictions: list[str], references: list[str],
                   stopped: list[bool] | None = None) -> dict[str, Any]:
    """Aggregate metrics over paired predictions and references.

    `json_valid` and `field_accuracy` are computed over the rows whose reference is a JSON
    object; they are absent when no reference is JSON.
    """
    if len(predictions) != len(references):
        raise ValueError("predictions and references differ in length")
    n = len(predictions)
    metrics: dict[str, Any] = {"count": n}
    if n == 0:
        return metrics
    metrics["exact_match"] = sum(map(exact_match, predictions, references)) / n
    json_rows = [(p, parse_json(r)[1]) for p, r in zip(predictions, references, strict=True)
                 if isinstance(parse_json(r)[1], dict)]
    if json_rows:
        parsed = [parse_json(p) for p, _ in json_rows]
        metrics["json_valid"] = sum(ok for ok, _ in parsed) / len(json_rows)
        hits: dict[str, list[bool]] = defaultdict(list)
        for (ok, value), (_, ref) in zip(parsed, json_rows, strict=True):
            for key, expected in ref.items():
                hits[key].append(ok and isinstance(value, dict) and value.get(key) == expected)
        metrics["field_accuracy"] = {k: sum(v) / len(v) for k, v in sorted(hits.items())}
    if stopped is not None:
        metrics["stop_rate"] = sum(stopped) / n
    return metrics
