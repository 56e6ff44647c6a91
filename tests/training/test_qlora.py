"""QLoRA on a toy model: loss falls, resume matches, exports merge on the fp32 base."""

import shutil
from pathlib import Path

import pytest
import torch
import yaml
from toy_models import write_toy_llama

from tunesmith.config.loading import load_config
from tunesmith.errors import ModelError
from tunesmith.modeling import quantization
from tunesmith.training.checkpoint import read_weights

ROWS = [{"prompt": f"Spell {w}.", "completion": " ".join(w)} for w in
        ["cat", "dog", "bird", "fish", "lion", "bear", "wolf", "frog"]]
BACKEND = {"nf4": "bitsandbytes", "int8": "torchao", "int4": "torchao"}


@pytest.fixture(autouse=True)
def offline(monkeypatch) -> None:
    """Keep bitsandbytes from asking the hub for optional CPU kernels: tests stay offline."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def qtoy_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> Path:
    """A 2-layer random Llama whose linears are 64 or 128 wide (4-bit blocks are 64)."""
    return write_toy_llama(
        tmp_path_factory.mktemp("qtoy"), tokenizer, hidden_size=64, intermediate_size=128,
        max_position_embeddings=256, tie_word_embeddings=True,
        initializer_range=0.3)  # large enough that a LoRA can move the logits


def _needs(kind: str) -> None:
    pytest.importorskip(BACKEND[kind], reason="needs tunesmith[qlora]")


def _config(tmp_path: Path, model: Path, train: Path, kind: str, name: str, **training):
    raw = {"output_dir": str(tmp_path / name), "model": {"name": str(model)},
           "data": {"train": [str(train)], "eval_fraction": 0.0, "max_length": 64},
           "method": {"name": "qlora", "quantization": kind, "r": 8, "alpha": 16},
           "training": {"epochs": 20, "max_steps": 8, "batch_size": 8, "lr": 2e-2, "eval_every": 0,
                        "save_every": 0, "seed": 3, "schedule": "constant",
                        "warmup_ratio": 0.0, **training},
           "evaluation": {"enabled": False}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


@pytest.mark.parametrize("kind", ["nf4", "int8", "int4"])
def test_qlora_trains_and_exports_a_plain_model(kind, qtoy_dir, write_jsonl, tmp_path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tunesmith.pipeline import run_export, run_train

    _needs(kind)
    config = _config(tmp_path, qtoy_dir, write_jsonl(ROWS), kind, kind)
    outcome, model, tok, method, data = run_train(config)
    assert quantization.is_quantized(model)
    losses = outcome.training.final_loss, _first_loss(outcome.run_dir)
    assert losses[0] < losses[1] - 3.0, losses  # ~13.2 -> ~5 in 8 steps

    run_export(config, outcome, model, tok, method, data.formatter)
    assert outcome.merge_max_abs_diff < 1e-3
    merged = AutoModelForCausalLM.from_pretrained(outcome.exports["merged"])
    assert not quantization.is_quantized(merged)
    # Reference: the saved adapter on the full-precision base, in plain PEFT.
    base = AutoModelForCausalLM.from_pretrained(qtoy_dir, dtype=torch.float32)
    reference = PeftModel.from_pretrained(base, outcome.exports["adapter"]).eval()
    ids = torch.tensor([tok("Spell cat.")["input_ids"]])
    with torch.no_grad():
        diff = (merged(input_ids=ids).logits - reference(input_ids=ids).logits).abs().max()
    assert float(diff) < 1e-3


def _first_loss(run_dir: Path) -> float:
    import json

    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return next(r["loss"] for r in rows if r.get("step") == 1)


def test_qlora_resume_equals_uninterrupted(qtoy_dir, write_jsonl, tmp_path) -> None:
    from tunesmith.pipeline import run_train

    _needs("nf4")
    train = write_jsonl(ROWS)
    whole = _config(tmp_path, qtoy_dir, train, "nf4", "whole", max_steps=4, save_every=2)
    run_train(whole, progress=False)
    broken = _config(tmp_path, qtoy_dir, train, "nf4", "broken", max_steps=4, save_every=2)
    outcome = run_train(broken, progress=False)[0]
    # Lose the last checkpoint, as if the run died after step 2, and resume.
    shutil.rmtree(outcome.run_dir / "checkpoints" / "step-0000004")
    resumed = run_train(broken, resume=True, progress=False)[0]
    assert resumed.training.resumed_from == 2
    a = read_weights(Path(whole.output_dir) / "checkpoints" / "step-0000004")
    b = read_weights(outcome.run_dir / "checkpoints" / "step-0000004")
    assert a.keys() == b.keys() and a
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_missing_backend_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setattr(quantization.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match=r"pip install 'tunesmith\[qlora\]'"):
        quantization.require_backend("nf4")


def test_narrow_layers_are_refused_for_4bit(toy_dir) -> None:
    _needs("int4")
    with pytest.raises(ModelError, match="blocks of 64"):
        quantization.load_quantized(str(toy_dir), quantization.QuantSettings("int4"))


def test_double_quant_quantizes_the_scales_and_still_runs(qtoy_dir) -> None:
    _needs("nf4")
    single = quantization.load_quantized(str(qtoy_dir), quantization.QuantSettings("nf4"))
    double = quantization.load_quantized(
        str(qtoy_dir), quantization.QuantSettings("nf4", double_quant=True))
    q_proj = "model.layers.0.self_attn.q_proj"
    assert not single.get_submodule(q_proj).weight.quant_state.nested
    assert double.get_submodule(q_proj).weight.quant_state.nested  # 8-bit block scales
    ids = torch.tensor([[1, 5, 9, 14]])
    with torch.no_grad():
        diff = (single(input_ids=ids).logits - double(input_ids=ids).logits).abs().max()
    assert float(diff) < 0.5  # the scales are rounded, the weights are the same nf4 codes


def test_weights_bytes_counts_4bit_codes_and_their_scales(qtoy_dir) -> None:
    from transformers import AutoModelForCausalLM

    _needs("nf4")
    full = AutoModelForCausalLM.from_pretrained(qtoy_dir, dtype=torch.float32)
    linear = sum(m.weight.numel() for n, m in full.named_modules()
                 if isinstance(m, torch.nn.Linear) and not n.endswith("lm_head"))
    nf4 = quantization.load_quantized(str(qtoy_dir), quantization.QuantSettings("nf4"))
    # fp32: 4 bytes a weight; nf4: half a byte plus one fp32 scale per block of 64.
    saved = quantization.weights_bytes(full) - quantization.weights_bytes(nf4)
    assert saved == linear * 4 - (linear // 2 + linear // 64 * 4)


def _layer0_grads(model, ids: torch.Tensor) -> tuple[float, torch.Tensor]:
    model.train()
    model.zero_grad(set_to_none=True)
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    first = next(p for n, p in model.named_parameters() if "layers.0." in n and "lora_B" in n)
    return float(loss.detach()), first.grad.detach().clone()  # via the 4-bit base to layer 0


def test_nf4_training_after_an_eval_pass_keeps_its_gradients(qtoy_dir) -> None:
    from tunesmith.modeling.adapters import LoraSettings
    from tunesmith.training.methods import QloraMethod

    _needs("nf4")
    base = quantization.load_quantized(str(qtoy_dir), quantization.QuantSettings("nf4"))
    model = QloraMethod(LoraSettings(r=4, alpha=8), "nf4", lambda: None).prepare(base)
    ids = torch.randint(0, 1000, (2, 16), generator=torch.Generator().manual_seed(0))
    before = _layer0_grads(model, ids)
    model.eval()
    with torch.no_grad():  # an eval-loss pass: bitsandbytes may repack weights here
        model(input_ids=ids)
    after = _layer0_grads(model, ids)
    assert before[1].abs().sum() > 0
    assert after[0] == before[0] and torch.equal(after[1], before[1])


def test_nf4_on_cpu_warns_once_with_the_cost_of_expanding_weights(qtoy_dir, caplog) -> None:
    from tunesmith.modeling.adapters import LoraSettings
    from tunesmith.training.methods import QloraMethod

    _needs("nf4")
    base = quantization.load_quantized(str(qtoy_dir), quantization.QuantSettings("nf4"))
    expected = sum(m.weight.numel() * 2 for n, m in base.named_modules()
                   if type(m).__name__ == "Linear4bit")  # two 4-bit codes per stored byte
    assert quantization.nf4_weights(base) == expected
    text = quantization.nf4_cpu_warning(base, bandwidth_gb_s=1.0)
    seconds = 2 * expected * 4.5 / 1e9  # forward + backward, 4.5 bytes per weight at 1 GB/s
    assert f"all {expected / 1e6:,.1f}M base weights to float32, at least {seconds:.2f} s " \
           "per micro-batch" in text and "method.quantization: int8" in text
    with caplog.at_level("WARNING", logger="tunesmith"):
        QloraMethod(LoraSettings(r=4, alpha=8), "nf4", lambda: None).prepare(base)
    warned = [r.getMessage() for r in caplog.records if "nf4 on CPU" in r.getMessage()]
    assert len(warned) == (0 if torch.cuda.is_available() else 1)
