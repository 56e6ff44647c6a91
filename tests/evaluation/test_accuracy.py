from tunesmith.evaluation.accuracy import (
    exact_match,
    extract_label,
    json_field_accuracy,
    json_field_scores,
    label_accuracy,
    normalize_answer,
    token_f1,
)


def test_normalize_answer_drops_case_punctuation_articles_and_spaces():
    assert normalize_answer("  The  Denver Broncos! ") == "denver broncos"
    assert normalize_answer("an apple, a pear") == "apple pear"


def test_exact_match_is_one_after_normalisation_and_zero_otherwise():
    assert exact_match("the Broncos.", "Broncos") == 1.0
    assert exact_match("Broncos", "Panthers") == 0.0


def test_token_f1_hand_computed():
    # pred tokens: denver broncos won ; ref: denver broncos -> P = 2/3, R = 1, F1 = 0.8
    assert token_f1("Denver Broncos won", "the Denver Broncos") == 0.8
    assert token_f1("Broncos", "Broncos") == 1.0
    assert token_f1("Panthers", "Broncos") == 0.0


def test_token_f1_empty_cases():
    assert token_f1("", "") == 1.0
    assert token_f1("", "x") == 0.0
    assert token_f1("the", "x") == 0.0  # only an article: empty after normalisation


def test_label_accuracy_and_confusions():
    report = label_accuracy(["a", "b", "b", "c"], ["a", "a", "b", "b"])
    assert report.accuracy == 0.5
    assert report.per_example == [1.0, 0.0, 1.0, 0.0]
    assert report.per_label_recall == {"a": 0.5, "b": 0.5}
    assert report.top_confusions == [("a", "b", 1), ("b", "c", 1)]


def test_label_accuracy_all_right_and_all_wrong():
    assert label_accuracy(["x", "y"], ["x", "y"]).accuracy == 1.0
    assert label_accuracy(["y", "x"], ["x", "y"]).accuracy == 0.0


def test_extract_label_from_json_field():
    assert extract_label('{"intent": "card_arrival"}', "intent") == "card_arrival"
    assert extract_label('{"intent": 3}', "intent") == ""
    assert extract_label("not json", "intent") == ""
    assert extract_label("  card_arrival ", None) == "card_arrival"


def test_json_field_scores():
    ref = '{"intent": "a", "lang": "en"}'
    assert json_field_scores('{"intent": "a", "lang": "fr"}', ref) == {"intent": 1.0,
                                                                       "lang": 0.0}
    assert json_field_scores("oops", ref) == {"intent": 0.0, "lang": 0.0}
    assert json_field_scores("x", "plain text") is None


def test_json_field_accuracy_over_rows():
    refs = ['{"a": 1, "b": 2}', '{"a": 1, "b": 2}', "text"]
    preds = ['{"a": 1, "b": 2}', '{"a": 1, "b": 3}', "text"]
    result = json_field_accuracy(preds, refs)
    assert result["fields"] == {"a": 1.0, "b": 0.5}
    assert result["all_fields"] == 0.5
    assert result["per_example"] == [1.0, 0.0, None]


def test_extract_label_first_word():
    assert extract_label("No, the dog is not alive.", first_word=True) == "no"
    assert extract_label("  Yes.", first_word=True) == "yes"
    assert extract_label("", first_word=True) == ""
    report = label_accuracy([extract_label(a, first_word=True) for a in ["Yes, it is", "no"]],
                            ["yes", "yes"])
    assert report.accuracy == 0.5
