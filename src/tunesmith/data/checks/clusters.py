"""Semantic clusters of prompts from sentence embeddings: topics, sparse regions, outliers.

k-means on unit vectors (cosine), seeded so the same data gives the same clusters.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

MAX_CLUSTERS = 20
ITERATIONS = 25
RESTARTS = 5
SPARSE_SHARE = 0.25  # of the average cluster share
ISOLATED_SIMILARITY = 0.35
UNCOVERED_SIMILARITY = 0.5
PLOT_POINTS = 1500
BLOCK = 1024


def cluster_count(rows: int) -> int:
    """About sqrt(rows)/4 clusters, between 2 and MAX_CLUSTERS."""
    return max(2, min(MAX_CLUSTERS, round(math.sqrt(rows) / 4)))


def kmeans(vectors: np.ndarray, k: int, seed: int = 0,
           restarts: int = RESTARTS) -> tuple[np.ndarray, np.ndarray]:
    """Spherical k-means, best of several seeded starts by total cosine to the centroids.

    Returns (assignments [n], centroids [k, d]).
    """
    best, best_fit = None, -np.inf
    for attempt in range(restarts):
        assign, centres = _kmeans_once(vectors, k, seed + attempt)
        fit = float(np.sum(vectors * centres[assign]))
        if fit > best_fit:
            best, best_fit = (assign, centres), fit
    return best  # type: ignore[return-value]


def _kmeans_once(vectors: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centroids = [vectors[rng.integers(len(vectors))]]
    for _ in range(1, k):
        distance = 1 - np.max(vectors @ np.stack(centroids).T, axis=1)
        weights = np.clip(distance, 0, None) ** 2
        pick = rng.choice(len(vectors), p=weights / weights.sum()) if weights.sum() else (
            rng.integers(len(vectors)))
        centroids.append(vectors[pick])
    centres = np.stack(centroids)
    assign = np.zeros(len(vectors), dtype=int)
    for _ in range(ITERATIONS):
        assign = np.argmax(vectors @ centres.T, axis=1)
        for c in range(k):
            members = vectors[assign == c]
            if len(members):
                mean = members.mean(axis=0)
                centres[c] = mean / max(np.linalg.norm(mean), 1e-12)
    return assign, centres


def nearest_other(vectors: np.ndarray, others: np.ndarray | None = None) -> np.ndarray:
    """Highest cosine of each vector to another row (or to `others`), computed in blocks."""
    pool = vectors if others is None else others
    best = np.full(len(vectors), -1.0, dtype=np.float32)
    for start in range(0, len(vectors), BLOCK):
        sims = vectors[start : start + BLOCK] @ pool.T
        if others is None:
            rows = np.arange(start, min(start + BLOCK, len(vectors)))
            sims[rows - start, rows] = -1.0
        best[start : start + BLOCK] = sims.max(axis=1)
    return best


def cluster_section(vectors: np.ndarray, refs: Sequence[str], prompts: Sequence[str],
                    labels: Sequence[str] | None, eval_vectors: np.ndarray | None,
                    seed: int = 0, k: int | None = None) -> dict:
    """Clusters with size, share, examples and label mix; sparse clusters; outliers."""
    k = min(k or cluster_count(len(vectors)), len(vectors))
    assign, centres = kmeans(vectors, k, seed)
    sizes = np.bincount(assign, minlength=k)
    clusters = [_describe(c, assign, vectors, centres, refs, prompts, labels)
                for c in np.argsort(-sizes)]
    sparse_limit = SPARSE_SHARE / k
    best = nearest_other(vectors) if len(vectors) > 1 else np.ones(1)
    section = {
        "clusters": clusters,
        "k": k,
        "largest_share": round(float(sizes.max() / len(vectors)), 4),
        "sparse_clusters": [c["id"] for c in clusters if c["share"] < sparse_limit],
        "isolated_rows": [refs[i] for i in np.flatnonzero(best < ISOLATED_SIMILARITY)[:20]],
        "isolated_count": int((best < ISOLATED_SIMILARITY).sum()),
        "projection": _projection(vectors, assign, seed),
    }
    if eval_vectors is not None and len(eval_vectors):
        cover = nearest_other(eval_vectors, vectors)
        section["eval_uncovered"] = int((cover < UNCOVERED_SIMILARITY).sum())
    return section


def _describe(c: int, assign: np.ndarray, vectors: np.ndarray, centres: np.ndarray,
              refs: Sequence[str], prompts: Sequence[str], labels: Sequence[str] | None
              ) -> dict:
    members = np.flatnonzero(assign == c)
    closeness = vectors[members] @ centres[c]
    central = members[np.argsort(-closeness)[:3]]
    info = {"id": int(c), "size": len(members),
            "share": round(len(members) / len(vectors), 4),
            "examples": [{"row": refs[i], "prompt": prompts[i][:160]} for i in central]}
    if labels is not None:
        info["labels"] = dict(Counter(labels[i] for i in members).most_common(3))
    return info


def _projection(vectors: np.ndarray, assign: np.ndarray, seed: int) -> list[list[float]]:
    """First two principal components of a sample, as [x, y, cluster] for the chart."""
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.permutation(len(vectors))[:PLOT_POINTS])
    sample = vectors[pick] - vectors[pick].mean(axis=0)
    if len(sample) < 3:
        return []
    _, _, vt = np.linalg.svd(sample, full_matrices=False)
    xy = sample @ vt[:2].T
    return [[round(float(x), 4), round(float(y), 4), int(assign[i])]
            for (x, y), i in zip(xy, pick, strict=True)]
