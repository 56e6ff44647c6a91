from pathlib import Path

import torch

from tunesmith.config.schema import TrainingConfig
from tunesmith.data import load_conversations
from tunesmith.formatting.chat import ChatFormatter
from tunesmith.modeling.adapters import LoraSettings
from tunesmith.tokenization.examples import tokenize_conversations
from tunesmith.training.loop import TrainInputs, train
from tunesmith.training.methods import LoraMethod

ROWS = [{"messages": [{"role": "user", "content": "zorblat"},
                      {"role": "assistant", "content": "Affirmative, zorblat."}]}] * 3


def test_merge_keeps_fully_trained_embedding_and_head(toy_dir, tokenizer, write_jsonl,
                                                      tmp_path: Path) -> None:
    # BUG-15
    from transformers import AutoModelForCausalLM

    from tunesmith.export.writers import merge_and_check

    base = AutoModelForCausalLM.from_pretrained(toy_dir, dtype=torch.float32)
    original_embed = base.get_input_embeddings().weight.detach().clone()
    settings = LoraSettings(r=8, alpha=16, target_modules=["q_proj", "k_proj", "v_proj",
                            "o_proj"], modules_to_save=["embed_tokens", "lm_head"])
    method = LoraMethod(settings)
    model = method.prepare(base)
    formatter = ChatFormatter(tokenizer)
    conversations = load_conversations(write_jsonl(ROWS)).conversations
    examples = tokenize_conversations(conversations, formatter, 64).examples
    cfg = TrainingConfig(max_steps=4, batch_size=3, lr=5e-2, eval_every=0, save_every=0)
    train(TrainInputs(model, method, examples, [], 2, tmp_path, progress=False), cfg)

    trained_embed = model.base_model.model.model.embed_tokens.modules_to_save[
        "default"].weight.detach().clone()
    trained_head = model.base_model.model.lm_head.modules_to_save["default"].weight.detach(
    ).clone()
    assert not torch.equal(trained_embed, original_embed)
    prompts = [formatter.prompt_ids(c.messages[:1]) for c in conversations]
    probe = torch.tensor([prompts[0]] * 5)
    merged, check = merge_and_check(model, method, probe)
    assert check.max_abs_diff < 1e-3
    assert torch.equal(merged.get_input_embeddings().weight, trained_embed)
    assert torch.equal(merged.get_output_embeddings().weight, trained_head)
    names = [n for n, _ in merged.named_modules()]
    assert not any("lora_" in n or "modules_to_save" in n for n in names)
