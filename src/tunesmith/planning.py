"""The cost of a planned run before it starts: model shape, data tokens, hardware -> estimate.

Like `pipeline`, this module spans rooms: it reads the training file with the run's own
formatting and tokenizer, counts the model on the meta device and asks `training.cost`.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.config import RunConfig
from tunesmith.errors import ConfigError, DataError, DataFileNotFound
from tunesmith.training.cost import RunPlan, estimate
from tunesmith.training.hardware import hardware_profile
from tunesmith.training.schedule import epoch_budget_counts

logger = logging.getLogger(__name__)

SAMPLE_ROWS = 2000  # tokenize at most this many rows; totals scale by rows / sample
QUANTIZED_METHODS = {"qlora": 4}
QUANT_BITS = {"nf4": 4, "int4": 4, "int8": 8}  # bits per base weight by method.quantization
BUDGET_ROWS = 100_000  # most rows the estimate cuts into token budgets (~0.3 s an epoch)


@dataclass
class DataTotals:
    """Token totals of one epoch of the training data (scaled up from a sample if large)."""

    rows: int
    tokens: int
    supervised: int
    longest: int
    longest_supervised: int
    sampled_rows: int
    dropped_share: float
    lengths: list[int] = field(default_factory=list)  # tokens of each kept sampled example


def data_totals(config: RunConfig, tokenizer: Any, sample_rows: int = SAMPLE_ROWS) -> DataTotals:
    """Render and tokenize (a sample of) the training rows exactly as training will."""
    from tunesmith.data.loading import load_conversations
    from tunesmith.formatting.chat import ChatFormatter
    from tunesmith.pipeline import _mapping, _split
    from tunesmith.tokenization.examples import tokenize_conversations

    files = config.data.train
    if not files:
        raise ConfigError(["data.train: name the training file(s) to estimate from"])
    missing = [f for f in files if not Path(f).exists()]
    if missing:
        raise DataFileNotFound(f"{missing[0]}: no such data file; check data.train")
    convs = load_conversations(files, config.data.format, _mapping(config)).conversations
    if not config.data.eval and convs:  # the loop trains on what the eval split leaves
        convs, _ = _split(convs, config.data.eval_fraction, config.data.seed)
    if not convs:
        raise DataError(f"no usable row in {', '.join(files)}")
    sample = random.Random(0).sample(convs, sample_rows) if len(convs) > sample_rows else convs
    formatter = ChatFormatter(tokenizer, config.data.system_prompt, config.data.end_of_turn,
                              config.data.train_on)
    done = tokenize_conversations(sample, formatter, config.data.max_length,
                                  config.data.truncation)
    kept = done.examples or []
    scale = len(convs) / len(sample)
    return DataTotals(
        rows=round(len(kept) * scale), tokens=round(sum(len(e.input_ids) for e in kept) * scale),
        supervised=round(sum(e.supervised for e in kept) * scale),
        longest=max((len(e.input_ids) for e in kept), default=1),
        longest_supervised=max((e.supervised for e in kept), default=1),
        sampled_rows=len(sample), dropped_share=len(done.rejects) / len(sample),
        lengths=[len(e.input_ids) for e in kept])


def run_plan(config: RunConfig, data: DataTotals, base_bits: int | None = None,
             processes: int = 1, sharding: str = "ddp") -> RunPlan:
    """The estimate's view of the config; a qlora method implies a 4-bit base."""
    t, method = config.training, config.method.name
    quantization = config.method.quantization if method in QUANTIZED_METHODS else None
    bits = base_bits or (QUANT_BITS.get(quantization, 4) if quantization else None)
    return RunPlan(method="lora" if method == "qlora" else method, dtype=config.model.dtype,
                   base_bits=bits, quantization=quantization, batch_size=t.batch_size,
                   grad_accum=t.grad_accum, processes=processes, sharding=sharding,
                   epochs=t.epochs,
                   max_steps=t.max_steps, gradient_checkpointing=t.gradient_checkpointing,
                   rows=data.rows, tokens=data.tokens, supervised=data.supervised,
                   longest=data.longest, longest_supervised=data.longest_supervised,
                   batch_tokens=t.batch_tokens, mixed_precision=t.mixed_precision,
                   budget_batches=budget_batches(config, data) if t.batch_tokens else [])


def budget_batches(config: RunConfig, data: DataTotals) -> list[int]:
    """Budget micro-batches per epoch as the loop cuts them; empty without example lengths
    (the estimate then divides tokens by the budget).

    A sample is repeated up to the data's row count (at most BUDGET_ROWS, then scaled): a
    small sample cut on its own would leave relatively more budgets part-filled.
    """
    if not data.lengths:
        return []
    rows = min(max(data.rows, 1), BUDGET_ROWS)
    lengths = [data.lengths[i % len(data.lengths)] for i in range(rows)]
    counts = epoch_budget_counts(lengths, config.training)
    scale = max(data.rows, 1) / rows
    return counts if scale == 1 else [round(n * scale) for n in counts]


def estimate_run(config: RunConfig, hardware: str | None = None, base_bits: int | None = None,
                 processes: int = 1, sharding: str = "ddp") -> dict:
    """Estimate memory and time of `config` on `hardware` (None: this CPU)."""
    from tunesmith.modeling.inventory import arch_shape, load_tokenizer

    m = config.method
    shape = arch_shape(config.model.name, config.model.cache_dir, m.name, m.r,
                       m.target_modules, tuple(m.modules_to_save))
    data = data_totals(config, load_tokenizer(config.model.name, config.model.cache_dir))
    plan = run_plan(config, data, base_bits, processes, sharding)
    hw = hardware_profile(hardware, config.training.threads)
    result = estimate(shape, plan, hw)
    result["model"]["name"] = config.model.name
    result["run"]["method"] = m.name
    result["data"] = {"rows": data.rows, "tokens_per_epoch": data.tokens,
                      "supervised_tokens_per_epoch": data.supervised,
                      "longest_example": data.longest, "sampled_rows": data.sampled_rows,
                      "dropped_share": round(data.dropped_share, 4)}
    return result


def describe(result: dict) -> str:
    """The estimate as text for the terminal."""
    mem, time_, hw, data = result["memory"], result["time"], result["hardware"], result["data"]
    parts = [f"  {k[:-3].replace('_', ' '):18} {v:8.2f} GB" for k, v in mem.items()
             if k.endswith("_gb") and k not in ("peak_gb", "available_gb")]
    fits = "" if "fits" not in mem else (" (fits)" if mem["fits"] else
                                         f" (does NOT fit in {mem['available_gb']:.0f} GB)")
    return "\n".join([
        (f"model {result['model']['name']}: {result['model']['params'] / 1e6:,.1f}M params, "
        f"{result['model']['trainable_params'] / 1e6:,.2f}M trainable ({result['run']['method']})"),
        (f"data: {data['rows']:,} rows, {data['tokens_per_epoch']:,} tokens/epoch "
        f"({data['supervised_tokens_per_epoch']:,} supervised), longest {data['longest_example']}"),
        (f"hardware: {hw['name']}, {hw['peak_tflops'] * 1000:,.0f} GFLOPS peak x "
        f"{hw['efficiency']:.2f}"),
        "peak memory:", *parts, f"  {'total':18} {mem['peak_gb']:8.2f} GB{fits}",
        (f"steps: {time_['steps_per_epoch']:,}/epoch, {time_['total_steps']:,} in total; "
        f"{_per_step(time_['seconds_per_step'])}{_budget(result)}"),
        (f"time: {_clock(time_['seconds_per_epoch'])} per epoch, {_clock(time_['total_seconds'])}"
        f" in total ({time_['tokens_per_second']:,.0f} tokens/s)"),
        *(f"note: {note}" for note in result.get("notes", [])),
    ])


def _budget(result: dict) -> str:
    tokens, longest = result["run"].get("batch_tokens"), result["data"]["longest_example"]
    if not tokens:
        return ""
    if longest > tokens:  # such an example trains alone, in a micro-batch of its own
        return (f" (micro-batches of at most {tokens:,} tokens; examples up to {longest:,} "
                "tokens long train alone)")
    return f" (micro-batches of at most {tokens:,} tokens)"


def _per_step(seconds: float) -> str:
    """'1.93 s/step', or milliseconds for a fast device ('4.2 ms/step')."""
    return f"{seconds:.2f} s/step" if seconds >= 0.1 else f"{seconds * 1000:.2g} ms/step"


def _clock(seconds: float) -> str:
    if 0 < seconds < 1:
        return "under 1 s"
    seconds = math.ceil(seconds)
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
