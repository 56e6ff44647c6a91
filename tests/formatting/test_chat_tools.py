"""Tools reach the chat template, or the system message when the template ignores them."""

from __future__ import annotations

import copy
import json

import pytest

from tunesmith.data.records import Conversation, Message, RowRef
from tunesmith.data.shapes import to_conversation
from tunesmith.formatting.chat import IGNORE_INDEX, TOOLS_HEADER, ChatFormatter, tools_text

EOT = "<|im_end|>"

WEATHER = {"name": "get_weather", "description": "Weather of a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
TOOLS = [{"type": "function", "function": WEATHER}]
CALL = '{"name": "get_weather", "arguments": {"city": "Oslo"}}'
TURNS = [{"from": "human", "value": "Weather in Oslo?"}, {"from": "function_call", "value": CALL},
         {"from": "observation", "value": '{"temp": -3}'}, {"from": "gpt", "value": "Cold: -3."}]
# a small template that renders `tools` the way tool-calling templates do
TOOL_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nTools:{% for t in tools %} {{ t.function.name }}"
    "{% endfor %}<|im_end|>\n{% endif %}{% for m in messages %}<|im_start|>{{ m.role }}\n"
    "{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}")


def conv(row: dict) -> Conversation:
    return to_conversation(row, RowRef("t.jsonl", 1))


def spans(formatter: ChatFormatter, row: Conversation) -> list[str]:
    """Decode each run of supervised positions."""
    example = formatter.encode(row)
    runs: list[list[int]] = [[]]
    for token, label in zip(example.input_ids, example.labels, strict=True):
        if label != IGNORE_INDEX:
            runs[-1].append(token)
        elif runs[-1]:
            runs.append([])
    return [formatter.tokenizer.decode(r) for r in runs if r]


def text_of(formatter: ChatFormatter, ids: list[int]) -> str:
    return formatter.tokenizer.decode(ids)


def test_tools_text_is_the_documented_listing() -> None:
    assert tools_text(TOOLS) == TOOLS_HEADER + "\n" + json.dumps(TOOLS[0], ensure_ascii=False)
    assert TOOLS_HEADER == "You can call these tools. Each line is one tool's JSON schema:"


def test_a_template_with_tools_gets_them_through_apply_chat_template(tokenizer) -> None:
    toy = copy.deepcopy(tokenizer)
    toy.chat_template = TOOL_TEMPLATE
    formatter = ChatFormatter(toy)
    assert formatter.renders_tools
    row = conv({"conversations": TURNS, "tools": TOOLS})
    text = text_of(formatter, formatter.encode(row).input_ids)
    assert text.startswith("<|im_start|>system\nTools: get_weather<|im_end|>")
    assert TOOLS_HEADER not in text
    assert spans(formatter, row) == [f"{CALL}{EOT}", f"Cold: -3.{EOT}"]
    prompt = formatter.prompt_ids(row.messages[:1], row.tools)
    assert prompt == formatter.encode(row).input_ids[: len(prompt)]
    assert "Tools: get_weather" in formatter.prompt_text(row.messages[:1], row.tools)


def test_smollm2_ignores_tools_so_they_go_in_the_system_message(tokenizer) -> None:
    formatter = ChatFormatter(tokenizer)
    assert not formatter.renders_tools
    listing = tools_text(TOOLS)
    row = conv({"conversations": TURNS, "tools": json.dumps([WEATHER])})
    text = text_of(formatter, formatter.encode(row).input_ids)
    assert text.startswith(f"<|im_start|>system\n{listing}<|im_end|>\n<|im_start|>user\n")
    prompt = formatter.prompt_ids(row.messages[:1], row.tools)
    assert prompt == formatter.encode(row).input_ids[: len(prompt)]
    assert listing in text_of(formatter, prompt)
    plain = conv({"conversations": TURNS})
    assert spans(formatter, row) == spans(formatter, plain) == [f"{CALL}{EOT}",
                                                                f"Cold: -3.{EOT}"]


def test_the_listing_follows_the_rows_own_system_message(tokenizer) -> None:
    formatter = ChatFormatter(tokenizer)
    row = conv({"conversations": TURNS, "system": "Be brief.", "tools": TOOLS})
    text = text_of(formatter, formatter.encode(row).input_ids)
    assert text.startswith(f"<|im_start|>system\nBe brief.\n\n{tools_text(TOOLS)}<|im_end|>")
    chosen = ChatFormatter(tokenizer, system_prompt="Answer in French.")
    head = text_of(chosen, chosen.prompt_ids(row.messages[1:2], row.tools))
    assert head.startswith(f"<|im_start|>system\nAnswer in French.\n\n{tools_text(TOOLS)}")


@pytest.mark.parametrize("system", [None, "Be brief."])
def test_rows_without_tools_render_as_before(tokenizer, monkeypatch, system) -> None:
    formatter = ChatFormatter(tokenizer)
    calls = []
    real = type(tokenizer).apply_chat_template

    def spy(self, *args, **kwargs):
        calls.append(kwargs)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(type(tokenizer), "apply_chat_template", spy)
    turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]
    if system:
        turns.insert(0, {"role": "system", "content": system})
    row = conv({"messages": turns})
    head = system or "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    expected = (f"<|im_start|>system\n{head}<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                f"<|im_start|>assistant\nHello.<|im_end|>")
    ids = tokenizer(expected, add_special_tokens=False)["input_ids"]
    assert formatter.encode(row).input_ids == ids
    prompt = formatter.prompt_ids([Message("user", "Hi")] if not system else row.messages[:2])
    assert prompt == ids[: len(prompt)]
    assert calls and all("tools" not in kwargs for kwargs in calls)
    assert formatter._renders_tools is None  # no probe for rows without tools
