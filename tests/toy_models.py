"""Tiny random Llama checkpoints with the real tokenizer, for fast CPU tests."""

from pathlib import Path
from typing import Any


def write_toy_llama(path: Path, tokenizer: Any, **overrides: Any) -> Path:
    """Save a 2-layer random Llama (seed 0) and `tokenizer` to `path`; `overrides` change
    the config (widths, tying, init range)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    settings = {"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64,
                "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                "max_position_embeddings": 1024, "tie_word_embeddings": False,
                "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2, **overrides}
    LlamaForCausalLM(LlamaConfig(**settings)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
