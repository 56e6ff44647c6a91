"""Unit checks of the audit's building blocks, with values computed by hand."""

from __future__ import annotations

import pytest

from tunesmith.config import load_config
from tunesmith.data.checks import balance, duplicates, sensitive
from tunesmith.data.checks.contradictions import find_contradictions
from tunesmith.data.checks.rows import infer_label_mapping, normalise_text
from tunesmith.data.checks.thresholds import evaluate_thresholds


@pytest.mark.parametrize(("number", "valid"), [
    ("4111111111111111", True), ("4111111111111112", False), ("5555555555554444", True),
    ("378282246310005", True), ("378282246310006", False)])
def test_luhn(number: str, valid: bool) -> None:
    assert sensitive.luhn_valid(number) is valid


def test_iban_checksum() -> None:
    assert sensitive.iban_valid("GB82 WEST 1234 5698 7654 32")
    assert not sensitive.iban_valid("GB83 WEST 1234 5698 7654 32")


def test_each_kind_is_found_and_redacted() -> None:
    text = ("mail a.b@example.com, call +44 20 7946 0958, card 4111 1111 1111 1111, "
            "iban GB82 WEST 1234 5698 7654 32, ssn 123-45-6789, ip 192.168.1.20, "
            "key AKIAIOSFODNN7EXAMPLE, token Zx8Qp2Lr7Vb4Nm9Ks3Hd6Tf1Wc5Yg0Ja")
    kinds = [f.kind for f in sensitive.find_sensitive(text)]
    assert kinds == ["EMAIL", "PHONE", "CARD", "IBAN", "NATIONAL_ID", "IP", "API_KEY", "SECRET"]
    assert sensitive.redact(text) == (
        "mail <EMAIL>, call <PHONE>, card <CARD>, iban <IBAN>, ssn <NATIONAL_ID>, ip <IP>, "
        "key <API_KEY>, token <SECRET>")


@pytest.mark.parametrize("text", [
    "card 4111 1111 1111 1112 fails Luhn", "on 2024-03-15 at 10:30", "version 3.11.7",
    "12,000 people in 1999", "a perfectly ordinary sentence about unbelievably long words",
    "call 555-1234", "see time.com/5798772/behind-the-coronavirus-transmission-risk/",
    "upload.wikimedia.org/wikipedia/commons/thumb/4/4f/Edgar_Degas_059.jpg/640px-Edgar_Degas_059",
    "![plot](data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAMgAAADICAYAAACtWK6eAAAACXBIWXMA)"])
def test_ordinary_text_is_not_sensitive(text: str) -> None:
    assert sensitive.find_sensitive(text) == []


def test_private_key_block_is_one_finding() -> None:
    text = "x\n-----BEGIN RSA PRIVATE KEY-----\nMIIabc123\n-----END RSA PRIVATE KEY-----\ny"
    assert [f.kind for f in sensitive.find_sensitive(text)] == ["PRIVATE_KEY"]
    assert sensitive.redact(text) == "x\n<PRIVATE_KEY>\ny"


def test_normalise_folds_case_space_and_punctuation() -> None:
    assert normalise_text("  Hello,   WORLD!\n") == normalise_text("hello world")


def test_jaccard_of_shingles() -> None:
    a = duplicates.shingles("a b c d e")  # abc bcd cde
    b = duplicates.shingles("a b c d f")  # abc bcd cdf
    assert duplicates.jaccard(a, b) == pytest.approx(2 / 4)


def test_near_duplicates_cluster_and_confirm() -> None:
    base = "one two three four five six seven eight nine ten eleven twelve"
    texts = [base, base.replace("twelve", "dozen"), "completely other words here now",
             base + " thirteen"]
    found = duplicates.near_duplicates([duplicates.shingles(t) for t in texts], 0.7)
    assert found.clusters == [[0, 1, 3]]
    assert all(score >= 0.7 for _, _, score in found.pairs)


def test_contradictions_need_different_answers() -> None:
    prompts = ["what is two plus two", "what is two plus two", "what is two plus two",
               "name a colour", "name a colour"]
    answers = ["four", "four", "five", "red", "red"]
    groups = find_contradictions(prompts, answers, labelled=False)
    assert [g.members for g in groups] == [[0, 1, 2]]
    assert [(p.first, p.second) for p in groups[0].pairs] == [(0, 2)]


def test_paraphrased_answers_do_not_contradict() -> None:
    prompts = ["tell me the capital of france"] * 2
    answers = ["the capital of france is paris", "paris is the capital of france"]
    assert find_contradictions(prompts, answers, labelled=False) == []


def test_a_short_answer_restated_at_length_does_not_contradict() -> None:
    prompts = ["what is the premier league"] * 2
    answers = ["the premier league is the top flight of english football",
               ("the premier league is the top flight of english football with 20 clubs "
                "playing 38 matches from august to may each season")]
    assert find_contradictions(prompts, answers, labelled=False) == []


def test_labels_contradict_on_any_difference() -> None:
    groups = find_contradictions(["card lost", "card lost"], ["lost_card", "card_arrival"], True)
    assert len(groups) == 1 and groups[0].pairs[0].answer_similarity == 0.0


def test_label_balance_ratio() -> None:
    labels = ["a"] * 30 + ["b"] * 10 + ["c"] * 4
    section = balance.label_balance(labels)
    assert section["imbalance_ratio"] == 7.5 and section["imbalanced"]
    assert section["rare_labels"] == ["c"]


def test_label_mapping_is_inferred_for_two_column_tables() -> None:
    mapping = infer_label_mapping({"text": "hi", "category": "greeting"})
    assert (mapping.user, mapping.assistant, mapping.fields) == ("{text}", "{category}",
                                                                 ["category"])
    assert infer_label_mapping({"text": "hi", "other": "x", "category": "y"}) is None


def test_thresholds_compare_with_limits() -> None:
    config = load_config(None, ["audit.max_leaked_rows=0", "audit.min_rows=10"])
    report = {"leakage": {"leaked_rows": 2}, "schema_check": {"train": {"usable": 10}}}
    results = {r["name"]: r["passed"] for r in evaluate_thresholds(report, config.audit)}
    assert results == {"max_leaked_rows": False, "min_rows": True}
