from tunesmith.evaluation.hallucination import (
    calibrate,
    check_answer,
    hallucination_flags,
    precision_recall,
)

SOURCE = ("The Panthers defense gave up just 308 points. Kawann Short led the team in sacks "
          "with eleven, while forcing three fumbles.")


def test_supported_answers_are_not_flagged():
    assert check_answer("308", SOURCE).hallucinated() is False
    assert check_answer("Kawann Short led the team in sacks.", SOURCE).hallucinated() is False
    assert check_answer("11 sacks", SOURCE).hallucinated() is False  # eleven == 11
    assert check_answer("Yes.", SOURCE).hallucinated() is False
    assert check_answer("", SOURCE).hallucinated() is False


def test_unsupported_number_name_and_words():
    check = check_answer("The Panthers gave up 310 points.", SOURCE)
    assert check.unsupported_numbers == ["310"]
    check = check_answer("Jared Allen led the team.", SOURCE)
    assert check.unsupported_names == ["Jared", "Allen"]
    check = check_answer("a quarterback threw touchdowns", SOURCE)
    assert check.content_words == 3 and check.support == 0.0
    assert check.hallucinated()


def test_support_threshold_hand_computed():
    # content words: defense, gave, points, fast (4); "fast" missing -> support 0.75
    check = check_answer("defense gave points fast", SOURCE)
    assert check.support == 0.75
    assert check.hallucinated(min_support=0.8) is True
    assert check.hallucinated(min_support=0.7) is False


def test_rate_is_zero_one_and_half():
    assert hallucination_flags(["308", "three fumbles"], [SOURCE] * 2) == [0.0, 0.0]
    assert hallucination_flags(["999", "Denver"], [SOURCE] * 2) == [1.0, 1.0]
    assert hallucination_flags(["308", "Denver"], [SOURCE] * 2) == [0.0, 1.0]


def test_precision_recall_hand_computed():
    stats = precision_recall([True, True, False, False], [True, False, True, False])
    assert stats["precision"] == 0.5 and stats["recall"] == 0.5 and stats["f1"] == 0.5
    assert precision_recall([True], [True])["f1"] == 1.0
    assert precision_recall([False], [True])["recall"] == 0.0


def test_calibrate_picks_threshold_that_separates():
    answers = ["defense gave points fast", "quarterback threw touchdowns", "308 points"]
    checks = [check_answer(a, SOURCE) for a in answers]
    # support 0.75 (labelled supported), 0.0 (unsupported), 1.0 (supported)
    threshold = calibrate(checks, [False, True, False])
    assert 0.0 < threshold <= 0.75
    assert [c.hallucinated(threshold) for c in checks] == [False, True, False]
