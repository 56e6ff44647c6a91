import pytest

from tunesmith.errors import ConfigError
from tunesmith.evaluation.format_checks import (
    contract_checks,
    format_metrics,
    json_parses,
    label_checker,
    regex_checker,
    schema_validator,
)

SCHEMA = {"type": "object", "required": ["intent"], "additionalProperties": False,
          "properties": {"intent": {"type": "string"}}}


def test_json_parse():
    assert json_parses(' {"a": 1} ') == 1.0
    assert json_parses("{'a': 1}") == 0.0


def test_schema_validity():
    check = schema_validator(SCHEMA)
    assert check('{"intent": "x"}') == 1.0
    assert check('{"intent": 1}') == 0.0
    assert check('{"intent": "x", "extra": 1}') == 0.0
    assert check("nope") == 0.0


def test_bad_schema_is_a_config_error():
    with pytest.raises(ConfigError, match="not a valid JSON Schema"):
        schema_validator({"type": "no-such-type"})


def test_label_membership_plain_and_json():
    assert label_checker(["yes", "no"])(" yes ") == 1.0
    assert label_checker(["yes", "no"])("maybe") == 0.0
    assert label_checker(["a"], "intent")('{"intent": "a"}') == 1.0
    assert label_checker(["a"], "intent")('{"intent": "b"}') == 0.0


def test_regex_must_match_whole_answer():
    check = regex_checker(r"\d{3}-\d{4}")
    assert check("555-1234") == 1.0
    assert check("call 555-1234") == 0.0
    with pytest.raises(ConfigError, match="does not compile"):
        regex_checker("(")


def test_format_metrics_rates_hand_computed():
    checks = contract_checks("json", SCHEMA, ["a", "b"], None, "intent")
    answers = ['{"intent": "a"}', '{"intent": "z"}', "{bad", '{"intent": 5}']
    scores = format_metrics(answers, [True, True, False, False], checks)
    assert scores["json_parse_rate"] == [1.0, 1.0, 0.0, 1.0]
    assert scores["schema_validity"] == [1.0, 1.0, 0.0, 0.0]
    assert scores["format_validity"] == scores["schema_validity"]
    assert scores["label_membership"] == [1.0, 0.0, 0.0, 0.0]
    assert scores["stop_rate"] == [1.0, 1.0, 0.0, 0.0]


def test_contract_requires_what_it_names():
    with pytest.raises(ConfigError, match="labels"):
        contract_checks("labels")
    with pytest.raises(ConfigError, match="regex"):
        contract_checks("regex")
    with pytest.raises(ConfigError, match="expected one of"):
        contract_checks("xml")
    assert contract_checks("text") == {}
    assert set(contract_checks("labels", labels=["x"])) == {"label_membership",
                                                             "format_validity"}


def test_label_membership_first_word():
    check = label_checker(["yes", "no"], first_word=True)
    assert check("No, never.") == 1.0
    assert check("Maybe so.") == 0.0
