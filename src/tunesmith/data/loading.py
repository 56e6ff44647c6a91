"""Load example files into conversations, keeping every dropped row with its reason."""

from __future__ import annotations

import logging
import os
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.data.readers import ReadNotes, read_rows
from tunesmith.data.records import Conversation, Reject
from tunesmith.data.shapes import SHAPES, RowMapping, RowProblem, to_conversation
from tunesmith.errors import DataError

logger = logging.getLogger(__name__)

BAD_ROW_POLICIES = ("drop", "fail")


@dataclass
class LoadResult:
    """Conversations kept, rows rejected and quirks fixed while reading."""

    conversations: list[Conversation] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # about a whole file
    shapes: Counter = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return len(self.conversations) + len(self.rejects)

    def summary(self) -> str:
        kept = len(self.conversations)
        rules = Counter(r.rule for r in self.rejects)
        why = ", ".join(f"{n} {rule}" for rule, n in rules.most_common())
        dropped = f"; {len(self.rejects)} of {self.total} dropped ({why})" if self.rejects else ""
        return f"{kept} of {self.total} rows kept{dropped}"


def load_conversations(
    paths: str | Path | Iterable[str | Path],
    shape: str = "auto",
    mapping: RowMapping | None = None,
    on_bad_row: str = "drop",
) -> LoadResult:
    """Read files and normalise each row; drop (or fail on) bad rows, recording why."""
    if shape not in SHAPES:
        raise DataError(f"unknown data format {shape!r}; expected one of {', '.join(SHAPES)}")
    if on_bad_row not in BAD_ROW_POLICIES:
        raise DataError(f"unknown on_bad_row {on_bad_row!r}; expected drop or fail")
    if isinstance(paths, str | Path):
        paths = [paths]
    result = LoadResult()
    for path in paths:
        _load_file(Path(path), shape, mapping, on_bad_row, result)
    for fix in result.fixes:
        logger.warning("auto-fixed: %s", fix)
    for warning in result.warnings:
        logger.warning("%s", warning)
    return result


def _load_file(
    path: Path, shape: str, mapping: RowMapping | None, on_bad_row: str, result: LoadResult
) -> None:
    notes = ReadNotes()
    for raw in read_rows(path, notes):
        if raw.value is None:
            reject = Reject(raw.ref, "BrokenRow", raw.error or "unreadable row", None, raw.text)
        else:
            try:
                conv = to_conversation(raw.value, raw.ref, shape, mapping)
            except RowProblem as problem:
                reject = Reject(raw.ref, problem.rule, problem.reason, problem.field, raw.value)
            else:
                result.conversations.append(conv)
                result.shapes[shape if shape != "auto" else _shape_name(raw.value, mapping)] += 1
                continue
        if on_bad_row == "fail":
            raise DataError(f"{reject.describe()} (data.on_bad_row is 'fail'; fix the row or "
                            "set it to 'drop')")
        result.rejects.append(reject)
    result.fixes.extend(notes.fixes)
    result.warnings.extend(notes.warnings)


def _shape_name(row: dict, mapping: RowMapping | None) -> str:
    from tunesmith.data.shapes import detect_shape

    if mapping and (mapping.user or mapping.assistant):
        return "mapped"
    return detect_shape(row)


def attach_originals(rejects: Iterable[Reject]) -> None:
    """Fill `original` of rejects that hold only normalised messages, re-reading their files.

    Holding every raw row until tokenization would double the memory of a run; the few rows
    dropped late are looked up again instead (one streaming pass per file that has any).
    """
    wanted: dict[str, dict[tuple[str, int], Reject]] = defaultdict(dict)
    for reject in rejects:
        if reject.row_form != "original" and reject.original is None:
            wanted[reject.ref.source][(reject.ref.unit, reject.ref.line)] = reject
    for source, by_place in wanted.items():
        try:
            for raw in read_rows(source):
                reject = by_place.pop((raw.ref.unit, raw.ref.line), None)
                if reject is not None:
                    reject.original = raw.value if raw.value is not None else raw.text
                if not by_place:
                    break
        except DataError as err:  # the file moved or changed since it was read
            logger.warning("cannot re-read %s for rejects.jsonl: %s", source, err)


def write_rejects(rejects: Iterable[Reject], path: Path) -> int:
    """Write rejected rows as JSONL (atomically) and return how many were written.

    Rows dropped after normalising get their original file content attached first.
    """
    rejects = list(rejects)
    attach_originals(rejects)
    tmp = path.with_suffix(f"{path.suffix}.{os.getpid()}.tmp")
    count = 0
    with tmp.open("w", encoding="utf-8") as out:
        for reject in rejects:
            out.write(reject.to_json() + "\n")
            count += 1
    tmp.replace(path)
    return count
