"""Checkpoints of a model sharded with FSDP2 over two CPU processes (torchrun, gloo).

`ACCELERATE_USE_FSDP=true` (what `accelerate launch` with an FSDP config sets) makes the loop
shard with FSDP2 on CPU. The gathered checkpoints must equal a one-process run's, resume
under DDP (unsharded) and back under FSDP2 to the same losses, and export the same weights.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from run_files import checkpoint, losses, summary
from safetensors.torch import load_file

ROWS = [{"prompt": f"Count to {n}.", "completion": " ".join(str(i) for i in range(1, n + 1))}
        for n in range(1, 10)]
HELD_OUT = [{"prompt": f"Count down from {n}.", "completion": " ".join(
    str(i) for i in range(n, 0, -1))} for n in range(1, 10)]  # 9: one process scores more
STEPS = 6  # 2 epochs of 3 global batches of 4


def _config(tmp_path: Path, toy_dir: Path, data: tuple[Path, Path], name: str, batch: int,
            method: str) -> Path:
    train, held_out = data
    cfg = {"output_dir": str(tmp_path / name), "model": {"name": str(toy_dir)},
           "data": {"train": [str(train)], "eval": [str(held_out)], "max_length": 64},
           "method": {"name": method, "r": 4, "alpha": 8},
           "training": {"epochs": 2, "batch_size": batch, "lr": 1e-2, "eval_every": 2,
                        "save_every": 2, "keep_checkpoints": 10, "seed": 3,
                        "load_best": True},
           "evaluation": {"enabled": False}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _launch(config: Path, port: int, verb: str = "train", fsdp: bool = True,
            resume: bool = False) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_FSDP": str(fsdp).lower()}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(port),
               "-m", "tunesmith.cli.main", verb, str(config)] + (["--resume"] if resume else [])
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]


def _max_diff(a: dict, b: dict) -> float:
    assert list(a) == list(b) and len(a) > 0
    return max((a[k] - b[k]).abs().max().item() for k in a)


def _optimizer_diff(a: dict, b: dict) -> float:
    """Largest AdamW moment difference, relative to the largest value of its tensor."""
    assert a["state"].keys() == b["state"].keys() and len(a["state"]) > 0
    assert [g["params"] for g in a["param_groups"]] == [g["params"] for g in b["param_groups"]]
    assert [g["lr"] for g in a["param_groups"]] == [g["lr"] for g in b["param_groups"]]
    return max((x[k] - y[k]).abs().max().item() / max(x[k].abs().max().item(), 1e-12)
               for x, y in ((a["state"][i], b["state"][i]) for i in a["state"]) for k in x)


def _resume_copy(source: Path, target: Path, step: int) -> None:
    """Copy a run directory, keeping only its checkpoint of `step`."""
    shutil.copytree(source, target)
    shutil.rmtree(target / "export", ignore_errors=True)
    for ckpt in (target / "checkpoints").glob("step-*"):
        if ckpt.name != f"step-{step:07d}":
            shutil.rmtree(ckpt)


@pytest.mark.parametrize(("method", "tolerance", "moments"), [
    ("lora", 1e-6, 1e-5),
    # Full fine-tuning: Adam scales near-zero gradients to ~lr-sized steps, so the order in
    # which two processes sum them moves a few weights by ~6e-6 from one process (plain DDP
    # moves them the same), and the next gradients follow: AdamW moments differ by up to
    # 5e-5 of their largest value, between DDP and FSDP2 too.
    ("full", 1e-5, 1e-4),
])
def test_fsdp2_checkpoints_match_one_process_and_resume(
        tmp_path: Path, toy_dir: Path, write_jsonl, method: str, free_port,
        tolerance: float, moments: float) -> None:
    data = (write_jsonl(ROWS), write_jsonl(HELD_OUT, "held_out.jsonl"))
    one, two = tmp_path / "one", tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_FSDP": "false"}
    subprocess.run([sys.executable, "-m", "tunesmith.cli.main", "run",
                    str(_config(tmp_path, toy_dir, data, "one", 4, method))],
                   check=True, env=env, capture_output=True)
    _launch(_config(tmp_path, toy_dir, data, "two", 2, method), free_port(), verb="run")
    assert summary(one)["world_size"] == 1 and summary(one)["sharding"] is None
    assert summary(two)["world_size"] == 2 and summary(two)["sharding"] == "fsdp2"

    # (a) every gathered checkpoint equals the one-process run's
    for step in (2, 4, 6):
        weights = [checkpoint(run, step, "weights.pt") for run in (one, two)]
        assert _max_diff(*weights) <= tolerance, step
        assert _optimizer_diff(*[checkpoint(run, step, "optimizer.pt")
                                 for run in (one, two)]) <= moments, step
    assert _max_diff(checkpoint(one, 2, "weights.pt"), checkpoint(one, 6, "weights.pt")) > 1e-3
    evals = [dict(summary(run)["eval_losses"]) for run in (one, two)]
    assert evals[0] == pytest.approx(evals[1], rel=1e-6) and sorted(evals[1]) == [2, 4, 6]
    best = [torch.load(run / "checkpoints/best/weights.pt", weights_only=True)
            for run in (one, two)]
    assert _max_diff(*best) <= tolerance
    _check_exports(one, two, method, tolerance)

    # (b) the sharded step-2 checkpoint resumes unsharded (DDP), whose step 4 resumes sharded
    ddp, fsdp = tmp_path / "ddp", tmp_path / "fsdp"
    _resume_copy(two, ddp, 2)
    _launch(_config(tmp_path, toy_dir, data, "ddp", 2, method), free_port(), fsdp=False,
            resume=True)
    assert summary(ddp)["world_size"] == 2 and summary(ddp)["sharding"] is None
    _resume_copy(ddp, fsdp, 4)
    _launch(_config(tmp_path, toy_dir, data, "fsdp", 2, method), free_port(), resume=True)
    assert summary(fsdp)["resumed_from_step"] == 4 and summary(fsdp)["sharding"] == "fsdp2"
    expected = losses(two)
    assert len(expected) == STEPS
    for run in (ddp, fsdp):
        assert losses(run) == pytest.approx(expected, rel=1e-6, abs=0)
        assert _max_diff(checkpoint(run, 6, "weights.pt"),
                         checkpoint(two, 6, "weights.pt")) <= 1e-6
        assert _optimizer_diff(checkpoint(run, 6, "optimizer.pt"),
                               checkpoint(two, 6, "optimizer.pt")) <= moments


def _check_exports(one: Path, two: Path, method: str, tolerance: float) -> None:
    """Rank 0 exported from the gathered weights: the same files as the one-process run."""
    kind = "adapter/adapter_model.safetensors" if method == "lora" else \
        "merged/model.safetensors"
    exported = [load_file(run / "export" / kind) for run in (one, two)]
    assert sorted(exported[0]) == sorted(exported[1])
    assert _max_diff(*[{k: e[k] for k in sorted(e)} for e in exported]) <= tolerance
    assert json.loads((two / "summary.json").read_text())["merge_max_abs_logit_diff"] < 1e-4


@pytest.mark.parametrize("method", ["lora", "full"])
def test_fsdp1_gather_and_scatter(tmp_path: Path, toy_dir: Path, method: str,
                                  free_port) -> None:
    # FSDP1 (what accelerate's FSDP config prepares on GPUs) wrapped by hand on CPU
    out = tmp_path / "seen.pt"
    worker = Path(__file__).with_name("fsdp1_worker.py")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(worker),
               str(toy_dir), method, str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = torch.load(out, weights_only=True)
    assert seen["world"] == 2 and seen["kind"] == "fsdp1"
    assert _max_diff(seen["before"], seen["gathered"]) == 0.0  # names, order and values
    assert _max_diff(seen["before"], seen["after"]) > 1e-3  # the step trained every rank's part
    assert _max_diff(seen["before"], seen["restored"]) == 0.0
    assert len(seen["moments"]["state"]) == len(seen["before"])
    assert _optimizer_diff(seen["moments"], seen["reloaded"]) == 0.0

