"""Batches for training: right padding masked by length, length grouping and packing."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from tunesmith.formatting.chat import IGNORE_INDEX, EncodedExample


@dataclass
class Batch:
    """Tensors of one micro-batch; all of shape [batch, seq]."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    attention_mask: torch.Tensor | None
    position_ids: torch.Tensor | None = None

    @property
    def supervised(self) -> int:
        # labels are already shifted left by one in `collate`
        return int((self.labels != IGNORE_INDEX).sum())


def collate(examples: list[EncodedExample], pad_id: int) -> Batch:
    """Right-pad a list of examples; labels are shifted so labels[t] is the target of t.

    Padding is masked by each row's length, never by token id, so a pad id equal to the
    end-of-turn id still trains the stop token.
    """
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)  # [B, T]
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, : n - 1] = torch.tensor(example.labels[1:])
        mask[row, :n] = 1
    return Batch(ids, labels, mask)


def pack(examples: list[EncodedExample], pad_id: int) -> Batch:
    """Pack examples into one row with position ids restarting at every example.

    With no attention mask and restarting position ids, the model builds a block-diagonal
    causal mask, so no example attends to another. Shifted labels never cross a boundary.
    """
    ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    for example in examples:
        n = len(example.input_ids)
        ids += example.input_ids
        labels += example.labels[1:] + [IGNORE_INDEX]
        positions += list(range(n))
    return Batch(
        torch.tensor([ids]), torch.tensor([labels]), None, torch.tensor([positions])
    )


def fill_rows(lengths: list[int], capacity: int) -> list[list[int]]:
    """Group indices into rows of at most `capacity` tokens, first-fit decreasing.

    Deterministic: longer items first, ties by index. An item longer than `capacity` gets a
    row of its own.
    """
    rows: list[list[int]] = []
    room: list[int] = []
    for index in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        slot = next((r for r, free in enumerate(room) if free >= lengths[index]), None)
        if slot is None:
            rows.append([])
            room.append(capacity)
            slot = len(rows) - 1
        rows[slot].append(index)
        room[slot] -= lengths[index]
    return rows


def pack_rows(examples: list[EncodedExample], pad_id: int, capacity: int) -> Batch:
    """Pack examples into rows of at most `capacity` tokens, then right-pad the rows.

    Rows are bounded because attention over one packed row is dense in its length. Padding
    gets its own restarting positions, so it forms a separate block no example attends to.
    """
    rows = [pack([examples[i] for i in row], pad_id)
            for row in fill_rows([len(e.input_ids) for e in examples], capacity)]
    width = max(row.input_ids.shape[1] for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # [R, T]
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        n = row.input_ids.shape[1]
        ids[r, :n], labels[r, :n], positions[r, :n] = row.input_ids[0], row.labels[0], \
            row.position_ids[0]
        positions[r, n:] = torch.arange(width - n)
    return Batch(ids, labels, None, positions)


def length_grouped_batches(
    lengths: list[int], batch_size: int, seed: int, group: int = 50
) -> list[list[int]]:
    """Shuffle, then sort within groups of `group` batches so rows of a batch have similar
    lengths (less padding), and shuffle the batches again. Deterministic for a seed."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    span = batch_size * group
    batches = []
    for start in range(0, len(order), span):
        chunk = sorted(order[start : start + span], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def token_budget_batches(
    lengths: list[int], budget: int, seed: int, fill: bool = False, group: int = 50
) -> list[list[int]]:
    """Shuffle, cut spans of about `group` budgets of tokens into batches of at most `budget`
    tokens, and shuffle the batches. Deterministic for a seed.

    A batch holds at least one example: one longer than `budget` gets a batch of its own.
    `fill=False` sorts each span by length and cuts it in order (rows of a batch alike in
    length: little padding); `fill=True` packs each span first-fit decreasing (budgets filled
    closer to the brim: fewer micro-batches, for packed rows that have no padding).
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches: list[list[int]] = []
    span: list[int] = []
    tokens = 0
    for index in order:
        span.append(index)
        tokens += lengths[index]
        if tokens >= budget * group:
            batches += _cut_span(span, lengths, budget, fill)
            span, tokens = [], 0
    batches += _cut_span(span, lengths, budget, fill)
    rng.shuffle(batches)
    return batches


def _cut_span(span: list[int], lengths: list[int], budget: int,
              fill: bool) -> list[list[int]]:
    if fill:
        rows = fill_rows([lengths[i] for i in span], budget)
        return [[span[j] for j in row] for row in rows]
    return cut_by_budget(sorted(span, key=lambda i: lengths[i]), lengths, budget)


def cut_by_budget(order: list[int], lengths: list[int], budget: int) -> list[list[int]]:
    """Cut `order` into consecutive batches whose lengths sum to at most `budget` tokens
    (a single longer example makes a batch alone)."""
    batches: list[list[int]] = []
    batch: list[int] = []
    tokens = 0
    for index in order:
        if batch and tokens + lengths[index] > budget:
            batches.append(batch)
            batch, tokens = [], 0
        batch.append(index)
        tokens += lengths[index]
    if batch:
        batches.append(batch)
    return batches
