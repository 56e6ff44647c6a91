"""MinHash signatures and LSH band keys as numpy arrays, small enough to keep for every row.

A row keeps only its band keys (one uint32 per band), not its text or shingles: rows that
share a band key are candidates, and candidates are confirmed later by the exact Jaccard
similarity of their shingle sets, so a false candidate costs a look-up, never a wrong result.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from itertools import pairwise

import numpy as np

NUM_PERM = 64
_RNG = np.random.default_rng(1)
# multiply-shift hashing: the high 32 bits of (a * h + b) mod 2**64, a odd
_A = (_RNG.integers(0, 1 << 63, NUM_PERM, dtype=np.uint64) * np.uint64(2) + np.uint64(1))[
    :, None]
_B = _RNG.integers(0, 1 << 63, NUM_PERM, dtype=np.uint64)[:, None]
_MIX = _RNG.integers(1, 1 << 32, NUM_PERM, dtype=np.uint64)
SUB_BATCH = 256  # rows per signature batch: [64, shingles] uint64 stays near 10 MB


def signatures(shingle_sets: Sequence[np.ndarray]) -> np.ndarray:
    """MinHash signatures of shingle sets; [rows, NUM_PERM] uint32."""
    out = np.zeros((len(shingle_sets), NUM_PERM), dtype=np.uint32)
    for start in range(0, len(shingle_sets), SUB_BATCH):
        part = shingle_sets[start : start + SUB_BATCH]
        sizes = np.array([max(1, len(s)) for s in part])
        flat = np.concatenate([s if len(s) else np.zeros(1, np.uint32) for s in part])
        values = (_A * flat.astype(np.uint64)[None, :] + _B) >> np.uint64(32)  # [perm, shingles]
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        mins = np.minimum.reduceat(values, offsets, axis=1)  # [perm, rows]
        out[start : start + len(part)] = mins.T
    return out


MISS_WEIGHT = 0.9  # a missed pair is lost; a false candidate only costs one exact check


@lru_cache
def band_shape(threshold: float, num_perm: int = NUM_PERM) -> tuple[int, int]:
    """(bands, rows per band) minimising weighted missed and false candidates.

    At 0.7 this gives 12 bands of 5 rows: a pair exactly at the threshold becomes a candidate
    with probability 0.89, one at 0.8 with 0.99.
    """
    grid = np.linspace(0.0, 1.0, 201)
    best, best_cost = (1, num_perm), float("inf")
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            hit = 1.0 - (1.0 - grid**rows) ** bands
            false = np.trapezoid(np.where(grid < threshold, hit, 0.0), grid)
            missed = np.trapezoid(np.where(grid >= threshold, 1.0 - hit, 0.0), grid)
            cost = (1 - MISS_WEIGHT) * false + MISS_WEIGHT * missed
            if cost < best_cost:
                best, best_cost = (bands, rows), cost
    return best


def band_keys(sigs: np.ndarray, threshold: float) -> np.ndarray:
    """One uint32 key per band of each signature; [rows, bands]."""
    bands, rows = band_shape(threshold)
    keys = np.zeros((len(sigs), bands), dtype=np.uint32)
    for band in range(bands):
        cols = slice(band * rows, (band + 1) * rows)
        mixed = (sigs[:, cols].astype(np.uint64) * _MIX[cols]).sum(axis=1, dtype=np.uint64)
        keys[:, band] = ((mixed >> np.uint64(29)) ^ mixed ^ np.uint64(band)).astype(np.uint32)
    return keys


def candidate_pairs(keys: np.ndarray, allowed: np.ndarray | None = None,
                    full_bucket: int = 32) -> set[tuple[int, int]]:
    """Pairs (a < b) of rows sharing a band key; rows where `allowed` is False take no part.

    Buckets up to `full_bucket` rows give all their pairs; larger ones pair each row with the
    bucket's first and its neighbour, enough to join them into one cluster after confirming.
    """
    rows = np.arange(len(keys)) if allowed is None else np.flatnonzero(allowed)
    pairs: set[tuple[int, int]] = set()
    for band in range(keys.shape[1]):
        values = keys[rows, band]
        order = np.argsort(values, kind="stable")
        sorted_values = values[order]
        starts = np.concatenate([[0], np.flatnonzero(np.diff(sorted_values)) + 1])
        sizes = np.diff(np.concatenate([starts, [len(values)]]))
        for start, size in zip(starts[sizes > 1], sizes[sizes > 1], strict=True):
            _bucket_pairs(np.sort(rows[order[start : start + size]]), full_bucket, pairs)
    return pairs


def _bucket_pairs(members: np.ndarray, full_bucket: int, pairs: set[tuple[int, int]]) -> None:
    items = members.tolist()
    if len(items) <= full_bucket:
        pairs.update((a, b) for i, a in enumerate(items) for b in items[i + 1 :])
        return
    pairs.update((items[0], b) for b in items[1:])
    pairs.update(pairwise(items[1:]))
