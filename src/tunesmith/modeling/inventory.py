"""Count a model's parameters from its files, without loading the weights."""

from __future__ import annotations

import json
import math
import struct
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
