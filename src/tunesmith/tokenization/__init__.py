"""Token ids and labels: truncation policy, padding, length-grouped batches and packing."""

from tunesmith.tokenization.batching import collate, length_grouped_batches, pack
from tunesmith.tokenization.examples import TokenizeResult, tokenize_conversations

__all__ = ["TokenizeResult", "collate", "length_grouped_batches", "pack",
           "tokenize_conversations"]
