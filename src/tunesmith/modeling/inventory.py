"""Count a model's parameters from its files, without loading the weights."""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

from tunesmith.errors import ModelError
from tunesmith.modeling.loading import resolve_model

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def model_inventory(name: str, cache_dir: str | None = None, lora_r: int = 16) -> dict:
    """Parameters, layers, hidden size, vocabulary and LoRA parameters of rank `lora_r`."""
    source = Path(resolve_model(name, cache_dir))
    if not source.is_dir():
        raise ModelError(f"model {name!r} is not a local directory; the estimate needs its "
                         "config.json and safetensors files")
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    shapes = _tensor_shapes(source)
    lora = sum(lora_r * (shape[0] + shape[1]) for key, shape in shapes.items()
               if len(shape) == 2 and key.rsplit(".", 2)[-2] in LORA_TARGETS)
    return {
        "params": sum(math.prod(shape) for shape in shapes.values()),
        "layers": int(config.get("num_hidden_layers", 1)),
        "hidden": int(config.get("hidden_size", 1)),
        "vocab": int(config.get("vocab_size", 1)),
        "lora_params": lora,
    }


def _tensor_shapes(source: Path) -> dict[str, list[int]]:
    files = sorted(source.glob("*.safetensors"))
    if not files:
        raise ModelError(f"{source}: no .safetensors files to count parameters from")
    shapes: dict[str, list[int]] = {}
    for path in files:
        with path.open("rb") as handle:
            size = struct.unpack("<Q", handle.read(8))[0]
            header = json.loads(handle.read(size))
        shapes.update({k: v["shape"] for k, v in header.items() if k != "__metadata__"})
    return shapes


def load_tokenizer(name: str, cache_dir: str | None = None) -> object:
    """Only the tokenizer of a model (with its chat template); no weights are loaded."""
    from transformers import AutoTokenizer

    source = resolve_model(name, cache_dir)
    try:
        return AutoTokenizer.from_pretrained(source)
    except OSError as err:
        raise ModelError(f"cannot load the tokenizer of {name!r} from {source}: {err}") from None


@dataclass
class ArchShape:
    """A model's size and shape, counted on the meta device (no weights are read)."""

    params: int  # stored parameters (tied embeddings once)
    embedding_params: int  # input embeddings (a lookup: no compute per token)
    head_params: int  # output layer (compute only on supervised tokens)
    linear_params: int  # decoder linear weights: what a 4/8-bit base quantizes
    layers: int
    hidden: int
    intermediate: int
    kv_hidden: int  # key/value width per layer (heads x head dim)
    vocab: int
    heads: int
    tied: bool
    adapter_params: int = 0  # trainable parameters of the configured method
    adapted_modules: int = 0


def arch_shape(name: str, cache_dir: str | None, method: str = "lora", r: int = 16,
               targets: list[str] | str = "all-linear",
               modules_to_save: tuple[str, ...] = ()) -> ArchShape:
    """Count parameters of any transformers config: alias, local dir or cached hub id."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    source = resolve_model(name, cache_dir)
    try:
        config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot read the config of model {name!r} ({err}); give an alias, "
                         "a local model directory or a hub id already in the local cache") from None
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return _shape(model, config, method, r, targets, modules_to_save)


def _shape(model: object, config: object, method: str, r: int, targets: list[str] | str,
           modules_to_save: tuple[str, ...]) -> ArchShape:
    from torch import nn

    text = getattr(config, "get_text_config", lambda: config)()
    embed, head = model.get_input_embeddings(), model.get_output_embeddings()
    tied = head is not None and head.weight is embed.weight
    linears = {n: m for n, m in model.named_modules()
               if isinstance(m, nn.Linear) and m is not head}
    chosen = [m for n, m in linears.items() if _targeted(n, targets)]
    adapter = sum(r * (m.in_features + m.out_features) for m in chosen)
    if method == "dora":
        adapter += sum(m.out_features for m in chosen)  # one magnitude per output row
    saved = sum(p.numel() for n, m in model.named_modules() if n.rsplit(".", 1)[-1]
                in modules_to_save for p in m.parameters())
    heads = int(getattr(text, "num_attention_heads", 1))
    hidden = int(getattr(text, "hidden_size", 1))
    head_dim = int(getattr(text, "head_dim", None) or hidden // heads)
    return ArchShape(
        params=sum(p.numel() for p in model.parameters()),
        embedding_params=embed.weight.numel(),
        head_params=0 if head is None else head.weight.numel(),
        linear_params=sum(m.weight.numel() for m in linears.values()),
        layers=int(getattr(text, "num_hidden_layers", 1)), hidden=hidden,
        intermediate=int(getattr(text, "intermediate_size", 4 * hidden)),
        kv_hidden=int(getattr(text, "num_key_value_heads", heads)) * head_dim,
        vocab=int(getattr(text, "vocab_size", embed.weight.shape[0])), heads=heads, tied=tied,
        adapter_params=adapter + saved, adapted_modules=len(chosen))


def _targeted(name: str, targets: list[str] | str) -> bool:
    """PEFT's rule: all-linear, or a module whose last name part is listed."""
    wanted = [targets] if isinstance(targets, str) else targets
    if "all-linear" in wanted:
        return True
    return name.rsplit(".", 1)[-1] in wanted or name in wanted
