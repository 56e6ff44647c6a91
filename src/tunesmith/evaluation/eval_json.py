"""`eval.json`: the stable, versioned record of an evaluation, and its JSON Schema.

Version 1 layout: models with metric values and 95% intervals, paired comparisons against
the first model, forgetting per multiple-choice set, targets with verdicts, and the worst and
regressed examples. Fields are only ever added within a version.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.data.records import dumps_strict
from tunesmith.evaluation.compare import PairedDiff, bootstrap_ci, paired_diff
from tunesmith.evaluation.forgetting import ForgettingReport, compare_retention
from tunesmith.evaluation.objective import LOWER_IS_BETTER, TargetResult
from tunesmith.evaluation.runner import EvalCase
from tunesmith.evaluation.suite import ModelResult

SCHEMA_VERSION = 1
_NUM = {"type": ["number", "null"]}
_CI = {"type": ["array", "null"], "items": {"type": "number"}, "minItems": 2, "maxItems": 2}
EVAL_JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["schema_version", "objective", "cases", "models", "comparisons",
                 "forgetting", "targets", "gate", "examples"],
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "objective": {"type": "object", "required": ["task", "output"]},
        "cases": {"type": "integer", "minimum": 0},
        "models": {"type": "array", "items": {
            "type": "object", "required": ["name", "source", "metrics", "details"],
            "properties": {"metrics": {"type": "object", "additionalProperties": {
                "type": "object", "required": ["value", "ci", "n"],
                "properties": {"value": _NUM, "ci": _CI, "n": {"type": "integer"}}}}}}},
        "comparisons": {"type": "array", "items": {
            "type": "object", "required": ["baseline", "candidate", "metric", "diff", "ci",
                                           "improved", "regressed", "unchanged"]}},
        "forgetting": {"type": "array", "items": {
            "type": "object", "required": ["set", "baseline", "model", "before", "after",
                                           "drop_points", "diff_ci_points", "warnings"]}},
        "targets": {"type": "array", "items": {
            "type": "object", "required": ["metric", "op", "threshold", "model", "value",
                                           "passed"]}},
        "gate": {"type": "object", "required": ["model", "passed"]},
        "examples": {"type": "object", "required": ["worst", "regressed"]},
    },
}


@dataclass
class EvalRecord:
    """What an evaluation produced, before it is written."""

    objective: dict[str, Any]
    cases: list[EvalCase]
    results: list[ModelResult]
    headline: str
    targets: list[TargetResult] = field(default_factory=list)
    diffs: list[PairedDiff] = field(default_factory=list)
    forgetting: list[ForgettingReport] = field(default_factory=list)


def _clean(value: Any) -> Any:
    """JSON-safe numbers: NaN and infinity become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _metrics(result: ModelResult, samples: int) -> dict[str, Any]:
    out = {}
    for name, value in result.metrics.items():
        per_example = result.scores.get(name)
        applied = [s for s in per_example if s is not None] if per_example else []
        ci = bootstrap_ci(per_example, samples) if per_example else None
        out[name] = {"value": _clean(value), "ci": list(ci) if ci else None,
                     "n": len(applied)}
    return out


def compare_all(results: list[ModelResult], samples: int,
                max_drop: float | None) -> tuple[list[PairedDiff], list[ForgettingReport]]:
    """Every later model against the first: per-metric paired diffs and forgetting."""
    diffs, forgetting = [], []
    base = results[0]
    for other in results[1:]:
        for metric, per_example in other.scores.items():
            if metric in base.scores:
                diffs.append(paired_diff(metric, (base.name, base.scores[metric]),
                                         (other.name, per_example), samples,
                                         lower_is_better=metric in LOWER_IS_BETTER))
        for set_name, after in other.retention.items():
            if set_name in base.retention:
                report = compare_retention(base.retention[set_name], after, max_drop, samples)
                forgetting.append(report)
                worst = other.metrics.get("forgetting")
                other.metrics["forgetting"] = max(report.drop_points, worst or -math.inf)
    return diffs, forgetting


def _example(record: EvalRecord, index: int) -> dict[str, Any]:
    case = record.cases[index]
    return {"index": index, "ref": str(case.ref) if case.ref is not None else None,
            "prompt": case.messages[-1].content if case.messages else "",
            "reference": case.reference,
            "answers": {r.name: {"answer": r.answers[index], "stopped": r.stopped[index],
                                 "score": r.scores.get(record.headline, [None] * (index + 1))
                                 [index]} for r in record.results}}


def _examples(record: EvalRecord, limit: int = 20) -> dict[str, list[dict[str, Any]]]:
    last = record.results[-1]
    per_example = last.scores.get(record.headline, [])
    scored = [(s, i) for i, s in enumerate(per_example) if s is not None]
    worst = [i for _, i in sorted(scored)[:limit]]
    regressed = next((d.regressed for d in record.diffs if d.metric == record.headline
                      and d.candidate == last.name), [])
    return {"worst": [_example(record, i) for i in worst],
            "regressed": [_example(record, i) for i in regressed[:limit]]}


def build_payload(record: EvalRecord, samples: int) -> dict[str, Any]:
    """The eval.json content (schema version 1)."""
    gate_model = record.targets[0].model if record.targets else None
    return {
        "schema_version": SCHEMA_VERSION,
        "objective": record.objective,
        "cases": len(record.cases),
        "headline_metric": record.headline,
        "models": [{"name": r.name, "source": r.description, "metrics": _metrics(r, samples),
                    "details": r.details} for r in record.results],
        "comparisons": [{"baseline": d.baseline, "candidate": d.candidate, "metric": d.metric,
                         "diff": d.diff, "ci": list(d.ci) if d.ci else None,
                         "improved": d.improved, "regressed": d.regressed,
                         "unchanged": d.unchanged} for d in record.diffs],
        "forgetting": [{"set": f.set_name, "baseline": f.before.model, "model": f.after.model,
                        "n": len(f.before.per_example),
                        "before": f.before.accuracy, "before_ci": list(f.before.ci),
                        "after": f.after.accuracy, "after_ci": list(f.after.ci),
                        "drop_points": f.drop_points,
                        "diff_ci_points": [-100 * x for x in reversed(f.diff.ci)]
                        if f.diff.ci else None,
                        "warnings": f.warnings} for f in record.forgetting],
        "targets": [{"metric": t.target.metric, "op": t.target.op,
                     "threshold": t.target.threshold, "model": t.model, "value": t.value,
                     "passed": t.passed} for t in record.targets],
        "gate": {"model": gate_model, "passed": all(t.passed for t in record.targets)},
        "examples": _examples(record),
    }


def write_eval_json(path: Path, payload: dict[str, Any]) -> None:
    """Write eval.json through a temporary file and a rename."""
    tmp = path.with_suffix(".json.tmp")
    text = dumps_strict(payload, indent=2, ensure_ascii=False, default=str)  # inf perplexity
    tmp.write_text(text + "\n", encoding="utf-8")
    tmp.replace(path)


def conclude(cases: list[EvalCase], results: list[ModelResult], objective: Any,
             samples: int) -> tuple[EvalRecord, dict[str, Any]]:
    """Compare the models, check the targets on the gated model and build eval.json."""
    from tunesmith.evaluation.objective import check_targets, headline_metric, parse_targets

    targets = parse_targets(objective.targets)
    max_drop = next((t.threshold for t in targets if t.metric == "forgetting"), None)
    headline = headline_metric(objective.output, results[-1].scores)
    for result in results:  # `accuracy` gets the headline's per-example scores (intervals)
        if headline in result.scores:
            result.scores.setdefault("accuracy", result.scores[headline])
    diffs, forgetting = compare_all(results, samples, max_drop)
    gated = next((r for r in results if r.name == objective.gate_model), None)
    if objective.gate_model and gated is None:
        from tunesmith.errors import ConfigError

        raise ConfigError([(f"objective.gate_model: {objective.gate_model!r} is not one of the "
                           f"evaluated models ({', '.join(r.name for r in results)})")])
    gated = gated or results[-1]
    summary = {"task": objective.task, "output": objective.output,
               "source": objective.source, "targets": dict(objective.targets)}
    record = EvalRecord(summary, cases, results, headline,
                        check_targets(targets, gated.name, gated.metrics), diffs, forgetting)
    return record, build_payload(record, samples)
