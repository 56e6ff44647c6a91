"""Fused rotary embeddings: transformers' values exactly, its gradients, swapped per run."""

from __future__ import annotations

import types

import torch
from transformers.models.llama import modeling_llama

from tunesmith.modeling.rotary import (
    RotaryFunction,
    fused_apply_rotary_pos_emb,
    restore_rotary,
    use_fused_rotary,
)


def _inputs(dtype=torch.float32):
    torch.manual_seed(0)
    q = torch.randn(2, 4, 7, 16, dtype=dtype, requires_grad=True)
    k = torch.randn(2, 2, 7, 16, dtype=dtype, requires_grad=True)
    angles = torch.randn(2, 7, 16, dtype=dtype)
    return q, k, angles.cos(), angles.sin()


def test_same_values_and_gradients_as_transformers() -> None:
    q, k, cos, sin = _inputs()
    want = modeling_llama.apply_rotary_pos_emb(q, k, cos, sin)
    got = fused_apply_rotary_pos_emb(q, k, cos, sin)
    assert all(torch.equal(w, g) for w, g in zip(want, got, strict=True))
    weights = [torch.randn_like(w) for w in want]
    grads = []
    for outs in (want, got):
        grads.append(torch.autograd.grad(sum((o * w).sum() for o, w in zip(outs, weights)),
                                         (q, k)))
    for w, g in zip(*grads, strict=True):
        assert torch.allclose(w, g, atol=1e-6)
    x, cos64, sin64 = q.detach().double().requires_grad_(), cos.double()[:, None], \
        sin.double()[:, None]
    assert torch.autograd.gradcheck(RotaryFunction.apply, (x, cos64, sin64))


def test_swapped_for_the_run_and_put_back(toy_dir) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(toy_dir, dtype=torch.float32)
    ids = torch.randint(3, 300, (2, 9))
    original = modeling_llama.apply_rotary_pos_emb
    want = model(input_ids=ids).logits
    swapped = use_fused_rotary(model)
    try:
        assert swapped == [(modeling_llama, original)]  # one module, however many layers
        assert modeling_llama.apply_rotary_pos_emb is fused_apply_rotary_pos_emb
        assert use_fused_rotary(model) == []  # already swapped
        assert torch.equal(model(input_ids=ids).logits, want)
    finally:
        restore_rotary(swapped)
    assert modeling_llama.apply_rotary_pos_emb is original


def test_a_different_rope_is_left_alone() -> None:
    class OtherAttention(torch.nn.Module):
        pass

    source = types.ModuleType("other_model_code")
    source.apply_rotary_pos_emb = lambda q, k, cos, sin: (q * cos, k * cos)  # no rotation
    OtherAttention.__module__ = source.__name__
    import sys

    sys.modules[source.__name__] = source
    try:
        assert use_fused_rotary(torch.nn.Sequential(OtherAttention())) == []
    finally:
        del sys.modules[source.__name__]
