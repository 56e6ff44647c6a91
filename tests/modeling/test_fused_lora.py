"""Fused LoRA linear layers: the same outputs and gradients as PEFT's forward."""

import pytest
import torch
from torch import nn

from tunesmith.modeling.fused_lora import LoraLinearFunction, fuse_lora_layers


def _peft_pair(seed: int = 0, bias: bool = True, **lora):
    """Two identical PEFT models on a small MLP; the second one fused."""
    from peft import LoraConfig, get_peft_model

    def build():
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Linear(24, 40, bias=bias), nn.SiLU(), nn.Linear(40, 24,
                                                                             bias=bias))
        cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["0", "2"],
                         init_lora_weights=False, **lora)
        return get_peft_model(net, cfg)

    plain, fused = build(), build()
    return plain, fused, fuse_lora_layers(fused)


def _grads(model, x):
    x = x.clone().requires_grad_(True)
    out = model(x)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return out.detach(), x.grad, grads


def _counted(model, x, monkeypatch):
    """`_grads` of `model`, and how many times the fused function ran."""
    calls = []
    original = LoraLinearFunction.apply
    monkeypatch.setattr(LoraLinearFunction, "apply",
                        lambda *a: calls.append(1) or original(*a))
    result = _grads(model, x)
    monkeypatch.setattr(LoraLinearFunction, "apply", original)
    return result, len(calls)


def _close(a, b, tol=1e-5):
    return (a - b).abs().max().item() <= tol * max(b.abs().max().item(), 1e-6)


@pytest.mark.parametrize(("bias", "lora"), [(True, {}), (False, {}),
                                             (True, {"use_rslora": True})])
def test_fused_forward_and_gradients_match_peft(bias, lora, monkeypatch) -> None:
    plain, fused, count = _peft_pair(bias=bias, **lora)
    assert count == 2
    x = torch.randn(3, 5, 24)
    (out_f, dx_f, g_f), calls = _counted(fused, x, monkeypatch)
    out_p, dx_p, g_p = _grads(plain, x)
    assert calls == 2  # both layers took the fused path
    assert _close(out_f, out_p) and _close(dx_f, dx_p)
    assert g_f.keys() == g_p.keys() and len(g_f) == 4
    for name in g_p:
        assert _close(g_f[name], g_p[name]), name


@pytest.mark.parametrize("lora", [{"lora_dropout": 0.1}, {"use_dora": True}])
def test_layers_it_does_not_cover_keep_peft_forward(lora, monkeypatch) -> None:
    plain, fused, _ = _peft_pair(**lora)
    plain.eval(), fused.eval()  # dropout off: outputs comparable; the path stays PEFT's
    x = torch.randn(4, 24)
    (out_f, _, _), calls = _counted(fused, x, monkeypatch)
    out_p, _, _ = _grads(plain, x)
    assert calls == 0 and torch.equal(out_f, out_p)


def test_fused_layers_save_and_merge_like_peft(tmp_path) -> None:
    from safetensors.torch import load_file

    plain, fused, _ = _peft_pair()
    plain.save_pretrained(tmp_path / "plain")
    fused.save_pretrained(tmp_path / "fused")
    a = load_file(tmp_path / "plain" / "adapter_model.safetensors")
    b = load_file(tmp_path / "fused" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(2, 24)
    with torch.no_grad():
        want = fused(x)
        merged = fused.merge_and_unload()
        assert _close(merged(x), want)
    assert all(type(m) in (nn.Linear, nn.SiLU, nn.Sequential) for m in merged.modules())


def test_lean_swiglu_matches_the_mlp_and_saves_less(toy_dir) -> None:
    from transformers import AutoModelForCausalLM

    from tunesmith.modeling.swiglu import SwiGLUFunction, lean_swiglu_layers

    def model():
        return AutoModelForCausalLM.from_pretrained(toy_dir, dtype=torch.float32)

    plain, lean = model(), model()
    assert lean_swiglu_layers(lean) == 2 and lean_swiglu_layers(lean) == 0  # idempotent
    ids = torch.randint(3, 300, (2, 9))
    grads = []
    for m in (plain, lean):
        m.model.embed_tokens.weight.requires_grad_(True)
        loss = m(input_ids=ids).logits.pow(2).mean()
        loss.backward()
        grads.append({n: p.grad for n, p in m.named_parameters()})
    for name, want in grads[0].items():
        assert _close(grads[1][name], want, 1e-4), name
    # saved for backward: gate and up only (plain autograd also keeps silu(gate))
    g = torch.randn(4, 6, requires_grad=True)
    u = torch.randn(4, 6, requires_grad=True)
    out = SwiGLUFunction.apply(g, u)
    assert len(out.grad_fn.saved_tensors) == 2


def test_lean_swiglu_with_a_trained_down_projection(toy_dir) -> None:
    from transformers import AutoModelForCausalLM

    from tunesmith.modeling.swiglu import SwiGLUDownFunction, lean_swiglu_layers

    plain, lean = (AutoModelForCausalLM.from_pretrained(toy_dir, dtype=torch.float32)
                   for _ in range(2))
    lean_swiglu_layers(lean)
    ids = torch.randint(3, 300, (2, 9))
    grads = []
    for m in (plain, lean):  # full fine-tuning: the down weights train
        m.model.embed_tokens.weight.requires_grad_(True)
        m(input_ids=ids).logits.pow(2).mean().backward()
        grads.append({n: p.grad for n, p in m.named_parameters()})
    for name, want in grads[0].items():
        assert _close(grads[1][name], want, 1e-4), name
    mlp = lean.model.layers[0].mlp
    assert type(mlp(torch.randn(2, 3, mlp.hidden_size)).grad_fn).__name__ == \
        "SwiGLUDownFunctionBackward"
    # saved: gate, up and the weight; no [N, intermediate] product
    g, u = (torch.randn(4, 6, dtype=torch.double, requires_grad=True) for _ in range(2))
    w = torch.randn(3, 6, dtype=torch.double, requires_grad=True)
    out = SwiGLUDownFunction.apply(g, u, w)
    assert len(out.grad_fn.saved_tensors) == 3
    assert torch.autograd.gradcheck(SwiGLUDownFunction.apply, (g, u, w))


def test_fused_rmsnorm_matches_the_model_and_saves_less(toy_dir) -> None:
    from transformers import AutoModelForCausalLM

    from tunesmith.modeling.rmsnorm import RMSNormFunction, fuse_rmsnorms

    def model():
        return AutoModelForCausalLM.from_pretrained(toy_dir, dtype=torch.float32)

    plain, fused = model(), model()
    assert fuse_rmsnorms(fused) == 5 and fuse_rmsnorms(fused) == 0  # 2 layers x 2 + final
    ids = torch.randint(3, 300, (2, 9))
    grads, outputs = [], []
    for m in (plain, fused):
        for p in m.parameters():  # norm weights train too (full fine-tuning)
            p.requires_grad_(True)
        logits = m(input_ids=ids).logits
        logits.pow(2).mean().backward()
        outputs.append(logits.detach())
        grads.append({n: p.grad for n, p in m.named_parameters()})
    assert torch.equal(outputs[0], outputs[1])  # same forward operations, same values
    for name, want in grads[0].items():
        assert _close(grads[1][name], want, 1e-4), name
    x = torch.randn(4, 6, requires_grad=True)
    w = torch.randn(6, requires_grad=True)
    out = RMSNormFunction.apply(x, w, 1e-6)
    assert len(out.grad_fn.saved_tensors) == 3  # x, weight and the [4, 1] rstd
    assert torch.autograd.gradcheck(RMSNormFunction.apply, (x.double(), w.double(), 1e-6))


def test_norms_computing_something_else_keep_their_forward() -> None:
    from tunesmith.modeling.rmsnorm import FusedRMSNormMixin, fuse_rmsnorms

    class OffsetRMSNorm(nn.Module):  # Gemma-style: scales by 1 + weight
        def __init__(self) -> None:
            super().__init__()
            self.weight, self.eps = nn.Parameter(torch.randn(8)), 1e-6

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * (1 + self.weight)

    norm = OffsetRMSNorm()
    assert fuse_rmsnorms(nn.Sequential(norm)) == 0
    assert not isinstance(norm, FusedRMSNormMixin)


def test_fused_lora_under_bf16_autocast_matches_peft_under_autocast(monkeypatch) -> None:
    from tunesmith.modeling.precision import COPIES

    plain, fused, _ = _peft_pair()
    x = torch.randn(3, 5, 24)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        (out_f, dx_f, g_f), calls = _counted(fused, x, monkeypatch)
        out_p, dx_p, g_p = _grads(plain, x)
    assert calls == 2 and out_f.dtype == out_p.dtype == torch.bfloat16
    exact = _grads(plain, x)  # float32: both bf16 paths are this close to it
    for got, want in ((out_f, exact[0]), (dx_f, exact[1]), (out_p, exact[0])):
        assert _close(got.float(), want, 2e-2)
    for name in g_p:
        assert g_f[name].dtype == torch.float32  # adapters keep their dtype
        assert _close(g_f[name], g_p[name].float(), 3e-2), name
    # the frozen base weights were cast once and kept for the next step
    layer = fused.base_model.model[0]
    copies = layer.__dict__[COPIES]
    assert [c[2].dtype for c in copies.values()] == [torch.bfloat16, torch.bfloat16]


def test_packed_attention_takes_mixed_dtypes(monkeypatch) -> None:
    from tunesmith.modeling.attention import PackedCausalAttention, varlen_attention

    seen = []
    original = PackedCausalAttention.apply
    monkeypatch.setattr(PackedCausalAttention, "apply",
                        lambda *a: seen.append({t.dtype for t in a[:3]}) or original(*a))

    class Module:
        is_causal, training = True, True

    q = torch.randn(1, 4, 6, 8)
    k, v = torch.randn(1, 2, 6, 8), torch.randn(1, 2, 6, 8)
    positions = torch.tensor([[0, 1, 2, 0, 1, 2]])
    want, _ = varlen_attention(Module(), q, k, v, None, position_ids=positions)
    # under bf16 autocast RoPE gives float32 q and k while v stays bf16
    got, _ = varlen_attention(Module(), q, k, v.bfloat16(), None, position_ids=positions)
    assert got.dtype == torch.float32
    assert _close(got, want, 1e-2)
    assert seen == [{torch.float32}, {torch.float32}]  # the kernel gets one dtype
