"""Forgetting: general-knowledge retention on multiple-choice sets, scored by log-likelihood.

Each option is scored as the summed log-probability of `" " + option` after the prompt
`query + "\\nAnswer:"` (plain text, no chat template, as most public harnesses do); the
prediction is the option with the highest score. The same rows and prompt are used for every
model, so the accuracy difference is paired and gets a paired bootstrap interval.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from tunesmith.evaluation.benchmarks import MultipleChoice
from tunesmith.evaluation.compare import PairedDiff, paired_diff, wilson_interval

logger = logging.getLogger(__name__)


def _pairs(tokenizer: Any, items: list[MultipleChoice]) -> list[tuple[list[int], list[int]]]:
    """(context ids, continuation ids) for every option of every item, in order."""
    pairs = []
    for item in items:
        context = tokenizer(f"{item.query}\nAnswer:", add_special_tokens=False)["input_ids"]
        for choice in item.choices:
            pairs.append((context, tokenizer(f" {choice}", add_special_tokens=False)
                          ["input_ids"]))
    return pairs


def continuation_logprobs(model: Any, pairs: list[tuple[list[int], list[int]]],
                          pad_id: int, batch_size: int = 16) -> list[float]:
    """Summed log-probability of each continuation given its context (right padding)."""
    order = sorted(range(len(pairs)), key=lambda i: -len(pairs[i][0]) - len(pairs[i][1]))
    scores = [0.0] * len(pairs)
    device = next(model.parameters()).device
    model.eval()
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        seqs = [pairs[i][0] + pairs[i][1] for i in rows]
        width = max(map(len, seqs))
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # [B, T]
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, seq in enumerate(seqs):
            ids[r, : len(seq)] = torch.tensor(seq)
            mask[r, : len(seq)] = 1
        with torch.no_grad():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        for r, i in enumerate(rows):
            context, continuation = pairs[i]
            # logits at position t predict token t + 1
            span = logits[r, len(context) - 1 : len(context) + len(continuation) - 1].float()
            logp = torch.log_softmax(span, dim=-1)  # [len(continuation), vocab]
            target = torch.tensor(continuation, device=logp.device).unsqueeze(1)
            scores[i] = float(logp.gather(1, target).sum())
    return scores


def score_multiple_choice(model: Any, tokenizer: Any, items: list[MultipleChoice],
                          batch_size: int = 16) -> list[float]:
    """Per-item 1.0 when the highest-scoring option is the gold one, else 0.0."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    flat = continuation_logprobs(model, _pairs(tokenizer, items), pad_id, batch_size)
    correct, cursor = [], 0
    for item in items:
        options = flat[cursor : cursor + len(item.choices)]
        cursor += len(item.choices)
        correct.append(float(max(range(len(options)), key=options.__getitem__) == item.gold))
    return correct


@dataclass
class RetentionScore:
    """One model's accuracy on one multiple-choice set, with a Wilson 95% interval."""

    set_name: str
    model: str
    per_example: list[float]
    accuracy: float = 0.0
    ci: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        hits, n = int(sum(self.per_example)), len(self.per_example)
        self.accuracy = hits / n if n else 0.0
        self.ci = wilson_interval(hits, n)


@dataclass
class ForgettingReport:
    """Before vs after on one set: drop in accuracy points (positive = forgot)."""

    set_name: str
    before: RetentionScore
    after: RetentionScore
    diff: PairedDiff
    drop_points: float = 0.0
    warnings: list[str] = field(default_factory=list)


def compare_retention(before: RetentionScore, after: RetentionScore,
                      max_drop_points: float | None, samples: int = 1000) -> ForgettingReport:
    """Paired difference of two models on the same set; warn when the drop exceeds the target."""
    diff = paired_diff("accuracy", (before.model, list(before.per_example)),
                       (after.model, list(after.per_example)), samples)
    drop = (before.accuracy - after.accuracy) * 100
    report = ForgettingReport(before.set_name, before, after, diff, drop)
    if max_drop_points is not None and drop > max_drop_points:
        message = (f"{after.model} forgot {drop:.1f} points on {before.set_name} "
                   f"({before.accuracy:.3f} -> {after.accuracy:.3f}), more than the "
                   f"{max_drop_points:g} allowed")
        report.warnings.append(message)
        logger.warning(message)
    return report
