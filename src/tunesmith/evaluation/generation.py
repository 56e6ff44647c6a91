"""Batched greedy generation with left padding and a KV cache."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Generation:
    """One answer: its text, its new token ids, and whether it ended on a stop token."""

    text: str
    token_ids: list[int]
    stopped: bool
    over_context: bool = False  # the prompt left no room to answer: not generated


def context_length(model: Any) -> int | None:
    """The longest sequence the model's positions cover, if its config says."""
    return getattr(getattr(model, "config", None), "max_position_embeddings", None)


def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[list[int]],
    stop_ids: list[int],
    batch_size: int = 32,
    max_new_tokens: int = 64,
) -> list[Generation]:
    """Greedy answers for token-id prompts, in input order.

    Prompts are sorted by length so a batch wastes little padding; padding goes on the left
    whatever side training used, so every row continues from its own last token. A prompt
    that leaves fewer than `max_new_tokens` positions of the model's context gets an empty
    answer marked `over_context` instead of text past the positions the model knows.
    """
    limit = context_length(model)
    results: list[Generation | None] = [None] * len(prompts)
    fits = []
    for i, prompt in enumerate(prompts):
        if limit is not None and len(prompt) + max_new_tokens > limit:
            results[i] = Generation("", [], False, over_context=True)
        else:
            fits.append(i)
    order = sorted(fits, key=lambda i: len(prompts[i]))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    device = next(model.parameters()).device
    model.eval()
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = max(len(prompts[i]) for i in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # [B, T]
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, i in enumerate(rows):
            n = len(prompts[i])
            ids[r, width - n :] = torch.tensor(prompts[i])
            mask[r, width - n :] = 1
        with torch.no_grad():
            out = model.generate(
                input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                max_new_tokens=max_new_tokens, eos_token_id=stop_ids, pad_token_id=pad_id,
                temperature=None, top_p=None, top_k=None,
            )
        for r, i in enumerate(rows):
            results[i] = _cut(out[r, width:].tolist(), stop_ids, tokenizer)
    return [g for g in results if g is not None]


def _cut(new_ids: list[int], stop_ids: list[int], tokenizer: Any) -> Generation:
    stops = set(stop_ids)
    for index, token in enumerate(new_ids):
        if token in stops:
            kept = new_ids[:index]
            return Generation(tokenizer.decode(kept, skip_special_tokens=True), kept, True)
    return Generation(tokenizer.decode(new_ids, skip_special_tokens=True), new_ids, False)
