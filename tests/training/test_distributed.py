"""Two processes (torchrun, gloo) train exactly like one process with the same global batch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

ROWS = [{"prompt": f"Count to {n}.", "completion": " ".join(str(i) for i in range(1, n + 1))}
        for n in range(1, 10)]  # 9 rows: the last global batch leaves one process empty


def _config(tmp_path: Path, toy_dir: Path, train: Path, name: str, batch: int,
            packing: bool, **training) -> Path:
    cfg = {"output_dir": str(tmp_path / name), "model": {"name": str(toy_dir)},
           "data": {"train": [str(train)], "eval_fraction": 0.0, "max_length": 64},
           "method": {"name": "lora", "r": 4, "alpha": 8},
           "training": {"epochs": 2, "batch_size": batch, "lr": 1e-2, "eval_every": 0,
                        "save_every": 0, "seed": 3, "packing": packing, **training},
           "evaluation": {"enabled": False}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _weights(run: Path) -> dict:
    (last,) = sorted((run / "checkpoints").glob("step-*"))
    return torch.load(last / "weights.pt", weights_only=True)


# Token budgets of 100 cut the 9 rows (37 to 53 tokens) into 5 micro-batches of one or two
# rows: 2 processes deal them out in 3 steps (the last with one empty share), which is what one
# process does with 2 micro-batches per step (the last step holding one).
BUDGET = {"batch_tokens": 100, "epochs": 1}


@pytest.mark.parametrize(("packing", "budget"), [(False, False), (True, False), (True, True)])
def test_two_processes_match_one(tmp_path: Path, toy_dir: Path, write_jsonl, packing: bool,
                                 free_port, budget: bool) -> None:
    # padded, and packed padding-free (same examples per process, so the same update)
    train = write_jsonl(ROWS)
    one = _config(tmp_path, toy_dir, train, "one", 4, packing,
                  **({**BUDGET, "grad_accum": 2} if budget else {}))
    two = _config(tmp_path, toy_dir, train, "two", 2, packing, **(BUDGET if budget else {}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "tunesmith.cli.main", "train", str(one)],
                   check=True, env=env, capture_output=True)
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
              "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
              "-m", "tunesmith.cli.main", "train", str(two)]
    done = subprocess.run(launch, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp_path / "two/summary.json").read_text())
    assert summary["training"]["world_size"] == 2
    assert summary["training"]["steps"] == (3 if budget else 6)
    alone = json.loads((tmp_path / "one/summary.json").read_text())["training"]
    assert alone["world_size"] == 1
    # token counts are of every process: the same examples, the same totals
    for count in ("tokens", "supervised_tokens"):
        assert summary["training"][count] == alone[count] > 0, count
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert a.keys() == b.keys() and len(a) > 0
    # relative 1e-5 per tensor (Frobenius norm): the two runs sum gradients in a different
    # order, and AdamW magnifies that in single near-zero elements (1.5e-5 of the tensor's
    # largest element in one down_proj on an AVX2 CPU, while the tensor is within 1.7e-6)
    for name in a:
        assert (a[name] - b[name]).norm() <= 1e-5 * max(a[name].norm().item(), 1e-6), name


def test_ddp_prepare_copies_nothing_and_sends_only_what_differs(tmp_path: Path, toy_dir: Path,
                                                                free_port) -> None:
    # the frozen base is hidden from DDP, checked by sums, and not copied to `cpu:0`;
    # a worker prepares a LoRA model with the loop's accelerator options
    out = tmp_path / "seen.pt"
    worker = Path(__file__).with_name("ddp_worker.py")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(worker),
               str(toy_dir), str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = torch.load(out, weights_only=True)
    assert seen["world"] == 2 and seen["place"] == [False, True]
    assert seen["bucket_view"]  # gradients are views into DDP's buckets, not a second copy
    assert seen["ignored"] == seen["frozen"] and len(seen["frozen"]) > 10
    assert seen["moved"] == []  # no weight was copied by prepare
    assert "1 frozen tensors differed between processes" in done.stderr
    for name, value in seen["values"].items():  # rank 1's changed tensors are rank 0's now
        assert torch.equal(value, seen["other"][name]), name


def test_frozen_fingerprint_tells_reordered_values_apart() -> None:
    from tunesmith.training.replicas import _fingerprint

    values = torch.randn(1000)
    same = _fingerprint(values.clone(), chunk=64)
    assert torch.equal(_fingerprint(values, chunk=64), same)
    # other slices only round differently
    assert torch.allclose(_fingerprint(values, chunk=1 << 22), same, rtol=1e-12, atol=0)
    swapped = values.clone()
    swapped[[3, 700]] = swapped[[700, 3]]
    assert not torch.equal(_fingerprint(swapped, chunk=64), same)
    codes = torch.tensor([1, 2, 250], dtype=torch.uint8)  # quantized weights: integer codes
    assert _fingerprint(codes).tolist() == [253.0, 1 + 4 + 62500.0, 1 * 1 + 2 * 2 + 250 * 3]
