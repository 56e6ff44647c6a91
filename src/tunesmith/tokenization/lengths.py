"""Token lengths of conversations with the real tokenizer and template, without encoding twice.

Counts follow the formatter's boundary rule exactly: each segment is tokenized on its own, so
prompt + answer equals the length `ChatFormatter.encode` gives. Segments are tokenized in
batches, which is several times faster than encoding rows one by one.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from tunesmith.data.records import Conversation, Reject
from tunesmith.data.shapes import RowProblem
from tunesmith.formatting.chat import ChatFormatter

logger = logging.getLogger(__name__)

BATCH = 2048
HISTOGRAM_BINS = 16


@dataclass
class RowLengths:
    """Per-row token counts; -1 marks a row the template could not render."""

    prompt: np.ndarray
    answer: np.ndarray
    before_answer: np.ndarray
    rejects: dict[int, Reject] = field(default_factory=dict)

    @property
    def total(self) -> np.ndarray:
        return self.prompt + self.answer


def count_tokens(formatter: ChatFormatter, convs: Sequence[Conversation],
                 progress: bool = True, workers: int = 1) -> RowLengths:
    """Count prompt, answer and before-first-answer tokens of every conversation.

    With workers > 1, batches run in forked processes that inherit the rows (nothing is
    pickled but the counts); the result is the same for any worker count.
    """
    global _JOB
    n = len(convs)
    lengths = RowLengths(np.full(n, -1), np.full(n, -1), np.full(n, -1))
    bar = tqdm(total=n, desc="token lengths", unit="row", disable=None if progress else True)
    starts = range(0, n, BATCH)
    _JOB = (formatter, convs)
    try:
        if workers > 1 and n > BATCH:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                parts = pool.imap(_count_part, starts)
                _merge(parts, lengths, bar)
        else:
            _merge(map(_count_part, starts), lengths, bar)
    finally:
        _JOB = None
        bar.close()
    return lengths


_JOB: tuple[ChatFormatter, Sequence[Conversation]] | None = None


def _count_part(start: int) -> tuple[int, RowLengths]:
    """Count one batch of the rows in _JOB; positions in the result are relative to start."""
    formatter, convs = _JOB  # type: ignore[misc]
    stop = min(len(convs), start + BATCH)
    part = RowLengths(np.full(stop - start, -1), np.full(stop - start, -1),
                      np.full(stop - start, -1))
    count_batch(formatter, convs, start, stop, part)
    return start, part


def _merge(parts: Iterable[tuple[int, RowLengths]], lengths: RowLengths, bar: tqdm) -> None:
    for start, part in parts:
        stop = start + len(part.prompt)
        lengths.prompt[start:stop] = part.prompt
        lengths.answer[start:stop] = part.answer
        lengths.before_answer[start:stop] = part.before_answer
        lengths.rejects.update({start + i: r for i, r in part.rejects.items()})
        bar.update(stop - start)


def count_batch(formatter: ChatFormatter, convs: Sequence[Conversation], start: int, stop: int,
                 lengths: RowLengths) -> None:
    """Fill lengths[0 : stop - start] with the counts of convs[start:stop]."""
    texts: list[str] = []
    owners: list[tuple[int, bool, bool]] = []  # (row, supervised, before the first answer)
    for row in range(start, stop):
        try:
            segments = formatter.segments(convs[row])
        except RowProblem as problem:
            lengths.rejects[row - start] = Reject(convs[row].ref, problem.rule,
                                                  problem.reason, problem.field,
                                                  convs[row].to_dict(), "messages")
            continue
        seen_answer = False
        for text, supervised in segments:
            seen_answer = seen_answer or supervised
            if text:
                texts.append(text)
                owners.append((row - start, supervised, not seen_answer))
    if not texts:
        return
    counts = _token_counts(formatter.tokenizer, texts)
    rows = {row for row, _, _ in owners}
    for row in rows:
        lengths.prompt[row] = lengths.answer[row] = lengths.before_answer[row] = 0
    for (row, supervised, before), count in zip(owners, counts, strict=True):
        if supervised:
            lengths.answer[row] += count
        else:
            lengths.prompt[row] += count
        if before:
            lengths.before_answer[row] += count


def _token_counts(tokenizer: object, texts: list[str]) -> list[int]:
    """Token counts of texts; the Rust backend's batch call when the tokenizer has one."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "encode_batch_fast"):
        return [len(e.ids) for e in backend.encode_batch_fast(texts, add_special_tokens=False)]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def length_section(lengths: RowLengths, max_length: int, truncation: str,
                   refs: Sequence[str]) -> dict:
    """Summarise lengths against data.max_length and the truncation policy."""
    ok = lengths.prompt >= 0
    total = lengths.total[ok]
    if not len(total):
        return {"rows": 0, "skipped": "no row could be rendered"}
    over = ok & (lengths.total > max_length)
    lost = over & (lengths.before_answer >= max_length)
    if truncation == "drop":
        dropped = over
    elif truncation == "right":
        dropped = lost
    else:  # left keeps the end of the row, where the last answer is
        dropped = over & (lengths.answer == 0)
    return {
        "rows": int(ok.sum()),
        "max_length": max_length,
        "truncation": truncation,
        "prompt": _stats(lengths.prompt[ok]),
        "answer": _stats(lengths.answer[ok]),
        "total": _stats(total),
        "histogram": _histogram(total, max_length),
        "over_max_length": int(over.sum()),
        "over_share": round(float(over.sum()) / int(ok.sum()), 4),
        "answer_lost_if_cut_at_end": int(lost.sum()),
        "dropped_by_policy": int(dropped.sum()),
        "truncated_by_policy": int((over & ~dropped).sum()),
        "over_max_length_rows": [refs[i] for i in np.flatnonzero(over)[:20]],
        "answer_lost_rows": [refs[i] for i in np.flatnonzero(lost)[:20]],
        "tokens": int(np.minimum(total, max_length).sum()),
        "longest_kept": int(np.minimum(lengths.total[ok & ~dropped], max_length).max(
            initial=0)),
        "trained_tokens": int(np.minimum(lengths.answer[ok], max_length).sum()),
    }


def _stats(values: np.ndarray) -> dict:
    q = np.percentile(values, [50, 90, 99]) if len(values) else [0, 0, 0]
    return {"min": int(values.min()), "mean": round(float(values.mean()), 1),
            "p50": int(q[0]), "p90": int(q[1]), "p99": int(q[2]), "max": int(values.max())}


def _histogram(total: np.ndarray, max_length: int) -> dict:
    """Equal bins up to max_length plus one overflow bin for longer rows."""
    edges = np.linspace(0, max_length, HISTOGRAM_BINS + 1).round().astype(int)
    counts, _ = np.histogram(np.minimum(total, max_length), bins=edges)
    inside = counts.tolist()
    over = int((total > max_length).sum())
    inside[-1] -= over  # clipped rows landed in the last bin
    return {"edges": edges.tolist(), "counts": inside, "over": over}
