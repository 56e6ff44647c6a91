"""The audit on real public datasets: what it must report about each."""

from __future__ import annotations

from pathlib import Path

import pytest
from planted import lines_of

from tunesmith.audit import AuditOptions, audit_data
from tunesmith.config import load_config

pytestmark = pytest.mark.shared
NO_LENGTHS = AuditOptions(lengths=False, progress=False)


def test_toy_chat_file_reports_every_problem(datasets: Path) -> None:
    path = datasets / "openai-chat-samples" / "toy_chat_fine_tuning.jsonl"
    report = audit_data([str(path)], [], load_config(None), AuditOptions(progress=False))
    schema = report["schema_check"]["train"]
    assert (schema["rows"], schema["usable"]) == (5, 4)
    assert [(p["row"].rsplit(":", 1)[1], p["rule"]) for p in schema["problem_rows"]] == [
        ("4", "MisorderedRoles")]
    assert lines_of(report["lengths"]["over_max_length_rows"]) == {5}
    assert report["lengths"]["total"]["max"] > 1024
    assert lines_of(report["quality"]["repetitive_answer_rows"]) == {5}
    assert lines_of(report["quality"]["missing_system_message_rows"]) == {3}
    assert report["size"]["verdict"] == "too small"


def test_banking77_imbalance_duplicates_and_contradictions(datasets: Path) -> None:
    folder = datasets / "banking77"
    report = audit_data([str(folder / "train.csv")], [str(folder / "test.csv")],
                        load_config(None), NO_LENGTHS)
    assert report["schema_check"]["train"]["formats"] == {"mapped": 10003}
    bal = report["balance"]
    assert bal["kind"] == "labels" and bal["distinct"] == 77
    assert bal["largest"][1] == 187 and bal["smallest"][1] == 35 and bal["imbalanced"]
    assert report["duplicates"]["exact_duplicate_rows"] == 30
    pairs = [(lines_of([p["a"]]), lines_of([p["b"]]), p["answer_a"], p["answer_b"])
             for g in report["contradictions"]["listed"] for p in g["pairs"]]
    assert ({2010}, {3169}, "pending_top_up", "top_up_reverted") in pairs
    assert report["leakage"]["exact"] > 0


@pytest.mark.parametrize(("folder", "name", "shape"), [
    ("alpaca-samples", "alpaca_en_demo.json", "alpaca"),
    ("sharegpt-samples", "glaive_toolcall_en_demo.json", "sharegpt"),
    ("dolly-prompt-response", "dolly_hhrlhf_train_small.jsonl", "prompt_completion"),
])
def test_common_formats_are_detected_without_mapping(datasets: Path, folder: str, name: str,
                                                     shape: str) -> None:
    report = audit_data([str(datasets / folder / name)], [], load_config(None), NO_LENGTHS)
    schema = report["schema_check"]["train"]
    assert list(schema["formats"]) == [shape]
    assert schema["usable"] >= 0.9 * schema["rows"] > 0
