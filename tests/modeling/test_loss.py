"""The chunked output layer + loss equals the plain one, in value and in every gradient."""

import pytest
import torch
from torch import nn

from tunesmith.modeling.loss import SupervisedLoss, chunked_cross_entropy


def _plain(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy((hidden @ weight.T).float(), targets, reduction="sum")


def _grads(fn, hidden, weight, targets, head_grad: bool):
    h = hidden.clone().requires_grad_(True)
    w = weight.clone().requires_grad_(head_grad)
    loss = fn(h, w, targets)
    (loss * 0.37).backward()  # a scale like the loop's 1 / supervised tokens
    return loss.detach(), h.grad, w.grad


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape
    if b.numel() == 0:
        return
    scale = max(b.abs().max().item(), 1e-8)
    assert (a - b).abs().max().item() <= 1e-5 * scale


@pytest.mark.parametrize("rows", [0, 1, 7, 50])
@pytest.mark.parametrize("head_grad", [False, True])
def test_chunked_loss_and_gradients_equal_plain(rows: int, head_grad: bool) -> None:
    torch.manual_seed(rows)
    hidden, weight = torch.randn(rows, 16), torch.randn(300, 16)
    targets = torch.randint(0, 300, (rows,))
    expected = _grads(_plain, hidden, weight, targets, head_grad)
    chunked = _grads(lambda h, w, t: chunked_cross_entropy(h, w, t, chunk=4), hidden, weight,
                     targets, head_grad)
    _close(chunked[0], expected[0])
    _close(chunked[1], expected[1])
    if head_grad:
        _close(chunked[2], expected[2])
    else:
        assert chunked[2] is None
    if rows == 0:
        assert chunked[0].item() == 0.0


def _tied_model(tied: bool):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(1)
    config = LlamaConfig(vocab_size=120, hidden_size=16, intermediate_size=32,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                         tie_word_embeddings=tied)
    return LlamaForCausalLM(config)


@pytest.mark.parametrize("tied", [False, True])
def test_supervised_loss_chunked_matches_plain_for_full_fine_tuning(tied: bool) -> None:
    ids = torch.randint(0, 120, (3, 9))
    labels = torch.randint(0, 120, (3, 9))
    labels[:, :4] = -100  # prompts are not supervised
    results = []
    for chunk in (None, 5):
        model = _tied_model(tied)
        module = SupervisedLoss(model, chunk_rows=chunk)
        assert module.chunk_rows == chunk
        loss, _ = module(ids, labels)
        loss.backward()
        results.append((loss.detach(), {n: p.grad for n, p in model.named_parameters()}))
    (plain, plain_grads), (chunked, chunked_grads) = results
    _close(chunked, plain)
    assert plain_grads.keys() == chunked_grads.keys()
    for name, grad in plain_grads.items():
        _close(chunked_grads[name], grad)


def test_chunked_loss_builds_no_gradients_under_no_grad(monkeypatch) -> None:
    hidden = torch.randn(6, 8, requires_grad=True)
    weight = torch.randn(20, 8, requires_grad=True)
    targets = torch.randint(0, 20, (6,))
    calls = []
    monkeypatch.setattr(torch.Tensor, "addmm_", lambda *a, **k: calls.append(a))
    with torch.no_grad():
        value = chunked_cross_entropy(hidden, weight, targets, chunk=4)
    assert not calls  # no head-weight gradient was accumulated
    assert value.item() == pytest.approx(_plain(hidden, weight, targets).item(), rel=1e-6)
