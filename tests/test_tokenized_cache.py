"""A rerun with the same inputs loads tokenized examples from the cache, rejects included."""

import logging
from pathlib import Path

import pytest

from tunesmith import pipeline
from tunesmith.config.loading import load_config

ROWS = [{"prompt": f"Question {i}?", "completion": f"Answer {i}. " * (1 + i % 3)}
        for i in range(12)]
LONG = {"prompt": "Tell me everything. " * 60, "completion": "No."}  # dropped: too long


def _config(tmp_path: Path, train: Path, max_length: int = 128):
    return load_config(None, [f"data.train=[{train}]", f"model.cache_dir={tmp_path / 'cache'}",
                              f"data.max_length={max_length}", "data.eval_fraction=0.25"])


def _prepare(tmp_path: Path, train: Path, tokenizer, name: str, max_length: int = 128):
    data = pipeline.prepare_data(_config(tmp_path, train, max_length), tokenizer,
                                 tmp_path / name)
    return data, (tmp_path / name / "data" / "rejects.jsonl").read_bytes()


def _refuse(*args, **kwargs):
    raise AssertionError("tokenized again despite a cache entry")


def test_second_prepare_loads_from_the_cache(tmp_path, tokenizer, write_jsonl, monkeypatch,
                                             caplog) -> None:
    train = write_jsonl([*ROWS, LONG, "{not json"])
    first, rejects = _prepare(tmp_path, train, tokenizer, "one")
    assert rejects.count(b"\n") == 2  # the bad line (at load) and the long row (at encoding)
    assert len(list((tmp_path / "cache" / "tokenized").glob("*/tokenized.json"))) == 1
    monkeypatch.setattr(pipeline, "tokenize_conversations", _refuse)
    with caplog.at_level(logging.INFO, logger="tunesmith.pipeline"):
        second, rejects_again = _prepare(tmp_path, train, tokenizer, "two")
    assert "tokenization skipped" in caplog.text
    assert second.train == first.train and second.eval == first.eval
    assert second.counts == first.counts
    assert rejects_again == rejects
    # changing max_length changes the key: this run has to tokenize
    with pytest.raises(AssertionError, match="tokenized again"):
        _prepare(tmp_path, train, tokenizer, "three", max_length=96)


def test_changed_input_file_misses_the_cache(tmp_path, tokenizer, write_jsonl) -> None:
    train = write_jsonl(ROWS)
    _prepare(tmp_path, train, tokenizer, "one")
    write_jsonl([*ROWS[:-1], {"prompt": "Question 11?", "completion": "Changed."}])
    changed, _ = _prepare(tmp_path, train, tokenizer, "two")
    assert len(list((tmp_path / "cache" / "tokenized").iterdir())) == 2
    ids = [e.input_ids for e in changed.train + changed.eval]
    assert any(tokenizer.encode("Changed.", add_special_tokens=False)[0] in i for i in ids)


def test_corrupt_entry_is_rebuilt_with_a_warning(tmp_path, tokenizer, write_jsonl,
                                                 caplog) -> None:
    train = write_jsonl(ROWS)
    first, _ = _prepare(tmp_path, train, tokenizer, "one")
    (entry,) = (tmp_path / "cache" / "tokenized").glob("*/tokenized.json")
    entry.write_bytes(entry.read_bytes()[:-40])  # a half-written file
    with caplog.at_level(logging.WARNING):
        second, _ = _prepare(tmp_path, train, tokenizer, "two")
    assert "unreadable" in caplog.text
    assert second.train == first.train
    # rebuilt: a third run loads it again
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="tunesmith.pipeline"):
        _prepare(tmp_path, train, tokenizer, "three")
    assert "tokenization skipped" in caplog.text
    assert not list(entry.parent.glob("*.tmp"))


def test_changed_tools_change_the_key(tmp_path, tokenizer, write_jsonl) -> None:
    from tunesmith.tokenization.cache import tokenized_key, tokenizer_fingerprint

    row = {"messages": [{"role": "user", "content": "Hi"},
                        {"role": "assistant", "content": "Hello."}],
           "tools": [{"name": "get_weather"}]}
    fingerprint = tokenizer_fingerprint(tokenizer)
    first = tokenized_key([str(write_jsonl([row]))], fingerprint, {})
    row["tools"] = [{"name": "get_time"}]
    assert tokenized_key([str(write_jsonl([row]))], fingerprint, {}) != first
