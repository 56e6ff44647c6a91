import json

import pytest

from tunesmith.data import load_conversations
from tunesmith.data.records import Message, RowRef
from tunesmith.data.shapes import RowMapping, RowProblem, detect_shape, to_conversation

REF = RowRef("t.jsonl", 1)


@pytest.mark.parametrize(("row", "shape"), [
    ({"messages": []}, "messages"),
    ({"conversations": []}, "sharegpt"),
    ({"instruction": "a", "input": "", "output": "b"}, "alpaca"),
    ({"prompt": "a", "completion": "b"}, "prompt_completion"),
    ({"prompt": "a", "response": "b"}, "prompt_completion"),
    ({"text": "a"}, "text"),
])
def test_detect_shape(row: dict, shape: str) -> None:
    assert detect_shape(row) == shape


def test_unknown_shape_names_the_keys() -> None:
    with pytest.raises(RowProblem, match=r"keys \(answer, question\)"):
        detect_shape({"question": "q", "answer": "a"})


def test_sharegpt_roles_map_to_chat_roles() -> None:
    row = {"conversations": [{"from": "system", "value": "Be brief."},
                             {"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}]}
    conv = to_conversation(row, REF)
    assert [m.role for m in conv.messages] == ["system", "user", "assistant"]


def test_alpaca_joins_instruction_and_input() -> None:
    conv = to_conversation({"instruction": "Translate.", "input": "chat", "output": "cat"}, REF)
    assert conv.messages == [Message("user", "Translate.\n\nchat"), Message("assistant", "cat")]


def test_weights_zero_and_one_are_kept() -> None:
    # BUG-02: numeric weights on assistant turns are supported (0 masks the turn).
    row = json.loads('{"messages":[{"role":"system","content":"Answer tersely."},{"role":"user",'
                     '"content":"2+2?"},{"role":"assistant","content":"5","weight":0},{"role":'
                     '"user","content":"Try again."},{"role":"assistant","content":"4",'
                     '"weight":1}]}')
    conv = to_conversation(row, REF)
    assert [m.weight for m in conv.messages if m.role == "assistant"] == [0, 1]


@pytest.mark.parametrize("weight", [0.5, "1", True])
def test_bad_weights_are_rejected_with_line_and_index(write_jsonl, weight) -> None:
    row = {"messages": [{"role": "user", "content": "2+2?"},
                        {"role": "assistant", "content": "4", "weight": weight}]}
    result = load_conversations(write_jsonl([row]))
    assert not result.conversations
    (reject,) = result.rejects
    assert (reject.ref.line, reject.field, reject.rule) == (1, "messages[1].weight", "BadWeight")


def test_empty_answers_are_dropped_with_line_and_field(write_jsonl) -> None:
    # BUG-03: empty and whitespace-only targets, never a tokenizer crash.
    path = write_jsonl([
        {"instruction": "Spell 'cat' backwards.", "input": "", "output": "tac"},
        {"instruction": "Say nothing.", "input": "", "output": ""},
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant",
                                                          "content": "   \n"}]},
    ])
    result = load_conversations(path)
    assert len(result.conversations) == 1
    assert [(r.ref.line, r.field, r.rule) for r in result.rejects] == [
        (2, "output", "EmptyAnswer"), (3, "messages[1].content", "EmptyAnswer")]
    assert result.summary().startswith("1 of 3 rows kept; 2 of 3 dropped")


def test_unknown_role_and_wrong_types(write_jsonl) -> None:
    path = write_jsonl([
        {"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]},
        {"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "y"}]},
        {"messages": "hello"},
    ])
    rules = [(r.field, r.rule) for r in load_conversations(path).rejects]
    assert rules == [("messages[0].role", "UnknownRole"), ("messages[0].content", "WrongType"),
                     ("messages", "WrongType")]


def test_tool_call_message_counts_as_an_answer() -> None:
    row = {"messages": [{"role": "user", "content": "Fly up"}, {"role": "assistant",
           "tool_calls": [{"type": "function", "function": {"name": "up", "arguments": "{}"}}]}]}
    conv = to_conversation(row, REF)
    assert '"name": "up"' in conv.messages[-1].content


def test_mapped_table_builds_json_answers() -> None:
    mapping = RowMapping(user="{text}", assistant_json={"intent": "{category}"})
    conv = to_conversation({"text": " Card not here? ", "category": "card_arrival"}, REF,
                           "mapped", mapping)
    assert conv.messages == [Message("user", "Card not here?"),
                             Message("assistant", '{"intent": "card_arrival"}')]
    with pytest.raises(RowProblem, match="column 'category' is missing"):
        to_conversation({"text": "x"}, REF, "mapped", mapping)


def test_shared_datasets_load_without_mapping(datasets_dir) -> None:
    expected = {"alpaca-samples/alpaca_en_demo.json": ("alpaca", 999),
                "sharegpt-samples/dummy_conversation.json": ("sharegpt", 500),
                "dolly-prompt-response/dolly_hhrlhf_train_small.jsonl": ("prompt_completion",
                                                                         1000),
                "openai-chat-samples/drone_training.jsonl": ("messages", 103)}
    for name, (shape, rows) in expected.items():
        result = load_conversations(datasets_dir / name)
        assert dict(result.shapes) == {shape: rows}, name


def test_toy_file_reports_the_row_without_a_user_turn(datasets_dir) -> None:
    result = load_conversations(datasets_dir / "openai-chat-samples/toy_chat_fine_tuning.jsonl")
    assert [(r.ref.line, r.rule) for r in result.rejects] == [(4, "MisorderedRoles")]


def test_nested_examples_are_named_with_how_to_flatten() -> None:
    squad = {"title": "T", "paragraphs": [{"context": "c", "qas": [{"question": "q"}]}]}
    with pytest.raises(RowProblem) as nested:
        detect_shape(squad)
    assert nested.value.rule == "UnknownShape"
    assert "the row nests its examples (paragraphs holds a list of objects" in str(nested.value)
    # other unknown rows keep the general message
    with pytest.raises(RowProblem, match="cannot tell the row's shape"):
        detect_shape({"question": "q", "answers": [{"text": "a"}]})
