"""Config sections as dataclasses. A field's `help` metadata is its documentation and the
`choices` metadata the allowed values; both are checked by `config.loading`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def opt(default: Any, doc: str, choices: tuple | None = None,
        minimum: float | None = None, maximum: float | None = None) -> Any:
    """A dataclass field with documentation and validation metadata."""
    meta = {"help": doc, "choices": choices, "minimum": minimum, "maximum": maximum}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class ModelConfig:
    name: str = opt("smollm2-135m-instruct", "model alias, local HF dir, .gguf file or hub id")
    cache_dir: str | None = opt(None, "where converted models are cached ($TUNESMITH_CACHE)")
    dtype: str = opt("float32", "weight and compute dtype; half precision is ~30x slower on "
                     "a CPU without native bf16/fp16", ("float32", "bfloat16", "float16"))
    add_tokens: list[str] = opt([], "new special tokens: added to the tokenizer, embeddings "
                                "grown (multiple of 64) and their rows trained beside LoRA")


@dataclass
class DataConfig:
    train: list[str] = opt([], "training files (JSONL, JSON, CSV, Parquet, Arrow) or saved "
                           "dataset folders")
    eval: list[str] = opt([], "held-out files for eval loss; empty = split from train")
    test: list[str] = opt([], "files for generation metrics; empty = the eval split")
    eval_fraction: float = opt(0.05, "share of train held out when data.eval is empty "
                               "(rows with the same prompt stay on one side)",
                               minimum=0.0, maximum=0.5)
    eval_max_rows: int = opt(500, "at most this many held-out rows for eval loss", minimum=1)
    format: str = opt("auto", "row shape", ("auto", "messages", "sharegpt", "alpaca",
                                            "prompt_completion", "text", "mapped"))
    mapping: dict[str, Any] = opt({}, "templates for tables: user, assistant, "
                                  "assistant_json, system, fields")
    system_prompt: str | None = opt(None, "system message added to rows that have none")
    end_of_turn: str | None = opt(None, "end-of-turn token; default: found from the template")
    train_on: str = opt("all", "which assistant turns to supervise", ("all", "last"))
    on_bad_row: str = opt("drop", "what a bad row does", ("drop", "fail"))
    max_length: int = opt(1024, "longest example in tokens", minimum=8)
    truncation: str = opt("drop", "what happens to longer rows", ("drop", "left", "right"))
    workers: int = opt(1, "processes for tokenization and the data check's per-row "
                       "features", minimum=1)
    seed: int = opt(0, "seed of the train/eval split")


@dataclass
class MethodConfig:
    name: str = opt("lora", "fine-tuning method", ("lora", "rslora", "dora", "qlora", "full"))
    quantization: str = opt("nf4", "qlora base weights: nf4 (bitsandbytes), int8 or int4 "
                            "(torchao); needs tunesmith[qlora]", ("nf4", "int8", "int4"))
    double_quant: bool = opt(False, "qlora nf4: also quantize the block scales (~0.4 bit "
                             "per weight less)")
    r: int = opt(16, "LoRA rank", minimum=1)
    alpha: int = opt(32, "LoRA alpha (scale = alpha / r)", minimum=1)
    dropout: float = opt(0.0, "LoRA dropout", minimum=0.0)
    target_modules: list[str] | str = opt("all-linear", "modules that get adapters")
    modules_to_save: list[str] = opt([], "modules trained in full beside LoRA")


@dataclass
class TrainingConfig:
    epochs: float = opt(1.0, "passes over the training data", minimum=0.01)
    max_steps: int | None = opt(None, "stop after this many optimizer steps (caps epochs)",
                                minimum=1)
    batch_size: int = opt(8, "examples per micro-batch per process", minimum=1)
    grad_accum: int = opt(1, "micro-batches per optimizer step", minimum=1)
    batch_tokens: int | None = opt(None, "token budget per micro-batch per process: as many "
                                   "examples as their summed lengths fit, at least one (a "
                                   "longer example trains alone); replaces batch_size, which "
                                   "then only sizes eval-loss batches; null = batch_size "
                                   "examples", minimum=8)
    lr: float = opt(2e-4, "peak learning rate", minimum=0.0)
    schedule: str = opt("cosine", "learning-rate schedule", ("cosine", "linear", "constant"))
    warmup_ratio: float = opt(0.03, "share of steps spent warming up", minimum=0.0,
                              maximum=1.0)
    weight_decay: float = opt(0.0, "AdamW weight decay", minimum=0.0)
    max_grad_norm: float | None = opt(1.0, "gradient clipping norm; null = off",
                                      minimum=0.0)
    eval_every: int = opt(100, "eval loss every N steps (0 = only at the end)", minimum=0)
    save_every: int = opt(100, "checkpoint every N steps (0 = only at the end)", minimum=0)
    keep_checkpoints: int = opt(2, "how many recent checkpoints to keep", minimum=1)
    seed: int = opt(0, "seed for weights, dropout and data order")
    threads: int | None = opt(None, "torch CPU threads; null = torch's default", minimum=1)
    gradient_checkpointing: bool = opt(False, "recompute activations to save memory")
    packing: bool = opt(True, "pack each micro-batch's examples padding-free into rows "
                        "(same examples and same update as padded batches)")
    pack_length: int | None = opt(None, "longest packed row in tokens; null = one row per "
                                  "micro-batch on SDPA attention (each example attends to "
                                  "itself only), data.max_length on other attention",
                                  minimum=8)
    fused_layers: bool = opt(True, "LoRA linear layers and SwiGLU MLPs as single autograd "
                             "functions (same result; fewer passes, less saved memory); "
                             "false = PEFT's and transformers' own forward")
    mixed_precision: str = opt("auto", "mixed precision: auto = bf16 where the GPU "
                               "supports it, else no; on CPU auto = no (float32), bf16 "
                               "honoured where the CPU computes it natively (AMX)",
                               ("auto", "no", "bf16", "fp16"))
    early_stopping_patience: int | None = opt(
        None, "stop after N evaluations without an eval-loss improvement; null = off",
        minimum=1)
    early_stopping_min_delta: float = opt(
        0.0, "smallest eval-loss drop that counts as an improvement", minimum=0.0)
    load_best: bool = opt(False, "restore the best eval-loss weights before evaluation/export")


@dataclass
class EvalConfig:
    enabled: bool = opt(True, "run generation metrics after training")
    compare_base: bool = opt(True, "also evaluate the base model")
    batch_size: int = opt(32, "prompts per generation batch", minimum=1)
    max_new_tokens: int = opt(64, "generation limit per answer", minimum=1)
    limit: int | None = opt(None, "evaluate only N test rows", minimum=1)
    limit_rows: str = opt("first", "which N rows: the first, or spread evenly over the file",
                          ("first", "spread"))
    models: list[str] = opt([], "models to compare: base, run, a model dir, or "
                            "openai:URL#MODEL; empty = base (if compare_base) and run")
    relevance: bool = opt(False, "embedding similarity, ROUGE-L and chrF (needs "
                          "tunesmith[eval]; loading the embedding model takes ~8 s)")
    forgetting_sets: list[str] = opt([], "multiple-choice JSONL files (query, choices, gold) "
                                     "scored before vs after")
    forgetting_limit: int | None = opt(None, "score only the first N rows of each set",
                                       minimum=1)
    memorisation_rows: int = opt(0, "training rows with sensitive data to probe (0 = off)",
                                 minimum=0)
    judge_url: str | None = opt(None, "OpenAI-compatible base URL of an LLM hallucination judge")
    judge_model: str | None = opt(None, "model name sent to the judge endpoint")
    bootstrap_samples: int = opt(1000, "bootstrap resamples for confidence intervals",
                                 minimum=10)
    report: bool = opt(True, "write eval/report.html next to eval/eval.json")


@dataclass
class ObjectiveConfig:
    task: str = opt("", "what the model should do, in one sentence (shown in the report)")
    output: str = opt("text", "output contract", ("text", "json", "labels", "regex"))
    json_schema: dict[str, Any] | str | None = opt(None, "JSON Schema (inline or a .json file)")
    labels: list[str] = opt([], "allowed labels for a classification task")
    labels_file: str | None = opt(None, "file of allowed labels: a JSON list or one per line")
    label_field: str | None = opt(None, "JSON field that holds the label, e.g. intent")
    label_first_word: bool = opt(False, "the label is the answer's first word, any case "
                                 "(e.g. 'Yes, because ...')")
    regex: str | None = opt(None, "pattern the whole answer must match")
    source: str = opt("none", "what answers must be grounded in (hallucination rate)",
                      ("none", "prompt", "reference", "prompt_and_reference"))
    targets: dict[str, Any] = opt({}, "metric: condition, e.g. accuracy: '>= 0.85'")
    gate_model: str | None = opt(None, "model the targets apply to; default: the last one")


@dataclass
class ExportConfig:
    adapter: bool = opt(True, "write the PEFT adapter directory")
    merged: bool = opt(True, "write a merged transformers model directory")


@dataclass
class AuditConfig:
    near_threshold: float = opt(0.7, "Jaccard similarity that makes two rows near duplicates",
                                minimum=0.0)
    embeddings: bool = opt(False, "cluster prompts with sentence embeddings in data check")
    presidio: bool = opt(False, "add Presidio's PII findings to the built-in detectors "
                         "(needs the pii extra)")
    presidio_language: str = opt("en", "language Presidio analyzes")
    presidio_model: str | None = opt(None, "installed spaCy model for Presidio; default "
                                     "<language>_core_web_lg, blank pipeline when missing")
    min_rows: int | None = opt(None, "fail the check below this many usable rows")
    max_rejected_rows: int | None = opt(None, "fail above this many unusable rows")
    max_duplicate_share: float | None = opt(None, "fail above this share of exact copies")
    max_near_duplicate_share: float | None = opt(None, "fail above this share of near copies")
    max_contradictions: int | None = opt(None, "fail above this many contradicting prompts")
    max_leaked_rows: int | None = opt(None, "fail above this many eval rows found in train")
    max_sensitive_rows: int | None = opt(None, "fail above this many rows with sensitive data")
    max_over_length_share: float | None = opt(None, "fail above this share over max_length")
    max_imbalance_ratio: float | None = opt(None, "fail above this largest/smallest label ratio")


@dataclass
class RunConfig:
    output_dir: str = opt("runs/latest", "run directory")
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
