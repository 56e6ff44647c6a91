"""A training process killed with SIGKILL resumes to the same losses as an unbroken run."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROWS = [{"prompt": f"Spell {w}.", "completion": " ".join(w)} for w in
        ["cat", "dog", "bird", "fish", "lion", "bear", "wolf", "frog", "duck", "goat"]]


def _config(tmp_path: Path, toy_dir: Path, train: Path, name: str) -> Path:
    cfg = {"output_dir": str(tmp_path / name), "model": {"name": str(toy_dir)},
           "data": {"train": [str(train)], "eval_fraction": 0.0, "max_length": 64},
           "method": {"name": "lora", "r": 4, "alpha": 8, "dropout": 0.1},
           "training": {"epochs": 4, "batch_size": 2, "lr": 1e-2, "eval_every": 0,
                        "save_every": 1, "keep_checkpoints": 2, "seed": 5},
           "evaluation": {"enabled": False}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _losses(run: Path) -> dict[int, float]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def _train(config: Path, resume: bool = False) -> subprocess.Popen:
    command = [sys.executable, "-m", "tunesmith.cli.main", "train", str(config)]
    return subprocess.Popen(command + (["--resume"] if resume else []),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_sigkill_at_random_points_then_resume(tmp_path: Path, toy_dir: Path,
                                              write_jsonl) -> None:
    train = write_jsonl(ROWS)
    unbroken = _config(tmp_path, toy_dir, train, "unbroken")
    assert _train(unbroken).wait() == 0
    expected = _losses(tmp_path / "unbroken")
    assert sorted(expected) == list(range(1, 21))  # 10 rows, batch 2, 4 epochs

    config = _config(tmp_path, toy_dir, train, "killed")
    run = tmp_path / "killed"
    rng = random.Random(0)
    kills = 0
    process = _train(config)
    while process.poll() is None and kills < 3:
        # wait for a random number of new checkpoints, then kill at a random moment
        target = rng.randint(2, 14)
        while process.poll() is None and not (run / "checkpoints" / f"step-{target:07d}"
                                              ).exists():
            time.sleep(0.02)
        time.sleep(rng.random() * 0.3)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            kills += 1
            process = _train(config, resume=True)
    assert process.wait() == 0
    assert kills >= 1
    resumed = _losses(run)
    assert sorted(resumed) == sorted(expected)
    for step, loss in expected.items():
        assert abs(resumed[step] - loss) <= 1e-6 * max(1.0, abs(loss)), step
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".tmp")]
