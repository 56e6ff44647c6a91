"""RMSNorm as one autograd function: `weight * x / sqrt(mean(x^2) + eps)`.

Autograd keeps the normalised input x * rstd for the weight's gradient besides x itself, an
[N, hidden] tensor per norm (two per decoder layer), and its backward pass runs about ten
elementwise operations. `RMSNormFunction` keeps x and the [N, 1] rstd and writes the input
gradient in closed form:

    x^ = x * rstd,   dx = rstd * (g*w - x^ * mean(g*w * x^)),   dw = sum over rows of g * x^

The forward pass is the same operations in the same order (same values). Norms that compute
something else (Gemma's 1 + weight, other dtypes) keep their own forward: a norm is swapped
only after a probe shows the formula above reproduces it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tunesmith.modeling.mixins import add_mixin


class RMSNormFunction(torch.autograd.Function):
    """weight * (x * rsqrt(mean(x^2, -1) + eps)) for float32 x and weight."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        rstd = torch.rsqrt(x.pow(2).mean(-1, keepdim=True).add_(eps))  # [..., 1]
        ctx.save_for_backward(x, weight, rstd)
        return (x * rstd).mul_(weight)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        x, weight, rstd = ctx.saved_tensors
        normed = x * rstd
        grad_w = (grad * normed).reshape(-1, x.shape[-1]).sum(0) \
            if ctx.needs_input_grad[1] else None
        grad_x = None
        if ctx.needs_input_grad[0]:
            scaled = grad * weight  # [..., H]
            dot = (scaled * normed).mean(-1, keepdim=True)  # [..., 1]
            grad_x = scaled.sub_(normed.mul_(dot)).mul_(rstd)
        return grad_x, grad_w, None


def _eps(module: nn.Module) -> float | None:
    value = getattr(module, "variance_epsilon", getattr(module, "eps", None))
    return float(value) if isinstance(value, float | int) else None


class FusedRMSNormMixin:
    """forward through `RMSNormFunction` for float32 inputs and weights while training."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled() or x.dtype != torch.float32 \
                or self.weight.dtype != torch.float32:
            return super().forward(x)
        return RMSNormFunction.apply(x, self.weight, _eps(self))


def _computes_rmsnorm(module: nn.Module) -> bool:
    """True when the module's own forward equals the formula on a probe input."""
    weight, eps = getattr(module, "weight", None), _eps(module)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 1 or eps is None \
            or weight.dtype != torch.float32 or weight.device.type == "meta":
        return False
    generator = torch.Generator(device="cpu").manual_seed(0)
    probe = torch.randn(3, weight.shape[0], generator=generator).to(weight.device)
    with torch.no_grad():
        want, got = module(probe), RMSNormFunction.apply(probe, weight, eps)
    return isinstance(want, torch.Tensor) and want.shape == got.shape \
        and torch.equal(want, got)


def fuse_rmsnorms(model: nn.Module) -> int:
    """Give every RMSNorm of `model` that the probe confirms the fused backward; count them."""
    count = 0
    for module in model.modules():
        if isinstance(module, FusedRMSNormMixin) or not type(module).__name__.endswith("RMSNorm"):
            continue
        if _computes_rmsnorm(module):
            add_mixin(module, FusedRMSNormMixin)
            count += 1
    return count
