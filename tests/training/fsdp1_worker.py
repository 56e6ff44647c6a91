"""Run under torchrun with 2 processes: gather and scatter trainable state through FSDP1.

accelerate prepares FSDP1 only on GPUs, so this wraps the loss module the way accelerate's
FSDP config does (one unit per LlamaDecoderLayer, use_orig_params) and drives ModelShards
directly. Rank 0 saves what it saw to the path given as the third argument.
"""

import sys

import torch
import torch.distributed as dist
from torch.distributed.fsdp import FullyShardedDataParallel
from torch.distributed.fsdp.wrap import ModuleWrapPolicy
from transformers import AutoModelForCausalLM
from transformers.models.llama.modeling_llama import LlamaDecoderLayer

from tunesmith.modeling.adapters import LoraSettings
from tunesmith.modeling.loss import SupervisedLoss
from tunesmith.training.methods import build_method
from tunesmith.training.sharding import ModelShards, sharding_of


def _step(root: torch.nn.Module, optimizer: torch.optim.Optimizer, rank: int) -> None:
    """One AdamW step on a fixed per-rank batch of 2 x 12 tokens."""
    generator = torch.Generator().manual_seed(rank)
    ids = torch.randint(3, 200, (2, 12), generator=generator)
    loss, count = root(input_ids=ids, labels=ids)
    (loss / count).backward()
    optimizer.step()
    optimizer.zero_grad()


def main(toy_dir: str, method_name: str, out: str) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    method = build_method(method_name, LoraSettings(r=4, alpha=8))
    model = method.prepare(AutoModelForCausalLM.from_pretrained(toy_dir))
    with torch.no_grad():  # LoRA B starts at zero: make every trained value distinct
        for param in model.parameters():
            if param.requires_grad:
                param.normal_()
    before = method.trainable_state(model)
    root = FullyShardedDataParallel(
        SupervisedLoss(model), auto_wrap_policy=ModuleWrapPolicy({LlamaDecoderLayer}),
        device_id=torch.device("cpu"), use_orig_params=True)
    shards = ModelShards(root, model, sharding_of(root), rank == 0)
    optimizer = torch.optim.AdamW([p for p in root.parameters() if p.requires_grad], lr=1e-2)
    gathered = shards.trainable_state(method)
    _step(root, optimizer, rank)
    after, moments = shards.trainable_state(method), shards.optimizer_state(optimizer)
    shards.load_trainable_state(method, before)
    restored = shards.trainable_state(method)
    _step(root, optimizer, rank)  # moves the moments away from `moments`
    shared = [moments]  # every process reads the checkpoint file in the loop
    dist.broadcast_object_list(shared, src=0)
    shards.load_optimizer_state(optimizer, shared[0])
    reloaded = shards.optimizer_state(optimizer)
    if rank == 0:
        torch.save({"world": dist.get_world_size(), "kind": shards.kind, "before": before,
                    "gathered": gathered, "after": after, "restored": restored,
                    "moments": moments, "reloaded": reloaded}, out)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:4])
