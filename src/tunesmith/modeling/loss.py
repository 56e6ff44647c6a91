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

IGNORE_INDEX = -100  # the label of a masked position, as in tunesmith.formatting


def base_model_of(model: Any) -> Any:
    """The transformers model inside a PEFT wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class SupervisedLoss(nn.Module):
    """Wrap a causal LM; forward returns (summed token loss, supervised token count)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model
        base = base_model_of(model)
        self.decoder = base.get_decoder()
        self.head = base.get_output_embeddings()

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
