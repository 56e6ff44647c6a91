"""Contradictions: the same or nearly the same prompt with materially different answers.

For labelled tables the answer is the label, so any two labels for one text contradict.
Otherwise two answers contradict when fewer than `ANSWER_AGREEMENT` of the shorter answer's
words occur in the other (so a short answer restated at length is no contradiction).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tunesmith.data.checks.duplicates import UnionFind, jaccard, near_duplicates, shingles

PROMPT_THRESHOLD = 0.9
ANSWER_AGREEMENT = 0.5
MAX_PAIRS_PER_GROUP = 20


@dataclass(frozen=True)
class Contradiction:
    """Two rows (positions) whose prompts match but whose answers disagree."""

    first: int
    second: int
    prompt_similarity: float
    answer_similarity: float


@dataclass
class ContradictionGroup:
    """Rows sharing a prompt (exactly or nearly) and the disagreeing pairs among them."""

    members: list[int]
    pairs: list[Contradiction]


def find_contradictions(prompt_keys: Sequence[str], answers: Sequence[str], labelled: bool,
                        near: bool = True) -> list[ContradictionGroup]:
    """Prompt groups with disagreeing answers, in input order.

    `prompt_keys` and `answers` are normalised texts; an empty prompt key is never matched.
    """
    union = UnionFind()
    first_of: dict[str, int] = {}
    for position, key in enumerate(prompt_keys):
        if not key:
            continue
        union.union(first_of.setdefault(key, position), position)
    if near and first_of:
        reps = sorted(first_of.values())
        found = near_duplicates([shingles(prompt_keys[p]) for p in reps], PROMPT_THRESHOLD)
        for a, b, _ in found.pairs:
            union.union(reps[a], reps[b])
    groups = [g for g in union.clusters() if len({answers[p] for p in g}) > 1]
    result = []
    for group in groups:
        pairs = _group_pairs(group, prompt_keys, answers, labelled)
        if pairs:
            result.append(ContradictionGroup(group, pairs))
    return result


def _containment(a: np.ndarray, b: np.ndarray) -> float:
    """Share of the smaller word set found in the larger one."""
    if not len(a) or not len(b):
        return float(len(a) == len(b))
    return len(np.intersect1d(a, b, assume_unique=True)) / min(len(a), len(b))


def _group_pairs(group: list[int], prompt_keys: Sequence[str], answers: Sequence[str],
                 labelled: bool) -> list[Contradiction]:
    """Pair the first row of each distinct answer with the first rows of the others."""
    variants: dict[str, int] = {}
    for position in group:
        variants.setdefault(answers[position], position)
    firsts = sorted(variants.values())
    bags = {p: np.unique(np.array([hash(w) for w in answers[p].split()], dtype=np.int64))
            for p in firsts}
    pairs = []
    for i, a in enumerate(firsts):
        for b in firsts[i + 1 :]:
            agree = 0.0 if labelled else _containment(bags[a], bags[b])
            if agree < ANSWER_AGREEMENT:
                prompt_sim = 1.0 if prompt_keys[a] == prompt_keys[b] else jaccard(
                    shingles(prompt_keys[a]), shingles(prompt_keys[b]))
                pairs.append(Contradiction(a, b, round(prompt_sim, 3), round(agree, 3)))
            if len(pairs) >= MAX_PAIRS_PER_GROUP:
                return pairs
    return pairs
