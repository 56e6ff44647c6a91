"""Worker processes of bench/train_throughput.py: one side of the comparison each.

    python bench/throughput_sides.py tunesmith|trl SPEC.json OUT.json

SPEC holds tunesmith config overrides, the number of steps and, for TRL, `padding_free`
or `replay` (feed tunesmith's batch plan and tokenized examples). OUT receives per-step
records (loss, end time, real, padded and supervised tokens, attention pairs), the
parameter counts of the FLOPs formula and the peak RSS of the process.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch

THREADS = 2
SCRATCH: list[Path] = []  # temporary folders of this worker


# ---------------------------------------------------------------- shared by the workers

def peak_rss_bytes() -> int:
    """Peak resident set size of this process (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def sequence_lengths(input_ids: torch.Tensor, attention_mask: Any, position_ids: Any) -> list[int]:
    """Real lengths of the sequences in a batch: rows by mask, packed rows by position resets."""
    if attention_mask is not None and attention_mask.dim() == 2:
        return [int(n) for n in attention_mask.sum(dim=1).tolist() if n]
    if position_ids is not None:
        lengths = []
        for row in position_ids.reshape(-1, position_ids.shape[-1]).tolist():
            starts = [i for i, p in enumerate(row) if p == 0] + [len(row)]
            lengths += [b - a for a, b in pairwise(starts) if b > a]
        return lengths
    return [input_ids.shape[-1]] * input_ids.shape[0]


class ForwardRecorder:
    """Record the real tokens and attention pairs of every decoder forward (one per step),
    and the process's peak RSS so far (so a row's peak can be read after any step)."""

    def __init__(self, model: Any) -> None:
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.calls: list[dict[str, int]] = []
        base.get_decoder().register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module: Any, args: tuple, kwargs: dict) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        lengths = sequence_lengths(ids, kwargs.get("attention_mask"), kwargs.get("position_ids"))
        self.calls.append({"tokens": sum(lengths), "padded": int(ids.numel()),
                           "pairs": sum(n * (n + 1) // 2 for n in lengths),
                           "peak_before": peak_rss_bytes()})


def model_shape(model: Any) -> dict[str, int]:
    """Parameter counts that enter the FLOPs formula (see the module docstring)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    cfg = base.config
    linear = lora = 0
    for name, param in base.get_decoder().named_parameters():
        if "lora_" in name:
            lora += param.numel()
        elif param.dim() == 2 and "embed" not in name:
            linear += param.numel()
    head = base.get_output_embeddings().weight
    d_attn = cfg.num_attention_heads * getattr(cfg, "head_dim", cfg.hidden_size //
                                               cfg.num_attention_heads)
    return {"linear": linear, "lora": lora, "head": head.numel(),
            "layers": cfg.num_hidden_layers, "d_attn": d_attn,
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)}


def set_threads() -> None:
    torch.set_num_threads(THREADS)


def write_result(path: str, result: dict[str, Any]) -> None:
    result["peak_rss_bytes"] = peak_rss_bytes()
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(path)


# ---------------------------------------------------------------- tunesmith side

def tunesmith_config(spec: dict[str, Any], out_dir: Path) -> Any:
    """The tunesmith config of this bench: defaults + bench settings + user overrides."""
    from tunesmith.config.loading import load_config

    fixed = [f"output_dir={out_dir}", f"training.threads={THREADS}",
             "training.eval_every=0", "training.save_every=0", "training.grad_accum=1",
             "training.gradient_checkpointing=false", "model.dtype=float32",
             f"training.mixed_precision={'bf16' if spec.get('precision') == 'bf16' else 'no'}"]
    return load_config(None, [*spec["overrides"], *fixed, *spec.get("tunesmith_set", [])])


def tunesmith_data(spec: dict[str, Any], out_dir: Path) -> tuple[Any, Any, Any]:
    """Config, tokenizer and prepared data, as the pipeline prepares them."""
    from tunesmith.modeling.loading import load_tokenizer
    from tunesmith.pipeline import prepare_data

    config = tunesmith_config(spec, out_dir)
    tokenizer = load_tokenizer(config.model.name, config.model.cache_dir)
    return config, tokenizer, prepare_data(config, tokenizer, out_dir)


def tunesmith_model(config: Any) -> Any:
    """Load the model and attach the method with the seeded RNG, as the pipeline does."""
    from accelerate.utils import set_seed

    from tunesmith.modeling.adapters import LoraSettings
    from tunesmith.modeling.loading import load_model
    from tunesmith.training.methods import build_method

    m = config.method
    method = build_method(m.name, LoraSettings(m.r, m.alpha, m.dropout, m.target_modules,
                                               list(m.modules_to_save)))
    loaded = load_model(config.model.name, config.model.cache_dir, config.model.dtype)
    set_seed(config.training.seed)
    return method.prepare(loaded.model), method, loaded.tokenizer


def scratch(prefix: str) -> Path:
    """A temporary folder the worker's `main` removes at exit."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    SCRATCH.append(path)
    return path


def per_step(calls: list[dict[str, int]], steps: int) -> list[dict[str, int]]:
    """Sum the decoder calls of each step (one per step unless a loop splits its batch)."""
    if not steps or len(calls) % steps:
        raise RuntimeError(f"{len(calls)} decoder calls do not divide into {steps} steps")
    k = len(calls) // steps
    return [{key: (min if key == "peak_before" else sum)(c[key] for c in calls[i : i + k])
             for key in calls[i]} for i in range(0, len(calls), k)]


def run_tunesmith(spec: dict[str, Any]) -> dict[str, Any]:
    """Train `steps` optimizer steps with tunesmith's loop; return per-step records."""
    from tunesmith.training import loop

    set_threads()
    out_dir = scratch("bench-tunesmith-")
    config, _, data = tunesmith_data(spec, out_dir)
    config.training.max_steps = spec["steps"]
    model, method, tokenizer = tunesmith_model(config)
    recorder = ForwardRecorder(model)
    # progress=True: the loop writes metrics.jsonl only then (no bar without a terminal)
    inputs = loop.TrainInputs(model, method, data.train, [], tokenizer.pad_token_id, out_dir,
                              checkpoints=False)
    loop.train(inputs, config.training)
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "loss" in r]
    steps, sup_before = [], 0
    for row, call in zip(rows, per_step(recorder.calls, len(rows)), strict=True):
        steps.append({"loss": row["loss"], "end_s": row["elapsed_s"], **call,
                      "supervised": row["supervised_tokens"] - sup_before})
        sup_before = row["supervised_tokens"]
    forwards = len(recorder.calls)
    return {"steps": steps, "shape": model_shape(model), "forwards": forwards,
            "examples": len(data.train)}


# ---------------------------------------------------------------- TRL side

def trl_settings(config: Any) -> dict[str, Any]:
    """What the TRL side copies from tunesmith's config (plain data, for the spec file)."""
    from tunesmith.modeling.loading import resolve_model

    t, m = config.training, config.method
    targets = "all-linear" if m.target_modules in (["all-linear"], "all-linear") \
        else m.target_modules
    return {"model": resolve_model(config.model.name, config.model.cache_dir),
            "batch_size": t.batch_size, "lr": t.lr, "weight_decay": t.weight_decay,
            "schedule": t.schedule, "warmup_ratio": t.warmup_ratio,
            "max_grad_norm": t.max_grad_norm, "seed": t.seed,
            "max_length": config.data.max_length,
            "method": {"name": m.name, "r": m.r, "alpha": m.alpha, "dropout": m.dropout,
                       "targets": targets}}


def trl_rows(config: Any, data: Any) -> list[dict[str, Any]]:
    """The conversations tunesmith kept, as conversational prompt/completion rows."""
    kept = {str(e.ref) for e in data.train}
    rows = []
    for conv in data.train_conversations:
        if str(conv.ref) not in kept:
            continue
        msgs = [{"role": m.role, "content": m.content} for m in conv.messages]
        if config.data.system_prompt and msgs[0]["role"] != "system":
            msgs.insert(0, {"role": "system", "content": config.data.system_prompt})
        rows.append({"prompt": msgs[:-1], "completion": msgs[-1:]})
    return rows


def replay_inputs(config: Any, data: Any, steps: int) -> dict[str, Any]:
    """tunesmith's tokenized examples for its first `steps` steps, in order, and the batches."""
    from tunesmith.training.loop import Schedule

    schedule = Schedule([len(e.input_ids) for e in data.train], config.training, 1)
    order, plan = [], []
    for step in range(steps):
        for rows in schedule.micro_batches(step, 0):
            plan.append(list(range(len(order), len(order) + len(rows))))
            order += rows
    examples = [data.train[i] for i in order]
    return {"input_ids": [e.input_ids for e in examples], "plan": plan,
            "completion_mask": [[int(label != -100) for label in e.labels] for e in examples]}


def prepare_trl_inputs(spec: dict[str, Any]) -> dict[str, Any]:
    """Settings, prompt/completion rows and the replay batches for the TRL processes.

    Done in a process of its own so tunesmith's data preparation never counts in TRL's RSS.
    """
    out_dir = scratch("bench-prepare-")
    config, _, data = tunesmith_data(spec, out_dir)
    return {"settings": trl_settings(config), "rows": trl_rows(config, data),
            "replay": replay_inputs(config, data, spec.get("replay_steps", 0))}


def trl_config(settings: dict[str, Any], spec: dict[str, Any], out_dir: Path,
               total: int) -> Any:
    """SFTConfig matching tunesmith's optimizer, schedule and batch; fp32 (or bf16 autocast
    with --precision bf16), no checkpointing."""
    from trl import SFTConfig

    s = settings
    # padding-free without packing refuses max_length; the rows already fit it
    fitted = spec.get("padding_free") or spec.get("replay")
    return SFTConfig(
        output_dir=str(out_dir), per_device_train_batch_size=s["batch_size"],
        gradient_accumulation_steps=1, learning_rate=s["lr"], weight_decay=s["weight_decay"],
        lr_scheduler_type={"constant": "constant_with_warmup"}.get(s["schedule"],
                                                                   s["schedule"]),
        warmup_steps=round(s["warmup_ratio"] * total), max_steps=total,
        max_grad_norm=s["max_grad_norm"] or 0.0, optim="adamw_torch", seed=s["seed"],
        bf16=spec.get("precision") == "bf16", fp16=False, gradient_checkpointing=False,
        use_cpu=True,
        logging_steps=1, save_strategy="no", eval_strategy="no", report_to="none",
        disable_tqdm=True, dataloader_num_workers=0,
        max_length=None if fitted else s["max_length"],
        padding_free=bool(spec.get("padding_free")), completion_only_loss=True,
    )


def trainer_class() -> type:
    """SFTTrainer that records each step's loss, supervised tokens and end time."""
    from transformers import TrainerCallback
    from trl import SFTTrainer

    class Clock(TrainerCallback):
        def __init__(self, owner: Any) -> None:
            self.owner = owner

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.owner.started = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.owner.ends.append(time.perf_counter() - self.owner.started)
            if self.owner.stop_after and state.global_step >= self.owner.stop_after:
                control.should_training_stop = True

    class RecordingTrainer(SFTTrainer):
        def __init__(self, *args: Any, plan: list[list[int]] | None = None,
                     stop_after: int = 0, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.plan, self.stop_after = plan, stop_after
            self.losses: list[float] = []
            self.supervised: list[int] = []
            self.ends: list[float] = []
            self.add_callback(Clock(self))

        def compute_loss(self, model: Any, inputs: dict, return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            labels = inputs["labels"]
            self.supervised.append(int((labels[..., 1:] != -100).sum()))
            out = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            self.losses.append(float((out[0] if return_outputs else out).detach()))
            return out

        def get_train_dataloader(self) -> Any:
            if self.plan is None:
                return super().get_train_dataloader()
            from torch.utils.data import DataLoader

            # tunesmith's batches, in tunesmith's order (the dataset is laid out in plan order)
            loader = DataLoader(self.train_dataset.select_columns(["input_ids", "labels"]),
                                batch_sampler=self.plan, collate_fn=self.data_collator)
            return self.accelerator.prepare(loader)

    return RecordingTrainer


def trl_dataset(inputs: dict[str, Any], replay: bool) -> tuple[Any, Any]:
    """The training set of this TRL row, and tunesmith's batch plan when replaying."""
    from datasets import Dataset

    if not replay:
        return Dataset.from_list(inputs["rows"]), None
    batches = inputs["replay"]
    return Dataset.from_dict({"input_ids": batches["input_ids"],
                              "completion_mask": batches["completion_mask"]}), batches["plan"]


def trl_model(settings: dict[str, Any], replay: bool) -> tuple[Any, Any]:
    """The model, wrapped in PEFT beforehand with tunesmith's seed when replaying."""
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(settings["model"], dtype=torch.float32)
    m = settings["method"]
    if m["name"] == "full":
        return model, None
    peft_config = LoraConfig(r=m["r"], lora_alpha=m["alpha"], lora_dropout=m["dropout"],
                             target_modules=m["targets"], task_type="CAUSAL_LM",
                             use_rslora=m["name"] == "rslora", use_dora=m["name"] == "dora")
    if not replay:
        return model, peft_config  # as a user would: SFTTrainer wraps the model
    from accelerate.utils import set_seed
    from peft import get_peft_model

    set_seed(settings["seed"])  # tunesmith seeds the same way right before attaching
    return get_peft_model(model, peft_config), None


def run_trl(spec: dict[str, Any]) -> dict[str, Any]:
    """Train with TRL's SFTTrainer; `replay` feeds tunesmith's tokenized batches in order."""
    from tunesmith.modeling.loading import load_tokenizer

    set_threads()
    out_dir = scratch("bench-trl-")
    inputs = json.loads(Path(spec["trl_inputs"]).read_text())
    settings, replay = inputs["settings"], bool(spec.get("replay"))
    dataset, plan = trl_dataset(inputs, replay)
    del inputs  # the rows now live in the dataset
    model, peft_config = trl_model(settings, replay)
    total = spec.get("schedule_steps", spec["steps"])
    trainer = trainer_class()(
        model=model, args=trl_config(settings, spec, out_dir, total),
        train_dataset=dataset, processing_class=load_tokenizer(settings["model"]),
        peft_config=peft_config, plan=plan, stop_after=spec["steps"])
    recorder = ForwardRecorder(trainer.model)
    trainer.train()
    steps = [{"loss": loss, "end_s": end, "supervised": sup, **call} for loss, end, sup, call
             in zip(trainer.losses, trainer.ends, trainer.supervised,
                    per_step(recorder.calls, len(trainer.ends)), strict=True)]
    return {"steps": steps, "shape": model_shape(trainer.model),
            "forwards": len(recorder.calls), "examples": len(dataset)}


def main(role: str, spec_path: str, out_path: str) -> None:
    """Run one side (or prepare TRL's inputs) and write its result atomically."""
    import logging

    logging.basicConfig(level=logging.WARNING)
    spec = json.loads(Path(spec_path).read_text())
    try:
        if role == "prepare":
            tmp = Path(out_path).with_suffix(".tmp")
            tmp.write_text(json.dumps(prepare_trl_inputs(spec)))
            tmp.replace(out_path)
            return
        write_result(out_path, run_tunesmith(spec) if role == "tunesmith" else run_trl(spec))
    finally:
        for path in SCRATCH:
            shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
