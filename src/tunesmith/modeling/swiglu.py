"""SwiGLU MLPs with a smaller backward footprint: `down(silu(gate(x)) * up(x))`.

Autograd keeps the gate and up projections and also silu(gate) for the product's backward,
an [N, intermediate] tensor per layer (a sixth of a decoder layer's saved activations on
Llama-shaped models). `SwiGLUFunction` keeps only gate and up and recomputes silu(gate) in
the backward pass, which costs one elementwise pass per layer. Same values to float rounding.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from tunesmith.modeling.mixins import add_mixin


class SwiGLUFunction(torch.autograd.Function):
    """silu(gate) * up, saving only its inputs."""

    @staticmethod
    def forward(ctx: Any, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(gate, up)
        return F.silu(gate).mul_(up)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gate, up = ctx.saved_tensors
        grad_up = grad * F.silu(gate)
        grad_gate = torch.ops.aten.silu_backward(grad * up, gate)
        return grad_gate, grad_up


class LeanSwiGLUMixin:
    """forward of a gate/up/down MLP with a SiLU activation through `SwiGLUFunction`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled():
            return super().forward(x)
        return self.down_proj(SwiGLUFunction.apply(self.gate_proj(x), self.up_proj(x)))


def _is_swiglu(module: nn.Module) -> bool:
    """A module laid out like LlamaMLP: gate/up/down projections and a SiLU activation."""
    act = getattr(module, "act_fn", None)
    names = ("gate_proj", "up_proj", "down_proj")
    # transformers' SiLUActivation (a hub-kernel hook around F.silu) or torch's nn.SiLU
    silu = isinstance(act, nn.SiLU) or type(act).__name__ == "SiLUActivation"
    return (all(hasattr(module, n) for n in names) and silu
            and type(module).forward.__qualname__.endswith("MLP.forward")
            and not getattr(module, "bias", False))


def lean_swiglu_layers(model: nn.Module) -> int:
    """Give every SwiGLU MLP of `model` the lean backward; return how many."""
    count = 0
    for module in model.modules():
        if not isinstance(module, LeanSwiGLUMixin) and _is_swiglu(module):
            add_mixin(module, LeanSwiGLUMixin)
            count += 1
    return count
