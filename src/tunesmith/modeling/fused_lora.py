"""LoRA linear layers as one autograd function: fewer passes over the activations.

PEFT computes `base(x) + lora_B(lora_A(dropout(x))) * scaling` as separate operations: the
[N, out] product is scaled and added in two extra passes, and the backward pass scales the
gradient again and adds the two gradients of x in yet another pass. Here the LoRA update is
accumulated into the base product in place (`addmm_`, the scaling folded into the small
[N, r] factor) and the backward pass writes each gradient with matrix products only:

    y   = x W^T + b + s * (x A^T) B^T
    dB  = s * g^T (x A^T)            [out, r]
    dA  = (s * g B)^T x              [r, in]
    dx  = g W + (s * g B) A          [N, in]

Same result as PEFT's forward to float rounding; same saved tensors (x and x A^T). Under
autocast (bf16 mixed precision) the function runs on x, W, A and B cast to the autocast
dtype, as autocast would run PEFT's products, and the adapters' gradients come back in
their own dtype. Layers this does not cover (DoRA, dropout, several adapters, quantized or
trainable base weights) keep PEFT's forward.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from tunesmith.modeling.mixins import add_mixin
from tunesmith.modeling.precision import autocast_dtype, frozen_copy


class LoraLinearFunction(torch.autograd.Function):
    """y = x W^T + b + s (x A^T) B^T with the gradients above; W and b stay frozen."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                lora_a: torch.Tensor, lora_b: torch.Tensor, scaling: float) -> torch.Tensor:
        xa = x @ lora_a.t()  # [N, r]
        y = torch.addmm(bias, x, weight.t()) if bias is not None else x @ weight.t()
        y.addmm_(xa, lora_b.t(), alpha=scaling)  # [N, out]
        ctx.save_for_backward(x, xa, weight, lora_a, lora_b)
        ctx.scaling = scaling
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        x, xa, weight, lora_a, lora_b = ctx.saved_tensors
        grad_xa = (grad @ lora_b).mul_(ctx.scaling)  # [N, r]
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = grad @ weight
            grad_x.addmm_(grad_xa, lora_a)
        grad_a = grad_xa.t() @ x if ctx.needs_input_grad[3] else None
        grad_b = (grad.t() @ xa).mul_(ctx.scaling) if ctx.needs_input_grad[4] else None
        return grad_x, None, None, grad_a, grad_b, None


def _plain_adapter(layer: Any, args: tuple, kwargs: dict) -> str | None:
    """The one active adapter when `layer` can take the fused path now, else None."""
    if args or kwargs or layer.disable_adapters or layer.merged:
        return None
    active = [a for a in layer.active_adapters if a in layer.lora_A]
    if len(active) != 1 or active[0] in getattr(layer, "lora_variant", {}):
        return None
    name = active[0]
    base = layer.get_base_layer()
    if type(base) is not nn.Linear or base.weight.requires_grad or (
            base.bias is not None and base.bias.requires_grad):
        return None
    if not isinstance(layer.lora_dropout[name], nn.Identity):
        return None
    return name


class FusedLoraMixin:
    """Forward of a PEFT LoRA Linear through `LoraLinearFunction` when it applies."""

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        name = _plain_adapter(self, args, kwargs)
        if name is None:
            return super().forward(x, *args, **kwargs)
        base = self.get_base_layer()
        tensors = [x.reshape(-1, x.shape[-1]), base.weight, base.bias,  # x: [N, in]
                   self.lora_A[name].weight, self.lora_B[name].weight]
        dtype = autocast_dtype(base.weight.device.type)
        if dtype is None and not x.dtype == base.weight.dtype == tensors[3].dtype:
            return super().forward(x, *args, **kwargs)  # mixed dtypes without autocast
        if dtype is not None:
            flat, weight, bias, a, b = tensors
            tensors = [flat.to(dtype), frozen_copy(self, "weight", weight, dtype),
                       frozen_copy(self, "bias", bias, dtype), a.to(dtype), b.to(dtype)]
        with torch.autocast(base.weight.device.type, enabled=False) if dtype else nullcontext():
            y = LoraLinearFunction.apply(*tensors, float(self.scaling[name]))
        return y.view(*x.shape[:-1], y.shape[-1])


def fuse_lora_layers(model: nn.Module) -> int:
    """Give every PEFT LoRA Linear of `model` the fused forward; return how many.

    The layers keep their class's behaviour, weights and state-dict names (the fused class
    derives from it), so saving, merging and PEFT's own APIs work as before.
    """
    try:
        from peft.tuners.lora.layer import Linear as LoraLinear
    except ImportError:
        return 0
    count = 0
    for module in model.modules():
        if type(module) is LoraLinear:
            add_mixin(module, FusedLoraMixin)
            count += 1
    return count
