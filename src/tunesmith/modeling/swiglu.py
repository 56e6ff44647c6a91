"""SwiGLU MLPs with a smaller backward footprint: `down(silu(gate(x)) * up(x))`.

Autograd keeps the gate and up projections and also silu(gate) for the product's backward,
an [N, intermediate] tensor per layer (a sixth of a decoder layer's saved activations on
Llama-shaped models). `SwiGLUFunction` keeps only gate and up and recomputes silu(gate) in
the backward pass, which costs one elementwise pass per layer. When the down projection is a
plain trained linear layer (full fine-tuning), `SwiGLUDownFunction` also recomputes the
product silu(gate) * up that the down weight's gradient needs, instead of keeping it: one
more [N, intermediate] tensor per layer. Same values to float rounding.
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


class SwiGLUDownFunction(torch.autograd.Function):
    """(silu(gate) * up) @ weight^T for a plain down projection, saving gate and up only:
    the product, which the weight's gradient needs, is recomputed in the backward pass."""

    @staticmethod
    def forward(ctx: Any, gate: torch.Tensor, up: torch.Tensor,
                weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(gate, up, weight)
        return F.silu(gate).mul_(up) @ weight.t()  # [..., out]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        gate, up, weight = ctx.saved_tensors
        silu = F.silu(gate)
        grad_w = None
        if ctx.needs_input_grad[2]:
            product = silu * up  # [..., I], recomputed instead of kept
            grad_w = grad.reshape(-1, grad.shape[-1]).t() @ product.reshape(-1, up.shape[-1])
        grad_product = grad @ weight  # [..., I]
        grad_up = grad_product * silu
        grad_gate = torch.ops.aten.silu_backward(grad_product.mul_(up), gate)
        return grad_gate, grad_up, grad_w


class LeanSwiGLUMixin:
    """forward of a gate/up/down MLP with a SiLU activation through `SwiGLUFunction`, or
    `SwiGLUDownFunction` when the down projection is a plain bias-free linear layer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled():
            return super().forward(x)
        gate, up, down = self.gate_proj(x), self.up_proj(x), self.down_proj
        if type(down) is nn.Linear and down.bias is None and down.weight.requires_grad \
                and not torch.is_autocast_enabled(x.device.type):
            return SwiGLUDownFunction.apply(gate, up, down.weight)
        return down(SwiGLUFunction.apply(gate, up))


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
