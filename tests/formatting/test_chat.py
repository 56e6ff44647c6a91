import copy

import pytest

from tunesmith.data.records import Conversation, Message, RowRef
from tunesmith.data.shapes import to_conversation
from tunesmith.formatting.chat import IGNORE_INDEX, ChatFormatter
from tunesmith.tokenization.examples import supervised_positions

EOT = "<|im_end|>"


def spans(formatter: ChatFormatter, conv: Conversation) -> list[str]:
    """Decode each run of supervised positions."""
    example = formatter.encode(conv)
    runs, current = [], []
    for token, label in zip(example.input_ids, example.labels, strict=True):
        if label != IGNORE_INDEX:
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return [formatter.tokenizer.decode(r) for r in runs]


def conv(row: dict) -> Conversation:
    return to_conversation(row, RowRef("t.jsonl", 1))


SHAREGPT = {"conversations": [
    {"from": "system", "value": "Be brief."}, {"from": "human", "value": "Colour of grass?"},
    {"from": "gpt", "value": "Green."}, {"from": "human", "value": "And the sky?"},
    {"from": "gpt", "value": "Blue."}]}


def test_every_assistant_turn_is_supervised(tokenizer) -> None:
    # BUG-05
    formatter = ChatFormatter(tokenizer)
    assert formatter.end_of_turn == EOT
    assert spans(formatter, conv(SHAREGPT)) == [f"Green.{EOT}", f"Blue.{EOT}"]
    as_messages = {"messages": [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Colour of grass?"},
                                {"role": "assistant", "content": "Green."},
                                {"role": "user", "content": "And the sky?"},
                                {"role": "assistant", "content": "Blue."}]}
    a, b = formatter.encode(conv(SHAREGPT)), formatter.encode(conv(as_messages))
    assert (a.input_ids, a.labels) == (b.input_ids, b.labels)
    last = ChatFormatter(tokenizer, train_on="last")
    assert spans(last, conv(SHAREGPT)) == [f"Blue.{EOT}"]


def test_data_system_message_replaces_the_template_default(tokenizer) -> None:
    # BUG-07
    formatter = ChatFormatter(tokenizer)
    own = conv({"messages": [{"role": "system", "content": "Reply only in French."},
                             {"role": "user", "content": "Thanks!"},
                             {"role": "assistant", "content": "Merci !"}]})
    text = tokenizer.decode(formatter.encode(own).input_ids)
    assert text.count("Reply only in French.") == 1
    assert formatter.template_system is not None and "SmolLM" in formatter.template_system
    assert "SmolLM" not in text
    assert spans(formatter, own) == [f"Merci !{EOT}"]
    plain = conv({"messages": [{"role": "user", "content": "Thanks!"},
                               {"role": "assistant", "content": "You're welcome."}]})
    configured = ChatFormatter(tokenizer, system_prompt="Be polite.")
    text = tokenizer.decode(configured.encode(plain).input_ids)
    assert "Be polite." in text and "SmolLM" not in text
    prompt = tokenizer.decode(configured.prompt_ids(plain.messages[:1]))
    assert "Be polite." in prompt


def test_template_system_prompt_is_named_once_and_only_when_used(tokenizer, caplog,
                                                                  monkeypatch) -> None:
    from tunesmith.formatting import chat

    monkeypatch.setattr(chat, "_TOLD_TEMPLATE_SYSTEM", set())  # as in a fresh process
    own = conv({"messages": [{"role": "system", "content": "Be brief."},
                             {"role": "user", "content": "Hi"},
                             {"role": "assistant", "content": "Hello."}]})
    plain = conv({"messages": [{"role": "user", "content": "Hi"},
                               {"role": "assistant", "content": "Hello."}]})
    said = "the chat template adds its own system prompt"
    with caplog.at_level("INFO", logger="tunesmith.formatting.chat"):
        formatter = ChatFormatter(tokenizer)
        formatter.encode(own)
        assert said not in caplog.text  # every row so far has its own system message
        for _ in range(3):
            formatter.encode(plain)
        ChatFormatter(tokenizer, system_prompt="Be polite.").encode(plain)
        ChatFormatter(tokenizer).encode(plain)  # another formatter of the same template
    assert caplog.text.count(said) == 1


def test_mid_conversation_system_message_is_rendered(tokenizer) -> None:
    row = conv({"messages": [{"role": "user", "content": "a"}, {"role": "assistant",
                "content": "b"}, {"role": "system", "content": "Now be terse."},
                {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]})
    text = tokenizer.decode(ChatFormatter(tokenizer).encode(row).input_ids)
    assert "Now be terse." in text


def test_inference_prompt_is_the_training_prefix(tokenizer) -> None:
    formatter = ChatFormatter(tokenizer, system_prompt="Classify.")
    for row in (SHAREGPT, {"prompt": "Answer:", "completion": " 42"}):
        c = conv(row)
        example = formatter.encode(c)
        last = max(i for i, m in enumerate(c.messages) if m.role == "assistant")
        prompt = formatter.prompt_ids(c.messages[:last])
        first_trained = supervised_positions(example.labels)
        tail = [p for p in first_trained if p >= len(prompt)]
        assert example.input_ids[: len(prompt)] == prompt
        assert tail[0] == len(prompt)


@pytest.mark.parametrize(("row", "answer"), [
    ({"prompt": "Answer:", "completion": " 42"}, " 42"),
    ({"prompt": "Answer: ", "completion": "42"}, "42"),
    ({"text": "### User: Hello\n\n### Assistant: Hi there."}, None),
])
def test_answers_are_supervised_from_their_first_character(tokenizer, row, answer) -> None:
    # BUG-11: segment-wise tokenization, so the span starts exactly at the answer.
    formatter = ChatFormatter(tokenizer)
    got = spans(formatter, conv(row))
    if answer is None:
        assert got == [row["text"] + tokenizer.eos_token]
    else:
        assert got == [answer + EOT]


def test_answer_starting_with_a_newline_is_supervised(tokenizer) -> None:
    row = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content":
           "Fine."}, {"role": "user", "content": "b"}, {"role": "assistant", "content":
           "\nIndented reply."}]}
    assert spans(ChatFormatter(tokenizer), conv(row)) == [f"Fine.{EOT}",
                                                          f"\nIndented reply.{EOT}"]


def test_weight_zero_turn_is_masked(tokenizer) -> None:
    row = {"messages": [{"role": "system", "content": "Answer tersely."},
                        {"role": "user", "content": "2+2?"},
                        {"role": "assistant", "content": "5", "weight": 0},
                        {"role": "user", "content": "Try again."},
                        {"role": "assistant", "content": "4", "weight": 1}]}
    formatter = ChatFormatter(tokenizer)
    assert spans(formatter, conv(row)) == [f"4{EOT}"]
    unweighted = copy.deepcopy(row)
    for m in unweighted["messages"]:
        m.pop("weight", None)
    # the token count is the same with and without the weight keys
    assert len(formatter.encode(conv(row)).input_ids) == len(
        formatter.encode(conv(unweighted)).input_ids)


def test_tool_call_answer_has_tokens(tokenizer) -> None:
    row = {"messages": [{"role": "user", "content": "Fly up"}, {"role": "assistant",
           "tool_calls": [{"type": "function", "function": {"name": "up", "arguments": "{}"}}]}]}
    assert ChatFormatter(tokenizer).encode(conv(row)).supervised > 5


def test_preview_marks_supervised_spans(tokenizer) -> None:
    from tunesmith.reporting.preview import render_preview

    text = render_preview(ChatFormatter(tokenizer), conv(SHAREGPT))
    assert f"[[Green.{EOT}]]" in text and f"[[Blue.{EOT}]]" in text
    assert text.split("\n", 1)[1].count("[[") == 2


def test_message_list_cannot_end_with_assistant_for_a_prompt(tokenizer) -> None:
    from tunesmith.errors import TemplateError

    with pytest.raises(TemplateError):
        ChatFormatter(tokenizer).prompt_ids([Message("user", "a"), Message("assistant", "b")])
