"""Read raw rows from JSONL, JSON, CSV and Parquet files, keeping each row's location.

Readers never raise on a bad row: they yield it with an error so the caller can report and
keep going. Harmless encoding quirks (a UTF-8 byte-order mark, CRLF line endings, blank
lines) are fixed and reported as notes.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.data.records import RowRef
from tunesmith.errors import DataError, DataFileNotFound

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv",
           ".tsv": "tsv", ".parquet": "parquet"}


@dataclass
class RawRow:
    """A row as read from disk: a dict, or None with the reason it could not be parsed."""

    ref: RowRef
    value: dict[str, Any] | None
    error: str | None = None
    text: str | None = None


@dataclass
class ReadNotes:
    """Auto-fixed quirks of one file, reported as warnings."""

    fixes: list[str] = field(default_factory=list)


def file_format(path: Path) -> str:
    """Return the reader name for a path from its extension."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(FORMATS))
        raise DataError(f"{path}: unknown file type {path.suffix!r}; expected one of {known}")
    return fmt


def read_rows(path: str | Path, notes: ReadNotes | None = None) -> Iterator[RawRow]:
    """Yield every row of a data file in order."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path} is a folder; name the data file(s) inside it")
    if not path.is_file():
        raise DataFileNotFound(f"{path}: no such data file; check the path in data.train/eval")
    notes = notes if notes is not None else ReadNotes()
    fmt = file_format(path)
    if fmt == "parquet":
        yield from _read_parquet(path)
        return
    text = _decode(path, notes)
    if fmt == "jsonl":
        yield from _read_jsonl(path, text, notes)
    elif fmt == "json":
        yield from _read_json(path, text)
    else:
        yield from _read_csv(path, text, "\t" if fmt == "tsv" else ",")


def _decode(path: Path, notes: ReadNotes) -> str:
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        notes.fixes.append(f"{path}: removed a UTF-8 byte-order mark")
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(
            f"{path}:{line}: not valid UTF-8 (byte {err.start}); re-save the file as UTF-8"
        ) from None
    if "\r\n" in text:
        notes.fixes.append(f"{path}: converted CRLF line endings")
        text = text.replace("\r\n", "\n")
    return text


def _read_jsonl(path: Path, text: str, notes: ReadNotes) -> Iterator[RawRow]:
    blank = 0
    for number, line in enumerate(text.split("\n"), start=1):
        ref = RowRef(str(path), number)
        if not line.strip():
            blank += 1
            continue
        yield _parse_json_object(ref, line.strip())
    # split() leaves one empty piece after a final newline; that one is normal
    if text.endswith("\n"):
        blank -= 1
    if blank > 0:
        notes.fixes.append(f"{path}: skipped {blank} blank line(s)")


def _parse_json_object(ref: RowRef, line: str) -> RawRow:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as err:
        return RawRow(ref, None, f"broken JSON: {err.msg} at column {err.colno}", line)
    except (ValueError, RecursionError) as err:  # huge integers, absurd nesting
        return RawRow(ref, None, f"unreadable JSON: {str(err)[:120]}", line[:1000])
    if not isinstance(value, dict):
        kind = type(value).__name__
        return RawRow(ref, None, f"expected a JSON object, found a {kind}", line)
    return RawRow(ref, value, text=line)


def _read_json(path: Path, text: str) -> Iterator[RawRow]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as err:
        if not isinstance(err, json.JSONDecodeError):
            raise DataError(f"{path}: unreadable JSON ({str(err)[:120]})") from None
        raise DataError(
            f"{path}:{err.lineno}: broken JSON ({err.msg} at column {err.colno}); "
            "a .json file must hold one array of objects (use .jsonl for one object per line)"
        ) from None
    if isinstance(data, dict):
        lists = [k for k, v in data.items() if isinstance(v, list)]
        if len(lists) != 1:
            raise DataError(f"{path}: expected a JSON array of rows, found an object")
        data = data[lists[0]]
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON array of rows, found {type(data).__name__}")
    for number, value in enumerate(data, start=1):
        ref = RowRef(str(path), number, "item")
        if isinstance(value, dict):
            yield RawRow(ref, value)
        else:
            yield RawRow(ref, None, f"expected a JSON object, found {type(value).__name__}")


def _read_csv(path: Path, text: str, delimiter: str) -> Iterator[RawRow]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return
    start = reader.line_num + 1
    for row in reader:
        ref = RowRef(str(path), start)
        start = reader.line_num + 1
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            error = f"expected {len(header)} columns ({', '.join(header)}), found {len(row)}"
            yield RawRow(ref, None, error, delimiter.join(row))
            continue
        yield RawRow(ref, dict(zip(header, row, strict=True)))


def _read_parquet(path: Path) -> Iterator[RawRow]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{path}: reading Parquet needs pyarrow: pip install pyarrow") from None
    table = pq.ParquetFile(path)
    number = 0
    for batch in table.iter_batches(batch_size=4096):
        for value in batch.to_pylist():
            number += 1
            yield RawRow(RowRef(str(path), number, "row"), value)
