"""ModelShards without sharding, the optimizer-state key forms, and DeepSpeed's refusal."""

from pathlib import Path

import pytest
import torch
from torch import nn

from tunesmith.errors import CheckpointError, ConfigError
from tunesmith.training.checkpoint import LoopState, load_checkpoint, save_checkpoint
from tunesmith.training.methods import FullMethod
from tunesmith.training.sharding import (
    NOT_GATHERED,
    ModelShards,
    _by_index,
    _by_name,
    check_cpu_fsdp_launch,
    clean_name,
    cpu_fsdp_requested,
    sharding_of,
)


class Wrapper(nn.Module):
    """Stands in for SupervisedLoss: the trained model sits at `.model`."""

    def __init__(self) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
        self.model[0].weight.requires_grad_(False)


def _trained(root: Wrapper) -> torch.optim.Optimizer:
    optimizer = torch.optim.AdamW([p for p in root.parameters() if p.requires_grad], lr=0.1)
    root.model(torch.ones(4, 3)).sum().backward()
    optimizer.step()
    return optimizer


def test_clean_name_drops_fsdp1_levels() -> None:
    name = "model._fsdp_wrapped_module.layers.0._checkpoint_wrapped_module.mlp.weight"
    assert clean_name(name) == "model.layers.0.mlp.weight"


def test_cpu_fsdp_only_for_an_fsdp_launch_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert cpu_fsdp_requested("MULTI_CPU")
    assert not cpu_fsdp_requested("NO") and not cpu_fsdp_requested("MULTI_GPU")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "false")
    assert not cpu_fsdp_requested("MULTI_CPU")


def test_unsharded_main_reads_and_others_skip() -> None:
    root = Wrapper()
    assert sharding_of(root) is None
    optimizer = _trained(root)
    main = ModelShards(root, root.model, None, main=True)
    other = ModelShards(root, root.model, None, main=False)
    state = main.trainable_state(FullMethod())
    assert state is not None and list(state) == ["0.bias", "1.weight", "1.bias"]
    assert other.trainable_state(FullMethod()) is None
    assert other.optimizer_state(optimizer) is None
    saved = main.optimizer_state(optimizer)
    assert saved is not None and sorted(saved["state"]) == [0, 1, 2]


def test_optimizer_state_converts_between_index_and_name_keys() -> None:
    root = Wrapper()
    optimizer = _trained(root)
    saved = optimizer.state_dict()
    names = {id(p): n for n, p in root.named_parameters()}
    by_name = _by_name(saved, optimizer, names)
    assert by_name["param_groups"][0]["params"] == ["model.0.bias", "model.1.weight",
                                                    "model.1.bias"]
    assert torch.equal(by_name["state"]["model.1.weight"]["exp_avg"],
                       saved["state"][1]["exp_avg"])
    back = _by_index(by_name)
    assert back["param_groups"] == saved["param_groups"]
    assert all(torch.equal(back["state"][i][k], saved["state"][i][k])
               for i in saved["state"] for k in saved["state"][i])


def test_older_deepspeed_checkpoint_without_optimizer_state_refuses_to_resume(
        tmp_path: Path) -> None:
    # tunesmith before DeepSpeed moments were gathered wrote this marker instead
    root = Wrapper()
    optimizer = _trained(root)
    weights = ModelShards(root, root.model, None, main=True).trainable_state(FullMethod())
    marker = {NOT_GATHERED: "DeepSpeed splits the optimizer state"}
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    path = save_checkpoint(tmp_path, LoopState(step=1), weights, marker, scheduler)
    plain = ModelShards(root, root.model, None, main=True)
    with pytest.raises(CheckpointError, match="earlier tunesmith"):
        load_checkpoint(path, lambda saved: plain.load_optimizer_state(optimizer, saved),
                        scheduler)


def test_cpu_fsdp_launch_with_rank0_loading_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_CPU_RAM_EFFICIENT_LOADING", "true")
    monkeypatch.setenv("FSDP_SYNC_MODULE_STATES", "false")
    with pytest.raises(ConfigError, match="--fsdp_cpu_ram_efficient_loading false"):
        check_cpu_fsdp_launch(on_cpu=True)
    check_cpu_fsdp_launch(on_cpu=False)  # GPUs: accelerate handles it
    monkeypatch.setenv("FSDP_CPU_RAM_EFFICIENT_LOADING", "false")
    check_cpu_fsdp_launch(on_cpu=True)
