"""The automatic train/eval split keeps every prompt on one side, the same for the same seed."""

from __future__ import annotations

from pathlib import Path

from tunesmith.data.checks.features import texts_of
from tunesmith.data.loading import load_conversations
from tunesmith.data.records import Conversation, Message, RowRef
from tunesmith.pipeline import _split


def _conv(prompt: str, answer: str, system: str = "") -> Conversation:
    turns = [Message("system", system)] if system else []
    return Conversation([*turns, Message("user", prompt), Message("assistant", answer)],
                        RowRef("planted.jsonl", 0))


def _planted() -> list[Conversation]:
    """100 distinct questions plus copies: exact, same prompt with another answer, near."""
    rows = [_conv(f"What is {i} plus {i + 7}? Show the sum.", f"{2 * i + 7}.")
            for i in range(100)]
    for i in range(0, 100, 4):
        rows.append(_conv(f"What is {i} plus {i + 7}? Show the sum.", f"{2 * i + 7}."))
        rows.append(_conv(f"What is {i} plus {i + 7}? Show the sum.", "I am not sure."))
    for i in range(1, 100, 10):  # one word changed in a long prompt: a near copy
        rows.append(_conv(f"What is {i} plus {i + 7}? Show the sum, please.", f"{2 * i + 7}."))
    rows.append(_conv("What is 3 plus 10? Show the sum.", "13.", system="Be brief."))
    return rows


def _prompts(convs: list[Conversation]) -> set[str]:
    return {texts_of(conv, None).key for conv in convs}


def test_no_eval_prompt_is_in_train() -> None:
    rows = _planted()
    for fraction in (0.05, 0.2, 0.5):
        for seed in range(5):
            train, held = _split(rows, fraction, seed)
            assert len(train) + len(held) == len(rows)
            assert _prompts(held).isdisjoint(_prompts(train)), (fraction, seed)
            assert abs(len(held) - fraction * len(rows)) <= 3, (fraction, seed, len(held))


def test_near_copies_of_a_prompt_stay_together() -> None:
    rows = _planted()
    train, held = _split(rows, 0.2, 0)
    near = {f"what is {i} plus {i + 7} show the sum" for i in range(1, 100, 10)}
    assert any(p.startswith(tuple(near)) for p in _prompts(held))  # some group was held
    for base in near:
        sides = {side for side, convs in (("train", train), ("eval", held))
                 for p in _prompts(convs) if p.startswith(base + " ") or p == base}
        assert len(sides) == 1, base


def test_the_same_seed_gives_the_same_split() -> None:
    rows = _planted()
    first, again = _split(rows, 0.2, 7), _split(rows, 0.2, 7)
    assert [id(c) for c in first[1]] == [id(c) for c in again[1]]
    assert [id(c) for c in _split(rows, 0.2, 8)[1]] != [id(c) for c in first[1]]
    assert abs(len(first[1]) - 0.2 * len(rows)) <= 1


def test_distinct_rows_split_by_share_and_keep_a_training_row() -> None:
    rows = [_conv(f"Question number {i}?", "Yes.") for i in range(8)]
    train, held = _split(rows, 0.25, 0)
    assert (len(train), len(held)) == (6, 2)
    same = [_conv("One question?", "Yes.") for _ in range(4)]
    assert _split(same, 0.5, 0) == (same, [])  # one group: nothing left to train on if held
    assert _split(rows, 0.0, 0) == (rows, [])


def test_shared_toolcall_sample_has_no_eval_prompt_in_train(datasets_dir: Path) -> None:
    path = datasets_dir / "sharegpt-samples" / "glaive_toolcall_en_demo.json"
    rows = load_conversations([str(path)]).conversations
    for fraction in (0.05, 0.2):
        train, held = _split(rows, fraction, 42)
        assert _prompts(held).isdisjoint(_prompts(train))
        assert abs(len(held) - fraction * len(rows)) <= 2
