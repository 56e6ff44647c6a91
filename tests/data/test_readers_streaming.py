import json
from pathlib import Path

import pytest

from tunesmith.data import json_stream, load_conversations
from tunesmith.data.readers import ReadNotes, read_rows
from tunesmith.errors import DataError

ROWS = [{"prompt": f"Opposite of {w}?", "completion": f"Not {w}. " + "x" * (i * 7)}
        for i, w in enumerate(["hot", "up", "in", "left", "day", "wet"])]


def test_json_array_streams_across_chunk_edges(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "a.json"
    path.write_text(json.dumps(ROWS, indent=1) + "\n")
    monkeypatch.setattr(json_stream, "CHUNK", 7)  # every object straddles several reads
    assert [r.value for r in read_rows(path)] == ROWS
    path.write_text(json.dumps([ROWS[0], 5, ROWS[1], 123456789]))
    rows = list(read_rows(path))
    assert [r.value for r in rows] == [ROWS[0], None, ROWS[1], None]
    assert rows[3].error == "expected a JSON object, found a number" and rows[3].ref.line == 4


def test_broken_json_array_names_its_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(json_stream, "CHUNK", 5)
    path = tmp_path / "a.json"
    path.write_text('[\n{"prompt": "a", "completion": "b"},\n{"prompt": "c" "completion"}\n]')
    rows = read_rows(path)
    assert next(rows).value == {"prompt": "a", "completion": "b"}
    with pytest.raises(DataError, match=r"a\.json:3: broken JSON"):
        next(rows)


@pytest.mark.parametrize("chunk", [5, 1 << 20])
def test_a_byte_that_is_not_utf8_in_a_json_array_names_its_line(tmp_path, monkeypatch,
                                                                chunk) -> None:
    monkeypatch.setattr(json_stream, "CHUNK", chunk)
    path = tmp_path / "a.json"
    text = json.dumps(ROWS, indent=1).encode()
    line = 20
    cut = [i for i, b in enumerate(text) if b == ord("\n")][line - 2] + 1  # start of line 20
    path.write_bytes(text[:cut] + b"\xe9" + text[cut:])  # outside any string: JSON breaks
    with pytest.raises(DataError, match=rf"a\.json:{line}: not valid UTF-8 \(a byte outside"):
        list(read_rows(path))


@pytest.mark.parametrize("chunk", [5, 1 << 20])
def test_a_json_item_with_bytes_that_are_not_utf8_is_rejected_alone(tmp_path, monkeypatch,
                                                                    chunk) -> None:
    monkeypatch.setattr(json_stream, "CHUNK", chunk)
    path = tmp_path / "a.json"
    items = [{"prompt": "caf\u00e9?", "completion": "yes"}, {"prompt": "tea?",
                                                              "completion": "no"}]
    text = json.dumps(items, indent=1).encode().replace(b"\\u00e9", b"\xe9")  # Latin-1
    path.write_bytes(text)
    rows = list(read_rows(path))
    assert rows[1].value == items[1] and rows[0].value is None
    assert rows[0].error.startswith("line 3 is not valid UTF-8 (item 1); re-save")
    assert '"caf\\xe9?"' in rows[0].text  # the bytes kept, escaped
    wrapped = tmp_path / "w.json"
    wrapped.write_bytes(b'{"data": ' + text + b"}")  # read whole: the item is still named
    rows = list(read_rows(wrapped))
    assert rows[1].value == items[1] and rows[0].error.startswith("item 1 is not valid UTF-8")


def test_wrapped_json_object_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"data": ROWS[:2]}))
    assert [r.value for r in read_rows(path)] == ROWS[:2]


def test_csv_unterminated_quote_loses_no_row(tmp_path: Path) -> None:
    # the quote opened on line 3 never closes: lines 4-6 must stay rows of their own
    path = tmp_path / "t.csv"
    path.write_text('text,category\nhi,greet\n"broken,pin\nbye,farewell\n'
                    'ok "fine",yes\nthanks,"thank"\n')
    rows = list(read_rows(path))
    assert [r.ref.line for r in rows] == [2, 3, 4, 5, 6]
    assert rows[1].value is None and "unterminated quote" in rows[1].error
    assert "line 3" in rows[1].error and rows[1].text == '"broken,pin'
    assert [r.value for r in rows[2:]] == [{"text": "bye", "category": "farewell"},
                                           {"text": 'ok "fine"', "category": "yes"},
                                           {"text": "thanks", "category": "thank"}]


def test_csv_unterminated_quote_closed_later(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text('a,b\n1,"x\n2,y\n3,"z"\n4,w\n')
    rows = list(read_rows(path))
    assert [(r.ref.line, r.value) for r in rows] == [
        (2, None), (3, {"a": "2", "b": "y"}), (4, {"a": "3", "b": "z"}), (5, {"a": "4", "b": "w"})]


def test_csv_quoted_newline_with_doubled_quotes_is_one_row(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text('a,b\n1,"say ""hi""\nthen go"\n2,z\n')
    assert [(r.ref.line, r.value) for r in read_rows(path)] == [
        (2, {"a": "1", "b": 'say "hi"\nthen go'}), (4, {"a": "2", "b": "z"})]


def _chat(i: int) -> dict:
    return {"messages": [{"role": "user", "content": f"Question {i}?"},
                         {"role": "assistant", "content": f"Answer {i}."}]}


def test_saved_hf_dataset_folder_and_arrow_file(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    data = datasets.Dataset.from_list([_chat(i) for i in range(5)])
    data.save_to_disk(str(tmp_path / "saved"), num_shards=2)
    rows = list(read_rows(tmp_path / "saved"))
    assert [r.value for r in rows] == [_chat(i) for i in range(5)]
    assert [r.ref.line for r in rows] == [1, 2, 3, 4, 5] and rows[0].ref.unit == "row"
    arrow = min((tmp_path / "saved").glob("*.arrow"))
    assert [r.value for r in read_rows(arrow)] == [_chat(i) for i in range(3)]
    result = load_conversations(tmp_path / "saved")
    assert len(result.conversations) == 5 and not result.rejects


def test_saved_dataset_dict_reads_train_split(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    splits = datasets.DatasetDict({"train": datasets.Dataset.from_list([_chat(1), _chat(2)]),
                                   "test": datasets.Dataset.from_list([_chat(9)])})
    splits.save_to_disk(str(tmp_path / "dd"))
    notes = ReadNotes()
    assert [r.value for r in read_rows(tmp_path / "dd", notes)] == [_chat(1), _chat(2)]
    assert "'train' split" in notes.fixes[0]
    assert [r.value for r in read_rows(tmp_path / "dd" / "test")] == [_chat(9)]
    splits = datasets.DatasetDict({"test": datasets.Dataset.from_list([_chat(9)])})
    splits.save_to_disk(str(tmp_path / "only"))
    with pytest.raises(DataError, match="no 'train'"):
        list(read_rows(tmp_path / "only"))


def test_plain_arrow_file_format(tmp_path: Path) -> None:
    import pyarrow as pa

    path = tmp_path / "rows.arrow"
    table = pa.Table.from_pylist([{"prompt": "a?", "completion": "b."}] * 3)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    assert len(list(read_rows(path))) == 3
    (tmp_path / "plain").mkdir()
    with pytest.raises(DataError, match="not a saved dataset"):
        list(read_rows(tmp_path / "plain"))


def test_broken_json_names_its_line_when_the_file_fits_one_chunk(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    text = json.dumps(ROWS, indent=1)
    lines = text.split("\n")
    lines[19] = lines[19].replace('"', "", 1)  # a key without its opening quote
    path.write_text("\n".join(lines))
    with pytest.raises(DataError, match=r"a\.json:20: broken JSON"):
        list(read_rows(path))


@pytest.mark.parametrize("name", ["a.json", "a.jsonl", "w.json"])
def test_a_lone_surrogate_escape_rejects_its_row_only(tmp_path: Path, name: str) -> None:
    items = ['{"prompt": "a\\ud800", "completion": "b"}',  # half a UTF-16 pair: no character
             '{"prompt": "\\ud83d\\ude00", "completion": "d"}']  # a whole pair: an emoji
    path = tmp_path / name
    body = {"a.json": "[" + ",\n".join(items) + "]", "a.jsonl": "\n".join(items),
            "w.json": '{"data": [' + ",".join(items) + "]}"}[name]
    path.write_text(body)
    rows = list(read_rows(path))
    assert rows[0].value is None and "no character" in rows[0].error
    assert rows[1].value == {"prompt": "\U0001f600", "completion": "d"}


def test_a_json_array_with_a_utf8_bom_is_read(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b'\xef\xbb\xbf[{"prompt": "a", "completion": "b"}]')
    assert [r.value for r in read_rows(path)] == [{"prompt": "a", "completion": "b"}]
