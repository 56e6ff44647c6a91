import json
import shutil
from pathlib import Path

import pytest
import torch

from tunesmith.config.schema import TrainingConfig
from tunesmith.data import load_conversations
from tunesmith.formatting.chat import ChatFormatter
from tunesmith.modeling.adapters import LoraSettings
from tunesmith.modeling.attention import VARLEN, use_varlen_attention
from tunesmith.modeling.loss import SupervisedLoss
from tunesmith.tokenization.batching import collate
from tunesmith.tokenization.examples import tokenize_conversations
from tunesmith.training.checkpoint import LoopState
from tunesmith.training.loop import Schedule, TrainInputs, _optimizer_step, _Session, train
from tunesmith.training.methods import FullMethod, LoraMethod

ANSWERS = ["A.", "Ok sure.", "Yes, that works.", "The quick brown fox jumps over the lazy dog."]


@pytest.fixture
def examples(tokenizer, write_jsonl):
    rows = [{"prompt": f"Question {i}?", "completion": a} for i, a in enumerate(ANSWERS)]
    loaded = load_conversations(write_jsonl(rows))
    return tokenize_conversations(loaded.conversations, ChatFormatter(tokenizer), 128).examples


def _toy(toy_dir: Path, attention: str = "sdpa"):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(toy_dir, dtype=torch.float32,
                                                attn_implementation=attention)


def _one_step(toy_dir: Path, examples: list, batch_size: int, accum: int,
              attention: str = "sdpa", **options) -> tuple[dict, float]:
    from accelerate import Accelerator

    model = FullMethod().prepare(_toy(toy_dir, attention))
    cfg = TrainingConfig(batch_size=batch_size, grad_accum=accum, max_grad_norm=None,
                         **options)
    optimizer = _Recorder(model.named_parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    inputs = TrainInputs(model, FullMethod(), examples, [], 2, Path("unused"))
    schedule = Schedule([len(e.input_ids) for e in examples], cfg, 1)
    if cfg.packing:  # as `train` does: padding-free attention on SDPA models
        use_varlen_attention(model)
        assert (model.config._attn_implementation == VARLEN) == (attention == "sdpa")
    run = _Session(Accelerator(cpu=True), SupervisedLoss(model), optimizer, scheduler,
                   schedule, 0, LoopState(), cfg.pack_length)
    loss = _optimizer_step(run, inputs, cfg)
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
    big, loss_a = _one_step(toy_dir, examples, 4, 1, packing=False)
    small, loss_b = _one_step(toy_dir, examples, 1, 4, packing=False)
    module = SupervisedLoss(_toy(toy_dir))
    with torch.no_grad():
        total = sum(module(**_tensors(collate([e], 2)))[0].item() for e in examples)
    assert loss_a == pytest.approx(total / sum(counts), rel=1e-5)
    assert loss_b == pytest.approx(total / sum(counts), rel=1e-5)
    for name in big:
        scale = big[name].abs().max().item()
        assert (big[name] - small[name]).abs().max().item() <= 1e-5 * max(scale, 1e-8), name


def _assert_same_grads(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for name, want in expected.items():
        scale = want.abs().max().item()
        assert (got[name] - want).abs().max().item() <= 1e-5 * max(scale, 1e-8), name


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("pack_length", [None, 24, 512])
def test_packed_step_is_the_padded_step(toy_dir, examples, attention, pack_length) -> None:
    # one row per micro-batch (None), several short rows (24), one row (512)
    padded, loss_padded = _one_step(toy_dir, examples, 4, 1, attention, packing=False)
    packed, loss_packed = _one_step(toy_dir, examples, 4, 1, attention, packing=True,
                                    pack_length=pack_length)
    assert loss_packed == pytest.approx(loss_padded, rel=1e-5)
    _assert_same_grads(packed, padded)


def test_packing_attends_within_each_example_only(toy_dir, examples) -> None:
    # control for the test above: the same rows with positions that do not restart differ
    from tunesmith.tokenization.batching import pack_rows

    module = SupervisedLoss(_toy(toy_dir))
    batch = pack_rows(examples, 2, 512)
    assert batch.input_ids.shape[0] == 1 and batch.attention_mask is None
    with torch.no_grad():
        restarted = module(batch.input_ids, batch.labels, None, batch.position_ids)[0]
        running = torch.arange(batch.input_ids.shape[1])[None]
        leaked = module(batch.input_ids, batch.labels, None, running)[0]
        padded = module(**_tensors(collate(examples, 2)))[0]
    assert restarted.item() == pytest.approx(padded.item(), rel=1e-5)
    # the random toy model barely uses context, yet leaking is 10x the tolerance above
    assert abs(leaked.item() - padded.item()) > 1e-5 * padded.item()


def _tensors(batch) -> dict:
    return {"input_ids": batch.input_ids, "labels": batch.labels,
            "attention_mask": batch.attention_mask}


def _losses(path: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def _train(toy_dir: Path, examples: list, out: Path, resume: bool, batch: int = 1,
           packing: bool = False, batch_tokens: int | None = None, mixed: str = "no"):
    method = LoraMethod(LoraSettings(r=4, alpha=8, dropout=0.1))
    model = method.prepare(_toy(toy_dir))
    cfg = TrainingConfig(epochs=3, batch_size=batch, lr=1e-2, save_every=2, eval_every=0,
                         keep_checkpoints=10, warmup_ratio=0.2, packing=packing,
                         batch_tokens=batch_tokens, mixed_precision=mixed)
    return train(TrainInputs(model, method, examples, examples[:1], 2, out, resume=resume),
                 cfg)


@pytest.mark.parametrize(("batch", "packing", "batch_tokens", "cut_at", "steps", "mixed"),
                         [(1, False, None, 6, 12, "no"), (2, True, None, 4, 6, "no"),
                          (8, True, 80, 4, 9, "no"), (8, False, 80, 2, 9, "no"),
                          (2, True, None, 2, 6, "bf16")])
def test_resume_gives_the_same_losses_across_epochs(toy_dir, examples, tmp_path, batch,
                                                    packing, batch_tokens, cut_at,
                                                    steps, mixed) -> None:
    from tunesmith.modeling.precision import cpu_has_fast_half

    if mixed == "bf16" and not cpu_has_fast_half("bfloat16"):
        pytest.skip("this CPU has no native bf16 (AMX or AVX512-BF16)")
    # 4 examples of 37, 38, 40 and 45 tokens, 3 epochs; a budget of 80 tokens makes 3
    # micro-batches an epoch (two alone, two together), whatever batch_size says
    assert [len(e.input_ids) for e in examples] == [37, 38, 40, 45]
    full = tmp_path / "full"
    _train(toy_dir, examples, full, False, batch, packing, batch_tokens, mixed)
    expected = _losses(full)
    assert len(expected) == steps
    cut = tmp_path / "cut"
    name = f"step-{cut_at:07d}"
    shutil.copytree(full / "checkpoints" / name, cut / "checkpoints" / name)
    _train(toy_dir, examples, cut, True, batch, packing, batch_tokens, mixed)
    resumed = _losses(cut)
    assert sorted(resumed) == list(range(cut_at + 1, steps + 1))
    for step, loss in resumed.items():
        assert loss == pytest.approx(expected[step], rel=1e-6, abs=1e-7), step


def test_resume_without_a_checkpoint_drops_the_killed_runs_metrics(toy_dir, examples,
                                                                   tmp_path) -> None:
    # a run killed before its first checkpoint left rows behind; the new start replaces them
    out = tmp_path / "run"
    out.mkdir()
    stale = [{"step": 1, "loss": 99.0}, {"step": 2, "loss": 98.0}]
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in stale)
                                       + '{"step": 3, "lo')  # died mid-line
    _train(toy_dir, examples, out, True)
    losses = _losses(out)
    assert sorted(losses) == list(range(1, 13)) and 99.0 not in losses.values()


def test_token_budget_training_lowers_the_loss(toy_dir, examples, tmp_path) -> None:
    from tunesmith.training.loop import evaluate_loss

    method = FullMethod()  # the toy's small random weights leave a LoRA little to move
    model = method.prepare(_toy(toy_dir))
    module = SupervisedLoss(model)
    before = evaluate_loss(module, examples, 2, 4)
    cfg = TrainingConfig(epochs=8, batch_tokens=80, lr=1e-2, save_every=0, eval_every=0,
                         warmup_ratio=0.0)
    result = train(TrainInputs(model, method, examples, [], 2, tmp_path, progress=False), cfg)
    after = evaluate_loss(module, examples, 2, 4)
    assert result.steps == 24  # 3 budget micro-batches an epoch
    assert result.supervised_tokens == 8 * sum(e.supervised for e in examples)
    assert after < 0.7 * before, (before, after)  # ~10.8 -> ~5.7


def test_a_recovered_rise_is_not_left_as_overtraining() -> None:
    from tunesmith.training.overtraining import overtraining_warning, settle_overtraining

    message = overtraining_warning([(20, 0.0632), (30, 0.0684)])
    assert message is not None and message.endswith("the model may be overtraining")
    settled = settle_overtraining(["other", message], [(30, message)], 40, 0.0267)
    assert settled == ["other", ("eval loss rose from 0.0632 to 0.0684 at step 30 (best 0.0632"
                                 " at step 20); it then reached a new best 0.0267 at step 40")]
    assert settle_overtraining([message], [(30, message)], 20, 0.0632) == [message]


def test_overtraining_warning_ignores_noise() -> None:
    from tunesmith.training.overtraining import overtraining_warning

    assert overtraining_warning([(10, 0.50)]) is None
    assert overtraining_warning([(10, 0.50), (20, 0.40)]) is None
    assert overtraining_warning([(10, 0.0339), (20, 0.0341)]) is None  # 0.6% up: noise
    message = overtraining_warning([(10, 0.50), (20, 0.40), (30, 0.43)])
    assert message is not None
    assert "rose from 0.4000 to 0.4300 at step 30 (best 0.4000 at step 20)" in message


def test_bf16_training_on_a_cpu_with_native_bf16(toy_dir, examples, tmp_path,
                                                 monkeypatch) -> None:
    from tunesmith.modeling import precision
    from tunesmith.modeling.fused_lora import LoraLinearFunction

    if not precision.cpu_has_fast_half("bfloat16"):
        pytest.skip("this CPU has no native bf16 (AMX or AVX512-BF16)")
    dtypes = []
    original = LoraLinearFunction.apply
    monkeypatch.setattr(LoraLinearFunction, "apply",
                        lambda *a: dtypes.append(a[0].dtype) or original(*a))
    runs = {}
    for mixed in ("no", "bf16"):
        method = LoraMethod(LoraSettings(r=4, alpha=8))
        torch.manual_seed(0)
        model = method.prepare(_toy(toy_dir))
        cfg = TrainingConfig(epochs=4, batch_size=2, lr=1e-2, save_every=0, eval_every=0,
                             warmup_ratio=0.0, mixed_precision=mixed, packing=True)
        out = tmp_path / mixed
        train(TrainInputs(model, method, examples, [], 2, out), cfg)
        runs[mixed] = list(_losses(out).values())
        assert all(p.dtype == torch.float32 for p in model.parameters())
        assert not any(precision.COPIES in m.__dict__ for m in model.modules())  # released
    assert torch.bfloat16 in dtypes and torch.float32 in dtypes  # fused in both runs
    fp32, bf16 = runs["no"], runs["bf16"]
    assert len(fp32) == len(bf16) == 8 and bf16[-1] < bf16[0]
    assert bf16 == pytest.approx(fp32, rel=1e-3)  # bf16 products, float32 weights (~5e-5)


def test_resume_in_another_precision_says_so(toy_dir, examples, tmp_path, caplog) -> None:
    import logging

    from tunesmith.modeling.precision import cpu_has_fast_half

    if not cpu_has_fast_half("bfloat16"):
        pytest.skip("this CPU has no native bf16 (AMX or AVX512-BF16)")
    full = tmp_path / "full"
    _train(toy_dir, examples, full, False, 2, True)
    cut = tmp_path / "cut"
    shutil.copytree(full / "checkpoints" / "step-0000002", cut / "checkpoints" / "step-0000002")
    with caplog.at_level(logging.WARNING, logger="tunesmith"):
        _train(toy_dir, examples, cut, True, 2, True, mixed="bf16")
    assert "step-0000002 was trained with mixed precision no; the steps from 3 on run in " \
        "bf16" in caplog.text
    saved = json.loads((cut / "checkpoints" / "step-0000006" / "state.json").read_text())
    assert saved["mixed_precision"] == "bf16"


def test_a_launchers_other_precision_is_named_once_and_not_used(toy_dir, examples, tmp_path,
                                                                 monkeypatch, caplog) -> None:
    import logging

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")  # accelerate launch, fp16 file
    with caplog.at_level(logging.WARNING, logger="tunesmith"):
        _train(toy_dir, examples, tmp_path / "run", False, 8)
    named = [r for r in caplog.records if "launcher asks for mixed precision fp16" in
             r.getMessage()]
    assert len(named) == 1 and "trains in float32" in named[0].getMessage()
    saved = json.loads((tmp_path / "run/checkpoints/step-0000002/state.json").read_text())
    assert saved["mixed_precision"] == "no"


def test_resume_with_another_number_of_processes_is_refused(toy_dir, examples,
                                                            tmp_path) -> None:
    from tunesmith.errors import CheckpointError

    full = tmp_path / "full"
    _train(toy_dir, examples, full, False, 2, True)
    state = json.loads((full / "checkpoints" / "step-0000002" / "state.json").read_text())
    assert state["processes"] == 1
    cut = tmp_path / "cut"
    shutil.copytree(full / "checkpoints" / "step-0000002", cut / "checkpoints" / "step-0000002")
    saved = cut / "checkpoints" / "step-0000002" / "state.json"
    saved.write_text(json.dumps({**state, "processes": 2}))  # as written by 2 processes
    with pytest.raises(CheckpointError, match=r"trained on 2 process\(es\), this launch has 1"):
        _train(toy_dir, examples, cut, True, 2, True)
