"""Format consistency: does each answer keep the output contract the objective declares?

Per-example checks return 1.0 (kept) or 0.0 (broken). `contract_check` picks the check
that matches the objective's `output` kind; that score is the `format_validity` metric.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tunesmith.errors import ConfigError
from tunesmith.evaluation.accuracy import extract_label, parse_json_answer

OUTPUT_KINDS = ("text", "json", "labels", "regex")


def json_parses(answer: str) -> float:
    """1.0 when the answer is strict JSON (whitespace around it allowed)."""
    return float(parse_json_answer(answer)[0])


def schema_validator(schema: dict[str, Any]) -> Callable[[str], float]:
    """A check that an answer parses and validates against a JSON Schema (any draft)."""
    try:
        import jsonschema
    except ImportError:
        raise ConfigError(["objective.json_schema needs the jsonschema package: "
                           "pip install 'tunesmith[eval]'"]) from None
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as err:
        raise ConfigError([f"objective.json_schema is not a valid JSON Schema: "
                           f"{err.message}"]) from None
    validator = cls(schema)

    def check(answer: str) -> float:
        ok, value = parse_json_answer(answer)
        return float(ok and validator.is_valid(value))

    return check


def label_checker(labels: list[str], json_field: str | None = None,
                  first_word: bool = False) -> Callable[[str], float]:
    """A check that the answer (its JSON field, or its first word) is an allowed label."""
    allowed = {label.lower() for label in labels} if first_word else set(labels)
    return lambda answer: float(extract_label(answer, json_field, first_word) in allowed)


def regex_checker(pattern: str) -> Callable[[str], float]:
    """A check that the whole answer (stripped) matches the pattern."""
    try:
        compiled = re.compile(pattern, re.DOTALL)
    except re.error as err:
        raise ConfigError([f"objective.regex {pattern!r} does not compile: {err}"]) from None
    return lambda answer: float(compiled.fullmatch(answer.strip()) is not None)


def format_metrics(answers: list[str], stopped: list[bool],
                   checks: dict[str, Callable[[str], float]]) -> dict[str, list[float]]:
    """Per-example scores for every named check, plus `stop_rate` (clean termination)."""
    scores = {name: [check(a) for a in answers] for name, check in checks.items()}
    scores["stop_rate"] = [float(s) for s in stopped]
    return scores


def contract_checks(output: str, json_schema: dict[str, Any] | None = None,
                    labels: list[str] | None = None, regex: str | None = None,
                    label_field: str | None = None,
                    first_word: bool = False) -> dict[str, Callable[[str], float]]:
    """The checks an output contract implies; `format_validity` is the strictest one."""
    if output not in OUTPUT_KINDS:
        raise ConfigError([f"objective.output: expected one of {', '.join(OUTPUT_KINDS)}, "
                           f"found {output!r}"])
    checks: dict[str, Callable[[str], float]] = {}
    if output == "json" or label_field or json_schema:
        checks["json_parse_rate"] = json_parses
        checks["format_validity"] = json_parses
    if json_schema:
        checks["schema_validity"] = schema_validator(json_schema)
        checks["format_validity"] = checks["schema_validity"]
    if labels:
        checks["label_membership"] = label_checker(labels, label_field, first_word)
        if output == "labels":
            checks["format_validity"] = checks["label_membership"]
    if regex:
        checks["regex_match"] = regex_checker(regex)
        if output == "regex":
            checks["format_validity"] = checks["regex_match"]
    if output == "labels" and not labels:
        raise ConfigError(["objective.output is 'labels' but objective.labels is empty; list "
                           "the allowed labels or name a labels_file"])
    if output == "regex" and not regex:
        raise ConfigError(["objective.output is 'regex' but objective.regex is not set"])
    return checks
