"""The accelerate config files in examples/distributed load with accelerate's own classes,
and every FSDP/DeepSpeed key is an option that `accelerate launch` knows."""

from pathlib import Path

import pytest
import yaml

FOLDER = Path(__file__).resolve().parents[2] / "examples" / "distributed"
NAMES = ["ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"]


def _launch_options() -> set[str]:
    from accelerate.commands.launch import launch_command_parser

    parser = launch_command_parser()
    return {opt.lstrip("-") for action in parser._actions for opt in action.option_strings}


@pytest.mark.parametrize("name", NAMES)
def test_config_loads_with_accelerate(name: str) -> None:
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.utils import DistributedType

    config = ClusterConfig.from_yaml_file(str(FOLDER / f"{name}.yaml"))
    expected = {"ddp": DistributedType.MULTI_GPU, "fsdp": DistributedType.FSDP}
    assert config.distributed_type == expected.get(name, DistributedType.DEEPSPEED)
    assert config.num_processes == 8 and not config.use_cpu
    options = _launch_options()
    raw = yaml.safe_load((FOLDER / f"{name}.yaml").read_text())
    section = raw.get("fsdp_config") or raw.get("deepspeed_config") or {}
    unknown = [key for key in section if key not in options]
    assert unknown == []


def test_fsdp_wraps_llama_layers_and_keeps_original_params() -> None:
    from accelerate.utils import FullyShardedDataParallelPlugin

    fsdp = yaml.safe_load((FOLDER / "fsdp.yaml").read_text())["fsdp_config"]
    assert fsdp["fsdp_transformer_layer_cls_to_wrap"] == "LlamaDecoderLayer"
    plugin = FullyShardedDataParallelPlugin(
        fsdp_version=fsdp["fsdp_version"],
        sharding_strategy=fsdp["fsdp_sharding_strategy"],
        auto_wrap_policy=fsdp["fsdp_auto_wrap_policy"].lower(),
        transformer_cls_names_to_wrap=[fsdp["fsdp_transformer_layer_cls_to_wrap"]],
        use_orig_params=fsdp["fsdp_use_orig_params"],
        state_dict_type=fsdp["fsdp_state_dict_type"])
    assert plugin.use_orig_params is True
    assert plugin.state_dict_type.name == "FULL_STATE_DICT"
    zero3 = yaml.safe_load((FOLDER / "deepspeed_zero3.yaml").read_text())["deepspeed_config"]
    assert zero3["zero_stage"] == 3 and zero3["zero3_save_16bit_model"] is True


def test_deepspeed_config_follows_the_run_config(caplog) -> None:
    from tunesmith.errors import ConfigError
    from tunesmith.training.sharding import configure_deepspeed

    ds = {"train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto",
          "gradient_accumulation_steps": 1, "gradient_clipping": 1.0}
    configure_deepspeed(ds, batch_size=3, processes=4, max_grad_norm=None)
    assert ds == {"train_batch_size": 12, "train_micro_batch_size_per_gpu": 3,
                  "gradient_accumulation_steps": 1, "gradient_clipping": 0.0}
    assert "gradient_clipping: 1.0" in caplog.text and "no clipping" in caplog.text
    with pytest.raises(ConfigError, match="training.grad_accum"):
        configure_deepspeed({"gradient_accumulation_steps": 4}, 3, 4, 1.0)


def test_deepspeed_launch_without_deepspeed_says_how_to_install(monkeypatch) -> None:
    import importlib.util

    from tunesmith.errors import ConfigError
    from tunesmith.training.sharding import check_deepspeed_installed

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"tunesmith\[deepspeed\]"):
        check_deepspeed_installed()


def test_deepspeed_refusals_are_config_errors(monkeypatch) -> None:
    from tunesmith.errors import ConfigError
    from tunesmith.training.sharding import deepspeed_config_errors

    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(ConfigError, match=r"^the DeepSpeed config: stage Input should be"), \
            deepspeed_config_errors():
        raise ValueError("stage\n  Input should be 0, 1, 2 or 3")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "false")
    with pytest.raises(ValueError, match="not DeepSpeed"), deepspeed_config_errors():
        raise ValueError("not DeepSpeed")  # other launches: untouched
