"""Early stopping on a scripted eval-loss sequence: the stop step, the best checkpoint,
the restored weights, resume, and the run summary."""

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from tunesmith.config.schema import TrainingConfig
from tunesmith.data import load_conversations
from tunesmith.formatting.chat import ChatFormatter
from tunesmith.modeling.adapters import LoraSettings
from tunesmith.tokenization.examples import tokenize_conversations
from tunesmith.training import loop
from tunesmith.training.loop import TrainInputs, train
from tunesmith.training.methods import LoraMethod

# eval every step: best 0.8 at step 2, then 2 evaluations without a 0.01 improvement
SCRIPT = [1.0, 0.8, 0.795, 0.9, 0.5, 0.4, 0.3, 0.2]


@pytest.fixture
def examples(tokenizer, write_jsonl):
    rows = [{"prompt": f"Question {i}?", "completion": f"Answer number {i}."} for i in range(4)]
    loaded = load_conversations(write_jsonl(rows))
    return tokenize_conversations(loaded.conversations, ChatFormatter(tokenizer), 64).examples


@pytest.fixture
def scripted(monkeypatch):
    """Replace eval loss by SCRIPT, indexed by the step being evaluated."""
    steps = []

    def fake(module, examples, pad_id, batch_size, accelerator=None):
        return SCRIPT[steps[-1] - 1]

    real_run_eval = loop._run_eval

    def run_eval(run, inputs, cfg, result, progress):
        steps.append(run.state.step)
        return real_run_eval(run, inputs, cfg, result, progress)

    monkeypatch.setattr(loop, "evaluate_loss", fake)
    monkeypatch.setattr(loop, "_run_eval", run_eval)
    return steps


def _cfg(**extra) -> TrainingConfig:
    base = dict(epochs=2, batch_size=1, lr=5e-2, eval_every=1, save_every=1,
                keep_checkpoints=20, early_stopping_patience=2,
                early_stopping_min_delta=0.01, warmup_ratio=0.0)
    return TrainingConfig(**{**base, **extra})


def _run(toy_dir: Path, examples: list, out: Path, cfg: TrainingConfig, resume=False):
    from transformers import AutoModelForCausalLM

    method = LoraMethod(LoraSettings(r=4, alpha=8))
    model = method.prepare(AutoModelForCausalLM.from_pretrained(toy_dir, dtype=torch.float32))
    inputs = TrainInputs(model, method, examples, examples[:1], 2, out, resume=resume,
                         progress=False)
    return train(inputs, cfg), model, method


def _weights(path: Path) -> dict:
    return torch.load(path / "weights.pt", weights_only=True)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_stops_after_patience_and_restores_the_best(toy_dir, examples, tmp_path,
                                                    scripted) -> None:
    result, model, method = _run(toy_dir, examples, tmp_path, _cfg(load_best=True))
    # 0.795 is not 0.01 below 0.8: steps 3 and 4 use up the patience of 2
    assert result.steps == 4 and scripted == [1, 2, 3, 4]
    assert result.stop_reason == "early_stopping"
    assert (result.best_step, result.best_eval_loss) == (2, 0.8)
    ckpts = tmp_path / "checkpoints"
    best = _weights(ckpts / "best")
    assert json.loads((ckpts / "best" / "state.json").read_text())["step"] == 2
    assert _same(best, _weights(ckpts / "step-0000002"))
    assert not _same(best, _weights(ckpts / "step-0000004"))  # training moved on
    assert _same(method.trainable_state(model), best)
    assert result.restored_best


def test_without_load_best_keeps_the_last_weights(toy_dir, examples, tmp_path,
                                                  scripted) -> None:
    result, model, method = _run(toy_dir, examples, tmp_path, _cfg(keep_checkpoints=1))
    ckpts = tmp_path / "checkpoints"
    assert result.steps == 4 and not result.restored_best
    assert sorted(p.name for p in ckpts.iterdir()) == ["best", "step-0000004"]  # best kept
    assert _same(method.trainable_state(model), _weights(ckpts / "step-0000004"))


def test_no_patience_trains_to_the_end(toy_dir, examples, tmp_path, scripted) -> None:
    result, _, _ = _run(toy_dir, examples, tmp_path, _cfg(early_stopping_patience=None))
    assert result.steps == 8 and result.stop_reason == "completed"
    assert result.best_step == 8
    assert not (tmp_path / "checkpoints" / "best").exists()  # nothing asked for it


def test_resume_keeps_the_patience_counter(toy_dir, examples, tmp_path, scripted) -> None:
    _run(toy_dir, examples, tmp_path / "full", _cfg(load_best=True))
    cut = tmp_path / "cut" / "checkpoints"
    cut.mkdir(parents=True)
    for name in ("step-0000003", "best"):  # step 3 already spent one evaluation
        shutil.copytree(tmp_path / "full" / "checkpoints" / name, cut / name)
    result, model, method = _run(toy_dir, examples, tmp_path / "cut", _cfg(load_best=True),
                                 resume=True)
    assert result.resumed_from == 3 and result.steps == 4
    assert result.stop_reason == "early_stopping" and result.best_step == 2
    assert _same(method.trainable_state(model), _weights(cut / "best"))
    again, _, _ = _run(toy_dir, examples, tmp_path / "cut", _cfg(), resume=True)
    assert again.steps == 4 and again.stop_reason == "early_stopping"  # stays stopped


def test_summary_and_export_use_the_best_step(toy_dir, write_jsonl, tmp_path,
                                              scripted) -> None:
    from tunesmith.config import load_config
    from tunesmith.pipeline import run_all

    rows = [{"prompt": f"Question {i}?", "completion": f"Answer {i}."} for i in range(8)]
    train_file = write_jsonl(rows)
    cfg = {"output_dir": str(tmp_path / "run"), "model": {"name": str(toy_dir)},
           "data": {"train": [str(train_file)], "eval": [str(train_file)], "max_length": 64},
           "method": {"name": "lora", "r": 4, "alpha": 8},
           "training": {"epochs": 1, "batch_size": 1, "lr": 5e-2, "eval_every": 1,
                        "save_every": 1, "early_stopping_patience": 2,
                        "early_stopping_min_delta": 0.01, "load_best": True},
           "evaluation": {"enabled": False}, "export": {"merged": False}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    outcome = run_all(load_config(str(path), []), progress=False)
    summary = json.loads((outcome.run_dir / "summary.json").read_text())["training"]
    assert summary["stop_reason"] == "early_stopping" and summary["steps"] == 4
    assert summary["best_step"] == 2 and summary["restored_best"] is True
    assert any("may be overtraining" in w for w in summary["warnings"])  # 0.9 > 0.8 * 1.05
    from safetensors.torch import load_file

    exported = load_file(outcome.run_dir / "export" / "adapter" / "adapter_model.safetensors")
    best = _weights(outcome.run_dir / "checkpoints" / "best")
    assert len(exported) == len(best) > 0
    for name, value in best.items():
        key = name.replace(".default", "")
        assert torch.equal(exported[key], value), name
