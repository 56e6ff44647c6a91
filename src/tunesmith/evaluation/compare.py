"""Side-by-side statistics: bootstrap confidence intervals and per-example diffs.

Scores are per-example lists where None means "does not apply to this example"; means and
intervals use the examples that apply. Resampling uses a seeded generator so that the same
inputs always give the same interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


def mean(scores: list[float | None]) -> float | None:
    """Mean of the scores that apply; None when none applies."""
    kept = [s for s in scores if s is not None]
    return sum(kept) / len(kept) if kept else None


def bootstrap_ci(scores: list[float | None], samples: int = 1000, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean; None when no example applies."""
    import numpy as np

    kept = np.array([s for s in scores if s is not None], dtype=np.float64)
    if kept.size == 0:
        return None
    rng = np.random.default_rng(seed)
    means = kept[rng.integers(0, kept.size, (samples, kept.size))].mean(axis=1)  # [samples]
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def wilson_interval(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (stays inside [0, 1])."""
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class PairedDiff:
    """Candidate minus baseline on one metric, over the examples both scored."""

    metric: str
    baseline: str
    candidate: str
    diff: float | None
    ci: tuple[float, float] | None
    improved: list[int] = field(default_factory=list)
    regressed: list[int] = field(default_factory=list)
    unchanged: int = 0


def paired_diff(metric: str, baseline: tuple[str, list[float | None]],
                candidate: tuple[str, list[float | None]], samples: int = 1000,
                seed: int = 0, lower_is_better: bool = False) -> PairedDiff:
    """Paired bootstrap of the mean difference and the lists of improved/regressed examples.

    `diff` is always candidate minus baseline; with `lower_is_better` (e.g. a hallucination
    flag) an example improved when its score went down.
    """
    (base_name, base), (cand_name, cand) = baseline, candidate
    if len(base) != len(cand):
        raise ValueError(f"{metric}: {len(base)} baseline scores vs {len(cand)} candidate")
    pairs = [(i, b, c) for i, (b, c) in enumerate(zip(base, cand, strict=True))
             if b is not None and c is not None]
    result = PairedDiff(metric, base_name, cand_name, None, None)
    if not pairs:
        return result
    deltas = [c - b for _, b, c in pairs]
    result.diff = sum(deltas) / len(deltas)
    result.ci = bootstrap_ci(list(deltas), samples, seed=seed)
    up = [i for i, b, c in pairs if c > b]
    down = [i for i, b, c in pairs if c < b]
    result.improved, result.regressed = (down, up) if lower_is_better else (up, down)
    result.unchanged = len(pairs) - len(result.improved) - len(result.regressed)
    return result
