import pytest

from tunesmith.config import load_config
from tunesmith.errors import ConfigError, TargetMissed
from tunesmith.evaluation.objective import (
    Target,
    check_targets,
    enforce,
    headline_accuracy,
    load_labels,
    load_schema,
    parse_targets,
)


def test_parse_targets_with_ops_percent_and_bare_numbers():
    targets = parse_targets({"accuracy": ">= 0.85", "format_validity": "99%",
                             "hallucination_rate": 0.05, "forgetting": "<= 2"})
    assert targets == [Target("accuracy", ">=", 0.85), Target("format_validity", ">=", 0.99),
                       Target("hallucination_rate", "<=", 0.05),
                       Target("forgetting", "<=", 2.0)]


def test_parse_targets_reports_every_bad_condition():
    with pytest.raises(ConfigError) as err:
        parse_targets({"accuracy": "high", "f1": True})
    assert "objective.targets.accuracy" in str(err.value)
    assert "objective.targets.f1" in str(err.value)


def test_check_and_enforce():
    targets = parse_targets({"accuracy": ">= 0.85", "hallucination_rate": "<= 0.05",
                             "rouge_l": ">= 0.1"})
    results = check_targets(targets, "tuned", {"accuracy": 0.85, "hallucination_rate": 0.06})
    assert [r.passed for r in results] == [True, False, False]
    assert results[2].value is None
    with pytest.raises(TargetMissed) as err:
        enforce(results)
    message = str(err.value)
    assert "2 of 3" in message and "hallucination_rate <= 0.05 (0.0600)" in message
    assert "rouge_l >= 0.1 (not measured)" in message
    enforce(results[:1])  # all passed: no error


def test_headline_accuracy_follows_contract():
    metrics = {"exact_match": 0.2, "label_accuracy": 0.7, "json_all_fields": 0.6}
    assert headline_accuracy("labels", metrics) == 0.7
    assert headline_accuracy("json", metrics) == 0.7
    assert headline_accuracy("json", {"exact_match": 0.2, "json_all_fields": 0.6}) == 0.6
    assert headline_accuracy("text", metrics) == 0.2


def test_labels_and_schema_files(tmp_path):
    (tmp_path / "labels.json").write_text('["a", "b"]')
    (tmp_path / "labels.txt").write_text("b\nc\n\n")
    assert load_labels(["a"], str(tmp_path / "labels.txt")) == ["a", "b", "c"]
    assert load_labels([], str(tmp_path / "labels.json")) == ["a", "b"]
    (tmp_path / "schema.json").write_text('{"type": "object"}')
    assert load_schema(str(tmp_path / "schema.json")) == {"type": "object"}
    with pytest.raises(ConfigError, match="no such file"):
        load_schema(str(tmp_path / "missing.json"))


def test_objective_section_in_config(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("objective:\n  output: json\n  label_field: intent\n"
                    "  targets: {accuracy: '>= 0.85'}\n")
    config = load_config(path)
    assert config.objective.output == "json"
    assert config.objective.targets == {"accuracy": ">= 0.85"}
    path.write_text("objective:\n  output: xml\n")
    with pytest.raises(ConfigError, match="objective.output"):
        load_config(path)
