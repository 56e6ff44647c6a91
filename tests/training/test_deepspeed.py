"""DeepSpeed ZeRO-2 and ZeRO-3 through `accelerate launch` and the shipped config files, on
CPU with two gloo processes (DeepSpeed picks its CPU accelerator when there is no GPU).

A ZeRO-3 run must train like plain DDP with the same batches (micro-batches accumulated by
the loop, not by DeepSpeed), write checkpoints in the same layout (whole weights and whole
AdamW moments, gathered from the partitions), export, and resume: its step-2 checkpoint,
resumed under ZeRO-2, reproduces the uninterrupted run's losses, weights and moments.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from run_files import checkpoint, losses, summary

pytest.importorskip("deepspeed")

ROOT = Path(__file__).resolve().parents[2]
ROWS = [{"prompt": f"Count to {n}.", "completion": " ".join(str(i) for i in range(1, n + 1))}
        for n in range(1, 10)]
HELD_OUT = [{"prompt": f"Count down from {n}.", "completion": " ".join(
    str(i) for i in range(n, 0, -1))} for n in range(1, 8)]


def _config(tmp_path: Path, toy_dir: Path, data: tuple[Path, Path], name: str) -> Path:
    train, held_out = data
    cfg = {"output_dir": str(tmp_path / name), "model": {"name": str(toy_dir)},
           "data": {"train": [str(train)], "eval": [str(held_out)], "max_length": 64},
           "method": {"name": "lora", "r": 4, "alpha": 8},
           # 2 processes x 1 row x 2 micro-batches: the loop marks the last micro-batch, so
           # DeepSpeed must step once per optimizer step, not once per micro-batch
           "training": {"epochs": 2, "batch_size": 1, "grad_accum": 2, "lr": 1e-2,
                        "eval_every": 2, "save_every": 2, "keep_checkpoints": 10, "seed": 3,
                        "load_best": True, "max_grad_norm": 0.5},
           "evaluation": {"enabled": False}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _launch(config: Path, port: int, stage: int | None, verb: str = "train",
            resume: bool = False) -> None:
    """Two processes: DeepSpeed through `accelerate launch`, else plain DDP via torchrun."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if stage is None:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                    "--master_addr", "127.0.0.1", "--master_port", str(port)]
    else:
        launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                    str(ROOT / f"examples/distributed/deepspeed_zero{stage}.yaml"),
                    "--num_processes", "2", "--main_process_ip", "127.0.0.1",
                    "--main_process_port", str(port)]
    command = launcher + ["-m", "tunesmith.cli.main", verb, str(config)]
    done = subprocess.run(command + (["--resume"] if resume else []), env=env,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]


def _relative(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Largest per-tensor relative difference (Frobenius norm)."""
    assert list(a) == list(b) and len(a) > 0
    return max(((a[k] - b[k]).norm() / a[k].norm().clamp_min(1e-12)).item() for k in a)


def _moments(saved: dict) -> dict[str, torch.Tensor]:
    return {f"{i}.{k}": v for i, entry in saved["state"].items() for k, v in entry.items()
            if k != "step"}


def _check_same_optimizer(a: dict, b: dict, tolerance: float) -> None:
    assert a["param_groups"] == b["param_groups"]  # lr, betas, decay and the index layout
    assert a["state"].keys() == b["state"].keys() and len(a["state"]) > 0
    assert {float(s["step"]) for s in a["state"].values()} == \
        {float(s["step"]) for s in b["state"].values()}
    assert _relative(_moments(a), _moments(b)) <= tolerance


def test_zero3_trains_like_ddp_and_resumes_under_zero2(tmp_path: Path, toy_dir: Path,
                                                       write_jsonl, free_port) -> None:
    data = (write_jsonl(ROWS), write_jsonl(HELD_OUT, "held_out.jsonl"))
    ddp, zero3, zero2 = tmp_path / "ddp", tmp_path / "zero3", tmp_path / "zero2"
    _launch(_config(tmp_path, toy_dir, data, "ddp"), free_port(), stage=None)
    _launch(_config(tmp_path, toy_dir, data, "zero3"), free_port(), stage=3, verb="run")
    assert summary(ddp)["sharding"] is None
    assert summary(zero3)["world_size"] == 2 and summary(zero3)["sharding"] == "zero3"
    assert summary(zero3)["steps"] == 6

    # the same training as DDP: every checkpoint, the eval losses and the best weights
    for step in (2, 4, 6):
        weights = [checkpoint(run, step, "weights.pt") for run in (ddp, zero3)]
        assert _relative(*weights) <= 1e-5, step
        _check_same_optimizer(checkpoint(ddp, step, "optimizer.pt"),
                              checkpoint(zero3, step, "optimizer.pt"), 1e-5)
    assert _relative(checkpoint(zero3, 2, "weights.pt"), checkpoint(zero3, 6, "weights.pt")) > 1e-2
    evals = [dict(summary(run)["eval_losses"]) for run in (ddp, zero3)]
    assert evals[0] == pytest.approx(evals[1], rel=1e-6) and sorted(evals[1]) == [2, 4, 6]
    best = [torch.load(run / "checkpoints/best/weights.pt", weights_only=True)
            for run in (ddp, zero3)]
    assert _relative(*best) <= 1e-5
    assert (zero3 / "export/adapter/adapter_model.safetensors").is_file()
    assert (zero3 / "export/merged/config.json").is_file()

    # ZeRO-3's step-2 checkpoint, resumed under ZeRO-2: the uninterrupted run's steps 3-6
    shutil.copytree(zero3, zero2, ignore=shutil.ignore_patterns("export"))
    for ckpt in (zero2 / "checkpoints").glob("step-*"):
        if ckpt.name != "step-0000002":
            shutil.rmtree(ckpt)
    _launch(_config(tmp_path, toy_dir, data, "zero2"), free_port(), stage=2, resume=True)
    assert summary(zero2)["resumed_from_step"] == 2 and summary(zero2)["sharding"] is None
    assert losses(zero2) == pytest.approx(losses(zero3), rel=1e-6, abs=0)
    assert sorted(losses(zero2)) == [1, 2, 3, 4, 5, 6]
    assert _relative(*[checkpoint(run, 6, "weights.pt") for run in (zero3, zero2)]) <= 1e-6
    _check_same_optimizer(*[checkpoint(run, 6, "optimizer.pt") for run in (zero3, zero2)],
                          1e-6)


def test_a_deepspeed_config_error_is_printed_once(tmp_path: Path, toy_dir: Path, write_jsonl,
                                                  free_port) -> None:
    launch = yaml.safe_load((ROOT / "examples/distributed/deepspeed_zero2.yaml").read_text())
    launch["deepspeed_config"]["gradient_accumulation_steps"] = 4  # tunesmith accumulates
    launch_file = tmp_path / "zero2-accumulating.yaml"
    launch_file.write_text(yaml.safe_dump(launch))
    data = (write_jsonl(ROWS), write_jsonl(HELD_OUT, "held_out.jsonl"))
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(launch_file), "--num_processes", "2", "--main_process_ip", "127.0.0.1",
               "--main_process_port", str(free_port()), "-m", "tunesmith.cli.main", "train",
               str(_config(tmp_path, toy_dir, data, "zero2"))]
    done = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, check=False)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("tunesmith: error")]
    expected = ("tunesmith: error: the DeepSpeed config: gradient_accumulation_steps: 4 in "
                "the DeepSpeed config; tunesmith accumulates itself: set it to 1 there and "
                "training.grad_accum in the run config")
    assert errors == [expected]  # from rank 0; rank 1 exits with the same code quietly
