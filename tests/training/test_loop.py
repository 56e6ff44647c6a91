import json
import shutil
from pathlib import Path

import pytest
import torch

from tunesmith.config.schema import TrainingConfig
from tunesmith.data import load_conversations
from tunesmith.formatting.chat import ChatFormatter
from tunesmith.modeling.adapters import LoraSettings
from tunesmith.modeling.loss import SupervisedLoss
from tunesmith.tokenization.batching import collate
from tunesmith.tokenization.examples import tokenize_conversations
from tunesmith.training.checkpoint import LoopState
from tunesmith.training.loop import Schedule, TrainInputs, _optimizer_step, train
from tunesmith.training.methods import FullMethod, LoraMethod

ANSWERS = ["A.", "Ok sure.", "Yes, that works.", "The quick brown fox jumps over the lazy dog."]


@pytest.fixture
def examples(tokenizer, write_jsonl):
    rows = [{"prompt": f"Question {i}?", "completion": a} for i, a in enumerate(ANSWERS)]
    loaded = load_conversations(write_jsonl(rows))
    return tokenize_conversations(loaded.conversations, ChatFormatter(tokenizer), 128).examples


def _toy(toy_dir: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(toy_dir, dtype=torch.float32)


def _one_step(toy_dir: Path, examples: list, batch_size: int, accum: int) -> tuple[dict, float]:
    from accelerate import Accelerator

    model = FullMethod().prepare(_toy(toy_dir))
    cfg = TrainingConfig(batch_size=batch_size, grad_accum=accum, max_grad_norm=None)
    optimizer = _Recorder(model.named_parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    inputs = TrainInputs(model, FullMethod(), examples, [], 2, Path("unused"))
    schedule = Schedule([len(e.input_ids) for e in examples], cfg, 1)
    loss = _optimizer_step(SupervisedLoss(model), optimizer, scheduler, schedule, inputs,
                           LoopState(), Accelerator(cpu=True), cfg)
    return optimizer.grads, loss


class _Recorder(torch.optim.SGD):
    """An optimizer that only records the gradients it is given."""

    def __init__(self, named) -> None:
        named = list(named)
        super().__init__([p for _, p in named], lr=0.0)
        self.names = {id(p): n for n, p in named}
        self.grads: dict[str, torch.Tensor] = {}

    def step(self, closure=None) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                self.grads[self.names[id(p)]] = p.grad.detach().clone()


def test_accumulation_normalises_by_all_supervised_tokens(toy_dir, examples) -> None:
    # BUG-13: batch 4 x accumulation 1 == batch 1 x accumulation 4
    counts = [e.supervised for e in examples]
    assert len(set(counts)) == 4
    big, loss_a = _one_step(toy_dir, examples, 4, 1)
    small, loss_b = _one_step(toy_dir, examples, 1, 4)
    module = SupervisedLoss(_toy(toy_dir))
    with torch.no_grad():
        total = sum(module(**_tensors(collate([e], 2)))[0].item() for e in examples)
    assert loss_a == pytest.approx(total / sum(counts), rel=1e-5)
    assert loss_b == pytest.approx(total / sum(counts), rel=1e-5)
    for name in big:
        scale = big[name].abs().max().item()
        assert (big[name] - small[name]).abs().max().item() <= 1e-5 * max(scale, 1e-8), name


def _tensors(batch) -> dict:
    return {"input_ids": batch.input_ids, "labels": batch.labels,
            "attention_mask": batch.attention_mask}


def _losses(path: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def _train(toy_dir: Path, examples: list, out: Path, resume: bool) -> None:
    method = LoraMethod(LoraSettings(r=4, alpha=8, dropout=0.1))
    model = method.prepare(_toy(toy_dir))
    cfg = TrainingConfig(epochs=3, batch_size=1, lr=1e-2, save_every=2, eval_every=0,
                         keep_checkpoints=10, warmup_ratio=0.2)
    train(TrainInputs(model, method, examples, examples[:1], 2, out, resume=resume), cfg)


def test_resume_gives_the_same_losses_across_epochs(toy_dir, examples, tmp_path) -> None:
    full = tmp_path / "full"
    _train(toy_dir, examples, full, resume=False)
    expected = _losses(full)
    assert len(expected) == 12  # 4 examples, batch 1, 3 epochs
    cut = tmp_path / "cut"
    shutil.copytree(full / "checkpoints" / "step-0000006", cut / "checkpoints" / "step-0000006")
    _train(toy_dir, examples, cut, resume=True)
    resumed = _losses(cut)
    assert sorted(resumed) == list(range(7, 13))
    for step, loss in resumed.items():
        assert loss == pytest.approx(expected[step], rel=1e-6, abs=1e-7), step


def test_overtraining_warning_ignores_noise() -> None:
    from tunesmith.training.loop import overtraining_warning

    assert overtraining_warning([(10, 0.50)]) is None
    assert overtraining_warning([(10, 0.50), (20, 0.40)]) is None
    assert overtraining_warning([(10, 0.0339), (20, 0.0341)]) is None  # 0.6% up: noise
    message = overtraining_warning([(10, 0.50), (20, 0.40), (30, 0.43)])
    assert message is not None
    assert "rose from 0.4000 to 0.4300 at step 30 (best 0.4000 at step 20)" in message
