"""Memory and time of a training run, from the model's shape, the data and the hardware.

Memory is what the loop keeps alive at its peak: weights, AdamW moments and the runtime
(interpreter, libraries) always, plus the larger of the saved activations and logits of the
longest micro-batch (start of the backward pass) and the gradients (its end). Time is model
FLOPs over peak x efficiency, plus the optimizer update, which reads and writes memory rather than
computing. A quantized base on a CPU adds the memory traffic of expanding its weights to
float32 inside the matmuls (neither bitsandbytes nor torchao has a fused CPU training kernel).
Constants marked "fitted" were calibrated against measured runs (see
bench/estimate_accuracy.py and docs/results.md).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from tunesmith.modeling.inventory import ArchShape
from tunesmith.training.schedule import stream_steps

GB = 1e9
DTYPE_BYTES = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0}
# Bytes per weight of a quantized base: 4-bit NF4 with one fp32 scale per 64 weights plus
# double quantisation, and 8-bit with one scale per row (about 1 byte).
BASE_BITS_BYTES = {4: 0.53, 8: 1.02, 16: 2.0, 32: 4.0}
ADAMW_BYTES = 8.0  # two fp32 moments per trainable parameter
OPTIMIZER_TRAFFIC = 28.0  # bytes read+written per parameter by one AdamW update (fp32)
# Saved activations per token per layer, in units of the hidden size and intermediate size
# (norm inputs, q/k/v, attention output, gate/up products), plus the backward pass's
# temporaries and allocator slack. Fitted: a census of saved tensors counts about 7 x hidden
# + 3 x intermediate (LoRA) or 2 x intermediate (full: the down projection's input is
# recomputed) since the fused norms, rotary embeddings and attention function keep less.
ACT_HIDDEN = 11.0
ACT_INTERMEDIATE = 3.0
# The loss keeps one fp32 [rows, vocab] buffer per chunk (logits, then their gradient in
# place), its chunks capped at CHUNK_BYTES (tunesmith.modeling.loss).
LOGIT_CHUNK_BYTES = 64 << 20
# How a quantized base reaches a CPU matmul: (bytes stored per weight, expansions to float32
# per micro-batch). bitsandbytes' nf4 expands in the forward and again in the backward (it
# keeps only the codes); torchao's int8 and int4 (kept in int8 bytes on CPU) expand in the
# forward, and autograd keeps that float32 copy for the backward. Each expansion reads the
# stored bytes and writes 4; the matmul then reads the copy as plain LoRA reads its weight.
EXPANSIONS = {"nf4": (0.5, 2), "int8": (1.0, 1), "int4": (1.0, 1)}


@dataclass
class RunPlan:
    """The run as the estimate sees it: method, precision, batch and data totals."""

    method: str = "lora"
    dtype: str = "float32"
    base_bits: int | None = None  # 4 or 8 for a quantized frozen base
    quantization: str | None = None  # nf4, int8 or int4: how that base is stored
    batch_size: int = 8
    grad_accum: int = 1
    processes: int = 1
    sharding: str = "ddp"  # how several processes hold the model: "ddp" (replicas) or "fsdp"
    epochs: float = 1.0
    max_steps: int | None = None
    gradient_checkpointing: bool = False
    rows: int = 0  # training examples
    tokens: int = 0  # tokens per epoch
    supervised: int = 0  # supervised tokens per epoch
    longest: int = 1  # longest example: the padded length of the largest micro-batch
    longest_supervised: int = 1
    batch_tokens: int | None = None  # token budget per micro-batch instead of batch_size
    mixed_precision: str = "no"  # training.mixed_precision as configured
    # budget micro-batches (all processes) in each epoch, as the loop's schedule cuts them;
    # empty: estimated as tokens / batch_tokens
    budget_batches: list[int] = field(default_factory=list)


@dataclass
class Hardware:
    """A device: peak matmul throughput, memory bandwidth and the share reached in training."""

    name: str
    kind: str  # "cpu" or "gpu"
    peak_tflops: float
    bandwidth_gb_s: float
    efficiency: float
    memory_gb: float | None = None
    runtime_gb: float = 1.0
    note: str = ""


def trainable_params(shape: ArchShape, method: str) -> int:
    """Parameters the optimizer updates."""
    return shape.params if method == "full" else shape.adapter_params


def memory_split(shape: ArchShape, plan: RunPlan, hw: Hardware) -> dict[str, float]:
    """Peak memory by part, in GB; `peak_gb` counts activations or gradients, not both."""
    dtype = DTYPE_BYTES.get(plan.dtype, 4.0)
    trained = trainable_params(shape, plan.method)
    base = BASE_BITS_BYTES[plan.base_bits] if plan.base_bits else dtype
    weights = (shape.linear_params * base + (shape.params - shape.linear_params) * dtype
               + (trained * 4.0 if plan.method != "full" else 0.0))  # adapters stay fp32
    if kept_half_copies(plan, hw):
        # bf16 copies of the frozen linear weights and output head, kept for the run
        weights += (shape.linear_params + shape.head_params) * 2.0
    tokens = micro_tokens(plan)
    layers_kept = math.sqrt(shape.layers) if plan.gradient_checkpointing else shape.layers
    per_layer = ACT_HIDDEN * shape.hidden + ACT_INTERMEDIATE * shape.intermediate
    activations = tokens * layers_kept * per_layer * dtype
    supervised = max(plan.batch_tokens, plan.longest_supervised) if plan.batch_tokens \
        else plan.batch_size * plan.longest_supervised
    logits = min(supervised * shape.vocab * 4.0, LOGIT_CHUNK_BYTES)
    shards = sharded_over(plan)
    parts = {"weights": weights / shards, "gradients": trained * dtype / shards,
             "optimizer_states": trained * ADAMW_BYTES / shards, "activations": activations,
             "logits": logits, "runtime_overhead": hw.runtime_gb * GB}
    if shards > 1:  # FSDP: a unit's whole weights while it computes, the next one prefetched
        parts["gathered_weights"] = fsdp_units_bytes(shape, plan)
    elif plan.processes > 1:
        # DDP allocates its all-reduce buckets when it wraps the model and the gradients are
        # views into them (gradient_as_bucket_view): they stay alive for the whole run
        parts["gradient_buckets"] = trained * dtype
    split = {f"{k}_gb": round(v / GB, 6) for k, v in parts.items()}
    # backward frees each layer's activations as it writes that layer's gradients, and the
    # loop drops gradients after every step: the two peak at different moments
    grads = 0.0 if "gradient_buckets" in parts else parts["gradients"]
    transient = max(activations + logits, grads) + parts.get("gathered_weights", 0)
    steady = (parts["weights"] + parts["optimizer_states"] + parts["runtime_overhead"]
              + parts.get("gradient_buckets", 0.0))
    peak = steady + transient
    if shards > 1:
        # a checkpoint gathers the whole trained weights, writes them, then gathers the whole
        # AdamW moments, in the main process: in its RAM, which on a GPU is host memory
        # (offloaded), not the device's
        gather = trained * max(dtype, ADAMW_BYTES)
        split["checkpoint_gather_gb"] = round(gather / GB, 6)
        if hw.kind == "cpu":
            peak = max(peak, steady + gather)
    split["peak_gb"] = round(peak / GB, 6)
    return split


def sharded_over(plan: RunPlan) -> int:
    """How many processes split the weights, gradients and optimizer states (1: replicas)."""
    return plan.processes if plan.sharding == "fsdp" and plan.processes > 1 else 1


def fsdp_units_bytes(shape: ArchShape, plan: RunPlan) -> float:
    """Whole weights alive at once under FSDP: the root unit (embeddings, output head, final
    norm), which stays gathered, plus two decoder layers (the one computing and the next)."""
    dtype = DTYPE_BYTES.get(plan.dtype, 4.0)
    root = shape.embedding_params + (0 if shape.tied else shape.head_params)
    layer = (shape.params - root) / max(shape.layers, 1)
    return (root + 2 * layer) * dtype


def micro_tokens(plan: RunPlan) -> int:
    """Tokens of the largest micro-batch: [batch, longest] padded, or the token budget (an
    example longer than the budget trains alone)."""
    if plan.batch_tokens:
        return max(plan.batch_tokens, plan.longest)
    return plan.batch_size * plan.longest


def budget_counts(plan: RunPlan) -> list[int]:
    """Budget micro-batches per epoch: the schedule's counts, else tokens over the budget
    (a lower bound: a greedy cut leaves each budget a little short)."""
    if plan.budget_batches:
        return plan.budget_batches
    estimate = max(1, math.ceil(plan.tokens / (plan.batch_tokens or 1)))
    return [estimate] * max(1, math.ceil(plan.epochs))


def micro_examples(plan: RunPlan) -> float:
    """Mean examples per micro-batch of one process."""
    if not plan.batch_tokens:
        return float(plan.batch_size)
    counts = budget_counts(plan)
    return plan.rows * len(counts) / max(sum(counts), 1)


def step_flops(shape: ArchShape, plan: RunPlan) -> float:
    """Model FLOPs of one optimizer step (all micro-batches, all processes)."""
    per_step_examples = micro_examples(plan) * plan.grad_accum * plan.processes
    tokens = plan.tokens / max(plan.rows, 1) * per_step_examples
    supervised = plan.supervised / max(plan.rows, 1) * per_step_examples
    body = shape.params - shape.embedding_params - (0 if shape.tied else shape.head_params)
    mean_length = plan.tokens / max(plan.rows, 1)
    # forward: 2 FLOPs per weight, plus causal attention scores and mixing (2 x T x H per
    # layer on average); only supervised rows reach the output layer
    forward = tokens * (2.0 * body + 2.0 * shape.layers * shape.hidden * mean_length)
    forward += supervised * 2.0 * shape.head_params
    # backward: input gradients cost one forward, weight gradients of a trained base another;
    # gradient checkpointing repeats the forward once
    passes = (3.0 if plan.method == "full" else 2.0) + (1.0 if plan.gradient_checkpointing
                                                         else 0.0)
    return forward * passes


def dequant_passes(plan: RunPlan) -> int:
    """Expansions of each quantized weight per micro-batch; the recomputed forward of
    gradient checkpointing adds one."""
    if plan.quantization not in EXPANSIONS:
        return 0
    return EXPANSIONS[plan.quantization][1] + (1 if plan.gradient_checkpointing else 0)


def expansion_bytes(quantization: str) -> float:
    """Bytes one expansion of a weight moves: its stored bytes read, 4 float32 bytes written."""
    return EXPANSIONS[quantization][0] + 4.0


def dequant_seconds(shape: ArchShape, plan: RunPlan, hw: Hardware) -> float:
    """Seconds per optimizer step that a quantized base on a CPU spends expanding weights.

    Memory traffic per weight and pass that does not shrink with fewer tokens, priced at the
    measured copy bandwidth (a lower bound). GPUs have fused kernels: no such term.
    """
    passes = dequant_passes(plan)
    if not passes or hw.kind != "cpu":
        return 0.0
    weights = shape.linear_params * passes * plan.grad_accum  # per process
    return weights * expansion_bytes(plan.quantization or "") / (hw.bandwidth_gb_s * GB)


def step_seconds(shape: ArchShape, plan: RunPlan, hw: Hardware) -> float:
    """Compute time plus the memory-bound AdamW update and weight expansion."""
    compute = step_flops(shape, plan) / (hw.peak_tflops * 1e12 * hw.efficiency)
    update = trainable_params(shape, plan.method) * OPTIMIZER_TRAFFIC / (hw.bandwidth_gb_s * GB)
    return compute / plan.processes + update + dequant_seconds(shape, plan, hw)


def dequant_note(shape: ArchShape, plan: RunPlan, hw: Hardware) -> str | None:
    """Why a quantized base on a CPU costs extra time, or None when it does not."""
    extra = dequant_seconds(shape, plan, hw)
    if not extra:
        return None
    kind, passes = plan.quantization, dequant_passes(plan)
    why = ("bitsandbytes has no 4-bit training kernel for CPUs and expands again in the "
           "backward pass; int8 or int4 (torchao) expand once, plain lora never"
           if kind == "nf4" else "plain lora avoids it")
    return (f"{kind} on CPU: {shape.linear_params / 1e6:,.1f}M base weights are expanded "
            f"to float32 {passes}x per micro-batch: +{extra:.2f} s/step at least (memory "
            f"traffic); {why}")


def cpu_bf16(plan: RunPlan, hw: Hardware) -> bool:
    """True when the run trains under bf16 autocast on this CPU (native bf16 only)."""
    from tunesmith.modeling.precision import cpu_has_fast_half

    return hw.kind == "cpu" and plan.mixed_precision == "bf16" and cpu_has_fast_half("bfloat16")


def kept_half_copies(plan: RunPlan, hw: Hardware) -> bool:
    """True when a bf16 run on a CPU keeps bf16 copies of frozen float32 weights (LoRA on a
    float32, unquantized base; full fine-tuning casts its trained weights at each call)."""
    return (cpu_bf16(plan, hw) and plan.method != "full" and not plan.base_bits
            and plan.dtype == "float32")


def bf16_note(plan: RunPlan, hw: Hardware) -> str | None:
    """What the time estimate leaves out for bf16 on a CPU, or None."""
    if not cpu_bf16(plan, hw):
        return None
    kept = "; memory counts the bf16 copies of the frozen weights" \
        if kept_half_copies(plan, hw) else ""
    return ("bf16 on this CPU: the time assumes float32 products (a bf16 step measured "
            f"1.6-1.9x faster on a 2-vCPU Xeon with AMX){kept}")


def layout_note(plan: RunPlan) -> str | None:
    """What the memory of several processes assumes, or None for one process."""
    if plan.processes < 2:
        return None
    zero = "DeepSpeed ZeRO is not modelled (measured numbers: docs/distributed.md)"
    if sharded_over(plan) == 1:
        return ("memory is per process under DDP, which keeps the whole model and AdamW "
                "moments in every process, and the gradients in its all-reduce buckets for "
                f"the whole run (--sharding fsdp splits them); {zero}")
    return (f"memory is per process under FSDP: weights, gradients and AdamW moments split "
            f"{plan.processes} ways, plus whole units while they compute; each checkpoint "
            "gathers the trained weights, then their moments, in the main process's RAM "
            f"(host memory on GPUs); {zero}")


def schedule(plan: RunPlan) -> tuple[int, int]:
    """Optimizer steps per epoch and in total, as the training loop counts them."""
    if plan.batch_tokens:
        sizes = [math.ceil(n / plan.processes) for n in budget_counts(plan)]
        total = stream_steps(sizes, plan.epochs, plan.grad_accum, plan.max_steps)
        return max(1, math.ceil(sizes[0] / plan.grad_accum)), total
    micro = math.ceil(plan.rows / (plan.batch_size * plan.processes))
    per_epoch = max(1, math.ceil(micro / plan.grad_accum))
    total = math.ceil(plan.epochs * per_epoch)
    return per_epoch, min(total, plan.max_steps) if plan.max_steps else total


def estimate(shape: ArchShape, plan: RunPlan, hw: Hardware) -> dict:
    """The whole estimate as plain data (what `tunesmith estimate --json` prints)."""
    per_epoch, total = schedule(plan)
    seconds = step_seconds(shape, plan, hw)
    memory = memory_split(shape, plan, hw)
    if hw.memory_gb is not None:
        memory["available_gb"] = hw.memory_gb
        memory["fits"] = memory["peak_gb"] <= hw.memory_gb
    return {
        "model": {"params": shape.params, "trainable_params": trainable_params(shape,
                  plan.method), "layers": shape.layers, "hidden": shape.hidden,
                  "vocab": shape.vocab},
        "run": asdict(plan),
        "hardware": asdict(hw),
        "memory": memory,
        "time": {"flops_per_step": step_flops(shape, plan), "steps_per_epoch": per_epoch,
                 "total_steps": total, "seconds_per_step": round(seconds, 6),
                 "seconds_per_epoch": round(seconds * per_epoch, 3),
                 "total_seconds": round(seconds * total, 3),
                 "tokens_per_second": round(plan.tokens / max(per_epoch, 1) / seconds, 1),
                 "dequant_seconds_per_step": round(dequant_seconds(shape, plan, hw), 3)},
        "notes": [n for n in [dequant_note(shape, plan, hw), bf16_note(plan, hw),
                              layout_note(plan)] if n],
    }
