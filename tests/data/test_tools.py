"""Rows' `tools` (function schemas): read from messages and ShareGPT rows, in both forms."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tunesmith.audit import AuditOptions, audit_data
from tunesmith.config import load_config
from tunesmith.data.checks.rows import TOOLS_NOTE, RowNormaliser
from tunesmith.data.loading import load_conversations
from tunesmith.data.readers import RawRow, read_rows
from tunesmith.data.records import RowRef
from tunesmith.data.shapes import RowProblem, to_conversation

WEATHER = {"name": "get_weather", "description": "Weather of a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
OPENAI_FORM = [{"type": "function", "function": WEATHER}]
MESSAGES = [{"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": "Cold."}]
SHAREGPT = [{"from": "human", "value": "Weather in Oslo?"}, {"from": "gpt", "value": "Cold."}]
REF = RowRef("t.jsonl", 1)


@pytest.mark.parametrize("tools", [OPENAI_FORM, [WEATHER], json.dumps(OPENAI_FORM),
                                   json.dumps([WEATHER])])
@pytest.mark.parametrize("turns", ["messages", "conversations"])
def test_tools_are_read_from_both_shapes_and_forms(turns: str, tools) -> None:
    row = {turns: MESSAGES if turns == "messages" else SHAREGPT, "tools": tools}
    conv = to_conversation(row, REF)
    assert conv.tools == OPENAI_FORM
    assert conv.to_dict()["tools"] == OPENAI_FORM


@pytest.mark.parametrize("tools", [None, [], "[]", ""])
def test_no_tools_means_none(tools) -> None:
    conv = to_conversation({"messages": MESSAGES, "tools": tools}, REF)
    assert conv.tools is None and "tools" not in conv.to_dict()
    assert to_conversation({"messages": MESSAGES}, REF).tools is None


@pytest.mark.parametrize(("tools", "field", "words"), [
    ('[{"name": "x",', "tools", "not JSON"),
    ({"name": "x"}, "tools", "found an object"),
    ([WEATHER, "get_time"], "tools[1]", "found text"),
    ([WEATHER, WEATHER, {"description": "no name"}], "tools[2].name", "needs a name"),
    ([{"type": "function", "function": {"name": ""}}], "tools[0].function.name", "needs a name"),
    ([{"type": "retrieval"}], "tools[0].type", "unsupported tool type"),
    ([{"type": "function", "function": "get_weather"}], "tools[0].function", "found text"),
    ([{"name": "x", "parameters": "city"}], "tools[0].parameters", "JSON schema object"),
])
def test_bad_tools_reject_the_row_naming_the_field(tools, field: str, words: str) -> None:
    for row in ({"messages": MESSAGES, "tools": tools},
                {"conversations": SHAREGPT, "tools": tools}):
        with pytest.raises(RowProblem) as caught:
            to_conversation(row, REF)
        assert caught.value.field == field and words in caught.value.reason
        assert caught.value.rule == "BadTools"


def test_tools_are_reported_handled_not_ignored() -> None:
    normalise = RowNormaliser("auto", None, None)
    row = {"conversations": SHAREGPT, "tools": json.dumps([WEATHER])}
    conv, reject, info = normalise(RawRow(REF, row))
    assert reject is None and conv.tools == OPENAI_FORM
    assert info["handled"] == {TOOLS_NOTE: 1} and not info["ignored"]


GLAIVE = Path(os.environ.get("TUNESMITH_DATASETS", "../shared/datasets"),
              "sharegpt-samples", "glaive_toolcall_en_demo.json")


@pytest.mark.skipif(not GLAIVE.is_file(), reason="shared datasets not present")
def test_glaive_sample_loads_every_row_with_its_tools() -> None:
    loaded = load_conversations(GLAIVE)
    assert len(loaded.conversations) == 300 and not loaded.rejects
    with_tools = [c for c in loaded.conversations if c.tools]
    assert len(with_tools) == 191  # the other 109 rows hold "[]"
    assert with_tools[0].tools[0]["function"]["name"] == "search_recipes"
    normalise = RowNormaliser("auto", None, None)
    handled = ignored = 0
    for raw in read_rows(GLAIVE):
        _, reject, info = normalise(raw)
        assert reject is None
        handled += info["handled"].get(TOOLS_NOTE, 0)
        ignored += sum(info["ignored"].values())
    assert (handled, ignored) == (300, 0)
    report = audit_data([str(GLAIVE)], [], load_config(None),
                        AuditOptions(lengths=False, progress=False))
    schema = report["schema_check"]["train"]
    assert schema["usable"] == 300 and schema["ignored_fields"] == {}
    assert schema["handled_fields"][TOOLS_NOTE] == 300
