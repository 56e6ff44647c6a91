"""Cross-entropy computed only where labels are supervised.

The output layer is applied to the hidden states of supervised positions alone, so the
[batch, seq, vocab] logits tensor is never built; on short answers after long prompts this
saves most of the output layer's time and memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from tunesmith.modeling.precision import autocast_dtype, frozen_copy

IGNORE_INDEX = -100  # the label of a masked position, as in tunesmith.formatting


def base_model_of(model: Any) -> Any:
    """The transformers model inside a PEFT wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


CHUNK_BYTES = 64 << 20  # fp32 logits of one chunk: 341 rows of the default 49,152 vocabulary


def chunk_rows_for(vocab: int) -> int:
    """Rows per chunk so one chunk's fp32 logits stay within CHUNK_BYTES (at least 64)."""
    return max(64, CHUNK_BYTES // (4 * vocab))


class ChunkedCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of `hidden @ weight.T` computed chunk by chunk.

    The gradients w.r.t. hidden states and head weight are made in the forward pass, chunk
    by chunk, so the [N, vocab] logits and their gradient never exist at once.
    """

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                chunk: int) -> torch.Tensor:
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_h = torch.empty_like(hidden) if need_h else None  # [N, H]
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) \
            if need_w else None  # [V, H], fp32 to accumulate over chunks
        for start in range(0, hidden.shape[0], chunk):
            h, t = hidden[start : start + chunk], targets[start : start + chunk]
            logits = (h @ weight.T).float()  # [C, V], the chunk's only vocab-wide buffer
            target = logits.gather(1, t[:, None]).squeeze(1)  # [C]
            peak = logits.amax(dim=-1, keepdim=True)  # [C, 1]
            probs = logits.sub_(peak).exp_()  # in place: exp(logits - max)
            norm = probs.sum(dim=-1, keepdim=True)  # [C, 1]
            total += (norm.log().add_(peak).squeeze(1) - target).sum()  # logsumexp - target
            if need_h or need_w:
                # d loss / d logits = softmax - one_hot(target), still in the same buffer
                grad = probs.div_(norm)
                grad[torch.arange(t.shape[0], device=t.device), t] -= 1.0
                if grad_h is not None:
                    grad_h[start : start + chunk] = grad.to(weight.dtype) @ weight
                if grad_w is not None:
                    grad_w.addmm_(grad.T, h.float())
        # kept as attributes, not saved tensors: backward hands them over without a copy
        ctx.grads = (grad_h, grad_w.to(weight.dtype) if grad_w is not None else None)
        return total

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:
        if ctx.grads is None:
            raise RuntimeError("the chunked loss's backward ran twice (retain_graph): its "
                               "gradients were handed over the first time")
        (grad_h, grad_w), ctx.grads = ctx.grads, None
        # scaled in place and released by ctx, so autograd takes the head's [V, H] gradient
        # as the parameter's .grad instead of holding a second copy
        for grad in (grad_h, grad_w):
            if grad is not None:
                grad.mul_(grad_out.to(grad.dtype))
        return grad_h, grad_w, None, None


def chunked_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                          chunk: int | None = None) -> torch.Tensor:
    """Summed cross-entropy of the logits `hidden @ weight.T` [N, V] against `targets` [N]."""
    if not torch.is_grad_enabled():
        # needs_input_grad ignores no_grad: detach so evaluation builds no gradients
        hidden, weight = hidden.detach(), weight.detach()
    return ChunkedCrossEntropy.apply(hidden, weight, targets,
                                     chunk or chunk_rows_for(weight.shape[0]))


class SupervisedLoss(nn.Module):
    """Wrap a causal LM; forward returns (summed token loss, supervised token count).

    With `chunk_rows` set and a plain bias-free output layer, the loss walks the supervised
    rows in chunks (see ChunkedCrossEntropy); otherwise it builds the [N, V] logits at once.
    """

    def __init__(self, model: Any, chunk_rows: int | str | None = "auto") -> None:
        super().__init__()
        self.model = model
        base = base_model_of(model)
        self.decoder = base.get_decoder()
        self.head = base.get_output_embeddings()
        # a subclass (quantized, adapter-wrapped) may change forward: keep the plain path
        plain = type(self.head) is nn.Linear and self.head.bias is None
        if chunk_rows == "auto":
            chunk_rows = chunk_rows_for(self.head.weight.shape[0])
        self.chunk_rows = chunk_rows if plain else None

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.decoder(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
            use_cache=False,
        ).last_hidden_state  # [B, T, H]
        keep = labels != IGNORE_INDEX  # labels are pre-shifted: labels[t] follows input t
        if self.chunk_rows:
            hidden, weight = hidden[keep], self.head.weight
            dtype = autocast_dtype(hidden.device.type)
            if dtype is None:
                return chunked_cross_entropy(hidden, weight, labels[keep],
                                             self.chunk_rows), keep.sum()
            # as autocast would: the products in its dtype, the head cast once per step
            # (or once per run while it is frozen), the softmax in float32
            weight = weight.to(dtype) if weight.requires_grad else frozen_copy(
                self.head, "weight", weight, dtype)
            with torch.autocast(hidden.device.type, enabled=False):
                loss = chunked_cross_entropy(hidden.to(dtype), weight, labels[keep],
                                             self.chunk_rows)
            return loss, keep.sum()
        logits = self.head(hidden[keep]).float()  # [N, V], N = supervised tokens
        loss = nn.functional.cross_entropy(logits, labels[keep], reduction="sum")
        return loss, keep.sum()


def mean_token_loss(
    module: SupervisedLoss, batches: Iterable[dict[str, torch.Tensor]], accelerator: Any = None
) -> float:
    """Mean loss per supervised token over batches (summed over processes if distributed)."""
    module.eval()
    totals = torch.zeros(2, dtype=torch.float64)
    device = accelerator.device if accelerator else next(module.parameters()).device
    with torch.no_grad():
        for batch in batches:
            loss, count = module(**{k: v.to(device) for k, v in batch.items()})
            totals += torch.tensor([loss.item(), count.item()], dtype=torch.float64)
    module.train()
    if accelerator is not None:
        totals = accelerator.reduce(totals.to(device), reduction="sum").cpu()
    return float(totals[0] / totals[1]) if totals[1] else float("nan")
