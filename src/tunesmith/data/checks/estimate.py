"""Training cost estimate from token counts, parameter counts and a measured throughput.

Reference measurement (2 CPU cores, AVX2, fp32, LoRA r=16 on all linear layers of
SmolLM2-135M, batch 8 x 256): 134 tokens/s and 6.8 GB peak RSS. Other models scale by
parameter count (compute per token is about 4N for LoRA, 6N for full fine-tuning).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

REFERENCE_PARAMS = 134_515_008
REFERENCE_TOKENS_PER_S = 134.0
REFERENCE_THREADS = 2
ACTIVATION_FLOATS = 32  # per hidden unit per layer per token, fitted to the reference RSS
LOGIT_COPIES = 3  # logits, their softmax and gradient, fp32
RUNTIME_BYTES = 0.4e9  # interpreter, torch and tokenizer
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass
class ModelShape:
    """What the estimate needs to know about a model."""

    params: int
    layers: int
    hidden: int
    vocab: int
    lora_params: int


@dataclass
class RunShape:
    """What the estimate needs to know about the planned run."""

    method: str = "lora"
    dtype: str = "float32"
    epochs: float = 1.0
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 1024
    threads: int = REFERENCE_THREADS
    gradient_checkpointing: bool = False


def estimate_training(tokens: int, rows: int, model: ModelShape, run: RunShape) -> dict:
    """Tokens per epoch, optimizer steps, wall time and peak memory, with the reasoning."""
    full = run.method == "full"
    speed = REFERENCE_TOKENS_PER_S * REFERENCE_PARAMS / model.params
    speed *= (4 / 6 if full else 1.0) * run.threads / REFERENCE_THREADS
    seconds = tokens * run.epochs / speed
    steps = math.ceil(rows / (run.batch_size * run.grad_accum)) * math.ceil(run.epochs)
    return {
        "tokens_per_epoch": tokens,
        "epochs": run.epochs,
        "optimizer_steps": steps,
        "tokens_per_second": round(speed, 1),
        "hours": round(seconds / 3600, 3),
        "peak_memory_gb": round(_peak_bytes(model, run) / 1e9, 2),
        "trainable_params": model.params if full else model.lora_params,
        "reasoning": (
            f"{tokens:,} tokens x {run.epochs:g} epochs at {speed:.0f} tokens/s, scaled from "
            f"{REFERENCE_TOKENS_PER_S:g} tokens/s measured for a {REFERENCE_PARAMS / 1e6:.0f}M "
            f"model ({'full' if full else 'LoRA'}, {run.threads} threads vs "
            f"{REFERENCE_THREADS}); memory = weights + optimizer state + activations of one "
            f"{run.batch_size} x {run.max_length} micro-batch"
        ),
    }


def _peak_bytes(model: ModelShape, run: RunShape) -> float:
    weights = model.params * DTYPE_BYTES.get(run.dtype, 4)
    trainable = model.params if run.method == "full" else model.lora_params
    optimizer = trainable * 16  # fp32 value, gradient and two AdamW moments
    tokens = run.batch_size * run.max_length
    layers = 1 if run.gradient_checkpointing else model.layers
    activations = tokens * layers * model.hidden * 4 * ACTIVATION_FLOATS
    logits = tokens * model.vocab * 4 * LOGIT_COPIES
    return weights + optimizer + activations + logits + RUNTIME_BYTES
