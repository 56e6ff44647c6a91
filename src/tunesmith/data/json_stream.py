"""Read a `.json` file holding one array of row objects, one object at a time.

The array is decoded incrementally from fixed-size chunks, so memory holds one row plus a
chunk, never the whole file. A file whose top level is an object wrapping one array
(`{"data": [...]}`) is read whole: its array cannot be found without parsing everything.

Bytes that are not UTF-8 are decoded as lone surrogates (`surrogateescape`), so an item
holding some in its strings is rejected with its line, its bytes kept as \\xNN escapes,
and the rest of the file is read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from tunesmith.data.json_keys import RepeatedKeys, dumps_with_repeats, repeated_key_reason
from tunesmith.data.readers import (
    LONE_SURROGATE_REASON,
    NON_FINITE_WORD,
    SURROGATE_ESCAPE,
    NonFinite,
    RawRow,
    lone_surrogate,
    non_finite_reason,
    not_utf8_reason,
    refuse_utf16,
    row_decoder,
)
from tunesmith.data.records import RowRef, json_kind
from tunesmith.errors import DataError

CHUNK = 1 << 20  # characters decoded per read
_ESCAPED = re.compile("[\udc80-\udcff]")  # a byte that was not UTF-8, after surrogateescape
_SPACE = " \t\r\n"


class _Buffer:
    """Decoded text with a read position and the count of newlines already passed."""

    def __init__(self, handle: IO[bytes], path: Path) -> None:
        import codecs

        self.handle, self.path = handle, path
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
        self.text, self.pos, self.lines, self.eof = "", 0, 0, False
        self.counted, self.newlines = 0, 0  # newlines in text[:counted]

    def more(self) -> bool:
        """Read one more chunk; False at the end of the file."""
        if self.eof:
            return False
        raw = self.handle.read(CHUNK)
        self.eof = not raw
        piece = self.decoder.decode(raw, final=self.eof)
        self.lines += self._newlines_before(self.pos)
        self.text, self.pos = self.text[self.pos :] + piece, 0
        self.counted, self.newlines = 0, 0
        return not self.eof or bool(piece)

    def skip_space(self) -> str:
        """The next non-space character ('' at the end of the file), not consumed."""
        while True:
            while self.pos < len(self.text) and self.text[self.pos] in _SPACE:
                self.pos += 1
            if self.pos < len(self.text) or not self.more():
                return self.text[self.pos : self.pos + 1]

    def line(self, offset: int | None = None) -> int:
        end = self.pos if offset is None else offset
        return self.lines + self._newlines_before(end) + 1

    def _newlines_before(self, end: int) -> int:
        """Newlines in text[:end]; each stretch is counted once as the position moves on
        (counting from the chunk's start for every item made reading quadratic)."""
        if end < self.counted:
            return self.text.count("\n", 0, end)
        self.newlines += self.text.count("\n", self.counted, end)
        self.counted = end
        return self.newlines


def read_json_array(path: Path, handle: IO[bytes]) -> Iterator[RawRow]:
    """Yield the objects of a top-level JSON array in order."""
    refuse_utf16(handle, path)
    buf = _Buffer(handle, path)
    first = buf.skip_space()
    if first != "[":
        yield from _read_whole(path, buf)
        return
    buf.pos += 1
    number = 0
    decoder, repeats = row_decoder()
    while True:
        char = buf.skip_space()
        if char == "]":
            return
        if number and char == ",":
            buf.pos += 1
            char = buf.skip_space()
        elif number:
            _broken(buf, f"expected ',' or ']' after item {number}, found {char!r}")
        number += 1
        line = buf.line()
        repeats.clear()
        value, text = _next_value(buf, decoder)
        row = _row(RowRef(str(path), number, "item"), value, text, line,
                   bool(SURROGATE_ESCAPE.search(text)), bool(NON_FINITE_WORD.search(text)))
        yield _reject_repeats(row, bool(repeats), text)


def _row(ref: RowRef, value: object, text: str, line: int | None, halves: bool,
         constants: bool) -> RawRow:
    """The item as a row, or rejected: not an object, holding bytes that are not UTF-8, (when
    `halves` says its text has such escapes) a lone surrogate, or (when `constants` says its
    text has the words) a NaN or Infinity literal."""
    bad = _ESCAPED.search(text)
    if bad:
        at = line + text.count("\n", 0, bad.start()) if line else None
        kept = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        where = f"item {ref.line}"
        return RawRow(ref, None, not_utf8_reason(at, where) if at else
                      f"{where} is not valid UTF-8; re-save the file as UTF-8", kept)
    if not isinstance(value, dict):
        return RawRow(ref, None, f"expected a JSON object, found {json_kind(value)}")
    if halves and lone_surrogate(value):
        kept = json.dumps(value)  # ASCII escapes: writable
        return RawRow(ref, None, LONE_SURROGATE_REASON, kept)
    non_finite = constants and non_finite_reason(value)
    if non_finite:
        kept = text or json.dumps(value, ensure_ascii=False, default=_word)
        return RawRow(ref, None, non_finite, kept)
    return RawRow(ref, value)


def _reject_repeats(row: RawRow, may_repeat: bool, text: str) -> RawRow:
    """The row, or rejected when an object in it repeats a key (`may_repeat`: the decoder
    noted one in the item, or in the file); the kept text holds every value."""
    reason = may_repeat and row.value is not None and repeated_key_reason(row.value)
    if not reason:
        return row
    return RawRow(row.ref, None, reason, text or dumps_with_repeats(row.value, _word))


def _next_value(buf: _Buffer, decoder: json.JSONDecoder) -> tuple[object, str]:
    """Decode the value at the position, reading more chunks while it is incomplete; return
    it with its text."""
    while True:
        try:
            value, end = decoder.raw_decode(buf.text, buf.pos)
        except json.JSONDecodeError as err:
            # read before more(), which moves the text's start
            line, escaped = buf.line(err.pos), _ESCAPED.match(buf.text, err.pos)
            if buf.more():
                continue
            if escaped:  # outside any string: no row to reject
                raise DataError(f"{buf.path}:{line}: not valid UTF-8 (a byte outside any "
                                "string breaks the JSON); re-save the file as UTF-8 (iconv "
                                "-f cp1252 -t utf-8)") from None
            _broken(buf, f"{err.msg}, line {line}", line)
        except (ValueError, RecursionError) as err:
            raise DataError(f"{buf.path}: unreadable JSON ({str(err)[:120]})") from None
        else:
            if end == len(buf.text) and buf.more():
                continue  # a number cut by the chunk's end would decode short
            text, buf.pos = buf.text[buf.pos : end], end
            return value, text


def _broken(buf: _Buffer, what: str, line: int | None = None) -> None:
    raise DataError(f"{buf.path}:{line or buf.line()}: broken JSON ({what}); a .json file must "
                    "hold one array of objects (use .jsonl for one object per line)")


def _read_whole(path: Path, buf: _Buffer) -> Iterator[RawRow]:
    while buf.more():
        pass
    decoder, repeats = row_decoder()
    try:
        data = decoder.decode(buf.text)
    except (ValueError, RecursionError) as err:
        if not isinstance(err, json.JSONDecodeError):
            raise DataError(f"{path}: unreadable JSON ({str(err)[:120]})") from None
        raise DataError(
            f"{path}:{err.lineno}: broken JSON ({err.msg} at column {err.colno}); "
            "a .json file must hold one array of objects (use .jsonl for one object per line)"
        ) from None
    if isinstance(data, RepeatedKeys):
        raise DataError(f"{path}: the top-level object gives {data.key!r} {data.count} times; "
                        "JSON readers keep only the last value: keep one")
    if isinstance(data, dict):
        lists = [k for k, v in data.items() if isinstance(v, list)]
        if len(lists) != 1:
            raise DataError(f"{path}: expected a JSON array of rows, found an object")
        data = data[lists[0]]
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON array of rows, found {json_kind(data)}")
    # once for the file: rows are checked one by one only when these can be in them
    escaped = bool(_ESCAPED.search(buf.text))
    halves = bool(SURROGATE_ESCAPE.search(buf.text))
    constants = bool(NON_FINITE_WORD.search(buf.text))
    for number, value in enumerate(data, start=1):
        text = json.dumps(value, ensure_ascii=False, default=_word) if escaped else ""
        row = _row(RowRef(str(path), number, "item"), value, text, None, halves, constants)
        yield _reject_repeats(row, bool(repeats), text)


def _word(value: object) -> float:
    """The float json.dumps writes back as the file's own word (NaN, Infinity, -Infinity)."""
    if isinstance(value, NonFinite):
        return float(value.word)
    raise TypeError(f"{type(value).__name__} is not JSON")
