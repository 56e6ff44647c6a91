"""Exact and near duplicates: normalised-text hashes and MinHash/LSH over word shingles.

Near-duplicate candidates from LSH are confirmed with the exact Jaccard similarity of the
shingle sets, so a listed pair is always at or above the threshold.
"""

from __future__ import annotations

import hashlib
import logging
import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from tunesmith.errors import DataError

logger = logging.getLogger(__name__)

SHINGLE_WORDS = 3
NUM_PERM = 64
NEAR_THRESHOLD = 0.7


def text_key(normalised: str) -> bytes:
    """A short digest of normalised text, for exact matching."""
    return hashlib.blake2b(normalised.encode("utf-8"), digest_size=12).digest()


def word_hashes(normalised: str) -> np.ndarray:
    """CRC32 of each word of normalised text; [n_words] uint64."""
    words = normalised.split()
    return np.fromiter(map(_word_hash, words), dtype=np.uint64, count=len(words))


@lru_cache(maxsize=1 << 18)  # words repeat: most are looked up, not hashed
def _word_hash(word: str) -> int:
    return zlib.crc32(word.encode("utf-8"))


_K1, _K2, _K3 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F), np.uint64(0x165667B1)


def shingles(normalised: str, width: int = SHINGLE_WORDS) -> np.ndarray:
    """Sorted unique hashes of the word n-grams of normalised text; [n_shingles] uint32.

    Each word is hashed once and n-grams combine their words' hashes arithmetically, which
    is several times faster than hashing every n-gram's text.
    """
    assert width == SHINGLE_WORDS  # the combination below is written for word triples
    words = word_hashes(normalised)
    if len(words) < width:  # shorter texts are one gram of all their words
        words = np.concatenate([words, np.zeros(width - len(words), np.uint64)])
    mixed = words[:-2] * _K1 + words[1:-1] * _K2 + words[2:] * _K3  # wraps mod 2**64
    return np.unique((mixed >> np.uint64(32)).astype(np.uint32))


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity of two sorted unique hash arrays."""
    if not len(a) and not len(b):
        return 1.0
    common = len(np.intersect1d(a, b, assume_unique=True))
    return common / (len(a) + len(b) - common)


def exact_groups(keys: Sequence[bytes]) -> list[list[int]]:
    """Positions sharing a key, groups of two or more, in order of first appearance."""
    groups: dict[bytes, list[int]] = defaultdict(list)
    for position, key in enumerate(keys):
        groups[key].append(position)
    return [g for g in groups.values() if len(g) > 1]


class NearIndex:
    """A MinHash LSH index over shingle sets; items are confirmed by exact Jaccard."""

    def __init__(self, threshold: float = NEAR_THRESHOLD, num_perm: int = NUM_PERM) -> None:
        try:
            from datasketch import MinHash, MinHashLSH
        except ImportError:
            raise DataError("near-duplicate search needs datasketch: "
                            "pip install 'tunesmith[audit]'") from None
        self.threshold = threshold
        self._template = MinHash(num_perm=num_perm, seed=1, hashfunc=int)
        self._minhash = MinHash
        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self._shingles: dict[int, np.ndarray] = {}

    def signature(self, hashes: np.ndarray):
        """The MinHash of one shingle set."""
        mh = self._minhash(num_perm=len(self._template.hashvalues), hashfunc=int,
                           permutations=self._template.permutations,
                           scheme=self._template.scheme)
        mh.update_batch(hashes.tolist())
        return mh

    def add(self, key: int, hashes: np.ndarray) -> list[tuple[int, float]]:
        """Insert an item; return earlier items at or above the threshold, with similarity."""
        mh = self.signature(hashes)
        found = self.query(hashes, mh)
        self._lsh.insert(key, mh)
        self._shingles[key] = hashes
        return found

    def query(self, hashes: np.ndarray, mh=None) -> list[tuple[int, float]]:
        """Items at or above the threshold, with their exact Jaccard similarity."""
        mh = mh if mh is not None else self.signature(hashes)
        found = []
        for other in self._lsh.query(mh):
            score = jaccard(hashes, self._shingles[other])
            if score >= self.threshold:
                found.append((other, score))
        return sorted(found)


class UnionFind:
    """Disjoint sets over integer ids, for turning pairs into clusters."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, item: int) -> int:
        root = self.parent.setdefault(item, item)
        while root != self.parent[root]:
            root = self.parent[root]
        while item != root:
            self.parent[item], item = root, self.parent[item]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def clusters(self) -> list[list[int]]:
        groups: dict[int, list[int]] = defaultdict(list)
        for item in self.parent:
            groups[self.find(item)].append(item)
        return sorted((sorted(g) for g in groups.values() if len(g) > 1), key=lambda g: g[0])


@dataclass
class NearDuplicates:
    """Clusters of near-duplicate positions and the confirmed pairs behind them."""

    clusters: list[list[int]]
    pairs: list[tuple[int, int, float]]


def near_duplicates(hash_sets: Sequence[np.ndarray | None],
                    threshold: float = NEAR_THRESHOLD) -> NearDuplicates:
    """Cluster positions whose shingle sets are at least `threshold` similar (None: skip)."""
    index = NearIndex(threshold)
    union = UnionFind()
    pairs = []
    for position, hashes in enumerate(hash_sets):
        if hashes is None:
            continue
        for other, score in index.add(position, hashes):
            pairs.append((other, position, round(score, 3)))
            union.union(other, position)
    return NearDuplicates(union.clusters(), pairs)
