"""Add new special tokens: extend the tokenizer and grow (never shrink) the embeddings.

New rows start at the mean of the existing token embeddings, a neutral start that keeps the
first logits of a new token close to an average token instead of random noise. The matrix
grows to a multiple of 64 rows (faster matmuls); a vocabulary that is already padded past
the tokenizer keeps its size, and new ids then reuse the spare rows.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from tunesmith.errors import ModelError

logger = logging.getLogger(__name__)

PAD_TO_MULTIPLE = 64


@dataclass
class AddedTokens:
    """Ids of the requested tokens, which of them are new, and how the embedding grew.

    `known` is the tokenizer length before the tokens were added: grown rows start at the
    mean of the first `known` rows. The same numbers rebuild the grown base for an adapter.
    """

    ids: list[int] = field(default_factory=list)
    new_ids: list[int] = field(default_factory=list)
    rows_before: int = 0
    rows_after: int = 0
    known: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Return the layout as plain JSON-ready data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AddedTokens:
        """Rebuild the layout written by `to_dict`."""
        return cls(**{k: data[k] for k in ("ids", "new_ids", "rows_before", "rows_after",
                                           "known")})


def add_special_tokens(tokenizer: Any, tokens: list[str]) -> tuple[list[int], list[int]]:
    """Add `tokens` to the tokenizer as special tokens; return (all ids, ids that are new)."""
    from transformers import AddedToken

    blank = not all(isinstance(t, str) and t.strip() for t in tokens)
    if blank or len(set(tokens)) != len(tokens):
        raise ModelError(f"model.add_tokens {tokens!r}: expected distinct, non-blank strings")
    known = len(tokenizer)
    # Special tokens are never split, lower-cased or stripped, and decode as written.
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in tokens],
                         special_tokens=True)
    ids = [tokenizer.convert_tokens_to_ids(t) for t in tokens]
    return ids, [i for i in ids if i >= known]


def _mean_init(weight: Any, rows: list[int], known: int) -> None:
    """Set `rows` of a [vocab, hidden] matrix to the mean of its first `known` rows."""
    import torch

    with torch.no_grad():
        mean = weight[:known].float().mean(dim=0).to(weight.dtype)  # [hidden]
        weight[rows] = mean


def _grow(model: Any, vocab: int, new_ids: list[int], known: int) -> tuple[int, int]:
    """Resize the embedding (and untied head) to hold `vocab` ids; mean-init the new ids and
    the appended rows; return the row counts (before, after)."""
    before = model.get_input_embeddings().weight.shape[0]
    if vocab > before:
        model.resize_token_embeddings(vocab, pad_to_multiple_of=PAD_TO_MULTIPLE,
                                      mean_resizing=False)
    after = model.get_input_embeddings().weight.shape[0]
    # The new ids and the rows the resize appended (padding) start at the mean.
    rows = sorted(set(new_ids) | set(range(before, after)))
    if rows:
        known = min(known, before)
        _mean_init(model.get_input_embeddings().weight, rows, known)
        head = model.get_output_embeddings()
        if head is not None and head.weight is not model.get_input_embeddings().weight:
            _mean_init(head.weight, rows, known)
    return before, after


def fit_embeddings(model: Any, tokenizer: Any, new_ids: list[int], known: int) -> AddedTokens:
    """Grow the embedding (and untied head) to hold every tokenizer id; mean-init new rows.

    `known` is the tokenizer length before the new tokens were added.
    """
    before, after = _grow(model, len(tokenizer), new_ids, known)
    logger.info("embedding rows %d -> %d (%d new token(s))", before, after, len(new_ids))
    return AddedTokens(new_ids=list(new_ids), rows_before=before, rows_after=after,
                       known=known)


def regrow_embeddings(model: Any, layout: AddedTokens) -> None:
    """Grow a fresh base exactly as training grew it, so a saved adapter fits it.

    Only the trained token rows are saved in an adapter; every other row of the grown
    embedding (old rows, padding rows at the mean) is rebuilt here from the base.
    """
    rows = model.get_input_embeddings().weight.shape[0]
    if rows != layout.rows_before:
        raise ModelError(f"the adapter was trained on a base with {layout.rows_before} "
                         f"embedding rows, this base has {rows}; load the adapter onto the "
                         "base model it was trained from")
    _grow(model, layout.rows_after, layout.new_ids, layout.known)


def add_tokens_to_model(model: Any, tokenizer: Any, tokens: list[str]) -> AddedTokens:
    """Add `tokens` to the tokenizer and the model; return their ids for training."""
    known = len(tokenizer)
    ids, new_ids = add_special_tokens(tokenizer, tokens)
    added = fit_embeddings(model, tokenizer, new_ids, known)
    added.ids = ids
    return added
