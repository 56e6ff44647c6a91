"""Data cases BUG-01 to BUG-04 (inputs that broke other tools), asserted on the audit report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from shared_cases import BUG04_ROWS, STRICT_TEMPLATE

from tunesmith.audit import AuditOptions, audit_data
from tunesmith.config import load_config
from tunesmith.data.cleaning import clean_data

QUIET = AuditOptions(progress=False)
BUG01_ROWS = [
    ('{"messages":[{"role":"user","content":"Name a prime."},{"role":"assistant",'
     '"content":"Seven."}],"meta":{"src":"a"}}'),
    ('{"messages":[{"role":"user","content":"Name an even number."},{"role":"assistant",'
     '"content":"Four."}],"meta":{"lang":"en"}}   '),
]


def _audit(path: Path, *overrides: str) -> dict:
    return audit_data([str(path)], [], load_config(None, list(overrides)), QUIET)


def _comparable(report: dict) -> dict:
    keep = ("lengths", "duplicates", "contradictions", "sensitive", "balance", "size")
    return {k: json.loads(json.dumps(report[k]).replace(report["inputs"]["train"][0], "F"))
            for k in keep}


def test_bug01_bom_crlf_blank_line_give_the_same_report(tmp_path: Path) -> None:
    plain = tmp_path / "plain.jsonl"
    plain.write_text("\n".join(BUG01_ROWS) + "\n", encoding="utf-8")
    odd = tmp_path / "odd.jsonl"
    odd.write_bytes(b"\xef\xbb\xbf" + ("\r\n".join(BUG01_ROWS) + "\r\n\r\n").encode())
    a, b = _audit(plain), _audit(odd)
    assert _comparable(a) == _comparable(b)
    schema = b["schema_check"]["train"]
    assert schema["usable"] == 2 and schema["problems"] == {}
    fixes = " ".join(schema["auto_fixed"])
    assert "byte-order mark" in fixes and "CRLF" in fixes and "blank line" in fixes
    assert a["schema_check"]["train"]["auto_fixed"] == []
    assert schema["ignored_fields"] == {"row.meta": 2}


def test_a_file_not_in_utf8_is_a_warning_said_once_not_a_fix(tmp_path: Path, caplog) -> None:
    from tunesmith.reporting.data_summary import summarise

    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(BUG01_ROWS[0].replace("prime", "pr\u00efme").encode() + b"\n"
                      + BUG01_ROWS[1].replace("even", "\xe9ven").encode("latin-1") + b"\n")
    with caplog.at_level("WARNING"):
        report = _audit(latin)
    schema = report["schema_check"]["train"]
    assert schema["auto_fixed"] == [] and len(schema["file_warnings"]) == 1
    assert "1 line(s) are not valid UTF-8 (first: line 2)" in schema["file_warnings"][0]
    text = summarise(report)
    assert text.count("1 line(s) are not valid UTF-8") == 1 and "auto-fixed" not in text
    assert "1 line(s) are not valid UTF-8" not in caplog.text  # the report says it, once


BUG02 = {"messages": [
    {"role": "system", "content": "Answer tersely."}, {"role": "user", "content": "2+2?"},
    {"role": "assistant", "content": "5", "weight": 0},
    {"role": "user", "content": "Try again."},
    {"role": "assistant", "content": "4", "weight": 1}]}


def test_bug02_weight_keys_are_handled_and_counted(jsonl) -> None:
    weighted = _audit(jsonl([BUG02], "weighted.jsonl"))
    plain_row = {"messages": [{k: v for k, v in m.items() if k != "weight"}
                              for m in BUG02["messages"]]}
    plain = _audit(jsonl([plain_row], "plain.jsonl"))
    assert weighted["schema_check"]["train"]["handled_fields"] == {
        "weight (0 masks the turn, 1 trains it)": 2}
    assert weighted["lengths"]["total"] == plain["lengths"]["total"]
    # the weight-0 turn "5" moves from answer to prompt: 2 tokens ("5" + end of turn)
    assert plain["lengths"]["answer"]["max"] - weighted["lengths"]["answer"]["max"] == 2


@pytest.mark.parametrize("bad", [0.5, "1"])
def test_bug02_bad_weights_are_rejected_with_line_and_index(jsonl, bad) -> None:
    row = json.loads(json.dumps(BUG02))
    row["messages"][2]["weight"] = bad
    report = _audit(jsonl([row]))
    problem = report["schema_check"]["train"]["problem_rows"][0]
    assert problem["rule"] == "BadWeight" and problem["row"].endswith(":1")
    assert problem["field"] == "messages[2].weight"


def test_bug02_tool_call_answers_count_tokens(jsonl) -> None:
    call = {"type": "function",
            "function": {"name": "weather", "arguments": "{\"city\": \"Oslo\"}"}}
    row = {"messages": [{"role": "user", "content": "Weather in Oslo?"},
                        {"role": "assistant", "content": None, "tool_calls": [call]}]}
    report = _audit(jsonl([row]))
    assert report["lengths"]["answer"]["min"] > 10
    assert report["schema_check"]["train"]["handled_fields"] == {
        "tool_calls (trained as their JSON text)": 1}


BUG03 = [{"instruction": "Spell 'cat' backwards.", "input": "", "output": "tac"},
         {"instruction": "Say nothing.", "input": "", "output": ""},
         {"messages": [{"role": "user", "content": "Hi"},
                       {"role": "assistant", "content": "   \n"}]}]


def test_bug03_empty_answers_are_named_and_dropped(jsonl, tmp_path: Path) -> None:
    path = jsonl(BUG03)
    report = _audit(path)
    problems = report["schema_check"]["train"]["problem_rows"]
    assert [(p["row"].rsplit(":", 1)[1], p["rule"], p["field"]) for p in problems] == [
        ("2", "EmptyAnswer", "output"), ("3", "EmptyAnswer", "messages[1].content")]
    assert report["lengths"]["answer"]["min"] > 0  # no kept row without supervised tokens
    manifest = clean_data([str(path)], tmp_path / "out")
    assert manifest["counts"] | {} == {"input_rows": 3, "kept_rows": 1, "dropped_rows": 2,
                                       "changed_rows": 0, "train_rows": 1}
    kept = (tmp_path / "out" / "train.jsonl").read_text().splitlines()
    assert [json.loads(k) for k in kept] == [BUG03[0]]


STRICT = STRICT_TEMPLATE
BUG04 = BUG04_ROWS


@pytest.fixture(scope="module")
def strict_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default tokenizer under a template that refuses non-alternating turns."""
    from tunesmith.modeling.inventory import load_tokenizer
    from tunesmith.modeling.loading import resolve_model

    source = Path(resolve_model("smollm2-135m-instruct"))
    target = tmp_path_factory.mktemp("strict")
    tokenizer = load_tokenizer(str(source))
    tokenizer.chat_template = STRICT
    tokenizer.save_pretrained(target)
    shutil.copy(source / "config.json", target / "config.json")
    return target


def test_bug04_rows_the_template_cannot_render_are_reported(jsonl, strict_model) -> None:
    report = _audit(jsonl(BUG04), f"model.name={strict_model}")
    schema = report["schema_check"]["train"]
    assert (schema["rows"], schema["usable"]) == (3, 1)
    rules = {p["row"].rsplit(":", 1)[1]: (p["rule"], p["reason"]) for p in schema["problem_rows"]}
    assert rules["2"][0] == "TemplateFailed" and "roles must alternate" in rules["2"][1]
    assert rules["3"][0] == "MisorderedRoles"
    assert report["lengths"]["rows"] == 1 and report["lengths"]["answer"]["min"] > 0


def test_bug04_every_row_failing_breaks_min_rows(jsonl, strict_model) -> None:
    report = _audit(jsonl(BUG04[1:]), f"model.name={strict_model}", "audit.min_rows=1")
    assert report["schema_check"]["train"]["usable"] == 0
    assert report["passed"] is False


def test_unfilled_template_placeholders_are_counted(tmp_path: Path) -> None:
    from tunesmith.reporting.data_summary import summarise

    answers = ["I am {{name}}, made by {{ author }}.", "Hello, I'm {{name}}.",
               "Use {name} in str.format.", "Braces {{ }} alone.", "Plain answer."]
    path = tmp_path / "identity.jsonl"
    path.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": f"Who are you? ({i})"},
        {"role": "assistant", "content": a}]}) + "\n" for i, a in enumerate(answers)))
    quality = _audit(path)["quality"]
    assert quality["unfilled_placeholders"] == 2
    assert [r.rsplit(":", 1)[1] for r in quality["unfilled_placeholder_rows"]] == ["1", "2"]
    assert quality["placeholder_counts"] == {"{{name}}": 2, "{{author}}": 1}
    assert "unfilled template placeholders: 2 row(s) ({{name}} x2, {{author}} x1;" in (
        summarise(_audit(path)))
