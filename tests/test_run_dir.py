"""A refused command leaves the run directory as it was."""

import json
from pathlib import Path

import pytest
import yaml

from tunesmith.cli.main import main

ROWS = [{"messages": [{"role": "user", "content": f"Say {w}."},
                      {"role": "assistant", "content": json.dumps({"word": w})}]}
        for w in ["red", "blue", "green", "cyan", "pink", "gold", "grey", "teal"]]

@pytest.fixture
def config(tmp_path: Path, toy_dir: Path, write_jsonl) -> Path:
    train = write_jsonl(ROWS)
    cfg = {"output_dir": str(tmp_path / "run"), "model": {"name": str(toy_dir)},
           "data": {"train": [str(train)], "eval_fraction": 0.25, "max_length": 64},
           "method": {"name": "lora", "r": 4, "alpha": 8},
           "training": {"batch_size": 2, "lr": 1e-2, "eval_every": 2, "save_every": 2},
           "evaluation": {"enabled": False, "max_new_tokens": 4}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _files(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "data.train=[OTHER]"],
     "already holds checkpoints (step-0000002); continue it with --resume"),
    (["run", "data.train=[OTHER]"], "already holds checkpoints (step-0000002)"),
    (["train", "--resume", "training.batch_size=4"],
     "training.batch_size: 2 in the checkpoint, 4 now"),
    (["run", "--resume", "data.train=[OTHER]"], "was trained with other settings (data:"),
    (["eval", "method.r=8"], "method.r: 4 in the checkpoint, 8 now"),
])
def test_a_refused_command_leaves_every_file_of_the_run_as_it_was(
        config: Path, write_jsonl, monkeypatch, capsys, argv: list[str], message: str) -> None:
    assert main(["train", str(config), "training.max_steps=2"]) == 0
    run = config.parent / "run"
    before = _files(run)
    assert "checkpoints/step-0000002/state.json" in before and "data/summary.json" in before
    other = write_jsonl(ROWS[:5], "other.jsonl")
    argv = [argv[0], str(config), *[a.replace("OTHER", str(other)) for a in argv[1:]]]

    # the refusal comes before the tokenizer, data and model are loaded
    def no_load(*_: object) -> None:
        raise AssertionError("loaded the tokenizer before refusing")

    monkeypatch.setattr("tunesmith.pipeline._tokenizer", no_load)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert _files(run) == before
