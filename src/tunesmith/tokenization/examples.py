"""Encode conversations and apply the truncation policy; no example leaves without labels."""

from __future__ import annotations

import logging
import multiprocessing
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tunesmith.data.records import Conversation, Reject
from tunesmith.data.shapes import RowProblem
from tunesmith.formatting.chat import IGNORE_INDEX, ChatFormatter, EncodedExample

logger = logging.getLogger(__name__)

TRUNCATION = ("drop", "left", "right")


@dataclass
class TokenizeResult:
    """Encoded examples plus the rows dropped while encoding, with reasons."""

    examples: list[EncodedExample] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    truncated: int = 0

    def summary(self) -> str:
        rules = Counter(r.rule for r in self.rejects)
        why = ", ".join(f"{n} {rule}" for rule, n in rules.most_common()) or "none dropped"
        return f"{len(self.examples)} examples encoded ({why}; {self.truncated} truncated)"


def fit_length(
    example: EncodedExample, max_length: int, policy: str
) -> tuple[EncodedExample | None, str | None]:
    """Apply the truncation policy; return the example or None with the reason it was dropped."""
    length = len(example.input_ids)
    if length <= max_length:
        return example, None
    total = example.supervised
    if policy == "drop":
        return None, (f"{length} tokens exceed data.max_length {max_length}; the answer would "
                      "be cut (set data.truncation: left to keep the end instead)")
    keep = slice(length - max_length, None) if policy == "left" else slice(0, max_length)
    cut = EncodedExample(example.input_ids[keep], example.labels[keep], example.ref)
    if cut.supervised == 0:
        return None, (f"answer truncated away: {length} tokens > max_length {max_length} left "
                      f"0 of {total} supervised tokens")
    return cut, None


def _encode_one(args: tuple[ChatFormatter, Conversation, int, str]) -> tuple[Any, ...]:
    formatter, conv, max_length, policy = args
    try:
        encoded = formatter.encode(conv)
    except RowProblem as problem:
        return None, Reject(conv.ref, problem.rule, problem.reason, problem.field,
                            conv.to_dict(), "messages"), False
    if encoded.supervised == 0:
        return None, Reject(conv.ref, "NoSupervisedTokens", "no token to train on",
                            None, conv.to_dict(), "messages"), False
    fitted, reason = fit_length(encoded, max_length, policy)
    if fitted is None:
        reject = Reject(conv.ref, "TooLong", reason or "", None, conv.to_dict(), "messages")
        return None, reject, False
    return fitted, None, fitted is not encoded


def tokenize_conversations(
    conversations: list[Conversation],
    formatter: ChatFormatter,
    max_length: int,
    truncation: str = "drop",
    workers: int = 1,
) -> TokenizeResult:
    """Encode every conversation in order; the result is the same for any worker count."""
    if truncation not in TRUNCATION:
        raise ValueError(f"truncation must be one of {TRUNCATION}, found {truncation!r}")
    jobs = [(formatter, conv, max_length, truncation) for conv in conversations]
    if workers > 1 and len(jobs) > 1:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(workers) as pool:
            outcomes = pool.map(_encode_one, jobs, chunksize=max(1, len(jobs) // (workers * 4)))
    else:
        outcomes = [_encode_one(job) for job in jobs]
    result = TokenizeResult()
    for example, reject, truncated in outcomes:
        if reject is not None:
            result.rejects.append(reject)
        else:
            result.examples.append(example)
            result.truncated += int(truncated)
    for reject in result.rejects[:5]:
        logger.info("dropped %s", reject.describe())
    if len(result.rejects) > 5:
        logger.info("... and %d more dropped rows", len(result.rejects) - 5)
    return result


def supervised_positions(labels: list[int]) -> list[int]:
    """Indices whose label is trained."""
    return [i for i, label in enumerate(labels) if label != IGNORE_INDEX]
