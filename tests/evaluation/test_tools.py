"""Evaluation cases keep their conversation's tools: in local prompts and endpoint requests."""

from __future__ import annotations

import json
from pathlib import Path

from tunesmith.data.records import RowRef
from tunesmith.data.shapes import to_conversation
from tunesmith.evaluation.endpoint import ChatEndpoint
from tunesmith.evaluation.runner import cases_from, write_predictions
from tunesmith.evaluation.suite import _endpoint_answers
from tunesmith.formatting.chat import ChatFormatter, tools_text

from .fake_openai import FakeOpenAI

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
TURNS = [{"role": "user", "content": "Weather in Oslo?"},
         {"role": "assistant", "content": "Cold."}]


def _cases(tools):
    row = {"messages": TURNS} | ({"tools": tools} if tools else {})
    return cases_from([to_conversation(row, RowRef("t.jsonl", 1))])


def test_cases_carry_tools_into_prompts_and_predictions(tokenizer, tmp_path: Path) -> None:
    case = _cases(TOOLS)[0]
    assert case.tools == TOOLS and _cases(None)[0].tools is None
    formatter = ChatFormatter(tokenizer)
    prompt = tokenizer.decode(formatter.prompt_ids(case.messages, case.tools))
    assert tools_text(TOOLS) in prompt
    path = tmp_path / "predictions.jsonl"
    write_predictions(path, [case, *_cases(None)], [])
    first, second = (json.loads(line) for line in path.read_text().splitlines())
    assert first["tools"] == TOOLS and "tools" not in second


def test_endpoints_get_tools_only_when_a_case_has_them() -> None:
    fake = FakeOpenAI("Cold.")
    with fake as url:
        answers, _ = _endpoint_answers(ChatEndpoint(url, "m"), _cases(TOOLS) + _cases(None),
                                       {}, 8)
    assert answers == ["Cold.", "Cold."]
    assert fake.requests[0]["tools"] == TOOLS and "tools" not in fake.requests[1]
