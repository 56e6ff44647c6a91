"""The objective's targets and the gate that checks measured metrics against them."""

from __future__ import annotations

import json
import operator
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.errors import ConfigError, TargetMissed

# Metrics where smaller is better; a bare number as target means "<=" for these.
LOWER_IS_BETTER = frozenset({"hallucination_rate", "forgetting", "eval_loss", "perplexity",
                             "memorisation_rate", "judge_hallucination_rate"})
_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt,
        "==": operator.eq}
_CONDITION = re.compile(r"^\s*(>=|<=|==|>|<)?\s*([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)\s*(%)?\s*$")


@dataclass(frozen=True)
class Target:
    """One declared target, e.g. accuracy >= 0.85."""

    metric: str
    op: str
    threshold: float

    def met_by(self, value: float) -> bool:
        return bool(_OPS[self.op](value, self.threshold))

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.threshold:g}"


@dataclass
class TargetResult:
    """A target with the measured value (None: not measured) and whether it was met."""

    target: Target
    model: str
    value: float | None

    @property
    def passed(self) -> bool:
        return self.value is not None and self.target.met_by(self.value)

    def line(self) -> str:
        shown = "not measured" if self.value is None else f"{self.value:.4f}"
        verdict = "PASS" if self.passed else "MISS"
        return f"{verdict}  {self.target.metric:<24} {shown:>12}  target {self.target.op} " \
               f"{self.target.threshold:g}  ({self.model})"


def parse_targets(raw: dict[str, Any]) -> list[Target]:
    """Parse `{metric: condition}`; a condition is '>= 0.85', '<= 2', '85%' or a bare number."""
    targets, problems = [], []
    for metric, condition in raw.items():
        match = _CONDITION.match(str(condition))
        if not match or isinstance(condition, bool):
            problems.append(f"objective.targets.{metric}: expected a condition such as "
                            f"'>= 0.85' or '<= 2', found {condition!r}")
            continue
        op = match.group(1) or ("<=" if metric in LOWER_IS_BETTER else ">=")
        value = float(match.group(2)) / (100 if match.group(3) else 1)
        targets.append(Target(str(metric), op, value))
    if problems:
        raise ConfigError(problems)
    return targets


def headline_metric(output: str, available: Any) -> str:
    """The metric `accuracy` means for a contract: label, all-fields JSON, or exact match."""
    preferred = {"labels": ("label_accuracy",),
                 "json": ("label_accuracy", "json_all_fields")}.get(output, ())
    return next((key for key in preferred if key in available), "exact_match")


def headline_accuracy(output: str, metrics: dict[str, Any]) -> float | None:
    """The value of the headline metric in a flat metric mapping (None if absent)."""
    value = metrics.get(headline_metric(output, {k for k, v in metrics.items()
                                                 if v is not None}))
    return None if value is None else float(value)


def check_targets(targets: list[Target], model: str, metrics: dict[str, Any]) -> list[
        TargetResult]:
    """Look every target up in one model's flat metric values."""
    results = []
    for target in targets:
        value = metrics.get(target.metric)
        results.append(TargetResult(target, model, None if value is None else float(value)))
    return results


def enforce(results: list[TargetResult]) -> None:
    """Raise TargetMissed naming every missed target; do nothing when all passed."""
    missed = [r for r in results if not r.passed]
    if missed:
        parts = [f"{r.target} ({'not measured' if r.value is None else f'{r.value:.4f}'})"
                 for r in missed]
        raise TargetMissed(f"{len(missed)} of {len(results)} target(s) missed for model "
                           f"{missed[0].model}: " + "; ".join(parts))


def load_labels(labels: list[str], labels_file: str | None) -> list[str]:
    """The allowed labels from the config list and/or a file (JSON list or one per line)."""
    found = list(labels)
    if labels_file:
        path = Path(labels_file)
        if not path.is_file():
            raise ConfigError([f"objective.labels_file: no such file {path}"])
        text = path.read_text(encoding="utf-8")
        try:
            loaded = json.loads(text)
        except ValueError:
            loaded = [line.strip() for line in text.splitlines() if line.strip()]
        if not isinstance(loaded, list) or not all(isinstance(x, str) for x in loaded):
            raise ConfigError([f"objective.labels_file {path}: expected a JSON list of "
                               "strings or one label per line"])
        found += loaded
    return list(dict.fromkeys(found))


def load_schema(schema: dict[str, Any] | str | None) -> dict[str, Any] | None:
    """The JSON Schema from the config: inline mapping or a path to a .json file."""
    if schema is None or isinstance(schema, dict):
        return schema
    path = Path(schema)
    if not path.is_file():
        raise ConfigError([f"objective.json_schema: no such file {path}; give a mapping or "
                           "the path of a JSON Schema file"])
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise ConfigError([f"objective.json_schema {path}: not valid JSON ({err})"]) from None
    if not isinstance(value, dict):
        raise ConfigError([f"objective.json_schema {path}: expected a JSON object"])
    return value
