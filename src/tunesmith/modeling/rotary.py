"""Rotary position embeddings as one autograd function per tensor, while training.

transformers applies RoPE as `x * cos + rotate_half(x) * sin`, with
`rotate_half(x) = cat(-x2, x1)`: seven recorded operations per tensor, and a backward pass
that gives each half-slice a zero-filled gradient the size of the whole tensor before summing
them. `RotaryFunction` runs the same forward operations unrecorded and writes the gradient
in place:

    dx = g * cos + rotate_half^T(g * sin),   rotate_half^T(y) = cat(y2, -y1)

The model code calls its module's `apply_rotary_pos_emb`; `use_fused_rotary` swaps that
function, for the modules whose function a probe shows gives exactly the same values, and
returns what `restore_rotary` puts back when training ends.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

NAME = "apply_rotary_pos_emb"


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x * cos + rotate_half(x) * sin, in transformers' order of operations."""
    half = x.shape[-1] // 2
    turned = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return (x * cos).add_(turned.mul_(sin))


class RotaryFunction(torch.autograd.Function):
    """RoPE of x [B, H, T, D] with cos/sin broadcastable to it; gradient for x only."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(cos, sin)
        return _rotate(x, cos, sin)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        cos, sin = ctx.saved_tensors
        half = grad.shape[-1] // 2
        turned = grad * sin
        out = grad * cos
        out[..., :half].add_(turned[..., half:])
        out[..., half:].sub_(turned[..., :half])
        return out, None, None


def fused_apply_rotary_pos_emb(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor,
                               sin: torch.Tensor, unsqueeze_dim: int = 1
                               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop-in for transformers' `apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim)`."""
    cos, sin = cos.unsqueeze(unsqueeze_dim), sin.unsqueeze(unsqueeze_dim)
    if torch.is_grad_enabled() and not (cos.requires_grad or sin.requires_grad):
        return RotaryFunction.apply(q, cos, sin), RotaryFunction.apply(k, cos, sin)
    return _rotate(q, cos, sin), _rotate(k, cos, sin)


def _same_values(original: Callable) -> bool:
    """True when `original(q, k, cos, sin)` equals the fused function on a probe."""
    generator = torch.Generator().manual_seed(0)
    q, k = (torch.randn(1, h, 5, 8, generator=generator) for h in (4, 2))
    cos, sin = (torch.randn(1, 5, 8, generator=generator) for _ in range(2))
    try:
        with torch.no_grad():
            want = original(q, k, cos, sin)
    except Exception:  # noqa: BLE001 - another signature: keep the model's own function
        return False
    got = fused_apply_rotary_pos_emb(q, k, cos, sin)
    return isinstance(want, tuple) and len(want) == 2 \
        and all(isinstance(w, torch.Tensor) and torch.equal(w, g) for w, g in zip(want, got))


def use_fused_rotary(model: nn.Module) -> list[tuple[Any, Callable]]:
    """Swap the RoPE function of the modules defining `model`'s attention layers; return
    (module, original function) pairs for `restore_rotary`."""
    swapped = []
    for layer in model.modules():
        if not type(layer).__name__.endswith("Attention"):
            continue
        source = sys.modules.get(type(layer).__module__)
        original = getattr(source, NAME, None)
        if original is None or original is fused_apply_rotary_pos_emb \
                or any(s is source for s, _ in swapped) or not _same_values(original):
            continue
        setattr(source, NAME, fused_apply_rotary_pos_emb)
        swapped.append((source, original))
    return swapped


def restore_rotary(swapped: list[tuple[Any, Callable]]) -> None:
    """Put back the functions `use_fused_rotary` replaced."""
    for source, original in reversed(swapped):
        setattr(source, NAME, original)
