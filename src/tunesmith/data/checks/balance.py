"""Balance and diversity: label or answer distribution, prompt lengths and vocabulary."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from itertools import pairwise

import numpy as np

IMBALANCE_RATIO = 3.0
COMMON_ANSWER_SHARE = 0.1
TOP = 20


def label_balance(labels: Sequence[str], ratio_limit: float = IMBALANCE_RATIO) -> dict:
    """Rows per label, the largest-to-smallest ratio, and whether it is imbalanced."""
    counts = Counter(labels)
    ordered = counts.most_common()
    ratio = ordered[0][1] / ordered[-1][1] if ordered else 0.0
    median = float(np.median(list(counts.values()))) if counts else 0.0
    rare = sorted(label for label, n in counts.items() if n < 0.5 * median)
    return {
        "kind": "labels",
        "distinct": len(counts),
        "counts": dict(ordered),
        "largest": ordered[0] if ordered else None,
        "smallest": ordered[-1] if ordered else None,
        "imbalance_ratio": round(ratio, 2),
        "imbalanced": ratio > ratio_limit,
        "rare_labels": rare,
        "reason": (f"the largest label has {ratio:.1f}x the rows of the smallest "
                   f"(flagged above {ratio_limit:g}x)") if ordered else "no labels",
    }


def answer_balance(answers: Sequence[str], share_limit: float = COMMON_ANSWER_SHARE) -> dict:
    """How often the same (normalised) answer repeats; many repeats teach one reply."""
    counts = Counter(answers)
    return answer_balance_counts(counts.most_common(TOP), len(counts), len(answers),
                                 share_limit)


def answer_balance_counts(top: list[tuple[str, int]], distinct: int, rows: int,
                          share_limit: float = COMMON_ANSWER_SHARE) -> dict:
    """`answer_balance` from the most common answers with counts and the distinct total."""
    n = max(1, rows)
    share = top[0][1] / n if top else 0.0
    return {
        "kind": "answers",
        "distinct": distinct,
        "distinct_share": round(distinct / n, 4),
        "counts": {answer[:80]: count for answer, count in top if count > 1},
        "most_common_share": round(share, 4),
        "imbalanced": share > share_limit and bool(top) and top[0][1] > 1,
        "reason": (f"the most common answer is {share:.1%} of rows "
                   f"(flagged above {share_limit:.0%})"),
    }


def diversity(prompts: Sequence[str]) -> dict:
    """Prompt length spread in words, vocabulary size and distinct word pairs (distinct-2)."""
    words: Counter = Counter()
    pairs: set[int] = set()
    total_pairs = 0
    for prompt in prompts:
        tokens = prompt.split()
        words.update(tokens)
        total_pairs += max(0, len(tokens) - 1)
        pairs.update(hash(f"{a} {b}") for a, b in pairwise(tokens))
    lengths = np.array([len(p.split()) for p in prompts])
    return diversity_from(lengths, words, len(pairs), total_pairs)


def diversity_from(lengths: np.ndarray, words: Counter, distinct_pairs: int,
                   total_pairs: int) -> dict:
    """`diversity` from prompt word counts, a word Counter and word-pair totals."""
    lengths = lengths if len(lengths) else np.zeros(1, int)
    q = np.percentile(lengths, [10, 50, 90])
    return {
        "prompt_words": {"min": int(lengths.min()), "p10": int(q[0]), "p50": int(q[1]),
                         "p90": int(q[2]), "max": int(lengths.max()),
                         "std": round(float(lengths.std()), 1)},
        "vocabulary": len(words),
        "distinct_2": round(distinct_pairs / total_pairs, 4) if total_pairs else 0.0,
        "top_words": [w for w, _ in words.most_common(TOP)],
    }
