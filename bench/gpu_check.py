"""bf16 LoRA throughput and peak GPU memory: tunesmith's loop vs TRL + PEFT, both with SDPA.

Models are built from configs with random weights (no download): the SmolLM2-135M shape and
a ~1.2B Llama shape (Llama-3.2-1B dimensions). Data are random token rows whose first half is
the prompt (masked) and second half the supervised answer. Each side trains `--steps` steps
after `--warmup` steps; time per step comes from CUDA-synchronised step boundaries, memory
from torch.cuda.max_memory_allocated. The TRL side is skipped when trl is not installed.

    python bench/gpu_check.py [--out results.json]        # on one GPU, a few minutes
    python bench/gpu_check.py --dry-run                   # CPU: tiny models, 1 step each

Results are written to --out as JSON and printed as a table.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

SHAPES = {  # LlamaConfig arguments
    "smollm2-135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, vocab_size=49152,
                         tie_word_embeddings=True, rope_theta=100000.0),
    "llama-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                     num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
                     tie_word_embeddings=True, rope_theta=500000.0),
}
RUNS = {"smollm2-135m": (16, 512), "llama-1b": (8, 1024)}  # batch, sequence length
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, vocab_size=512)


def build_model(name: str, device: str, dtype: object, tiny: bool) -> object:
    """A random-weight Llama of the named shape, straight on `device` in `dtype`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = {**SHAPES[name], **(TINY if tiny else {})}
    config = LlamaConfig(**shape, max_position_embeddings=4096, attn_implementation="sdpa",
                         bos_token_id=0, eos_token_id=0, pad_token_id=0)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype)
    return model


def random_rows(n: int, length: int, vocab: int) -> list[tuple[list[int], list[int]]]:
    """(input ids, labels) with the first half masked like a prompt."""
    import torch

    g = torch.Generator().manual_seed(1)
    rows = []
    for _ in range(n):
        ids = torch.randint(1, vocab, (length,), generator=g).tolist()
        half = length // 2
        rows.append((ids, [-100] * half + ids[half:]))
    return rows


def tunesmith_side(name: str, args: argparse.Namespace, device: str, dtype: object) -> dict:
    """Train with tunesmith's loop; time per step from its metrics, memory from CUDA."""
    import torch

    from tunesmith.config.schema import TrainingConfig
    from tunesmith.formatting.chat import EncodedExample
    from tunesmith.modeling.adapters import LoraSettings
    from tunesmith.training.loop import TrainInputs, train
    from tunesmith.training.methods import LoraMethod

    batch, length = _batch(name, args)
    model = build_model(name, device, dtype, args.dry_run)
    steps = args.warmup + args.steps
    rows = random_rows(batch * steps, length, model.config.vocab_size)
    examples = [EncodedExample(ids, labels) for ids, labels in rows]
    method = LoraMethod(LoraSettings(r=16, alpha=32))
    model = method.prepare(model)
    cfg = TrainingConfig(max_steps=steps, batch_size=batch, lr=1e-4, eval_every=0,
                         save_every=0, warmup_ratio=0.0, epochs=1)
    _reset_memory(device)
    with tempfile.TemporaryDirectory() as out:
        train(TrainInputs(model, method, examples, [], 0, Path(out), progress=True), cfg)
        metrics = [json.loads(line) for line in (Path(out) / "metrics.jsonl").open()]
    first, last = metrics[args.warmup - 1] if args.warmup else None, metrics[-1]
    seconds = last["elapsed_s"] - (first["elapsed_s"] if first else 0.0)
    tokens = last["tokens"] - (first["tokens"] if first else 0)
    return _result("tunesmith", name, seconds, tokens, steps - args.warmup, device)


def trl_side(name: str, args: argparse.Namespace, device: str, dtype: object) -> dict:
    """Train the same rows with TRL's SFTTrainer and a PEFT LoRA config."""
    try:
        from trl import SFTConfig, SFTTrainer
    except ImportError:
        return {"side": "trl", "model": name, "skipped": "trl is not installed"}
    from datasets import Dataset
    from peft import LoraConfig

    batch, length = _batch(name, args)
    model = build_model(name, device, dtype, args.dry_run)
    steps = args.warmup + args.steps
    rows = random_rows(batch * steps, length, model.config.vocab_size)
    data = Dataset.from_dict({"input_ids": [r[0] for r in rows],
                              "completion_mask": [[int(x != -100) for x in r[1]] for r in rows]})
    clock = _step_clock(args.warmup, device)
    with tempfile.TemporaryDirectory() as out:
        config = SFTConfig(output_dir=out, max_steps=steps, per_device_train_batch_size=batch,
                           learning_rate=1e-4, lr_scheduler_type="constant", logging_steps=10**6,
                           save_strategy="no", report_to="none", max_length=length,
                           bf16=device == "cuda", use_cpu=device == "cpu",
                           completion_only_loss=True, dataloader_num_workers=0,
                           gradient_checkpointing=False)  # TRL turns it on by default;
        # tunesmith's default is off, and both sides must do the same work
        peft = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                          task_type="CAUSAL_LM")
        trainer = SFTTrainer(model=model, args=config, train_dataset=data, peft_config=peft,
                             processing_class=_pad_tokenizer(), callbacks=[clock])
        _reset_memory(device)
        trainer.train()
    result = _result("trl", name, clock.seconds, batch * length * (steps - args.warmup),
                     steps - args.warmup, device)
    base = trainer.model.get_base_model() if hasattr(trainer.model, "get_base_model") else None
    result["gradient_checkpointing"] = bool(getattr(base, "is_gradient_checkpointing", False))
    return result


def _step_clock(warmup: int, device: str) -> object:
    """A trainer callback timing the steps after the warm-up, synchronising the device."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.start: float | None = None
            self.seconds = 0.0

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            _sync(device)
            if state.global_step == warmup:
                self.start = time.perf_counter()
            elif self.start is not None:
                self.seconds = time.perf_counter() - self.start

    return StepClock()


def _pad_tokenizer() -> object:
    """A tokenizer that only knows padding: the rows are already token ids."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(WordLevel({"<pad>": 0, "<unk>": 1}, unk_token="<unk>"))
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>",
                                   eos_token="<pad>", unk_token="<unk>")


def _batch(name: str, args: argparse.Namespace) -> tuple[int, int]:
    return (2, 32) if args.dry_run else RUNS[name]


def _result(side: str, name: str, seconds: float, tokens: int, steps: int,
            device: str) -> dict:
    import torch

    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    return {"side": side, "model": name, "steps": steps,
            "seconds_per_step": round(seconds / max(steps, 1), 4),
            "tokens_per_s": round(tokens / seconds, 1) if seconds else None,
            "peak_memory_gib": None if peak is None else round(peak, 2)}


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _reset_memory(device: str) -> None:
    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def parameter_counts() -> dict[str, int]:
    """Full-size parameter counts, built on the meta device (no memory)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    counts = {}
    for name, shape in SHAPES.items():
        with torch.device("meta"):
            model = LlamaForCausalLM(LlamaConfig(**shape))
        counts[name] = sum(p.numel() for p in model.parameters())
    return counts


def main() -> int:
    """Run both sides on both models; print a table and write JSON."""
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny models, 1 step, on CPU")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--models", default=",".join(SHAPES))
    parser.add_argument("--out", default="gpu_check_results.json")
    args = parser.parse_args()
    if args.dry_run:
        args.steps, args.warmup = 1, 1
    device = "cuda" if torch.cuda.is_available() and not args.dry_run else "cpu"
    if device == "cpu" and not args.dry_run:
        print("no GPU found; use --dry-run to check the script on CPU", file=sys.stderr)
        return 2
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    results = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
               "dry_run": args.dry_run, "params": parameter_counts(), "runs": []}
    for name in args.models.split(","):
        for side in (tunesmith_side, trl_side):
            results["runs"].append(side(name, args, device, dtype))
            print(json.dumps(results["runs"][-1]), flush=True)
            _reset_memory(device)
    Path(args.out).write_text(json.dumps(results, indent=2))
    _print_table(results)
    return 0


def _print_table(results: dict) -> None:
    print(f"\ndevice: {results['device']}  params: {results['params']}")
    print(f"{'model':14} {'side':10} {'s/step':>8} {'tokens/s':>10} {'peak GiB':>9}")
    for r in results["runs"]:
        if "skipped" in r:
            print(f"{r['model']:14} {r['side']:10} skipped: {r['skipped']}")
            continue
        print(f"{r['model']:14} {r['side']:10} {r['seconds_per_step']:8.3f} "
              f"{r['tokens_per_s'] or 0:10.0f} {r['peak_memory_gib'] or float('nan'):9.2f}")


if __name__ == "__main__":
    sys.exit(main())
