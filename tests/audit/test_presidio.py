"""Presidio findings merge with the built-in detectors (a fake analyzer; the real one when
installed, offline on spaCy's blank pipeline)."""

from dataclasses import dataclass

import pytest

from tunesmith.audit import AuditOptions, audit_data
from tunesmith.config import load_config
from tunesmith.data.checks import presidio
from tunesmith.data.checks.sensitive import Finding

TEXT = "Ask Jane Roe at jane@example.com"


@dataclass
class Result:
    entity_type: str
    start: int
    end: int
    score: float


class FakeAnalyzer:
    """Finds the name, the e-mail (as Presidio calls it) and a weak guess."""

    def analyze(self, text: str, language: str) -> list[Result]:
        assert language == "en"
        found = []
        for value, entity, score in (("Jane Roe", "PERSON", 0.85),
                                     ("jane@example.com", "EMAIL_ADDRESS", 1.0),
                                     ("Ask", "LOCATION", 0.2)):
            start = text.find(value)
            if start >= 0:
                found.append(Result(entity, start, start + len(value), score))
        return found


def test_findings_are_mapped_and_merged_without_double_counting() -> None:
    find = presidio.merged_finder(FakeAnalyzer())
    assert find(TEXT) == [Finding("PERSON", 4, 12), Finding("EMAIL", 16, 32)]
    assert presidio.kind_of("IBAN_CODE") == "IBAN" and presidio.kind_of("NRP") == "NRP"
    assert find("nothing here") == []


def test_audit_counts_presidio_kinds(jsonl, monkeypatch) -> None:
    monkeypatch.setattr(presidio, "load_analyzer", lambda language, model=None: FakeAnalyzer())
    rows = [{"prompt": TEXT, "completion": "Done."}, {"prompt": "Hi there", "completion": "Hi."},
            {"prompt": "Mail jane@example.com", "completion": "Sent."}]
    path = str(jsonl(rows))
    options = AuditOptions(lengths=False, progress=False)
    with_presidio = audit_data([path], [], load_config(None, ["audit.presidio=true"]), options)
    section = with_presidio["sensitive"]
    assert section["counts"] == {"EMAIL": 2, "PERSON": 1} and section["rows"] == 2
    assert section["rows_by_kind"]["PERSON"] == [f"{path}:1"]
    built_in = audit_data([path], [], load_config(None, []), options)["sensitive"]
    assert built_in["counts"] == {"EMAIL": 2}


def test_real_presidio_runs_offline_on_a_blank_pipeline() -> None:
    pytest.importorskip("presidio_analyzer")
    analyzer = presidio.load_analyzer("en", model="no_such_spacy_model")
    found = presidio.merged_finder(analyzer)("Write to jane@example.com via https://example.org")
    assert [f.kind for f in found] == ["EMAIL", "URL"]
