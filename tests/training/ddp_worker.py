"""Run under torchrun with 2 processes: prepare a LoRA model for DDP the way the loop does.

Rank 1 first changes one frozen tensor and one trained tensor. Rank 0 saves what it saw, and
rank 1's copies of both, to the path given as the second argument.
"""

import logging
import sys

import torch
import torch.distributed as dist
from accelerate import Accelerator
from transformers import AutoModelForCausalLM

from tunesmith.modeling.adapters import LoraSettings
from tunesmith.modeling.loss import SupervisedLoss
from tunesmith.training.methods import build_method
from tunesmith.training.replicas import ddp_placement
from tunesmith.training.sharding import accelerator_options

FROZEN = "model.base_model.model.model.layers.0.mlp.up_proj.base_layer.weight"


def main(toy_dir: str, out: str) -> None:
    logging.basicConfig(level=logging.INFO)
    accelerator = Accelerator(**accelerator_options())
    rank = accelerator.process_index
    torch.manual_seed(0)
    method = build_method("lora", LoraSettings(r=4, alpha=8))
    root = SupervisedLoss(method.prepare(AutoModelForCausalLM.from_pretrained(toy_dir)))
    params = dict(root.named_parameters())
    trained = next(name for name, p in params.items() if p.requires_grad)
    if rank == 1:
        with torch.no_grad():
            params[FROZEN].add_(1.0)
            params[trained].add_(1.0)
    addresses = {name: p.data_ptr() for name, p in params.items()}
    optimizer = torch.optim.AdamW([p for p in root.parameters() if p.requires_grad])
    place = ddp_placement(accelerator, root)
    prepared, _ = accelerator.prepare(root, optimizer, device_placement=place)
    after = dict(prepared.module.named_parameters())
    seen = {"world": accelerator.num_processes, "place": place,
            "bucket_view": prepared.gradient_as_bucket_view,
            "ignored": sorted(prepared.parameters_to_ignore),
            "frozen": sorted(n for n, p in after.items() if not p.requires_grad),
            "moved": sorted(n for n, p in after.items() if p.data_ptr() != addresses[n]),
            "values": {FROZEN: after[FROZEN].detach().clone(),
                       trained: after[trained].detach().clone()}}
    gathered = [None, None]
    dist.all_gather_object(gathered, seen["values"])
    if rank == 0:
        torch.save({**seen, "other": gathered[1]}, out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
