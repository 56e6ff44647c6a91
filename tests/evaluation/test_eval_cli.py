"""`tunesmith eval` end to end on tiny models and a fake endpoint: numbers, files, exit codes."""

import json

import pytest
import yaml

from tunesmith.cli.main import main

from .fake_openai import FakeOpenAI

ROWS = [("I am still waiting on my card?", "card_arrival"),
        ("My card has not arrived yet.", "card_arrival"),
        ("What is the exchange rate today?", "exchange_rate")]


def _write_case(tmp_path, tiny_model_dir, url, targets, gate_model="endpoint:fake"):
    data = tmp_path / "test.jsonl"
    data.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": text},
        {"role": "assistant", "content": json.dumps({"intent": label})}]}) + "\n"
        for text, label in ROWS))
    arc = tmp_path / "arc_mini.jsonl"
    arc.write_text("".join(json.dumps({"query": f"Question: {q}", "choices": c, "gold": g})
                           + "\n" for q, c, g in [("Which is a fruit?", ["apple", "brick"], 0),
                                                  ("Sky colour?", ["green", "blue"], 1)]))
    config = {
        "output_dir": str(tmp_path / "run"),
        "model": {"name": str(tiny_model_dir)},
        "data": {"test": [str(data)]},
        "evaluation": {"models": [str(tiny_model_dir), f"openai:{url}#fake"],
                       "relevance": False, "max_new_tokens": 8, "batch_size": 4,
                       "forgetting_sets": [str(arc)], "bootstrap_samples": 200,
                       "judge_url": url, "judge_model": "judge"},
        "objective": {"task": "Banking intent as JSON", "output": "json",
                      "label_field": "intent", "labels": ["card_arrival", "exchange_rate"],
                      "json_schema": {"type": "object", "required": ["intent"]},
                      "source": "prompt", "targets": targets, "gate_model": gate_model},
    }
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_eval_passes_targets_and_writes_hand_checkable_results(tmp_path, tiny_model_dir,
                                                               capsys):
    with FakeOpenAI('{"intent": "card_arrival"}') as url:
        config = _write_case(tmp_path, tiny_model_dir, url,
                             {"accuracy": ">= 0.6", "format_validity": ">= 0.99"})
        code = main(["eval", str(config)])
    out = capsys.readouterr().out
    assert code == 0
    assert "PASS  accuracy" in out and "PASS  format_validity" in out
    payload = json.loads((tmp_path / "run" / "eval" / "eval.json").read_text())
    endpoint = payload["models"][1]
    assert endpoint["name"] == "endpoint:fake"
    # the endpoint always answers card_arrival: 2 of 3 right, every answer valid JSON
    assert endpoint["metrics"]["accuracy"]["value"] == pytest.approx(2 / 3)
    assert endpoint["metrics"]["label_accuracy"]["value"] == pytest.approx(2 / 3)
    assert endpoint["metrics"]["format_validity"]["value"] == 1.0
    assert endpoint["metrics"]["schema_validity"]["value"] == 1.0
    assert endpoint["metrics"]["stop_rate"]["value"] == 1.0
    # "card_arrival" / "intent" are not in the prompts: every answer is unsupported
    assert endpoint["metrics"]["hallucination_rate"]["value"] == 1.0
    # the fake judge calls an answer unsupported only when "Denver" appears: never here
    assert endpoint["metrics"]["judge_hallucination_rate"]["value"] == 0.0
    assert endpoint["details"]["top_confusions"] == [
        {"expected": "exchange_rate", "predicted": "card_arrival", "count": 1}]
    assert payload["gate"] == {"model": "endpoint:fake", "passed": True}
    tiny = payload["models"][0]
    assert "retention:arc_mini" in tiny["metrics"]  # log-likelihood scoring ran locally
    assert (tmp_path / "run" / "eval" / "report.html").stat().st_size > 2000
    lines = (tmp_path / "run" / "eval" / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 3


def test_eval_json_matches_its_schema(tmp_path, tiny_model_dir):
    jsonschema = pytest.importorskip("jsonschema")
    from tunesmith.evaluation.eval_json import EVAL_JSON_SCHEMA

    with FakeOpenAI('{"intent": "exchange_rate"}') as url:
        assert main(["eval", str(_write_case(tmp_path, tiny_model_dir, url, {}))]) == 0
    payload = json.loads((tmp_path / "run" / "eval" / "eval.json").read_text())
    jsonschema.validate(payload, EVAL_JSON_SCHEMA)
    comparison = next(c for c in payload["comparisons"] if c["metric"] == "label_accuracy")
    assert comparison["baseline"] == payload["models"][0]["name"]
    assert len(comparison["improved"]) + len(comparison["regressed"]) + \
        comparison["unchanged"] == 3


def test_missed_target_exits_non_zero_with_one_line(tmp_path, tiny_model_dir, capsys):
    with FakeOpenAI('{"intent": "card_arrival"}') as url:
        config = _write_case(tmp_path, tiny_model_dir, url,
                             {"accuracy": ">= 0.85", "hallucination_rate": "<= 0.05"})
        code = main(["eval", str(config)])
    captured = capsys.readouterr()
    assert code == 2
    assert "MISS  accuracy" in captured.out
    errors = [line for line in captured.err.splitlines() if line.startswith("tunesmith:")]
    assert errors == [captured.err.strip().splitlines()[-1]]
    assert "2 of 2 target(s) missed for model endpoint:fake" in captured.err
    assert "Traceback" not in captured.err
    assert json.loads((tmp_path / "run" / "eval" / "eval.json").read_text())["gate"][
        "passed"] is False


def test_bad_target_is_a_config_error(tmp_path, tiny_model_dir, capsys):
    with FakeOpenAI() as url:
        config = _write_case(tmp_path, tiny_model_dir, url, {"accuracy": "very high"})
        code = main(["eval", str(config)])
    assert code == 2
    assert "objective.targets.accuracy" in capsys.readouterr().err


def test_endpoint_misbehaving_is_one_line_not_an_internal_error(tmp_path, tiny_model_dir,
                                                                 capsys):
    with FakeOpenAI(42) as url:
        code = main(["eval", str(_write_case(tmp_path, tiny_model_dir, url, {}))])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2
    assert err == (f"tunesmith: error: {url}: message.content is int 42; expected a string or "
                   "a list of text parts")
