"""New special tokens: the vocabulary only grows, new rows train, exports load them back."""

from pathlib import Path

import pytest
import torch
import yaml

from tunesmith.config.loading import load_config
from tunesmith.modeling.tokens import PAD_TO_MULTIPLE, add_tokens_to_model

NEW = ["<tool_call>", "</tool_call>"]
ROWS = [{"prompt": f"Call {w}.", "completion": f"<tool_call>{w}</tool_call>"}
        for w in ["cat", "dog", "bird", "fish", "lion", "bear"]]


def _toy(path: Path, vocab: int, tied: bool) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        tie_word_embeddings=tied, bos_token_id=1, eos_token_id=2, pad_token_id=2,
        initializer_range=0.3)
    LlamaForCausalLM(config).save_pretrained(path)


@pytest.fixture(scope="module")
def tied_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> Path:
    """A toy model that ties lm_head to embed_tokens, as SmolLM2 does."""
    path = tmp_path_factory.mktemp("tied")
    _toy(path, len(tokenizer), tied=True)
    tokenizer.save_pretrained(path)
    return path


def _load(path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32),
            AutoTokenizer.from_pretrained(path))


def test_vocabulary_grows_to_a_multiple_of_64_with_mean_rows(toy_dir) -> None:
    model, tok = _load(toy_dir)
    known, before = len(tok), model.get_input_embeddings().weight.detach().clone()
    added = add_tokens_to_model(model, tok, [*NEW, "<|im_start|>"])
    rows = model.get_input_embeddings().weight
    assert added.new_ids == [known, known + 1]
    assert added.ids[2] == tok.convert_tokens_to_ids("<|im_start|>") < known
    assert rows.shape[0] == added.rows_after and added.rows_after % PAD_TO_MULTIPLE == 0
    assert added.rows_after >= known + 2
    assert torch.equal(rows[:known], before)  # old rows untouched, the existing token too
    mean = before.mean(dim=0)
    assert torch.allclose(rows[known], mean) and torch.allclose(rows[-1], mean)
    assert torch.allclose(model.get_output_embeddings().weight[known + 1],
                          model.get_output_embeddings().weight[:known].mean(dim=0))
    assert tok.tokenize("a<tool_call>b") == ["a", "<tool_call>", "b"]


def test_padded_vocabulary_is_never_shrunk(tmp_path, tokenizer) -> None:
    padded = len(tokenizer) + 2 * PAD_TO_MULTIPLE
    _toy(tmp_path, padded, tied=True)
    tokenizer.save_pretrained(tmp_path)
    model, tok = _load(tmp_path)
    added = add_tokens_to_model(model, tok, NEW)
    assert added.rows_before == added.rows_after == padded
    assert model.get_input_embeddings().weight.shape[0] == padded
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight


def _config(tmp_path: Path, model: Path, train: Path, name: str, **method):
    raw = {"output_dir": str(tmp_path / name), "model": {"name": str(model), "add_tokens": NEW},
           "data": {"train": [str(train)], "eval_fraction": 0.0, "max_length": 64},
           "method": {"name": "lora", "r": 4, "alpha": 8, **method},
           "training": {"epochs": 20, "max_steps": 4, "batch_size": 6, "lr": 5e-2,
                        "eval_every": 0, "save_every": 0, "seed": 1, "warmup_ratio": 0.0},
           "evaluation": {"enabled": False}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits  # [1, T, vocab]


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_new_rows_train_and_exports_load_back(tied, toy_dir, tied_dir, write_jsonl,
                                              tmp_path) -> None:
    from tunesmith.modeling.adapters import load_adapter
    from tunesmith.pipeline import run_export, run_train

    base_dir = tied_dir if tied else toy_dir
    config = _config(tmp_path, base_dir, write_jsonl(ROWS), "run")
    outcome, model, tok, method, data = run_train(config)
    new_ids = tok.convert_tokens_to_ids(NEW)
    probe = torch.tensor([tok("Call owl.<tool_call>owl</tool_call>")["input_ids"]])
    assert set(new_ids) <= set(probe[0].tolist())
    live = _logits(model, probe)

    run_export(config, outcome, model, tok, method, data.formatter)
    merged, merged_tok = _load(Path(outcome.exports["merged"]))
    assert merged_tok.convert_tokens_to_ids(NEW) == new_ids  # ids stable
    assert torch.allclose(_logits(merged, probe), live, atol=1e-4)
    base, _ = _load(base_dir)
    known = len(tok) - len(NEW)
    old = base.get_input_embeddings().weight[:known]
    trained = merged.get_input_embeddings().weight
    assert torch.equal(trained[:known], old)  # the frozen embedding kept its old rows
    assert not torch.allclose(trained[new_ids[0]], old.mean(dim=0))  # new rows trained
    if tied:
        assert merged.get_output_embeddings().weight is trained

    reloaded = load_adapter(base, outcome.exports["adapter"])
    assert torch.allclose(_logits(reloaded, probe), live, atol=1e-5)


def test_full_embedding_training_keeps_tied_head_in_step(tied_dir, write_jsonl,
                                                          tmp_path) -> None:
    from tunesmith.pipeline import run_export, run_train

    config = _config(tmp_path, tied_dir, write_jsonl(ROWS), "full-embed",
                     modules_to_save=["embed_tokens"])
    outcome, model, tok, method, data = run_train(config)
    probe = torch.tensor([tok("Call owl.<tool_call>owl</tool_call>")["input_ids"]])
    live = _logits(model, probe)
    run_export(config, outcome, model, tok, method, data.formatter)
    merged, _ = _load(Path(outcome.exports["merged"]))
    base, _ = _load(tied_dir)
    known = len(tok) - len(NEW)
    trained = merged.get_input_embeddings().weight
    assert not torch.equal(trained[:known], base.get_input_embeddings().weight[:known])
    assert merged.get_output_embeddings().weight is trained
    assert torch.allclose(_logits(merged, probe), live, atol=1e-4)


def _adapter_tensors(folder: Path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    with safe_open(folder / "adapter_model.safetensors", "pt") as handle:
        return {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}  # noqa: SIM118


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_adapter_stores_only_the_new_rows_and_loads_back_exactly(
        tied, toy_dir, tied_dir, write_jsonl, tmp_path) -> None:
    from peft import PeftModel

    from tunesmith.modeling.adapters import load_adapter
    from tunesmith.pipeline import run_export, run_train

    base_dir = tied_dir if tied else toy_dir
    config = _config(tmp_path, base_dir, write_jsonl(ROWS), "run")
    outcome, model, tok, method, data = run_train(config)
    probe = torch.tensor([tok("Call owl.<tool_call>owl</tool_call>")["input_ids"]])
    live = _logits(model, probe)  # [1, T, rows_after]: padding rows' logits included
    run_export(config, outcome, model, tok, method, data.formatter)
    folder = Path(outcome.exports["adapter"])

    # One copy of the trained token rows; no embedding or head matrix, tied or not.
    shapes = _adapter_tensors(folder)
    hidden = model.get_input_embeddings().weight.shape[1]
    rows = {k: s for k, s in shapes.items() if "lora_" not in k}
    assert rows == {"base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta":
                    (len(NEW), hidden)}
    lora_bytes = sum(p.numel() * 4 for n, p in model.named_parameters() if "lora_" in n)
    needed = lora_bytes + len(NEW) * hidden * 4
    size = (folder / "adapter_model.safetensors").stat().st_size
    assert needed <= size <= needed + 64 * 1024  # the rest is the safetensors header

    # Plain PEFT onto the base grown as training grew it, and tunesmith's own loader.
    base, base_tok = _load(base_dir)
    add_tokens_to_model(base, base_tok, NEW)
    plain = PeftModel.from_pretrained(base, str(folder))
    assert torch.equal(_logits(plain, probe), live)
    own = load_adapter(_load(base_dir)[0], folder)
    assert torch.equal(_logits(own, probe), live)


@pytest.mark.parametrize("module", ["embed_tokens", "lm_head"])
def test_a_trained_tied_embedding_loads_with_plain_peft(module, tied_dir, write_jsonl,
                                                        tmp_path) -> None:
    from peft import PeftModel

    from tunesmith.modeling.adapters import load_adapter, merge_adapter
    from tunesmith.pipeline import run_export, run_train

    config = _config(tmp_path, tied_dir, write_jsonl(ROWS), "tied-peft",
                     modules_to_save=[module])
    outcome, model, tok, method, data = run_train(config)
    probe = torch.tensor([tok("Call owl.<tool_call>owl</tool_call>")["input_ids"]])
    live = _logits(model, probe)
    run_export(config, outcome, model, tok, method, data.formatter)
    folder = Path(outcome.exports["adapter"])

    rows, hidden = model.get_input_embeddings().weight.shape
    full = {k: s for k, s in _adapter_tensors(folder).items() if "lora_" not in k}
    assert full and all(s == (rows, hidden) for s in full.values())
    base, base_tok = _load(tied_dir)
    add_tokens_to_model(base, base_tok, NEW)  # grown as training grew it
    for own in (PeftModel.from_pretrained(base, str(folder)),
                load_adapter(_load(tied_dir)[0], folder)):
        assert torch.equal(_logits(own, probe), live)
        head, embedding = own.get_output_embeddings(), own.get_input_embeddings()
        assert head.modules_to_save["default"].weight is \
            embedding.modules_to_save["default"].weight
    exported, _ = _load(Path(outcome.exports["merged"]))
    merged = merge_adapter(own)
    assert merged.get_output_embeddings().weight is merged.get_input_embeddings().weight
    assert torch.equal(_logits(merged, probe), _logits(exported, probe))
    assert torch.allclose(_logits(merged, probe), live, atol=1e-4)
