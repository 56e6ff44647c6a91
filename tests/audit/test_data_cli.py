"""The `tunesmith data check|clean` command line: files written, exit codes, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

from planted import write_planted

from tunesmith.cli.main import main


def test_check_writes_reports_and_passes_without_limits(tmp_path: Path, capsys) -> None:
    planted = write_planted(tmp_path / "planted.jsonl")
    code = main(["data", "check", str(planted.path), "--out", str(tmp_path / "r"),
                 "--no-lengths"])
    assert code == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["passed"] is True
    assert (tmp_path / "r" / "report.html").read_text().startswith("<!DOCTYPE html>")
    out = capsys.readouterr().out
    assert "sensitive data: 8 row(s)" in out and "result: passed" in out


def test_check_exits_1_when_a_limit_is_broken(tmp_path: Path, capsys) -> None:
    planted = write_planted(tmp_path / "planted.jsonl")
    code = main(["data", "check", str(planted.path), "--out", str(tmp_path / "r"),
                 "--no-lengths", "--set", "audit.max_sensitive_rows=0"])
    assert code == 1
    assert "threshold max_sensitive_rows: 8 (limit 0) FAILED" in capsys.readouterr().out


def test_missing_file_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    code = main(["data", "check", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "nope.jsonl: no such data file" in err


def test_bad_config_key_is_reported(tmp_path: Path, capsys) -> None:
    planted = write_planted(tmp_path / "planted.jsonl")
    code = main(["data", "check", str(planted.path), "--set", "audit.max_leak=0"])
    assert code == 2
    assert "did you mean audit.max_leaked_rows" in capsys.readouterr().err


def test_clean_prints_counts(tmp_path: Path, capsys) -> None:
    planted = write_planted(tmp_path / "planted.jsonl")
    code = main(["data", "clean", str(planted.path), "--out", str(tmp_path / "c")])
    assert code == 0
    out = capsys.readouterr().out
    assert f"{planted.rows} rows in:" in out and "Redacted: 8" in out


def test_check_reads_a_saved_dataset_with_two_workers(tmp_path: Path) -> None:
    import pytest

    datasets = pytest.importorskip("datasets")
    rows = [{"prompt": f"What is {i} plus {i}?", "completion": f"{2 * i}."} for i in range(40)]
    datasets.Dataset.from_list(rows + rows[:3]).save_to_disk(str(tmp_path / "saved"))
    code = main(["data", "check", str(tmp_path / "saved"), "--out", str(tmp_path / "r"),
                 "--no-lengths", "--workers", "2"])
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert code == 0 and report["schema_check"]["train"]["rows"] == 43
    assert report["duplicates"]["exact"][0]["rows"] == [
        f"{tmp_path / 'saved'}:row 1", f"{tmp_path / 'saved'}:row 41"]
    code = main(["data", "clean", str(tmp_path / "saved"), "--out", str(tmp_path / "c"),
                 "--workers", "2"])
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert code == 0 and manifest["counts"]["dropped_rows"] == 3
    assert len(manifest["inputs"][0]["sha256"]) == 64


def test_check_names_the_line_of_an_unterminated_csv_quote(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text('text,category\nhi there,greet\n"lost my card,card\n'
                    "where is my card,card\nbye now,farewell\n")
    code = main(["data", "check", str(path), "--out", str(tmp_path / "r"), "--no-lengths"])
    schema = json.loads((tmp_path / "r" / "report.json").read_text())["schema_check"]["train"]
    assert code == 0 and schema["rows"] == 4 and schema["usable"] == 3
    (problem,) = schema["problem_rows"]
    assert problem["row"] == f"{path}:3" and "unterminated quote" in problem["reason"]


def test_clean_of_an_empty_file_says_no_rows(tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    code = main(["data", "clean", str(empty), "--out", str(tmp_path / "out")])
    assert code == 2
    assert "no rows found" in capsys.readouterr().err


def test_clean_that_keeps_no_row_exits_non_zero(tmp_path: Path, capsys) -> None:
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("prompt,completion\ncaf\u00e9?,Oui.\nna\u00efve?,Non.\n".encode("latin-1"))
    code = main(["data", "clean", str(latin1), "--out", str(tmp_path / "out")])
    assert code == 2
    captured = capsys.readouterr()
    assert "2 rows in: 0 kept, 2 dropped" in captured.out
    assert "no row was kept" in captured.err
    assert len((tmp_path / "out" / "rejects.jsonl").read_text().splitlines()) == 2


def test_out_that_is_a_file_is_refused_before_work(tmp_path: Path, capsys) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"prompt": "Hi?", "completion": "Hello."}) + "\n")
    in_the_way = tmp_path / "report"
    in_the_way.write_text("keep me")
    for verb in ("check", "clean"):
        assert main(["data", verb, str(data), "--out", str(in_the_way)]) == 2
        assert "a file is in the way" in capsys.readouterr().err
    assert in_the_way.read_text() == "keep me"


def test_clean_refuses_to_overwrite_its_input(tmp_path: Path, capsys, monkeypatch) -> None:
    planted = write_planted(tmp_path / "train.jsonl")
    before = planted.path.read_bytes()
    monkeypatch.chdir(tmp_path)
    code = main(["data", "clean", "train.jsonl", "--out", "."])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "train.jsonl: data clean would overwrite this input file" in err
    assert "choose another --out folder" in err
    assert planted.path.read_bytes() == before
    assert not (tmp_path / "manifest.json").exists()


def test_clean_refuses_an_output_that_is_its_input_through_a_link(tmp_path: Path,
                                                                  capsys) -> None:
    (tmp_path / "data").mkdir()
    planted = write_planted(tmp_path / "data" / "rows.jsonl")
    before = planted.path.read_bytes()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "rejects.jsonl").symlink_to(planted.path)  # out/rejects -> the input
    code = main(["data", "clean", str(planted.path), "--out", str(tmp_path / "out")])
    assert code == 2 and "rejects.jsonl" in capsys.readouterr().err
    (tmp_path / "out" / "rejects.jsonl").unlink()
    (tmp_path / "out" / "rejects.jsonl").hardlink_to(planted.path)  # the same file, two names
    code = main(["data", "clean", str(planted.path), "--out", str(tmp_path / "out")])
    assert code == 2 and "rejects.jsonl" in capsys.readouterr().err
    assert planted.path.read_bytes() == before
    held = write_planted(tmp_path / "data" / "eval.jsonl")
    linked = tmp_path / "linked"
    linked.symlink_to(tmp_path / "data")  # the input folder under another name
    code = main(["data", "clean", str(held.path), "--out", str(linked), "--eval-fraction",
                 "0.2"])
    assert code == 2 and "eval.jsonl: data clean would overwrite" in capsys.readouterr().err


def test_clean_beside_its_input_under_another_name_works(tmp_path: Path) -> None:
    planted = write_planted(tmp_path / "raw.jsonl")
    assert main(["data", "clean", str(planted.path), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "train.jsonl").is_file()
