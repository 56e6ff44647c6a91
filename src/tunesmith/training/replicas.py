"""How a DDP launch prepares the model without copying or sending what it need not.

DDP starts by broadcasting every parameter from rank 0 through flat buckets of up to 250 MiB,
and it keeps gradient buckets for every parameter it knows. A LoRA run's frozen base needs
neither: each process reads it from the same files, and it has no gradients. So the frozen
weights are hidden from DDP. Instead each process sums every frozen tensor in float64, and a
tensor whose sums differ between processes (a randomly initialised row that is not trained,
say) is sent from rank 0 alone, one tensor at a time.

Measured on CPU (SmolLM2-135M LoRA, sample data, batch 4, 2 gloo processes), the peak RSS per
process was 1.75 GB; 1.61 GB with the frozen weights hidden; 1.45 GB, as low as one
process, once accelerate also stopped copying the model to `cpu:0` (`ddp_placement`).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)


def ddp_placement(accelerator: Any, root: nn.Module) -> list[bool] | None:
    """Before `accelerator.prepare(root, optimizer)` of a DDP launch: hide the frozen weights
    from DDP (below) and return the `device_placement` to prepare with; None for any other
    launch (DeepSpeed refuses a placement list).

    Several CPU processes get the device `cpu:0`, and `tensor.to("cpu:0")` copies a tensor
    that is on `cpu`: placing a model that is in RAM already would copy every weight (a
    0.46 GB transient per process for SmolLM2-135M). So a CPU model is not moved.
    """
    if not str(accelerator.distributed_type).split(".")[-1].startswith("MULTI_"):
        return None
    hide_frozen_from_ddp(root)
    return [accelerator.device.type != "cpu", True]


def hide_frozen_from_ddp(root: nn.Module) -> int:
    """Make every process's frozen weights equal to rank 0's and tell DDP to leave them out.

    Call on the module DDP will wrap, after the process group starts and before DDP wraps it
    (`accelerator.prepare`); every process must call it. Returns how many tensors had to be
    sent because they differed.
    """
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    frozen = [(name, p) for name, p in root.named_parameters() if not p.requires_grad]
    if not frozen or not dist.is_initialized() or dist.get_world_size() < 2:
        return 0
    sums = torch.stack([_fingerprint(p) for _, p in frozen])
    low, high = sums.clone(), sums.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    differ = [p for (_, p), same in zip(frozen, (low == high).all(dim=1).tolist()) if not same]
    for p in differ:  # the same list on every process: it comes from the reduced sums
        dist.broadcast(p.data, src=0)
    if differ:
        logger.info("%d frozen tensors differed between processes; rank 0's were sent",
                    len(differ))
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
        root, [name for name, _ in frozen])
    return len(differ)


def _fingerprint(p: torch.Tensor, chunk: int = 1 << 22) -> torch.Tensor:
    """Sum, sum of squares and a position-weighted sum in float64 (so reordered values
    differ too), a slice at a time: no float64 copy of the whole tensor. Quantized codes
    count as their integer values."""
    flat = p.detach().reshape(-1)
    sums = torch.zeros(3, dtype=torch.float64, device=flat.device)
    for start in range(0, flat.numel(), chunk):
        part = flat[start:start + chunk].to(torch.float64)
        place = torch.arange(start, start + part.numel(), dtype=torch.float64,
                             device=flat.device).remainder_(65521).add_(1)
        sums += torch.stack([part.sum(), part.square().sum(), (part * place).sum()])
    return sums
