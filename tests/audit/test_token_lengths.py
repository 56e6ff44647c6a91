"""Batched token counts equal `ChatFormatter.encode` and do not depend on the worker count."""

from __future__ import annotations

import numpy as np
import pytest

from tunesmith.data.records import Conversation, Message, RowRef
from tunesmith.formatting.chat import ChatFormatter
from tunesmith.modeling.inventory import load_tokenizer
from tunesmith.tokenization import lengths as lengths_module
from tunesmith.tokenization.lengths import count_tokens, length_section


@pytest.fixture(scope="module")
def formatter() -> ChatFormatter:
    return ChatFormatter(load_tokenizer("smollm2-135m-instruct"))


def _convs() -> list[Conversation]:
    convs = []
    for i in range(11):
        msgs = [Message("user", f"Question {i}: " + "why " * i),
                Message("assistant", f"Answer {i}." + " because" * (3 * i))]
        if i % 3 == 0:
            msgs += [Message("user", "And then?"), Message("assistant", "Then " * i + "done.")]
        convs.append(Conversation(msgs, RowRef("f.jsonl", i + 1)))
    return convs


@pytest.mark.parametrize("workers", [1, 2])
def test_counts_match_encode(formatter: ChatFormatter, workers: int,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lengths_module, "BATCH", 4)  # several batches, forked when workers=2
    convs = _convs()
    counted = count_tokens(formatter, convs, progress=False, workers=workers)
    encoded = [formatter.encode(c) for c in convs]
    assert counted.total.tolist() == [len(e.input_ids) for e in encoded]
    assert counted.answer.tolist() == [e.supervised for e in encoded]
    first = [e.labels.index(next(x for x in e.labels if x != -100)) for e in encoded]
    assert counted.before_answer.tolist() == first


def test_section_counts_over_length_and_lost_answers() -> None:
    rows = lengths_module.RowLengths(np.array([10, 50, 90, 5]), np.array([5, 20, 30, 1]),
                                     np.array([10, 50, 90, 5]))
    section = length_section(rows, 60, "right", ["a:1", "a:2", "a:3", "a:4"])
    assert section["over_max_length_rows"] == ["a:2", "a:3"]
    assert section["answer_lost_rows"] == ["a:3"]  # 90 prompt tokens before the answer
    assert (section["dropped_by_policy"], section["truncated_by_policy"]) == (1, 1)
    assert section["histogram"]["over"] == 2 and sum(section["histogram"]["counts"]) == 2
