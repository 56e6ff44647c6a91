"""Duplicates, contradictions, leakage and answer balance over streamed row features.

Hashes and band keys find every candidate; one more streaming pass reads back only the
candidate rows (and the rows a report quotes), whose shingles confirm each match exactly.
Positions here index a side's usable rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from tunesmith.data.checks import balance, minhash
from tunesmith.data.checks.contradictions import PROMPT_THRESHOLD, _group_pairs
from tunesmith.data.checks.duplicates import UnionFind, jaccard, shingles
from tunesmith.data.checks.features import Texts, fetch_texts
from tunesmith.data.checks.table import RefList, RowTable

LIST_LIMIT = 50
CROSS_BUCKET = 32  # train rows compared per eval row and band at most


@dataclass
class Side:
    """One side's feature table and how to read its rows again."""

    table: RowTable
    reread: Callable[[], Iterator]
    normalise: Callable
    texts: dict[int, Texts] = field(default_factory=dict)

    @property
    def refs(self) -> RefList:
        return self.table.refs

    def lookup_key(self) -> np.ndarray:
        """Per row: the prompt hash, or the full-text hash when there is no prompt."""
        keys = self.table.keys
        return np.where(keys["prompt_key"] != 0, keys["prompt_key"], keys["full_key"])

    def fetch(self, wanted: set[int]) -> None:
        """Read the wanted rows again and keep their normalised texts."""
        raw = {int(self.table.positions[p]): p for p in wanted}
        found = fetch_texts(self.reread(), set(raw), self.normalise)
        self.texts = {raw[position]: texts for position, (_, texts) in found.items()}


def first_positions(keys: np.ndarray, skip_zero: bool = False) -> np.ndarray:
    """Per row, the first position holding its key; [rows] int64 (-1 for a skipped zero)."""
    if not len(keys):
        return np.zeros(0, np.int64)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    out = first[inverse].astype(np.int64)
    if skip_zero:
        out[keys == 0] = -1
    return out


def exact_groups(keys: np.ndarray, skip_zero: bool = False) -> list[list[int]]:
    """Positions sharing a key, groups of two or more, in order of first appearance."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(sorted_keys)) + 1]).astype(np.int64)
    sizes = np.diff(np.concatenate([starts, [len(keys)]])).astype(np.int64)
    groups = [order[a : a + n].tolist() for a, n in zip(starts[sizes > 1], sizes[sizes > 1],
                                                       strict=True)
              if not (skip_zero and sorted_keys[a] == 0)]
    return sorted(groups, key=lambda g: g[0])  # stable sort: members already ascending


class TextChecks:
    """Plan which rows to read again, read them, then build the sections."""

    def __init__(self, train: Side, other: Side | None, threshold: float,
                 labelled: bool) -> None:
        self.train, self.other, self.threshold, self.labelled = train, other, threshold, labelled
        keys = train.table.keys
        self.exact = exact_groups(keys["full_key"])
        copies = np.zeros(train.table.usable, bool)
        for group in self.exact:
            copies[group[1:]] = True
        self.near_candidates = minhash.candidate_pairs(train.table.bands["full"], ~copies)
        reps = first_positions(keys["prompt_key"], skip_zero=True) == np.arange(
            train.table.usable)
        prompt_bands = train.table.bands.get("prompt")  # absent when contradictions are kept
        self.prompt_candidates = minhash.candidate_pairs(prompt_bands, reps) if (
            prompt_bands is not None) else set()
        self.prompt_groups = self._prompt_groups(self.prompt_candidates)
        self.leak_candidates = self._leak_candidates() if other else {}
        self.top_answers = self._top_answers()

    def run(self) -> dict:
        """Read back what is needed and return the four sections."""
        wanted = {g[0] for g in self.exact[:LIST_LIMIT]}
        wanted |= {p for pair in self.near_candidates for p in pair}
        wanted |= {p for group in self.prompt_groups for p in group}
        wanted |= {t for hits in self.leak_candidates.values() for t in hits}
        wanted |= {p for p, _ in self.top_answers}
        self.train.fetch(wanted)
        if self.other is not None:
            self.other.fetch(set(self.leak_candidates))
        return {"duplicates": self._duplicates(), "contradictions": self._contradictions(),
                "leakage": self._leakage(), "answers": self._answer_counts()}

    # --- duplicates ----------------------------------------------------------------------

    def _duplicates(self) -> dict:
        texts, refs, n = self.train.texts, self.train.refs, max(1, self.train.table.usable)
        union, pairs = UnionFind(), []
        for a, b in sorted(self.near_candidates, key=lambda p: (p[1], p[0])):
            score = jaccard(shingles(texts[a].full), shingles(texts[b].full))
            if score >= self.threshold:
                pairs.append((a, b, round(score, 3)))
                union.union(a, b)
        clusters = union.clusters()
        copies = sum(len(g) - 1 for g in self.exact)
        near_extra = sum(len(c) - 1 for c in clusters)
        group = self._group
        return {
            "exact_groups": len(self.exact), "exact_duplicate_rows": copies,
            "exact_share": round(copies / n, 4),
            "exact": [group(g) for g in self.exact[:LIST_LIMIT]],
            "near_threshold": self.threshold, "near_clusters": len(clusters),
            "near_duplicate_rows": near_extra, "near_share": round(near_extra / n, 4),
            "near": [group(c) | {"pairs": [
                {"a": refs[a], "b": refs[b], "similarity": s}
                for a, b, s in pairs if a in c][:10]} for c in clusters[:LIST_LIMIT]],
        }

    def _group(self, positions: list[int]) -> dict:
        return {"rows": [self.train.refs[p] for p in positions],
                "text": self.train.texts[positions[0]].full[:160]}

    # --- contradictions ------------------------------------------------------------------

    def _prompt_groups(self, pairs: set[tuple[int, int]]) -> list[list[int]]:
        """Same-prompt groups, joined through near-same `pairs`, whose answers differ."""
        keys = self.train.table.keys
        union = UnionFind()  # only rows sharing a prompt or in a pair can form a group
        for group in exact_groups(keys["prompt_key"], skip_zero=True):
            for position in group[1:]:
                union.union(group[0], position)
        for a, b in pairs:
            union.union(a, b)
        answers = keys["answer_key"]
        return [g for g in union.clusters() if len(set(answers[g].tolist())) > 1]

    def contradiction_groups(self) -> list[tuple[list[int], list]]:
        """(members, disagreeing pairs) of each contradicting prompt group; needs run()."""
        texts = self.train.texts
        # pairs outside the fetched (superset) groups cannot join differing answers
        confirmed = {(a, b) for a, b in self.prompt_candidates if a in texts and b in texts
                     and jaccard(shingles(texts[a].prompt), shingles(texts[b].prompt))
                     >= PROMPT_THRESHOLD}
        groups = self._prompt_groups(confirmed)
        prompts = {p: texts[p].prompt for g in groups for p in g}
        answers = {p: texts[p].answer for g in groups for p in g}
        found = []
        for group in groups:
            pairs = _group_pairs(group, prompts, answers, self.labelled)
            if pairs:
                found.append((group, pairs))
        return found

    def _contradictions(self) -> dict:
        texts, refs = self.train.texts, self.train.refs
        found = self.contradiction_groups()
        prompts = {p: texts[p].prompt for g, _ in found for p in g}
        answers = {p: texts[p].answer for g, _ in found for p in g}
        listed = [{"prompt": prompts[g[0]][:160], "rows": [refs[p] for p in g],
                   "pairs": [{"a": refs[c.first], "b": refs[c.second],
                              "answer_a": answers[c.first][:120],
                              "answer_b": answers[c.second][:120],
                              "prompt_similarity": c.prompt_similarity,
                              "answer_similarity": c.answer_similarity} for c in pairs]}
                  for g, pairs in found[:LIST_LIMIT]]
        return {"groups": len(found), "rows": sum(len(g) for g, _ in found),
                "compared": "labels" if self.labelled else "answers", "listed": listed}

    # --- leakage -------------------------------------------------------------------------

    def _leak_candidates(self) -> dict[int, list[int]]:
        """Eval position -> train positions to compare (first rows of each train key)."""
        train_keys, other_keys = self.train.lookup_key(), self.other.lookup_key()
        firsts = np.flatnonzero(first_positions(train_keys) == np.arange(len(train_keys)))
        order = np.argsort(train_keys[firsts])
        self.train_sorted = (train_keys[firsts][order], firsts[order])
        exact = self._exact_hit(other_keys)
        found: dict[int, set[int]] = {int(p): {int(exact[p])}
                                      for p in np.flatnonzero(exact >= 0)}
        bands_t, bands_e = self.train.table.bands["key"][firsts], self.other.table.bands["key"]
        for band in range(bands_t.shape[1]):
            band_order = np.argsort(bands_t[:, band], kind="stable")
            values = bands_t[band_order, band]
            lo = np.searchsorted(values, bands_e[:, band], "left")
            hi = np.minimum(np.searchsorted(values, bands_e[:, band], "right"), lo + CROSS_BUCKET)
            for position in np.flatnonzero((hi > lo) & (exact < 0)).tolist():
                hits = firsts[band_order[lo[position] : hi[position]]]
                found.setdefault(position, set()).update(hits.tolist())
        return {p: sorted(t) for p, t in found.items()}

    def _exact_hit(self, other_keys: np.ndarray) -> np.ndarray:
        """Per eval row, the first train row with the same key, else -1."""
        keys, rows = self.train_sorted
        if not len(keys):
            return np.full(len(other_keys), -1, np.int64)
        at = np.minimum(np.searchsorted(keys, other_keys), len(keys) - 1)
        return np.where(keys[at] == other_keys, rows[at], -1)

    def _leakage(self) -> dict:
        if self.other is None:
            return {"skipped": "no eval data given (--eval)"}
        other, train = self.other, self.train
        exact = self._exact_hit(other.lookup_key())
        answers_t, answers_e = train.table.keys["answer_key"], other.table.keys["answer_key"]
        leaks = []
        for position in sorted(self.leak_candidates):
            if exact[position] >= 0:
                hit, score = int(exact[position]), 1.0
            else:
                mine = shingles(other.texts[position].key)
                scored = [(jaccard(mine, shingles(train.texts[t].key)), t)
                          for t in self.leak_candidates[position]]
                scored = [(s, t) for s, t in scored if s >= self.threshold]
                if not scored:
                    continue
                score, hit = max(scored, key=lambda item: (item[0], -item[1]))
            leaks.append({"eval": other.refs[position], "train": train.refs[hit],
                          "similarity": round(score, 3),
                          "same_answer": bool(answers_e[position] == answers_t[hit])})
        return {"eval_rows": other.table.usable, "leaked_rows": len(leaks),
                "exact": sum(1 for x in leaks if x["similarity"] == 1.0),
                "listed": leaks[:LIST_LIMIT]}

    # --- answer balance ------------------------------------------------------------------

    def _top_answers(self) -> list[tuple[int, int]]:
        """(first position, count) of the most common answers, ties in order of appearance."""
        keys = self.train.table.keys["answer_key"]
        if not len(keys):
            return []
        _, first, counts = np.unique(keys, return_index=True, return_counts=True)
        order = np.lexsort((first, -counts))[: balance.TOP]
        return [(int(first[i]), int(counts[i])) for i in order]

    def _answer_counts(self) -> dict:
        keys = self.train.table.keys["answer_key"]
        top = [(self.train.texts[p].answer, n) for p, n in self.top_answers]
        return balance.answer_balance_counts(top, len(np.unique(keys)), len(keys))
