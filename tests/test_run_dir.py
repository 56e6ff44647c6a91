"""One command per run directory, and a refused command leaves the directory as it was."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tunesmith.cli.main import main
from tunesmith.rundir import LOCK_FILE, locked_run_dir

ROWS = [{"messages": [{"role": "user", "content": f"Say {w}."},
                      {"role": "assistant", "content": json.dumps({"word": w})}]}
        for w in ["red", "blue", "green", "cyan", "pink", "gold", "grey", "teal"]]

# holds the lock of the directory in argv[1] until killed
HOLDER = """
import fcntl, os, sys, time
fd = os.open(os.path.join(sys.argv[1], ".lock"), os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, str(os.getpid()).encode())
print("locked", flush=True)
time.sleep(600)
"""


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


@pytest.fixture
def holder(tmp_path: Path):
    """A process holding the lock of tmp_path/run; killed (SIGKILL) at the end."""
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "locked"
    yield proc
    proc.kill()
    proc.wait()


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


def test_a_held_run_directory_stops_a_second_command_at_once(config: Path, holder,
                                                             capsys) -> None:
    run = config.parent / "run"
    assert main(["train", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"{run} is in use by another tunesmith command (PID {holder.pid};" in err
    assert f"wait for it to finish, stop it (kill {holder.pid}), or choose another " in err
    assert sorted(p.name for p in run.iterdir()) == [LOCK_FILE]  # nothing written


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path, holder) -> None:
    run = tmp_path / "run"
    holder.kill()
    holder.wait()
    with locked_run_dir(run):
        assert (run / LOCK_FILE).read_text() == f"{os.getpid()}\n"
    assert (run / LOCK_FILE).read_text() == ""  # released: the PID goes with the lock


@pytest.mark.parametrize("verb", ["run", "train", "eval", "export"])
def test_every_run_verb_takes_the_lock(config: Path, capsys, verb: str) -> None:
    run = config.parent / "run"
    with locked_run_dir(run):  # another open file: conflicts like another process
        assert main([verb, str(config)]) == 2
    err = capsys.readouterr().err
    assert f"{run} is in use by another tunesmith command (PID {os.getpid()};" in err


def test_only_rank_zero_locks(tmp_path: Path, monkeypatch) -> None:
    run = tmp_path / "run"
    with locked_run_dir(run):
        monkeypatch.setenv("RANK", "1")
        with locked_run_dir(run):  # other ranks share rank 0's run
            pass
    monkeypatch.setenv("RANK", "0")
    with locked_run_dir(run):
        pass


def test_export_of_a_missing_run_creates_no_directory(tmp_path: Path) -> None:
    with locked_run_dir(tmp_path / "none", create=False):
        pass
    assert not (tmp_path / "none").exists()
