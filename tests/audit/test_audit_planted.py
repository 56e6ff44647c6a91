"""A file with planted faults: the audit finds exactly the planted ones (precision = recall = 1)."""

from __future__ import annotations

from pathlib import Path

import pytest
from planted import lines_of, write_planted

from tunesmith.audit import AuditOptions, audit_data
from tunesmith.config import load_config


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    path = tmp_path_factory.mktemp("planted") / "planted.jsonl"
    planted = write_planted(path)
    config = load_config(None, ["data.max_length=256"])
    return planted, audit_data([str(path)], [], config, AuditOptions(progress=False))


def test_every_row_is_accounted_for(audited: tuple) -> None:
    planted, report = audited
    schema = report["schema_check"]["train"]
    assert schema["rows"] == planted.rows
    assert schema["usable"] + schema["rejected"] == planted.rows


def test_empty_answers_are_found_exactly(audited: tuple) -> None:
    planted, report = audited
    problems = report["schema_check"]["train"]["problem_rows"]
    assert lines_of([p["row"] for p in problems if p["rule"] == "EmptyAnswer"]) == planted.empty
    assert {p["field"] for p in problems} == {"messages[1].content"}


def test_exact_duplicates_are_found_exactly(audited: tuple) -> None:
    planted, report = audited
    groups = report["duplicates"]["exact"]
    copies = set().union(*(lines_of(g["rows"][1:]) for g in groups))
    assert copies == planted.exact
    assert report["duplicates"]["exact_duplicate_rows"] == len(planted.exact)


def test_near_duplicates_are_found_exactly(audited: tuple) -> None:
    planted, report = audited
    clusters = report["duplicates"]["near"]
    copies = set().union(*(lines_of(c["rows"][1:]) for c in clusters))
    assert copies == planted.near
    assert all(p["similarity"] >= 0.7 for c in clusters for p in c["pairs"])


def test_contradictions_are_found_exactly(audited: tuple) -> None:
    planted, report = audited
    found = {frozenset(lines_of(g["rows"])) for g in report["contradictions"]["listed"]}
    assert found == planted.contradictions


def test_sensitive_data_is_found_exactly(audited: tuple) -> None:
    planted, report = audited
    found = {kind: lines_of(rows) for kind, rows in
             report["sensitive"]["rows_by_kind"].items()}
    assert found == planted.sensitive
    assert report["sensitive"]["rows"] == len(planted.sensitive)


def test_values_in_the_report_are_masked(audited: tuple) -> None:
    _, report = audited
    shown = [f["value"] for e in report["sensitive"]["examples"] for f in e["found"]]
    assert "maria.lopez@example.org" not in shown
    assert "ma*******************rg" in shown


def test_over_long_rows_are_found_exactly(audited: tuple) -> None:
    planted, report = audited
    lengths = report["lengths"]
    assert lines_of(lengths["over_max_length_rows"]) == planted.long
    assert lengths["dropped_by_policy"] == len(planted.long)
    assert lengths["histogram"]["over"] == len(planted.long)
    assert sum(lengths["histogram"]["counts"]) + len(planted.long) == lengths["rows"]


def test_report_has_the_stable_top_level_keys(audited: tuple) -> None:
    _, report = audited
    assert list(report) == [
        "schema", "version", "inputs", "lengths", "schema_check", "quality", "duplicates",
        "contradictions", "leakage", "sensitive", "balance", "clusters", "estimate", "size",
        "thresholds", "passed", "timings_s"]
    assert report["schema"] == "tunesmith.data-report" and report["version"] == 1


def test_planted_file_is_not_flagged_elsewhere(audited: tuple, tmp_path: Path) -> None:
    _, report = audited
    assert report["quality"]["repetitive_answers"] == 0
    assert report["leakage"] == {"skipped": "no eval data given (--eval)"}
