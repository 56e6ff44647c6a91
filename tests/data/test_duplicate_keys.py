"""A key given twice in one JSON object rejects its row (Python's json would keep the last
value silently); a table naming a column twice stops with the file and the column."""

import json
from pathlib import Path

import pytest

from tunesmith.data import json_stream, load_conversations
from tunesmith.data.cleaning import clean_data
from tunesmith.data.readers import read_rows
from tunesmith.errors import DataError

GOOD = '{"prompt": "Opposite of hot?", "completion": "Cold."}'
TOP = '{"prompt": "Opposite of up?", "completion": "Down.", "completion": "Low."}'
NESTED = ('{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", '
          '"content": "Hello."}, {"role": "user", "content": "a", "content": "b"}, '
          '{"role": "assistant", "content": "Yes."}]}')
IN_TOOLS = ('{"messages": [{"role": "user", "content": "Weather?"}, {"role": "assistant", '
            '"content": "Sunny."}], "tools": [{"type": "function", "function": {"name": "w", '
            '"parameters": {"type": "object", "properties": {"city": {"type": "string"}, '
            '"city": {"type": "number"}}}}}]}')
TAIL = (": given 2 times in one object; JSON readers keep only the last value and silently "
        "drop the others; keep one value")
REASONS = [None, "duplicate key completion" + TAIL, "duplicate key messages[2].content" + TAIL,
           "duplicate key tools[0].function.parameters.properties.city" + TAIL, None]
ROWS = [GOOD, TOP, NESTED, IN_TOOLS, GOOD]


def _reasons(path: Path) -> list[str | None]:
    return [row.error for row in read_rows(path)]


def test_jsonl_rows_with_a_repeated_key_at_any_depth_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text("\n".join(ROWS) + "\n")
    rows = list(read_rows(path))
    assert [row.error for row in rows] == REASONS
    assert [row.text for row in rows[1:4]] == ROWS[1:4]  # kept as written, both values
    assert rows[0].value == rows[4].value == json.loads(GOOD)
    loaded = load_conversations(path)
    assert len(loaded.conversations) == 2
    assert [(r.ref.line, r.rule) for r in loaded.rejects] == [(2, "BrokenRow"), (3, "BrokenRow"),
                                                               (4, "BrokenRow")]


@pytest.mark.parametrize("chunk", [7, 1 << 20])
def test_json_array_items_with_a_repeated_key_are_rejected(tmp_path: Path, monkeypatch,
                                                          chunk: int) -> None:
    monkeypatch.setattr(json_stream, "CHUNK", chunk)
    path = tmp_path / "a.json"
    path.write_text("[\n" + ",\n".join(ROWS) + "\n]\n")
    rows = list(read_rows(path))
    assert [row.error for row in rows] == REASONS
    assert [row.text for row in rows[1:4]] == ROWS[1:4]


def test_a_wrapped_array_keeps_every_value_of_a_rejected_item(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text('{"rows": [' + ", ".join(ROWS) + "]}")
    rows = list(read_rows(path))
    assert [row.error for row in rows] == REASONS
    assert [row.text for row in rows[1:4]] == ROWS[1:4]  # written again with both values


def test_a_wrapper_object_repeating_a_key_stops_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text(f'{{"rows": [{GOOD}], "rows": [{GOOD}]}}')
    with pytest.raises(DataError, match=r"a\.json: the top-level object gives 'rows' 2 times"):
        list(read_rows(path))


def test_tools_as_json_text_with_a_repeated_key_are_bad_tools(tmp_path: Path) -> None:
    tools = [{"name": "w", "parameters": {"type": "object", "properties": {}}}]
    text = json.dumps(tools).replace('"name": "w"', '"name": "w", "name": "v"')
    row = {"messages": [{"role": "user", "content": "Hi"},
                        {"role": "assistant", "content": "Hello."}], "tools": text}
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps(row) + "\n")
    [reject] = load_conversations(path).rejects
    assert (reject.rule, reject.field) == ("BadTools", "tools")
    assert reject.reason == "the JSON text of tools has a duplicate key tools[0].name" + TAIL


def test_clean_writes_repeated_key_rows_to_rejects(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text(f"{GOOD}\n{TOP}\n")
    manifest = clean_data([str(path)], tmp_path / "out")
    assert manifest["counts"]["dropped_rows"] == 1
    [reject] = [json.loads(line) for line in
                (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()]
    assert (reject["rule"], reject["reason"]) == ("BrokenRow", "duplicate key completion" + TAIL)
    assert reject["original"] == TOP


def test_tables_naming_a_column_twice_stop_with_the_column(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    csv = tmp_path / "a.csv"
    csv.write_text("prompt,completion,completion\nOpposite of hot?,Cold.,Warm.\n")
    table = pa.Table.from_arrays([pa.array(["p"]), pa.array(["a"]), pa.array(["b"])],
                                 names=["prompt", "completion", "completion"])
    parquet = tmp_path / "a.parquet"
    pq.write_table(table, parquet)
    arrow = tmp_path / "a.arrow"
    with pa.OSFile(str(arrow), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as out:
        out.write_table(table)
    for path in (csv, parquet, arrow):
        with pytest.raises(DataError, match=rf"{path.name}: the column name 'completion' names "
                                            "2 columns; a row would keep only the last"):
            list(read_rows(path))



def test_parquet_struct_naming_a_field_twice_stops_with_one_line(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    meta = pa.StructArray.from_arrays([pa.array(["a"]), pa.array(["b"])],
                                      names=["content", "content"])
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"prompt": ["p"], "meta": meta}), path)
    with pytest.raises(DataError, match=r"a.parquet: a nested column names one field twice "
                                        r"\(row 1 onwards\)"):
        list(read_rows(path))

@pytest.mark.parametrize("writer", ["file", "stream"])
def test_arrow_struct_naming_a_field_twice_stops_with_one_line(tmp_path: Path,
                                                               writer: str) -> None:
    import pyarrow as pa

    meta = pa.StructArray.from_arrays([pa.array(["a"]), pa.array(["b"])],
                                      names=["content", "content"])
    table = pa.table({"prompt": ["p"], "meta": meta})
    path = tmp_path / "a.arrow"
    with pa.OSFile(str(path), "wb") as sink:
        new = pa.ipc.new_file if writer == "file" else pa.ipc.new_stream
        with new(sink, table.schema) as out:
            out.write_table(table)
    with pytest.raises(DataError, match=r"a.arrow: a nested column names one field twice "
                                        r"\(row 1 onwards\)"):
        list(read_rows(path))


def test_blank_column_names_may_repeat(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("prompt,completion,,\nOpposite of hot?,Cold.,,\n")
    [row] = read_rows(path)
    assert row.value == {"prompt": "Opposite of hot?", "completion": "Cold.", "": ""}


def test_data_check_lists_repeated_key_rows_and_stops_on_a_repeated_column(
        tmp_path: Path, capsys) -> None:
    from tunesmith.cli.main import main

    path = tmp_path / "a.jsonl"
    path.write_text("\n".join(ROWS) + "\n")
    code = main(["data", "check", str(path), "--out", str(tmp_path / "r"), "--no-lengths"])
    assert code == 0
    assert "a.jsonl:3: duplicate key messages[2].content" + TAIL in capsys.readouterr().out
    report = json.loads((tmp_path / "r" / "report.json").read_text())["schema_check"]["train"]
    assert [(p["row"], p["reason"]) for p in report["problem_rows"]] == [
        (f"{path}:{line}", reason) for line, reason in enumerate(REASONS, start=1) if reason]
    table = tmp_path / "a.csv"
    table.write_text("prompt,completion,completion\np,a,b\n")
    code = main(["data", "check", str(table), "--out", str(tmp_path / "r2"), "--no-lengths"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "column name 'completion' names 2" in err


def test_a_bom_inside_a_jsonl_file_is_still_named(tmp_path: Path) -> None:
    # the reader decodes with its own decoder, which, unlike json.loads, does not name a BOM
    path = tmp_path / "a.jsonl"
    path.write_bytes(f"{GOOD}\n".encode() + b"\xef\xbb\xbf" + f"{GOOD}\n".encode())
    reason = "broken JSON: Unexpected UTF-8 BOM (decode using utf-8-sig) at column 1"
    assert _reasons(path) == [None, reason]
