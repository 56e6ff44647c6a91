"""Read raw rows from JSONL, JSON, CSV, Parquet and Arrow files, keeping each row's location.

Every reader streams: JSONL and CSV line by line, JSON arrays object by object, Parquet and
Arrow in record batches, so a file larger than memory can be read. Readers never raise on a
bad row: they yield it with an error so the caller can report and keep going. Harmless
encoding quirks (a UTF-8 byte-order mark, CRLF line endings, blank lines) are fixed and
reported as notes.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tunesmith.data.json_keys import (
    RepeatedKeys,
    first_reason,
    key_recorder,
    repeated_key_reason,
)
from tunesmith.data.records import RowRef, json_kind
from tunesmith.errors import DataError, DataFileNotFound

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv",
           ".tsv": "tsv", ".parquet": "parquet", ".arrow": "arrow"}


@dataclass
class RawRow:
    """A row as read from disk: a dict, or None with the reason it could not be parsed."""

    ref: RowRef
    value: dict[str, Any] | None
    error: str | None = None
    text: str | None = None


@dataclass
class ReadNotes:
    """Auto-fixed quirks of one file, and problems of the whole file (beside the rows' own
    reasons), both reported as warnings."""

    fixes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def file_format(path: Path) -> str:
    """Return the reader name for a path from its extension (a folder: a saved dataset)."""
    if path.is_dir():
        return "hf-dataset"
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(FORMATS))
        raise DataError(f"{path}: unknown file type {path.suffix!r}; expected one of {known} "
                        "or a folder written by datasets' save_to_disk")
    return fmt


def read_rows(path: str | Path, notes: ReadNotes | None = None) -> Iterator[RawRow]:
    """Yield every row of a data file (or saved dataset folder) in order."""
    from tunesmith.data.arrow_rows import read_arrow_file, read_saved_dataset
    from tunesmith.data.json_stream import read_json_array

    path = Path(path)
    if not path.exists():
        raise DataFileNotFound(f"{path}: no such data file; check the path in data.train/eval")
    notes = notes if notes is not None else ReadNotes()
    fmt = file_format(path)
    if fmt == "hf-dataset":
        yield from read_saved_dataset(path, notes)
    elif fmt == "parquet":
        yield from _read_parquet(path)
    elif fmt == "arrow":
        yield from read_arrow_file(path, str(path))
    elif fmt == "json":
        with path.open("rb") as handle:
            yield from read_json_array(path, _skip_bom(handle, path, notes))
    else:
        yield from _read_text_rows(path, fmt, notes)


def _read_text_rows(path: Path, fmt: str, notes: ReadNotes) -> Iterator[RawRow]:
    with path.open("rb") as handle:
        bad: dict[int, int] = {}  # line number -> first byte that is not UTF-8
        lines = _lines(handle, path, notes, bad)
        if fmt == "jsonl":
            yield from _read_jsonl(path, lines, notes, bad)
        else:
            yield from _read_csv(path, lines, "\t" if fmt == "tsv" else ",", bad)
    if bad:  # one line for the file, beside the rows' own reasons
        first = min(bad)
        notes.warnings.append(f"{path}: {len(bad)} line(s) are not valid UTF-8 (first: line "
                           f"{first}), their rows rejected; the file is likely Windows-1252 "
                           f"or Latin-1: iconv -f cp1252 -t utf-8 {path.name} > utf8.{fmt}")


def refuse_repeated_columns(path: Path | str, names: list[str]) -> None:
    """Stop on a table that names a column twice: each row would keep only the last of its
    values. Blank names are left alone: no row shape or mapping reads an unnamed column."""
    counts = Counter(name for name in names if name.strip())
    repeated = [f"{name!r} names {count}" for name, count in counts.items() if count > 1]
    if repeated:
        raise DataError(f"{path}: the column name {', '.join(repeated)} columns; a row would "
                        "keep only the last such column's value and lose the others; rename "
                        "or remove the extra column")


def _skip_bom(handle: IO[bytes], path: Path, notes: ReadNotes) -> IO[bytes]:
    if handle.read(3) == b"\xef\xbb\xbf":
        notes.fixes.append(f"{path}: removed a UTF-8 byte-order mark")
    else:
        handle.seek(0)
    return handle


def _lines(handle: IO[bytes], path: Path, notes: ReadNotes,
           bad: dict[int, int]) -> Iterator[str]:
    """Decoded lines ending in LF (CRLF converted, noted once). A line that is not UTF-8 is
    decoded with its bad bytes written as \\xNN escapes and recorded in `bad`, so its row is
    rejected with the reason instead of stopping the file."""
    crlf = False
    refuse_utf16(handle, path)
    for number, raw in enumerate(_skip_bom(handle, path, notes), start=1):
        if raw.endswith(b"\r\n"):
            raw, crlf = raw[:-2] + b"\n", True
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as err:
            bad[number] = err.start
            yield raw.decode("utf-8", errors="backslashreplace")
    if crlf:
        notes.fixes.append(f"{path}: converted CRLF line endings")


def refuse_utf16(handle: IO[bytes], path: Path) -> None:
    """Stop on a UTF-16 file (its rows cannot be told apart); leave the handle where it
    was (after a UTF-8 byte-order mark, say)."""
    start = handle.tell()
    head = handle.read(4096)
    handle.seek(start)
    if head[:2] in (b"\xff\xfe", b"\xfe\xff") or head.count(0) > len(head) // 4:
        # a byte-order mark, or NUL bytes in every other place: UTF-16 text without one
        raise DataError(f"{path}: the file is UTF-16; re-save it as UTF-8")


SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")  # \ud800 ... \udfff in JSON
LONE_SURROGATE_REASON = ("holds a \\ud800-\\udfff escape that is no character (half of a "
                         "UTF-16 pair); remove it or re-export the file with valid Unicode")
NON_FINITE_WORD = re.compile(r"NaN|Infinity")


class NonFinite:
    """A NaN, Infinity or -Infinity literal read by Python's lenient JSON parser (as
    `parse_constant`); JSON itself has none of them, so a row holding one is rejected."""

    def __init__(self, word: str) -> None:
        self.word = word


def row_decoder() -> tuple[json.JSONDecoder, list[RepeatedKeys]]:
    """A JSON decoder for rows, reading NaN/Infinity as NonFinite, and the list where it notes
    each object that repeats a key (clear it before each row)."""
    hook, repeats = key_recorder()
    return json.JSONDecoder(parse_constant=NonFinite, object_pairs_hook=hook), repeats


def non_finite_reason(value: Any) -> str | None:
    """Why a parsed row must be rejected for a NaN/Infinity literal, or None without one."""
    return first_reason(value, _non_finite)


def _non_finite(value: Any, where: str) -> str | None:
    if not isinstance(value, NonFinite):
        return None
    return (f"{where or 'the row'} is {value.word}, which JSON does not have; write null or "
            "a number (or a string)")


def lone_surrogate(value: Any) -> bool:
    """True when a string in `value` (keys too) holds a UTF-16 surrogate on its own: valid
    JSON (`"\\ud800"`) that no text encoding can write."""
    if isinstance(value, str):
        return any("\ud800" <= ch <= "\udfff" for ch in value)
    if isinstance(value, dict):
        return any(lone_surrogate(k) or lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(lone_surrogate(v) for v in value)
    return False


RESAVE_AS_UTF8 = ("re-save the file as UTF-8 (from Windows-1252 or Latin-1: iconv -f cp1252 "
                  "-t utf-8)")


def not_utf8_reason(line: int, where: str) -> str:
    """Why a row with bytes that are not UTF-8 is rejected, and the fix."""
    return f"line {line} is not valid UTF-8 ({where}); {RESAVE_AS_UTF8}"


def _not_utf8(bad: dict[int, int], numbers: list[int]) -> str | None:
    """The rejection reason when any of a row's lines is not UTF-8, else None.

    A CSV record whose quoted field spans lines is named by its first line, as its row is;
    the line holding the byte is given once, in parentheses.
    """
    for number in numbers:
        if number in bad and number == numbers[0]:
            return not_utf8_reason(number, f"byte {bad[number]} of the line, from 0")
        if number in bad:
            return (f"the record from line {numbers[0]} is not valid UTF-8 (the byte is on "
                    f"line {number}, byte {bad[number]} of that line, from 0); "
                    f"{RESAVE_AS_UTF8}")
    return None


def _read_jsonl(path: Path, lines: Iterator[str], notes: ReadNotes,
                bad: dict[int, int]) -> Iterator[RawRow]:
    blank = 0
    decoder, repeats = row_decoder()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            blank += 1
            continue
        error = _not_utf8(bad, [number])
        if error:
            yield RawRow(RowRef(str(path), number), None, error, line.strip())
            continue
        repeats.clear()
        yield _parse_json_object(RowRef(str(path), number), line.strip(), decoder, repeats)
    if blank > 0:
        notes.fixes.append(f"{path}: skipped {blank} blank line(s)")


def _parse_json_object(ref: RowRef, line: str, decoder: json.JSONDecoder,
                       repeats: list[RepeatedKeys]) -> RawRow:
    if line.startswith("\ufeff"):  # a file joined after one with a BOM; json.loads says so
        return RawRow(ref, None, "broken JSON: Unexpected UTF-8 BOM (decode using utf-8-sig) "
                      "at column 1", line)
    try:
        value = decoder.decode(line)
    except json.JSONDecodeError as err:
        return RawRow(ref, None, f"broken JSON: {err.msg} at column {err.colno}", line)
    except (ValueError, RecursionError) as err:  # huge integers, absurd nesting
        return RawRow(ref, None, f"unreadable JSON: {str(err)[:120]}", line[:1000])
    if not isinstance(value, dict):
        return RawRow(ref, None, f"expected a JSON object, found {json_kind(value)}", line)
    if SURROGATE_ESCAPE.search(line) and lone_surrogate(value):
        return RawRow(ref, None, LONE_SURROGATE_REASON, line)
    non_finite = NON_FINITE_WORD.search(line) and non_finite_reason(value)
    if non_finite:
        return RawRow(ref, None, non_finite, line)
    if repeats:
        return RawRow(ref, None, repeated_key_reason(value), line)
    return RawRow(ref, value, text=line)


class _Replay:
    """Lines for csv.reader with their numbers; lines can be pushed back to be read again."""

    def __init__(self, lines: Iterator[str]) -> None:
        self.lines, self.pending = lines, deque()
        self.number = 0
        self.taken: list[tuple[int, str]] = []

    def __iter__(self) -> _Replay:
        return self

    def __next__(self) -> str:
        if self.pending:
            item = self.pending.popleft()
        else:
            self.number += 1
            item = (self.number, next(self.lines))
        self.taken.append(item)
        return item[1]


def _read_csv(path: Path, lines: Iterator[str], delimiter: str,
              bad: dict[int, int]) -> Iterator[RawRow]:
    source = _Replay(lines)
    reader = csv.reader(source, delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        return
    if _not_utf8(bad, [number for number, _ in source.taken]):
        raise DataError(f"{path}: the header line is not valid UTF-8; re-save the file as UTF-8")
    refuse_repeated_columns(path, header)
    while True:
        source.taken = []
        row = next(reader, None)
        if row is None:
            return
        taken = source.taken
        ref = RowRef(str(path), taken[0][0])
        if _unterminated_quote(taken):
            # re-read the swallowed lines as rows of their own, so none is lost
            source.pending.extendleft(reversed(taken[1:]))
            yield RawRow(ref, None, _quote_error(taken), taken[0][1].rstrip("\n"))
            continue
        if not any(cell.strip() for cell in row):
            continue
        error = _not_utf8(bad, [number for number, _ in taken])
        if error:
            yield RawRow(ref, None, error, "".join(line for _, line in taken).rstrip("\n"))
            continue
        if len(row) != len(header):
            error = f"expected {len(header)} columns ({', '.join(header)}), found {len(row)}"
            yield RawRow(ref, None, error, delimiter.join(row))
            continue
        yield RawRow(ref, dict(zip(header, row, strict=True)))


def _unterminated_quote(taken: list[tuple[int, str]]) -> bool:
    """True when a record spans lines and its quotes do not pair up.

    A well-formed quoted field has an even number of quote characters (doubled quotes inside
    it included); an odd count means a quote was opened and never closed, so the csv module
    ran on into the following lines.
    """
    return len(taken) > 1 and sum(line.count('"') for _, line in taken) % 2 == 1


def _quote_error(taken: list[tuple[int, str]]) -> str:
    first, last = taken[0][0], taken[-1][0]
    swallowed = f"line {last}" if last == first + 1 else f"lines {first + 1}-{last}"
    return (f"unterminated quote: the quoted field opened on line {first} never closes (it "
            f"would swallow {swallowed}); those lines are read as rows of their "
            "own; close the quote or double it (\"\") inside the field")


def _read_parquet(path: Path) -> Iterator[RawRow]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{path}: reading Parquet needs pyarrow: pip install pyarrow") from None
    import pyarrow as pa

    number = 0
    try:
        table = pq.ParquetFile(path)
        refuse_repeated_columns(path, table.schema_arrow.names)
        for batch in table.iter_batches(batch_size=4096):
            for value in batch.to_pylist():
                number += 1
                yield RawRow(RowRef(str(path), number, "row"), value)
    except (pa.ArrowException, OSError) as err:
        where = f"after row {number}" if number else "before its first row"
        reason = " ".join(str(err).split())
        raise DataError(f"{path}: not a readable Parquet file ({where}: {reason}); expected "
                        "a file written by pyarrow, pandas or datasets; write it again") from None
    except ValueError as err:  # pyarrow's to_pylist on a struct naming a field twice
        refuse_repeated_fields(path, err, number)
        raise


def refuse_repeated_fields(path: Path | str, err: ValueError, number: int) -> None:
    """Stop with one line when pyarrow's to_pylist refused a struct naming a field twice
    (`number`: rows read before); any other ValueError is left to the caller."""
    if "duplicate field names" in str(err):
        raise DataError(f"{path}: a nested column names one field twice (row {number + 1} "
                        "onwards); a row would keep only one of its values; rename or remove "
                        "the extra field") from None
