"""Shared fixtures: the real tokenizer, a tiny random-weight model and data helpers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model cache: $TUNESMITH_CACHE when set (CI keeps it between tests), else a tmp dir."""
    env = os.environ.get("TUNESMITH_CACHE")
    return Path(env) if env else tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def smol_dir(cache_dir: Path) -> Path:
    """The default model converted from its GGUF file into a transformers directory."""
    from tunesmith.modeling.loading import resolve_model

    return Path(resolve_model("smollm2-135m-instruct", cache_dir))


@pytest.fixture(scope="session")
def tokenizer(smol_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smol_dir)


@pytest.fixture(scope="session")
def toy_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> Path:
    """A 2-layer random Llama with the real tokenizer: fast enough for every CPU test."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    path = tmp_path_factory.mktemp("toy")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=2,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def write_jsonl(tmp_path: Path):
    """Write rows (dicts or raw strings) as a JSONL file and return its path."""

    def write(rows: list, name: str = "data.jsonl") -> Path:
        path = tmp_path / name
        lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    """The shared datasets folder ($TUNESMITH_DATASETS, default ../shared/datasets)."""
    path = Path(os.environ.get("TUNESMITH_DATASETS", REPO.parent / "shared" / "datasets"))
    if not path.is_dir():
        pytest.skip(f"shared datasets not found at {path}; set TUNESMITH_DATASETS")
    return path
