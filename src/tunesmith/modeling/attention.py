"""Padding-free attention for packed rows: one causal attention per packed example.

A packed row holds several examples one after the other, with position ids restarting at
0 for each. The stock SDPA path turns that into a dense [T, T] block-diagonal mask: its
cost grows with the square of the row length, the CPU kernel then repeats the key/value
heads for grouped-query attention, and the mask itself takes memory. Here each example
(a run of positions starting at 0) attends causally to itself only, through
`scaled_dot_product_attention` with `is_causal=True` and no mask, so the cost is the sum
of the squared example lengths and the fused kernel keeps grouped key/value heads as they
are. Rows can then be as long as the whole micro-batch: the linear layers see every token
of it in one matrix product, with no padding at all.

Any call this path does not cover (a padding mask, a key/value cache, dropout, soft-capping,
sliding windows) goes to transformers' own SDPA function unchanged.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import torch
from torch.nn import functional as F

VARLEN = "tunesmith_varlen"

# (position_ids tensor, its segments): every layer of one forward gets the same tensor
_last_segments: tuple[torch.Tensor | None, list[list[tuple[int, int]]]] = (None, [])


def _register() -> None:
    """Make VARLEN an attention implementation transformers can dispatch to."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    def mask(*args: Any, **kwargs: Any) -> Any:
        # No padding mask: causality and example boundaries come from the position ids.
        return None if kwargs.get("attention_mask") is None else sdpa_mask(*args, **kwargs)

    AttentionInterface.register(VARLEN, varlen_attention)
    AttentionMaskInterface.register(VARLEN, mask)


def segments(position_ids: torch.Tensor) -> list[list[tuple[int, int]]]:
    """(start, length) of every example in each row: a new one begins where a position is 0."""
    global _last_segments
    if _last_segments[0] is position_ids:
        return _last_segments[1]
    rows = []
    for row in position_ids.tolist():
        starts = [i for i, p in enumerate(row) if p == 0 or i == 0] + [len(row)]
        rows.append([(a, b - a) for a, b in pairwise(starts) if b > a])
    _last_segments = (position_ids, rows)
    return rows


def _covered(module: Any, query: torch.Tensor, key: torch.Tensor, attention_mask: Any,
             dropout: float, kwargs: dict[str, Any]) -> bool:
    """True when this call is causal self-attention over packed rows with no extras."""
    position_ids = kwargs.get("position_ids")
    return (attention_mask is None and dropout == 0.0 and position_ids is not None
            and query.shape[2] == key.shape[2] > 1 and kwargs.get("softcap") is None
            and getattr(module, "sliding_window", None) is None
            and getattr(module, "is_causal", True)
            and position_ids.shape[-1] == query.shape[2])


def _packed(position_ids: torch.Tensor | None, query: torch.Tensor, key: torch.Tensor) -> bool:
    """True when some row holds more than one example (positions restart inside it)."""
    if position_ids is None or query.shape[2] != key.shape[2] or query.shape[2] < 2:
        return False
    return bool((position_ids[..., 1:] == 0).any())


def supported(config: Any) -> bool:
    """Whether every attention layer of a model with this config takes the per-example path:
    no attention dropout, sliding window or logit soft-capping."""
    window = getattr(config, "sliding_window", None)
    if window is not None and getattr(config, "use_sliding_window", True):
        return False
    return (not getattr(config, "attention_dropout", 0.0)
            and getattr(config, "attn_logit_softcapping", None) is None)


def varlen_attention(
    module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
    attention_mask: Any, dropout: float = 0.0, scaling: float | None = None, **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention of transformers' interface: query [B, H, T, D], key/value [B, Hkv, T, D];
    returns [B, T, H, D] like the SDPA implementation."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if not _covered(module, query, key, attention_mask, dropout, kwargs):
        if attention_mask is None and _packed(kwargs.get("position_ids"), query, key):
            # no mask was built for this packed row: plain SDPA would attend across examples
            raise RuntimeError("packed rows reached an attention call that cannot be split per "
                               "example (dropout, sliding window or soft-capping); train with "
                               "training.packing: false")
        return sdpa_attention_forward(module, query, key, value, attention_mask,
                                      dropout=dropout, scaling=scaling, **kwargs)
    per_row = segments(kwargs["position_ids"])  # [1, T] position ids serve every row
    parts = per_row if len(per_row) == query.shape[0] else per_row * query.shape[0]
    if query.device.type == "cpu":
        # one dtype for the kernel: float32, whose CPU path is also the faster one (under
        # bf16 autocast the bf16 backward took 3x as long); the output in the inputs' dtype
        dtype = torch.promote_types(torch.promote_types(query.dtype, key.dtype), value.dtype)
        out = PackedCausalAttention.apply(query.float(), key.float(), value.float(), parts,
                                          scaling)
        return out.to(dtype), None
    gqa = query.shape[1] != key.shape[1]
    rows = []
    for r, row in enumerate(parts):
        outs = [F.scaled_dot_product_attention(
            query[r : r + 1, :, s : s + n], key[r : r + 1, :, s : s + n],
            value[r : r + 1, :, s : s + n], is_causal=True, scale=scaling, enable_gqa=gqa)
            for s, n in row]
        rows.append(outs[0] if len(outs) == 1 else torch.cat(outs, dim=2))
    out = rows[0] if len(rows) == 1 else torch.cat(rows, dim=0)  # [B, H, T, D]
    return out.transpose(1, 2).contiguous(), None


class PackedCausalAttention(torch.autograd.Function):
    """Causal attention of each example of packed rows through the CPU flash kernel.

    Slicing per example and calling SDPA lets autograd give every slice a gradient the size
    of the whole row (zero-filled, then summed: two passes over [B, H, T, D] per example and
    layer). Here each example's gradients are written into one buffer per input instead, and
    the outputs go straight into the [B, T, H, D] tensor the output projection reads, which
    is also the copy the backward pass keeps.
    """

    @staticmethod
    def forward(ctx: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                parts: list[list[tuple[int, int]]], scale: float | None) -> torch.Tensor:
        batch, heads, length, dim = query.shape
        out = query.new_empty(batch, length, heads, dim)
        lse = []  # [1, H, n] per example, for the backward kernel
        for r, row in enumerate(parts):
            for s, n in row:
                seg = (slice(r, r + 1), slice(None), slice(s, s + n))
                o, m = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
                    query[seg], key[seg], value[seg], 0.0, True, scale=scale)
                out[r : r + 1, s : s + n].copy_(o.transpose(1, 2))
                lse.append(m)
        ctx.save_for_backward(query, key, value, out, *lse)
        ctx.parts, ctx.scale = parts, scale
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        query, key, value, out, *lse = ctx.saved_tensors
        grads = (torch.empty_like(query), torch.empty_like(key), torch.empty_like(value))
        kernel = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward
        i = 0
        for r, row in enumerate(ctx.parts):
            for s, n in row:
                seg = (slice(r, r + 1), slice(None), slice(s, s + n))
                pieces = kernel(grad[r : r + 1, s : s + n].transpose(1, 2), query[seg],
                                key[seg], value[seg], out[r : r + 1, s : s + n].transpose(1, 2),
                                lse[i], 0.0, True, scale=ctx.scale)
                for buffer, piece in zip(grads, pieces, strict=True):
                    buffer[seg].copy_(piece)
                i += 1
        return (*grads, None, None)


def use_varlen_attention(model: Any) -> str | None:
    """Switch a model on SDPA to VARLEN; return the implementation to restore, or None."""
    config = getattr(model, "config", None)
    current = getattr(config, "_attn_implementation", None)
    if current != "sdpa" or not supported(config):
        return None  # the model's own masking handles packed rows
    _register()
    config._attn_implementation = VARLEN
    return current


def restore_attention(model: Any, implementation: str | None) -> None:
    """Undo `use_varlen_attention`, so saved configs name a standard implementation."""
    global _last_segments
    if implementation is not None:
        model.config._attn_implementation = implementation
    _last_segments = (None, [])
