"""Shared fixtures: the real tokenizer, a tiny random-weight model and data helpers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from toy_models import write_toy_llama

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
    return write_toy_llama(tmp_path_factory.mktemp("toy"), tokenizer)


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


@pytest.fixture
def free_port():
    """Call it for a TCP port free on 127.0.0.1 now, for a torchrun rendezvous (fixed ports
    collide when two test runs share a machine)."""
    import socket

    def pick() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]

    return pick
