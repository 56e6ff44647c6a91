"""`data clean`: every input row is kept or rejected, output is stable, the split leaks nothing."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from planted import write_planted

from tunesmith.audit import AuditOptions, audit_data
from tunesmith.config import load_config
from tunesmith.data.checks.sensitive import find_sensitive
from tunesmith.data.cleaning import CleanOptions, clean_data


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def planted(tmp_path: Path):
    return write_planted(tmp_path / "planted.jsonl")


def test_kept_plus_dropped_is_every_input_row(planted, tmp_path: Path) -> None:
    manifest = clean_data([str(planted.path)], tmp_path / "out")
    counts = manifest["counts"]
    assert counts["input_rows"] == planted.rows
    assert counts["kept_rows"] + counts["dropped_rows"] == planted.rows
    rejects = _read(tmp_path / "out" / "rejects.jsonl")
    dropped = [r for r in rejects if r["action"] == "dropped"]
    assert len(dropped) == counts["dropped_rows"]
    assert len(_read(tmp_path / "out" / "train.jsonl")) == counts["kept_rows"]
    lines = Counter(r["rule"] for r in dropped)
    assert lines == {"ExactDuplicate": len(planted.exact), "NearDuplicate": len(planted.near),
                     "Contradiction": 2 * len(planted.contradictions),
                     "EmptyAnswer": len(planted.empty)}
    dropped_lines = {r["ref"]["line"] for r in dropped}
    assert dropped_lines == (planted.exact | planted.near | planted.empty
                             | set().union(*planted.contradictions))


def test_rejects_keep_the_original_content(planted, tmp_path: Path) -> None:
    clean_data([str(planted.path)], tmp_path / "out")
    originals = planted.path.read_text().splitlines()
    for reject in _read(tmp_path / "out" / "rejects.jsonl"):
        assert reject["original"] == json.loads(originals[reject["ref"]["line"] - 1])


def test_clean_and_training_rejects_have_one_structure(tmp_path: Path) -> None:
    from tunesmith.data.loading import load_conversations, write_rejects

    rows = [{"messages": [{"role": "user", "content": "Hi?"},
                          {"role": "assistant", "content": "Hello."}]},
            {"messages": [{"role": "user", "content": "Hi?"},
                          {"role": "assistant", "content": " "}]}]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    clean_data([str(data)], tmp_path / "out")
    (cleaned,) = _read(tmp_path / "out" / "rejects.jsonl")
    write_rejects(load_conversations([str(data)]).rejects, tmp_path / "run-rejects.jsonl")
    (trained,) = _read(tmp_path / "run-rejects.jsonl")
    assert cleaned == trained == {
        "ref": {"source": str(data), "line": 2}, "action": "dropped", "rule": "EmptyAnswer",
        "reason": cleaned["reason"], "field": cleaned["field"], "original": rows[1]}


def test_sensitive_data_is_redacted_with_typed_placeholders(planted, tmp_path: Path) -> None:
    clean_data([str(planted.path)], tmp_path / "out")
    kept = (tmp_path / "out" / "train.jsonl").read_text()
    assert find_sensitive(kept) == []
    for kind in planted.sensitive:
        assert f"<{kind}>" in kept
    changed = [r for r in _read(tmp_path / "out" / "rejects.jsonl") if r["action"] == "changed"]
    assert {r["ref"]["line"] for r in changed} == set().union(*planted.sensitive.values())
    assert all(r["rule"] == "Redacted" for r in changed)


def test_running_twice_gives_identical_files(planted, tmp_path: Path) -> None:
    options = CleanOptions(eval_fraction=0.2)
    clean_data([str(planted.path)], tmp_path / "a", options=options)
    clean_data([str(planted.path)], tmp_path / "b", options=options)
    for name in ("train.jsonl", "eval.jsonl", "rejects.jsonl", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_cleaning_cleaned_data_changes_nothing(planted, tmp_path: Path) -> None:
    clean_data([str(planted.path)], tmp_path / "once")
    manifest = clean_data([str(tmp_path / "once" / "train.jsonl")], tmp_path / "twice")
    assert manifest["counts"]["dropped_rows"] == 0
    assert manifest["counts"]["changed_rows"] == 0
    assert ((tmp_path / "once" / "train.jsonl").read_bytes()
            == (tmp_path / "twice" / "train.jsonl").read_bytes())


def test_split_is_stratified_and_leak_free(jsonl, tmp_path: Path) -> None:
    rows = [{"text": f"question {i} about topic {i % 7} {'x' * (i % 3)}", "label": lab}
            for i, lab in enumerate(["a"] * 60 + ["b"] * 30 + ["c"] * 10)]
    rows += [{"text": "question 3 about topic 3 ", "label": "a"}]  # a copy of row 3
    path = jsonl(rows, "labels.jsonl")
    manifest = clean_data([str(path)], tmp_path / "out",
                          options=CleanOptions(eval_fraction=0.2, drop_duplicates=False,
                                               drop_near_duplicates=False))
    train = _read(tmp_path / "out" / "train.jsonl")
    held = _read(tmp_path / "out" / "eval.jsonl")
    assert manifest["counts"]["eval_rows"] == len(held)
    assert Counter(r["label"] for r in held) == {"a": 12, "b": 6, "c": 2}
    assert {r["text"].strip() for r in train}.isdisjoint({r["text"].strip() for r in held})
    report = audit_data([str(tmp_path / "out" / "train.jsonl")],
                        [str(tmp_path / "out" / "eval.jsonl")], load_config(None),
                        AuditOptions(lengths=False, progress=False))
    assert report["leakage"]["leaked_rows"] == 0


def test_resolve_keeps_the_majority_answer(jsonl, tmp_path: Path) -> None:
    prompt = "What is the boiling point of water at sea level?"
    rows = [{"prompt": prompt, "completion": "100 degrees Celsius."},
            {"prompt": prompt, "completion": "100 degrees celsius"},
            {"prompt": prompt, "completion": "It boils at 50 kelvin maybe."}]
    path = jsonl(rows)
    manifest = clean_data([str(path)], tmp_path / "out",
                          options=CleanOptions(contradictions="resolve"))
    assert _read(tmp_path / "out" / "train.jsonl") == [rows[0]]
    assert manifest["rules"] == {"Contradiction": 1, "ExactDuplicate": 1}


def test_nan_rows_are_rejected_and_every_output_is_strict_json(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text('{"prompt": "Opposite of hot?", "completion": NaN}\n'
                     '{"prompt": "Opposite of up?", "completion": "Down."}\n')
    table = tmp_path / "rows.parquet"  # Parquet floats may be NaN: kept, written as null
    pq.write_table(pa.Table.from_pylist([{"prompt": "Opposite of wet?", "completion": "Dry.",
                                          "score": float("nan")}]), table)
    manifest = clean_data([str(jsonl), str(table)], tmp_path / "out")
    assert manifest["counts"]["dropped_rows"] == 1

    def strict(path: Path) -> list[dict]:
        return [json.loads(line, parse_constant=lambda word: pytest.fail(f"{word} in {path}"))
                for line in path.read_text(encoding="utf-8").splitlines()]

    [reject] = strict(tmp_path / "out" / "rejects.jsonl")
    assert reject["reason"] == ("completion is NaN, which JSON does not have; write null or a "
                                "number (or a string)")
    assert reject["original"] == '{"prompt": "Opposite of hot?", "completion": NaN}'
    kept = strict(tmp_path / "out" / "train.jsonl")
    assert {"prompt": "Opposite of wet?", "completion": "Dry.", "score": None} in kept
