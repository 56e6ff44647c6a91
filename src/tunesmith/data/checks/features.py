"""Stream rows into compact per-row features, in worker processes when asked.

A check over data larger than memory keeps, per usable row, only fixed-size features:
content hashes, MinHash band keys, token and word counts, a label and a few flags. Texts are
dropped as soon as their features are computed; the few a report quotes are read again by
`fetch_texts`. Chunks of rows go to forked workers with a bounded number in flight, so
reading stays streaming and results come back in input order whatever the worker count.
"""

from __future__ import annotations

import hashlib
import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tunesmith.data.checks import minhash
from tunesmith.data.checks.duplicates import shingles
from tunesmith.data.checks.rows import answer_text, full_text, normalise_text, prompt_text
from tunesmith.data.readers import RawRow, ReadNotes, read_rows
from tunesmith.data.records import Conversation, Reject

CHUNK = 1024
PROMPT_THRESHOLD = 0.9  # contradictions: prompts this similar count as the same question


@dataclass
class Texts:
    """Normalised full text, prompt and answer (the label for labelled tables) of a row."""

    full: str
    prompt: str
    answer: str

    @property
    def key(self) -> str:
        """The prompt, or the whole text when there is no prompt (plain text, tables)."""
        return self.prompt or self.full


def text_hash(text: str) -> int:
    """A 63-bit digest of text; 0 is kept for 'no text'."""
    if not text:
        return 0
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return (int.from_bytes(digest, "little") >> 1) or 1


@dataclass
class ScanJob:
    """What every worker needs; set before the workers fork, so nothing is pickled."""

    normalise: Callable[[RawRow], tuple[Conversation | None, Reject | None, dict]]
    near_threshold: float
    # (conversation, texts, info, chunk.extra): add per-row extras
    row_hook: Callable[[Conversation, Texts, dict, dict], None] | None = None
    # conversations -> per conversation (a late reject or None, more info)
    chunk_hook: Callable[[list[Conversation]], list[tuple[Reject | None, dict]]] | None = None
    # band keys to keep: "full" (near copies), "prompt" (same question at 0.9), "key"
    # (prompt or text at the near threshold: leakage and the split); 12, 5 and 12 bytes x 4
    bands: tuple[str, ...] = ("full", "prompt", "key")


@dataclass
class Chunk:
    """Features of one chunk: per usable row, plus per-chunk counters."""

    rows: int = 0
    positions: list[int] = field(default_factory=list)  # raw row index of each usable row
    places: list[tuple[str, int, str]] = field(default_factory=list)
    rejects: list[tuple[int, Reject]] = field(default_factory=list)
    columns: dict[str, list] = field(default_factory=dict)
    bands: dict[str, np.ndarray] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


_JOB: ScanJob | None = None


def texts_of(conv: Conversation, label: str | None) -> Texts:
    """The normalised texts the checks compare."""
    answer = label if label is not None else normalise_text(answer_text(conv))
    return Texts(normalise_text(full_text(conv)), normalise_text(prompt_text(conv)), answer)


def scan_chunk(raws: list[tuple[int, RawRow]]) -> Chunk:
    """Normalise a chunk of rows and compute their features."""
    job = _JOB
    assert job is not None  # set by scan(); a programming error otherwise
    chunk, convs, infos, kept = Chunk(rows=len(raws)), [], [], []
    for position, raw in raws:
        conv, reject, info = job.normalise(raw)
        if reject is not None:
            chunk.rejects.append((position, reject))
        else:
            convs.append(conv)
            infos.append(info)
            kept.append((position, raw))
    late = job.chunk_hook(convs) if job.chunk_hook else [(None, {})] * len(convs)
    texts: list[Texts] = []
    for (position, raw), conv, info, (reject, more) in zip(kept, convs, infos, late,
                                                           strict=True):
        if reject is not None:
            chunk.rejects.append((position, reject))
            continue
        row_texts = texts_of(conv, info.get("label"))
        chunk.positions.append(position)
        chunk.places.append((raw.ref.source, raw.ref.line, raw.ref.unit))
        _add_row(chunk, row_texts, info)
        if job.row_hook:
            job.row_hook(conv, row_texts, info | more, chunk.extra)
        texts.append(row_texts)
    chunk.rejects.sort(key=lambda item: item[0])
    _add_bands(chunk, texts, job.near_threshold, job.bands)
    return chunk


def _add_row(chunk: Chunk, texts: Texts, info: dict) -> None:
    cols = chunk.columns
    for name, value in (("full_key", text_hash(texts.full)),
                        ("prompt_key", text_hash(texts.prompt)),
                        ("answer_key", text_hash(texts.answer)), ("label", info.get("label"))):
        cols.setdefault(name, []).append(value)


def _add_bands(chunk: Chunk, texts: list[Texts], threshold: float,
               wanted: tuple[str, ...]) -> None:
    full = minhash.signatures([shingles(t.full) for t in texts])
    key = minhash.signatures([shingles(t.key) for t in texts])
    made = {"full": lambda: minhash.band_keys(full, threshold),
            "key": lambda: minhash.band_keys(key, threshold),
            "prompt": lambda: minhash.band_keys(key, PROMPT_THRESHOLD)}
    chunk.bands = {name: made[name]() for name in wanted}


def numbered(paths: Iterable[str | Path], fixes: list[str],
             warnings: list[str] | None = None) -> Iterator[tuple[int, RawRow]]:
    """Every raw row of the files with its 0-based position across them; the files' fixes
    and warnings are added to those lists."""
    position = 0
    for path in paths:
        notes = ReadNotes()
        for raw in read_rows(path, notes):
            yield position, raw
            position += 1
        fixes.extend(notes.fixes)
        if warnings is not None:
            warnings.extend(notes.warnings)


def chunked(items: Iterator[Any], size: int | None = None) -> Iterator[list[Any]]:
    """Lists of up to `size` (default CHUNK) items."""
    size = size or CHUNK
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def scan(job: ScanJob, chunks: Iterator[list[tuple[int, RawRow]]],
         workers: int = 1) -> Iterator[Chunk]:
    """Features of each chunk, in order; workers > 1 run chunks in forked processes."""
    global _JOB
    _JOB = job
    try:
        yield from ordered_map(scan_chunk, chunks, workers)
    finally:
        _JOB = None


def ordered_map(fn: Callable[[Any], Any], items: Iterator[Any], workers: int) -> Iterator[Any]:
    """fn over items in order; workers > 1 fork processes that inherit module state.

    Like pool.imap, but reads ahead at most 2 * workers items (imap reads them all, which
    would pull a whole file into memory).
    """
    if workers <= 1:
        yield from map(fn, items)
        return
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.apply_async(fn, (item,)))
            if len(pending) >= 2 * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def fetch_texts(raws: Iterator[tuple[int, RawRow]], wanted: set[int],
                normalise: Callable) -> dict[int, tuple[Conversation, Texts]]:
    """Read again the rows at the wanted positions (a second, streaming pass)."""
    found: dict[int, tuple[Conversation, Texts]] = {}
    if not wanted:
        return found
    last = max(wanted)
    for position, raw in raws:
        if position in wanted:
            conv, reject, info = normalise(raw)
            if conv is not None and reject is None:
                found[position] = (conv, texts_of(conv, info.get("label")))
        if position >= last:
            break
    return found
