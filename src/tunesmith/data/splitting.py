"""Train/eval split by prompt group: rows that share a prompt go to the same side.

A row's group key is its normalised prompt (the whole text when it has no prompt), so exact
copies of a conversation and rows that ask the same question are held out together; near
copies of a prompt join their groups. Whole groups are then drawn at random until the eval
side holds about the asked share, so no eval prompt is also a training prompt.
`data clean --eval-fraction` and a run without eval data split this way.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

from tunesmith.data.checks import minhash
from tunesmith.data.checks.duplicates import NEAR_THRESHOLD, UnionFind, jaccard, shingles
from tunesmith.data.checks.features import text_hash
from tunesmith.data.checks.rows import full_text, normalise_text, prompt_text
from tunesmith.data.checks.textchecks import first_positions
from tunesmith.data.records import Conversation


def prompt_groups(keys: np.ndarray, near_clusters: Iterable[list[int]] = ()) -> list[list[int]]:
    """Positions sharing a key, joined through near clusters; in order of first member."""
    firsts = first_positions(keys)
    union = UnionFind()  # joins only the key groups that near clusters link
    for cluster in near_clusters:
        for member in cluster[1:]:
            union.union(int(firsts[cluster[0]]), int(firsts[member]))
    groups: dict[int, list[int]] = defaultdict(list)
    for position, first in enumerate(firsts.tolist()):
        groups[union.find(first) if first in union.parent else first].append(position)
    return [groups[root] for root in sorted(groups)]


def hold_out(groups: list[list[int]], labels: Sequence[str | None] | None, fraction: float,
             seed: int) -> set[int]:
    """Positions to hold out: whole groups, about `fraction` of each label's rows.

    The same groups and seed give the same split. A group that would overshoot the share by
    more than it fills is passed over, and at least one row always stays in training.
    """
    strata: dict[str, list[list[int]]] = defaultdict(list)
    for group in groups:
        strata[(labels[group[0]] if labels is not None else "") or ""].append(group)
    total, held = sum(len(g) for g in groups), set()
    rng = random.Random(seed)
    for label in sorted(strata):
        bucket = strata[label]
        rng.shuffle(bucket)
        want, taken = round(sum(len(g) for g in bucket) * fraction), 0
        for group in bucket:
            if taken + len(group) - want > want - taken or len(held) + len(group) >= total:
                continue
            taken += len(group)
            held.update(group)
    return held


def split_conversations(convs: list[Conversation], fraction: float, seed: int,
                        near_threshold: float = NEAR_THRESHOLD,
                        ) -> tuple[list[Conversation], list[Conversation]]:
    """(train, eval): about `fraction` of the rows held out by prompt group, in input order."""
    if fraction <= 0 or len(convs) < 2:
        return list(convs), []
    texts = [_key_text(conv) for conv in convs]
    keys = np.array([text_hash(text) for text in texts], dtype=np.int64)
    held = hold_out(prompt_groups(keys, _near_clusters(texts, keys, near_threshold)), None,
                    fraction, seed)
    return ([c for i, c in enumerate(convs) if i not in held],
            [c for i, c in enumerate(convs) if i in held])


def _key_text(conv: Conversation) -> str:
    """The normalised prompt, or the whole text when there is none (as `Texts.key`)."""
    return normalise_text(prompt_text(conv)) or normalise_text(full_text(conv))


def _near_clusters(texts: list[str], keys: np.ndarray, threshold: float) -> list[list[int]]:
    """Clusters of distinct prompts at least `threshold` similar (MinHash, then exact)."""
    reps = first_positions(keys) == np.arange(len(keys))
    sets = {int(p): shingles(texts[p]) for p in np.flatnonzero(reps)}
    signatures = np.zeros((len(keys), minhash.NUM_PERM), np.uint32)
    signatures[reps] = minhash.signatures(list(sets.values()))
    bands = minhash.band_keys(signatures, threshold)
    union = UnionFind()
    for a, b in sorted(minhash.candidate_pairs(bands, reps)):
        if jaccard(sets[a], sets[b]) >= threshold:
            union.union(a, b)
    return union.clusters()
