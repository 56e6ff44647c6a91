"""Turn one model's answers into per-example scores for every metric the objective asks for."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tunesmith.evaluation.accuracy import (
    exact_match,
    extract_label,
    json_field_accuracy,
    label_accuracy,
    parse_json_answer,
    token_f1,
)
from tunesmith.evaluation.compare import mean
from tunesmith.evaluation.format_checks import contract_checks, format_metrics, json_parses
from tunesmith.evaluation.hallucination import hallucination_flags
from tunesmith.evaluation.objective import headline_accuracy, load_labels, load_schema
from tunesmith.evaluation.relevance import Embedder, relevance_metrics

Scores = dict[str, list[float | None]]


@dataclass
class Contract:
    """The objective resolved into checks: output kind, labels, label field, checks, source."""

    output: str = "text"
    labels: list[str] = field(default_factory=list)
    label_field: str | None = None
    checks: dict[str, Any] = field(default_factory=dict)
    source: str = "none"
    first_word: bool = False

    @classmethod
    def from_objective(cls, objective: Any) -> Contract:
        labels = load_labels(objective.labels, objective.labels_file)
        first_word = bool(getattr(objective, "label_first_word", False))
        checks = contract_checks(objective.output, load_schema(objective.json_schema), labels,
                                 objective.regex, objective.label_field, first_word)
        return cls(objective.output, labels, objective.label_field, checks, objective.source,
                   first_word)


@dataclass
class AnswerSet:
    """What a model said for each case, next to the case's reference, question and source."""

    answers: list[str]
    stopped: list[bool]
    references: list[str]
    questions: list[str]
    prompts: list[str]


def answer_match(prediction: str, reference: str) -> float:
    """JSON references match by parsed value; text references by normalised exact match."""
    ok, value = parse_json_answer(reference)
    if ok and isinstance(value, dict | list):
        parsed, answer = parse_json_answer(prediction)
        return float(parsed and answer == value)
    return exact_match(prediction, reference)


def _sources(contract: Contract, data: AnswerSet) -> list[str]:
    parts = {"prompt": (data.prompts,), "reference": (data.references,),
             "prompt_and_reference": (data.prompts, data.references)}[contract.source]
    return ["\n".join(texts) for texts in zip(*parts, strict=True)]


def score_answers(data: AnswerSet, contract: Contract, relevance: bool,
                  embed: Embedder | None = None) -> tuple[Scores, dict[str, Any]]:
    """Per-example scores keyed by metric, and details (confusions, per-field accuracy)."""
    refs, answers = data.references, data.answers
    scores: Scores = {"exact_match": [answer_match(a, r) for a, r in zip(answers, refs,
                                                                         strict=True)],
                      "token_f1": [token_f1(a, r) for a, r in zip(answers, refs, strict=True)]}
    details: dict[str, Any] = {}
    fields = json_field_accuracy(answers, refs)
    if fields["all_fields"] is not None:
        scores["json_all_fields"] = fields["per_example"]
        details["field_accuracy"] = fields["fields"]
        # JSON references imply a JSON answer, objective or not
        scores["json_parse_rate"] = [json_parses(a) for a in answers]
    if contract.labels or contract.output == "labels" or contract.label_field:
        field_name, first = contract.label_field, contract.first_word
        report = label_accuracy([extract_label(a, field_name, first) for a in answers],
                                [extract_label(r, field_name, first) for r in refs])
        scores["label_accuracy"] = list(report.per_example)
        details["per_label_recall"] = report.per_label_recall
        details["top_confusions"] = [{"expected": e, "predicted": p, "count": n}
                                     for e, p, n in report.top_confusions]
    scores.update(format_metrics(answers, data.stopped, contract.checks))
    if relevance:
        scores.update(relevance_metrics(answers, refs, data.questions, embed))
    if contract.source != "none":
        scores["hallucination_rate"] = list(hallucination_flags(answers,
                                                                _sources(contract, data)))
    return scores, details


def flat_metrics(scores: Scores, output: str) -> dict[str, float | None]:
    """Mean of every per-example metric plus `accuracy`, the contract's headline accuracy."""
    values = {name: mean(per_example) for name, per_example in scores.items()}
    values["accuracy"] = headline_accuracy(output, values)
    return values
