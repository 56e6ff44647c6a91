import copy

import pytest
from shared_cases import BUG04_ROWS, STRICT_TEMPLATE

from tunesmith.data import load_conversations
from tunesmith.formatting.chat import IGNORE_INDEX, ChatFormatter
from tunesmith.tokenization.batching import collate
from tunesmith.tokenization.examples import tokenize_conversations

STRICT = STRICT_TEMPLATE
ROWS = BUG04_ROWS


@pytest.fixture
def strict_tokenizer(tokenizer):
    strict = copy.deepcopy(tokenizer)
    strict.chat_template = STRICT
    return strict


def test_rows_the_template_cannot_render_are_dropped(strict_tokenizer, write_jsonl) -> None:
    # BUG-04: same result with 1 and 4 workers; reasons kept; nothing empty trains.
    loaded = load_conversations(write_jsonl(ROWS))
    assert [(r.ref.line, r.rule) for r in loaded.rejects] == [(3, "MisorderedRoles")]
    formatter = ChatFormatter(strict_tokenizer)
    one = tokenize_conversations(loaded.conversations, formatter, 256, workers=1)
    four = tokenize_conversations(loaded.conversations, formatter, 256, workers=4)
    assert [e.input_ids for e in one.examples] == [e.input_ids for e in four.examples]
    assert [(r.ref.line, r.rule) for r in one.rejects] == [(2, "TemplateFailed")]
    assert [(r.ref.line, r.rule) for r in four.rejects] == [(2, "TemplateFailed")]
    assert "roles must alternate" in one.rejects[0].reason
    assert len(loaded.rejects) + len(one.rejects) == 2
    assert all(e.supervised > 0 for e in one.examples)


def test_every_row_failing_leaves_nothing(strict_tokenizer, write_jsonl) -> None:
    loaded = load_conversations(write_jsonl(ROWS[1:2]))
    result = tokenize_conversations(loaded.conversations, ChatFormatter(strict_tokenizer), 256)
    assert result.examples == [] and len(result.rejects) == 1


FILLER = ("Please read this carefully. " + "Socks sorted by colour make mornings calmer, "
          "and blue socks go with blue socks while red ones stay with red ones. " * 4 +
          "What is three times four?")


def test_answer_truncated_away_is_dropped_or_kept_by_policy(tokenizer, write_jsonl) -> None:
    # BUG-12
    loaded = load_conversations(write_jsonl([{"prompt": FILLER, "completion": " Twelve."}]))
    formatter = ChatFormatter(tokenizer)
    dropped = tokenize_conversations(loaded.conversations, formatter, 16, "drop")
    assert dropped.examples == [] and dropped.rejects[0].rule == "TooLong"
    right = tokenize_conversations(loaded.conversations, formatter, 16, "right")
    assert right.examples == [] and "answer truncated away" in right.rejects[0].reason
    left = tokenize_conversations(loaded.conversations, formatter, 16, "left")
    (kept,) = left.examples
    assert len(kept.input_ids) == 16 and left.truncated == 1
    control = tokenize_conversations(loaded.conversations, formatter, 256, "drop").examples[0]
    supervised = [t for t, lab in zip(control.input_ids, control.labels, strict=True)
                  if lab != IGNORE_INDEX]
    assert tokenizer.decode(supervised) == " Twelve.<|im_end|>"
    assert kept.labels[-len(supervised):] == supervised


def test_very_long_example_follows_the_same_rule(tokenizer, write_jsonl) -> None:
    long_row = {"prompt": "word " * 20_000, "completion": "ok"}
    loaded = load_conversations(write_jsonl([long_row]))
    result = tokenize_conversations(loaded.conversations, ChatFormatter(tokenizer), 512)
    assert result.examples == [] and result.rejects[0].rule == "TooLong"


def test_pad_equal_to_eos_still_trains_the_stop_token(tokenizer, write_jsonl) -> None:
    # BUG-08: padding is masked by length, never by id.
    assert tokenizer.pad_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    loaded = load_conversations(write_jsonl([
        {"prompt": "Opposite of hot?", "completion": "Cold."},
        {"prompt": "Opposite of up?", "completion": "Down, of course."}]))
    encoded = tokenize_conversations(loaded.conversations, ChatFormatter(tokenizer), 256)
    batch = collate(encoded.examples, tokenizer.pad_token_id)
    eot = tokenizer.pad_token_id
    assert int(((batch.labels == eot)).sum()) == 2
    lengths = [len(e.input_ids) for e in encoded.examples]
    for row, n in enumerate(lengths):
        # padded positions (beyond the row's length) are masked; the last real one has no target
        assert (batch.labels[row, n - 1 :] == IGNORE_INDEX).all()
        assert (batch.attention_mask[row, :n] == 1).all()
        assert (batch.attention_mask[row, n:] == 0).all()


def test_rejects_file_keeps_the_original_row_of_a_too_long_one(tokenizer, write_jsonl,
                                                               tmp_path) -> None:
    import json

    from tunesmith.data.loading import write_rejects

    short = {"instruction": "Say hi.", "input": "", "output": "Hi."}
    long_row = {"instruction": "Repeat.", "input": "word " * 300, "output": "ok", "id": 7}
    loaded = load_conversations(write_jsonl([short, long_row]))
    result = tokenize_conversations(loaded.conversations, ChatFormatter(tokenizer), 64)
    assert len(result.examples) == 1
    assert write_rejects(result.rejects, tmp_path / "rejects.jsonl") == 1
    (line,) = (tmp_path / "rejects.jsonl").read_text().splitlines()
    entry = json.loads(line)
    assert entry["rule"] == "TooLong" and entry["ref"]["line"] == 2
    assert entry["original"] == long_row and entry["action"] == "dropped"
    assert entry["normalised"]["messages"][-1] == {"role": "assistant", "content": "ok"}
