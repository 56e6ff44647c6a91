"""The training-throughput bench runs both sides on the toy model, so it cannot rot."""

import importlib.util
import json
import math
import shutil
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
ANSWERS = ["A.", "Ok sure.", "Yes, that works.", "The quick brown fox jumps over the dog.",
           "No.", "Maybe later, when the rain stops.", "Blue.", "Four hundred and two."]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sides():
    module = _load("throughput_sides")
    yield module
    for path in module.SCRATCH:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def bench():
    return _load("train_throughput")


@pytest.fixture
def spec(toy_dir, write_jsonl):
    rows = [{"prompt": f"Question {i}: what now?", "completion": a}
            for i, a in enumerate(ANSWERS)]
    path = write_jsonl(rows)
    return {"overrides": [f"model.name={toy_dir}", f"data.train=[\"{path}\"]",
                          "data.max_length=128", "training.batch_size=2", "training.lr=1e-2",
                          "training.warmup_ratio=0.0"], "steps": 2}


def test_tunesmith_worker_records_two_steps(bench, sides, spec):
    result = sides.run_tunesmith(spec)

    assert len(result["steps"]) == 2
    for step in result["steps"]:
        assert math.isfinite(step["loss"])
        assert 0 < step["supervised"] < step["tokens"] <= step["padded"]
    assert result["shape"]["lora"] > 0 and result["shape"]["layers"] == 2
    summary = bench.summarise({**result, "peak_rss_bytes": 1 << 30}, (1, 1), 1e12, False)
    assert summary["timed_steps"] == 1 and 0 < summary["mfu"] < 1


def test_trl_replay_matches_tunesmith_losses(bench, sides, spec, tmp_path):
    pytest.importorskip("trl")
    ours = sides.run_tunesmith(spec)
    inputs = tmp_path / "trl_inputs.json"
    inputs.write_text(json.dumps(sides.prepare_trl_inputs({**spec, "replay_steps": 2})))
    theirs = sides.run_trl({**spec, "trl_inputs": str(inputs), "replay": True})

    gap = bench.loss_gap(ours, theirs, 2)
    assert gap["steps"] == 2
    # same examples, batches, LoRA init and optimizer: the math is the same
    assert gap["max_abs_diff"] < 1e-3
    assert [s["supervised"] for s in ours["steps"]] == [s["supervised"] for s in theirs["steps"]]


def test_sequence_lengths_reads_masks_and_packed_positions(sides):
    import torch

    ids = torch.zeros((2, 4), dtype=torch.long)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    assert sides.sequence_lengths(ids, mask, None) == [3, 2]
    packed = torch.tensor([[0, 1, 2, 0, 1, 0]])
    assert sides.sequence_lengths(torch.zeros((1, 6)), None, packed) == [3, 2, 1]


def test_trl_rows_train_on_completions_only(sides, spec, tmp_path):
    pytest.importorskip("trl")
    inputs = tmp_path / "trl_inputs.json"
    inputs.write_text(json.dumps(sides.prepare_trl_inputs(spec)))
    padded = sides.run_trl({**spec, "trl_inputs": str(inputs)})
    flat = sides.run_trl({**spec, "trl_inputs": str(inputs), "padding_free": True})

    for result in (padded, flat):
        assert len(result["steps"]) == 2
        for step in result["steps"]:
            assert 0 < step["supervised"] < step["tokens"] <= step["padded"]
    assert all(s["tokens"] == s["padded"] for s in flat["steps"])
    # same seed, same batches: padding-free on SDPA must compute the same loss as padding
    for a, b in zip(padded["steps"], flat["steps"]):
        assert a["tokens"] == b["tokens"]
        assert abs(a["loss"] - b["loss"]) < 1e-4


def test_summary_counts_only_timed_steps_and_table_shows_ratios(bench):
    shape = {"linear": 100, "lora": 10, "head": 50, "layers": 2, "d_attn": 4, "trainable": 10}
    # 4 steps ran (the loss curve may run longer); warm-up 1, then 2 timed steps
    steps = [{"loss": 1.0, "end_s": 10.0 * (i + 1), "tokens": 8, "padded": 10, "pairs": 20,
              "supervised": 2, "peak_before": (i + 1) << 29} for i in range(4)]
    ours = bench.summarise({"steps": steps, "shape": shape, "examples": 6,
                            "peak_rss_bytes": 1 << 30}, (1, 2), 1e6, False)
    theirs = {**ours, "supervised_tok_s": ours["supervised_tok_s"] / 2, "peak_rss_mib": 4096.0}

    assert ours["seconds"] == 20.0 and ours["supervised_tokens"] == 4
    assert ours["padding_share"] == pytest.approx(0.2)
    # per step: 4*100*8 + 6*10*8 + 4*50*2 + 12*2*4*20 = 6000 FLOPs; 2 steps in 20 s
    assert ours["mfu"] == pytest.approx(12000 / 20 / 1e6)
    # peak RSS over steps 1-3 is what step 4 saw when it started, not the process's end peak
    assert ours["peak_rss_mib"] == 2048.0
    alone = bench.summarise({"steps": steps[:3], "shape": shape, "examples": 6,
                             "peak_rss_bytes": 3 << 30}, (1, 2), 1e6, False)
    assert alone["peak_rss_mib"] == 3072.0
    text = bench.table({"tunesmith": ours, "trl": theirs, "trl_padding_free": {"error": "x"}},
                       1e6, None)
    assert "| tunesmith | 0.2 |" in text and "2.00x | 0.50x |" in text
    assert "| trl_padding_free | failed: x |" in text


def test_only_the_allocator_rows_get_the_library(bench, monkeypatch):
    from tunesmith.training import allocator

    monkeypatch.setattr(allocator.ctypes.util, "find_library",
                        {"jemalloc": "libjemalloc.so.2"}.get)
    # the bench's own allocator (or a preload it was started with) does not leak to a side
    monkeypatch.setenv("LD_PRELOAD", "libtcmalloc_minimal.so.4")
    monkeypatch.delenv(allocator.SETTING, raising=False)
    monkeypatch.delenv(allocator.DONE, raising=False)
    ours, theirs = bench.side_env(True), bench.side_env(False)
    assert ours["LD_PRELOAD"] == "libjemalloc.so.2" and ours["OMP_NUM_THREADS"] == "2"
    assert "LD_PRELOAD" not in theirs and theirs["OMP_NUM_THREADS"] == "2"
    monkeypatch.setenv(allocator.SETTING, "system")
    assert "LD_PRELOAD" not in bench.side_env(True)
