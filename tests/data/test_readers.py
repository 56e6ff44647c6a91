from pathlib import Path

import pytest

from tunesmith.data import load_conversations
from tunesmith.data.readers import read_rows
from tunesmith.errors import DataError, DataFileNotFound

ROW1 = ('{"messages":[{"role":"user","content":"Name a prime."},{"role":"assistant",'
        '"content":"Seven."}],"meta":{"src":"a"}}')
ROW2 = ('{"messages":[{"role":"user","content":"Name an even number."},{"role":"assistant",'
        '"content":"Four."}],"meta":{"lang":"en"}}')


def test_bom_crlf_and_blank_lines_give_identical_records(tmp_path: Path) -> None:
    # BUG-01: a BOM, CRLF endings, trailing spaces and a blank line change nothing.
    plain = tmp_path / "plain.jsonl"
    plain.write_text(f"{ROW1}\n{ROW2}\n", encoding="utf-8")
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + f"{ROW1}\r\n{ROW2}   \r\n\r\n".encode())
    rows = [r.value for r in read_rows(bom)]
    assert next(iter(rows[0])) == "messages"
    assert "lang" not in rows[0]["meta"] and "src" not in rows[1]["meta"]
    assert rows == [r.value for r in read_rows(plain)]
    with_bom, without = load_conversations(bom), load_conversations(plain)
    assert len(with_bom.conversations) == 2 and not with_bom.rejects
    assert [c.messages for c in with_bom.conversations] == [
        c.messages for c in without.conversations]
    fixes = " ".join(with_bom.fixes)
    assert "byte-order mark" in fixes and "CRLF" in fixes and "blank line" in fixes
    assert without.fixes == []


def test_broken_json_line_is_reported_with_its_line(write_jsonl) -> None:
    path = write_jsonl([ROW1, '{"messages": [', "[1, 2]", ROW2])
    result = load_conversations(path)
    assert len(result.conversations) == 2
    assert [(r.ref.line, r.rule) for r in result.rejects] == [(2, "BrokenRow"), (3, "BrokenRow")]
    assert "broken JSON" in result.rejects[0].reason
    assert "found a list" in result.rejects[1].reason


def test_a_line_that_is_not_utf8_rejects_its_row_only(tmp_path: Path) -> None:
    latin1 = ROW2.replace("even", "\u00e9ven").encode("latin-1")  # one byte 0xE9
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(f"{ROW1}\n".encode() + latin1 + f"\n{ROW1}\n".encode())
    result = load_conversations(path)
    assert len(result.conversations) == 2
    assert [(r.ref.line, r.rule) for r in result.rejects] == [(2, "BrokenRow")]
    byte = ROW2.index("even")
    reason = result.rejects[0].reason
    assert f"line 2 is not valid UTF-8 (byte {byte} of the line, from 0)" in reason
    assert "\\xe9ven" in result.rejects[0].row  # the byte is kept, escaped
    assert any("1 line(s) are not valid UTF-8 (first: line 2)" in w and "iconv" in w
               for w in result.warnings)  # and the file says it once: a warning, not a fix
    assert not any("UTF-8" in f for f in result.fixes)
    csv_path = tmp_path / "mixed.csv"
    csv_path.write_bytes(b'text,category\nhi,greet\n"caf\xe9\nbar",drink\nbye,leave\n')
    rows = list(read_rows(csv_path))
    assert [(r.ref.line, r.value) for r in rows] == [
        (2, {"text": "hi", "category": "greet"}), (3, None),
        (5, {"text": "bye", "category": "leave"})]
    assert rows[1].error.startswith("line 3 is not valid UTF-8 (byte 4")
    utf16 = tmp_path / "wide.jsonl"
    for encoding in ("utf-16", "utf-16-le", "utf-16-be"):  # with and without a BOM
        utf16.write_bytes(f"{ROW1}\n".encode(encoding))
        with pytest.raises(DataError, match="UTF-16; re-save it as UTF-8"):
            list(read_rows(utf16))


def test_a_multi_line_csv_record_not_utf8_is_named_by_its_first_line(tmp_path: Path) -> None:
    path = tmp_path / "spans.csv"
    path.write_bytes(b'prompt,completion\nhi,hello\n"Say a\nw\xe9rd",word\nbye,ciao\n')
    result = load_conversations(path)
    assert len(result.conversations) == 2
    (reject,) = result.rejects
    assert reject.describe() == (
        f"{path}:3: the record from line 3 is not valid UTF-8 (the byte is on line 4, byte 1 "
        "of that line, from 0); re-save the file as UTF-8 (from Windows-1252 or Latin-1: "
        "iconv -f cp1252 -t utf-8)")


def test_csv_with_quoted_newlines_keeps_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text('text,category\n"\nHow do I unblock my PIN?",pin_blocked\nhi,greet\n')
    rows = list(read_rows(path))
    assert [r.ref.line for r in rows] == [2, 4]
    assert rows[0].value == {"text": "\nHow do I unblock my PIN?", "category": "pin_blocked"}


def test_json_array_and_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"prompt": "Opposite of hot?", "completion": "Cold."},
            {"prompt": "Opposite of up?", "completion": "Down."}]
    array = tmp_path / "a.json"
    array.write_text(__import__("json").dumps(rows))
    table = tmp_path / "a.parquet"
    pq.write_table(pa.Table.from_pylist(rows), table)
    a, b = load_conversations(array), load_conversations(table)
    assert [c.messages for c in a.conversations] == [c.messages for c in b.conversations]
    assert b.conversations[1].ref.line == 2 and b.conversations[1].ref.unit == "row"


def test_missing_file_and_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(DataFileNotFound, match="no such data file"):
        load_conversations(tmp_path / "nope.jsonl")
    other = tmp_path / "data.txt"
    other.write_text("x")
    with pytest.raises(DataError, match="unknown file type"):
        load_conversations(other)


def test_fail_policy_stops_at_the_first_bad_row(write_jsonl) -> None:
    path = write_jsonl([ROW1, '{"instruction": "x", "input": "", "output": ""}'])
    with pytest.raises(DataError, match=r":2 field output: empty"):
        load_conversations(path, on_bad_row="fail")


@pytest.mark.parametrize("damage", ["not parquet at all\n", "footer"])
def test_corrupt_parquet_is_one_data_error(tmp_path: Path, damage: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "a.parquet"
    if damage == "footer":
        pq.write_table(pa.Table.from_pylist([{"prompt": "a", "completion": "b"}] * 50), path)
        path.write_bytes(path.read_bytes()[:-30])
    else:
        path.write_text(damage)
    with pytest.raises(DataError, match=r"a\.parquet: not a readable Parquet file \(before its "
                                        r"first row: Parquet magic bytes not found"):
        list(read_rows(path))


def test_nan_and_infinity_literals_are_row_rejects(tmp_path: Path) -> None:
    good = '{"prompt": "Opposite of hot?", "completion": "Cold.", "note": "NaN Infinity"}'
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text(f'{{"prompt": "p", "completion": NaN}}\n{good}\n'
                     '{"messages": [{"role": "user", "content": -Infinity}]}\n')
    array = tmp_path / "a.json"
    array.write_text(f'[{{"prompt": "p", "completion": Infinity}}, {good}]')
    wrapped = tmp_path / "b.json"
    wrapped.write_text(f'{{"rows": [{{"prompt": "p", "score": [1, NaN]}}, {good}]}}')
    reasons = {path.name: [r.error for r in read_rows(path)] for path in (jsonl, array, wrapped)}
    tail = ", which JSON does not have; write null or a number (or a string)"
    assert reasons == {
        "a.jsonl": ["completion is NaN" + tail, None, "messages[0].content is -Infinity" + tail],
        "a.json": ["completion is Infinity" + tail, None],
        "b.json": ["score[1] is NaN" + tail, None],
    }
    assert next(read_rows(wrapped)).text == '{"prompt": "p", "score": [1, NaN]}'
