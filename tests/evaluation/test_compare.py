import pytest

from tunesmith.evaluation.compare import bootstrap_ci, mean, paired_diff, wilson_interval


def test_mean_skips_not_applicable():
    assert mean([1.0, None, 0.0]) == 0.5
    assert mean([None]) is None


def test_bootstrap_of_constant_scores_is_a_point():
    assert bootstrap_ci([1.0] * 20) == (1.0, 1.0)
    assert bootstrap_ci([0.0] * 20) == (0.0, 0.0)
    assert bootstrap_ci([None]) is None


def test_bootstrap_interval_brackets_the_mean_and_is_seeded():
    scores = [1.0, 0.0] * 50
    low, high = bootstrap_ci(scores)
    assert low < 0.5 < high
    assert 0.35 < low and high < 0.65
    assert bootstrap_ci(scores) == (low, high)


def test_wilson_interval_known_value():
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-4)
    assert high == pytest.approx(0.5962, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(10, 10)[1] == 1.0


def test_paired_diff_lists_improved_and_regressed():
    diff = paired_diff("em", ("base", [0.0, 1.0, 1.0, None]),
                       ("tuned", [1.0, 0.0, 1.0, 1.0]))
    assert diff.diff == 0.0
    assert diff.improved == [0]
    assert diff.regressed == [1]
    assert diff.unchanged == 1


def test_paired_diff_all_improved():
    diff = paired_diff("em", ("a", [0.0] * 5), ("b", [1.0] * 5))
    assert diff.diff == 1.0
    assert diff.ci == (1.0, 1.0)
    assert diff.improved == [0, 1, 2, 3, 4]


def test_select_cases_first_and_spread():
    from tunesmith.evaluation.runner import select_cases

    cases = list(range(10))
    assert select_cases(cases, None) == cases
    assert select_cases(cases, 3) == [0, 1, 2]
    assert select_cases(cases, 3, "spread") == [0, 3, 6]
    assert select_cases(cases, 20, "spread") == cases


def test_paired_diff_lower_is_better_swaps_improved_and_regressed():
    diff = paired_diff("hallucination_rate", ("base", [1.0, 0.0, 1.0]),
                       ("tuned", [0.0, 1.0, 1.0]), lower_is_better=True)
    assert diff.diff == 0.0
    assert diff.improved == [0] and diff.regressed == [1] and diff.unchanged == 1
