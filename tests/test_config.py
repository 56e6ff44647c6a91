from pathlib import Path

import pytest
import yaml

from tunesmith.config import load_config
from tunesmith.config.reference import reference
from tunesmith.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_reference_doc_is_up_to_date() -> None:
    assert (REPO / "docs/config.md").read_text() == reference()


def test_overrides_and_yaml_numbers(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  lr: 1e-3\n  batch_size: 4\ndata:\n  train: a.jsonl\n")
    config = load_config(path, ["training.batch_size=2", "method.r=8"])
    assert config.training.lr == 0.001 and config.training.batch_size == 2
    assert config.method.r == 8 and config.data.train == ["a.jsonl"]


def test_a_bad_override_is_blamed_on_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  lr: 1e-3\n")
    with pytest.raises(ConfigError) as bad:
        load_config(path, ["training.batch_size=many"])
    message = str(bad.value)
    assert message.startswith("the command line: training.batch_size: ")
    assert "(from the override training.batch_size=many)" in message
    path.write_text("training:\n  lr: fast\n")  # the file's own problem stays the file's
    with pytest.raises(ConfigError) as both:
        load_config(path, ["training.batch_size=many"])
    assert str(both.value).startswith(f"{path} has 2 problem(s)")
    assert "training.lr: " in str(both.value) and "from the override" in str(both.value)


@pytest.mark.parametrize(("override", "expected"), [
    ("data.train=[a.jsonl", "expected a list such as [a.jsonl, b.jsonl]; balance the brackets"),
    ("data.train=[a.jsonl, b.jsonl]]", "expected a list such as [a.jsonl, b.jsonl]"),
    ("data.mapping={user: q", "expected a mapping such as {a: 1, b: 2}; balance the braces"),
    ("data.system_prompt='Be brief", "expected a quoted text such as 'a b'; close the quote"),
])
def test_a_malformed_list_override_is_refused(override: str, expected: str) -> None:
    with pytest.raises(ConfigError) as bad:
        load_config(None, [override])
    assert str(bad.value).startswith(f"the command line: override {override!r}: malformed value")
    assert expected in str(bad.value) and len(bad.value.problems) == 1


def test_mapping_templates_given_on_the_command_line_stay_text() -> None:
    config = load_config(None, ["data.format=mapped", "data.mapping.user={text}",
                                "data.mapping.assistant={context} Question: {question}",
                                "data.mapping.system='{persona}'",
                                "data.mapping.assistant_json={intent: '{category}'}"])
    assert config.data.mapping == {"user": "{text}",
                                   "assistant": "{context} Question: {question}",
                                   "system": "{persona}",
                                   "assistant_json": {"intent": "{category}"}}


def test_text_yaml_cannot_read_stays_text() -> None:
    config = load_config(None, ["data.system_prompt=@home", "data.train=[a.jsonl, b.jsonl]"])
    assert config.data.system_prompt == "@home"
    assert [Path(p).name for p in config.data.train] == ["a.jsonl", "b.jsonl"]


@pytest.mark.parametrize(("override", "expected"), [
    ("training.lr=.nan", "training.lr: expected a finite number"),
    ("training.lr=.inf", "training.lr: expected a finite number"),
    ("training.warmup_ratio=1.5", "training.warmup_ratio: must be <= 1.0"),
    ("training.max_grad_norm=-1", "training.max_grad_norm: must be >= 0.0"),
])
def test_numbers_out_of_range_are_refused(override: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config(None, [override])


def test_a_bare_no_is_the_word_where_the_choices_name_it(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  mixed_precision: no\n")  # YAML 1.1: false
    assert load_config(path).training.mixed_precision == "no"
    assert load_config(None, ["training.mixed_precision=off"]).training.mixed_precision == "no"
    with pytest.raises(ConfigError, match="training.packing: expected"):
        load_config(None, ["training.packing=fast"])  # booleans stay booleans


def test_dataset_variable_is_expanded(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "c.yaml"
    path.write_text('data:\n  train: ["${TUNESMITH_DATASETS:-../d}/x.csv"]\n')
    monkeypatch.delenv("TUNESMITH_DATASETS", raising=False)
    assert load_config(path).data.train == ["../d/x.csv"]
    monkeypatch.setenv("TUNESMITH_DATASETS", "/data")
    assert load_config(path).data.train == ["/data/x.csv"]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("modle: {}\ntraining: {batch_size: 0, epochs: many}\ndata: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.problems == [
        "line 1: modle: unknown key (did you mean model?)",
        "line 3: data: expected a mapping, found 3",
        "line 2: training.epochs: expected a number, found 'many'",
        "line 2: training.batch_size: must be >= 1, found 0",
    ]


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_example_configs_are_valid() -> None:
    for path in sorted((REPO / "examples").glob("*/config.yaml")):
        load_config(path)


def test_a_binary_config_file_is_a_config_error(tmp_path) -> None:
    import pytest

    from tunesmith.config import load_config
    from tunesmith.errors import ConfigError

    path = tmp_path / "config.yaml"
    path.write_bytes(b"\x00\xc2\xff\xfe random bytes")
    with pytest.raises(ConfigError, match="not a UTF-8 text file"):
        load_config(path)


BLANK = ("is empty or only whitespace; remove it or write the token's text, e.g. "
         "'<tool_call>'")


@pytest.mark.parametrize(("tokens", "problem"), [
    ([""], f"model.add_tokens: '' {BLANK}"),
    (["<a>", "  "], f"model.add_tokens: '  ' {BLANK}"),
    (["<a>", "<b>", "<a>"],
     "model.add_tokens: '<a>' listed more than once; list each new token once"),
])
def test_blank_or_repeated_new_tokens_are_refused_at_load(tmp_path: Path, tokens, problem) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"model": {"add_tokens": tokens}}))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.problems == [f"line 2: {problem}"]  # the add_tokens key's line
    assert str(err.value) == f"{path}: line 2: {problem}"  # one problem, one line
    assert load_config(path, ["model.add_tokens=['<a>', '<b>']"]).model.add_tokens == [
        "<a>", "<b>"]


def test_config_file_problems_name_their_line(tmp_path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("# a comment\ntraining:\n  batch_size: 0\n\nmodel:\n  nmae: x\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, ["training.epochs=0"])
    problems = err.value.problems
    assert "line 6: model.nmae: unknown key (did you mean model.name?)" in problems
    assert "line 3: training.batch_size: must be >= 1, found 0" in problems
    # a problem from the command line has no line in the file
    assert any(p.startswith("training.epochs:") and "(from the override" in p for p in problems)
