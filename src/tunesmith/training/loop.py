"""The training loop: one loop on accelerate for every method.

Loss normalisation: every optimizer step divides the summed token loss by the number of
supervised tokens in the whole step (all micro-batches, all processes), so batch 4 x
accumulation 1, batch 1 x accumulation 4 and 2 processes x batch 2 give the same update.
"""

from __future__ import annotations

import json
import logging
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from tunesmith.config.schema import TrainingConfig
from tunesmith.errors import CheckpointError
from tunesmith.formatting.chat import IGNORE_INDEX, EncodedExample
from tunesmith.modeling.attention import restore_attention, use_varlen_attention
from tunesmith.modeling.fused_lora import fuse_lora_layers
from tunesmith.modeling.loss import SupervisedLoss, mean_token_loss
from tunesmith.modeling.precision import (
    keep_copies,
    launcher_precision_warning,
    release_copies,
    resolve_mixed_precision,
)
from tunesmith.modeling.rmsnorm import fuse_rmsnorms
from tunesmith.modeling.rotary import restore_rotary, use_fused_rotary
from tunesmith.modeling.swiglu import lean_swiglu_layers
from tunesmith.tokenization.batching import Batch, collate, pack_rows
from tunesmith.training.checkpoint import (
    STATE_FILE,
    LoopState,
    best_checkpoint,
    check_fingerprint,
    check_processes,
    check_resumable,
    load_checkpoint,
    prune_checkpoints,
    read_weights,
    save_best,
    save_checkpoint,
)
from tunesmith.training.methods import Method
from tunesmith.training.overtraining import overtraining_warning, settle_overtraining
from tunesmith.training.progress import Progress, logged_eval_losses, peak_memory, trim_metrics
from tunesmith.training.replicas import ddp_placement
from tunesmith.training.schedule import Schedule, schedule_for
from tunesmith.training.sharding import (
    ModelShards,
    accelerator_options,
    check_cpu_fsdp_launch,
    configure_deepspeed,
    cpu_fsdp_requested,
    deepspeed_config_errors,
    shard_on_cpu,
    sharding_of,
)

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What the loop did, for the run summary."""

    steps: int
    seconds: float
    tokens: int
    supervised_tokens: int
    final_loss: float | None
    eval_losses: list[tuple[int, float]] = field(default_factory=list)
    skipped_batches: int = 0
    warnings: list[str] = field(default_factory=list)
    resumed_from: int = 0
    world_size: int = 1
    cpu_seconds: float = 0.0
    stop_reason: str = "completed"
    best_step: int | None = None
    best_eval_loss: float | None = None
    restored_best: bool = False
    sharding: str | None = None  # "fsdp1", "fsdp2", "zero3": weights were split over processes
    overtraining: list[tuple[int, str]] = field(default_factory=list)  # (step, its warning)
    peak_memory: dict[str, float] = field(default_factory=dict)  # the main process's, in GB

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def _lr_scheduler(optimizer: Any, cfg: TrainingConfig, total: int) -> Any:
    from transformers import get_scheduler

    name = {"constant": "constant_with_warmup"}.get(cfg.schedule, cfg.schedule)
    warmup = round(cfg.warmup_ratio * total)
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total)


def _to(batch: Batch, device: torch.device | str) -> dict[str, torch.Tensor]:
    tensors = {"input_ids": batch.input_ids, "labels": batch.labels,
               "attention_mask": batch.attention_mask, "position_ids": batch.position_ids}
    return {k: v.to(device) for k, v in tensors.items() if v is not None}


def evaluate_loss(
    module: Any, examples: list[EncodedExample], pad_id: int, batch_size: int,
    accelerator: Any = None,
) -> float:
    """Mean token loss of held-out examples; each process scores its share.

    Every process runs the same number of batches (a short share ends with one that
    supervises nothing): a sharded model gathers its weights in every forward, together.
    """
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator \
        else (0, 1)
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    mine = [examples[i] for i in order[rank::world]]
    count = math.ceil(math.ceil(len(examples) / world) / batch_size)
    shares = [mine[s * batch_size : (s + 1) * batch_size] or [_silent(examples[0])]
              for s in range(count)]
    batches = (_to(collate(share, pad_id), "cpu") for share in shares)
    return mean_token_loss(module, batches, accelerator)


@dataclass
class TrainInputs:
    """Everything `train` needs besides the config."""

    model: Any
    method: Method
    train: list[EncodedExample]
    eval: list[EncodedExample]
    pad_id: int
    out_dir: Path
    resume: bool = False
    progress: bool = True
    fingerprint: dict[str, Any] = field(default_factory=dict)
    max_length: int | None = None  # data.max_length: the default packed row length
    checkpoints: bool = True  # False: save nothing (benchmarks measuring steps alone)


@dataclass
class _Session:
    """The live objects of one training run."""

    accelerator: Any
    module: Any
    optimizer: Any
    scheduler: Any
    schedule: Schedule
    total: int
    state: LoopState
    pack_length: int | None = None  # longest packed row; None = one row per micro-batch
    restore_attention: str | None = None  # implementation to put back after training
    shards: ModelShards | None = None  # how checkpoints read and load the trained weights


def _adamw(params: list[torch.nn.Parameter], cfg: TrainingConfig) -> torch.optim.AdamW:
    """AdamW with the fused kernel (one pass over all parameters) where torch has it: plain
    float32/bf16 tensors on CPU or CUDA; sharded (DTensor) parameters keep the foreach one."""
    fused = all(type(p.data) is torch.Tensor and p.device.type in ("cpu", "cuda")
                and p.dtype in (torch.float32, torch.bfloat16) for p in params)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay,
                             fused=fused or None)


def _forget_other_precision(mixed: str) -> None:
    """Let this run's Accelerator take `mixed` when an earlier run in the same process set
    another one: accelerate keeps one process-wide state and refuses a change. The
    distributed state (process group, ranks) is kept."""
    from accelerate.state import AcceleratorState

    current = AcceleratorState._shared_state.get("_mixed_precision")
    if current is not None and str(current) != mixed:
        AcceleratorState._reset_state()



def _start(inputs: TrainInputs, cfg: TrainingConfig) -> _Session:
    """Build optimizer, schedule and accelerator; restore the last checkpoint if resuming."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    set_seed(cfg.seed)
    check_cpu_fsdp_launch(on_cpu=not torch.cuda.is_available())
    mixed = resolve_mixed_precision(cfg.mixed_precision)
    if mixed != "no":
        logger.info("mixed precision %s: float32 weights and optimizer, %s matrix products",
                    mixed, mixed)
    _forget_other_precision(mixed)
    with deepspeed_config_errors():
        accelerator = Accelerator(mixed_precision=mixed, **accelerator_options())
    mismatch = launcher_precision_warning(cfg.mixed_precision, mixed)
    if mismatch and accelerator.is_main_process:
        logger.warning(mismatch)
    model = inputs.model
    inputs.out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
    if cfg.fused_layers:
        logger.debug("fused %d LoRA layers, %d MLPs and %d norms", fuse_lora_layers(model),
                     lean_swiglu_layers(model), fuse_rmsnorms(model))
    # Padding-free attention lets a packed row hold the whole micro-batch.
    previous = use_varlen_attention(model) if cfg.packing else None
    pack_length = cfg.pack_length or (None if previous else inputs.max_length)
    module = SupervisedLoss(model)
    if accelerator.distributed_type == "DEEPSPEED":
        configure_deepspeed(accelerator.state.deepspeed_plugin.deepspeed_config,
                            cfg.batch_size, accelerator.num_processes, cfg.max_grad_norm)
    cpu_fsdp = cpu_fsdp_requested(str(accelerator.distributed_type).split(".")[-1])
    if cpu_fsdp:
        shard_on_cpu(module, model)  # before the optimizer: FSDP2 replaces the parameters
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = _adamw(params, cfg)
    schedule = schedule_for([len(e.input_ids) for e in inputs.train], cfg,
                            accelerator.num_processes)
    total = schedule.total_steps()
    scheduler = _lr_scheduler(optimizer, cfg, total)
    if cpu_fsdp:
        optimizer = accelerator.prepare(optimizer)  # no DDP around the FSDP2 module
    else:
        place = ddp_placement(accelerator, module)
        with deepspeed_config_errors():
            module, optimizer = accelerator.prepare(module, optimizer, device_placement=place)
    module.train()
    sharding = sharding_of(module)
    keep_copies(model, sharding is None)  # bf16 copies of frozen weights: unsharded only
    shards = ModelShards(module, model, sharding, accelerator.is_main_process,
                         deepspeed=accelerator.distributed_type == "DEEPSPEED")
    state = _resume(inputs, cfg, accelerator, shards, optimizer, scheduler, total)
    return _Session(accelerator, module, optimizer, scheduler, schedule, total, state,
                    pack_length, previous, shards)


def _resume(inputs: TrainInputs, cfg: TrainingConfig, accelerator: Any, shards: ModelShards,
            optimizer: Any, scheduler: Any, total: int) -> LoopState:
    """Restore the last checkpoint when resuming (every process loads it); else a new state."""
    mixed = str(accelerator.mixed_precision)
    processes = accelerator.num_processes
    state = LoopState(fingerprint=inputs.fingerprint or None, mixed_precision=mixed,
                      processes=processes)
    last = check_resumable(inputs.out_dir, inputs.resume, inputs.fingerprint, processes)
    if inputs.resume and last is None:
        logger.warning("--resume: no checkpoint in %s; starting from step 0", inputs.out_dir)
    if last is None:
        if accelerator.is_main_process:  # rows of a run killed before its first checkpoint
            trim_metrics(inputs.out_dir / "metrics.jsonl", 0)
        return state
    state, weights = load_checkpoint(
        last, lambda saved: shards.load_optimizer_state(optimizer, saved), scheduler)
    check_fingerprint(last, state.fingerprint, inputs.fingerprint)
    if not state.eval_losses:  # a checkpoint from before they were kept in it
        state.eval_losses = logged_eval_losses(inputs.out_dir / "metrics.jsonl", state.step)
    check_processes(last, state.processes, processes)
    state.processes = processes
    if state.mixed_precision not in (None, mixed):
        logger.warning("%s was trained with mixed precision %s; the steps from %d on run in "
                       "%s", last.name, state.mixed_precision, state.step + 1, mixed)
    state.mixed_precision = mixed
    try:
        shards.load_trainable_state(inputs.method, weights)
    except (KeyError, RuntimeError) as err:
        raise CheckpointError(f"{last}: its weights do not fit this model ({err}); use "
                              "the config it was trained with") from None
    logger.info("resumed from %s (step %d of %d)", last.name, state.step, total)
    if state.step >= total:
        logger.info("already at step %d of %d; nothing to train", state.step, total)
    if accelerator.is_main_process:
        trim_metrics(inputs.out_dir / "metrics.jsonl", state.step)
    return state


def train(inputs: TrainInputs, cfg: TrainingConfig) -> TrainResult:
    """Train `inputs.model` in place; checkpoints go to `out_dir/checkpoints`."""
    run = _start(inputs, cfg)
    # the model code looks RoPE up in its module: swapped for this run only
    rotary = use_fused_rotary(inputs.model) if cfg.fused_layers else []
    try:
        return _train(run, inputs, cfg)
    finally:
        restore_attention(inputs.model, run.restore_attention)
        restore_rotary(rotary)
        release_copies(inputs.model)


def _train(run: _Session, inputs: TrainInputs, cfg: TrainingConfig) -> TrainResult:
    """The loop of `train` on a started session."""
    state, main = run.state, run.accelerator.is_main_process
    result = TrainResult(0, 0.0, 0, 0, None, resumed_from=state.step,
                         world_size=run.accelerator.num_processes, sharding=run.shards.kind)
    result.eval_losses = [(int(step), loss) for step, loss in state.eval_losses]
    progress = Progress(run.total, state.step, inputs.out_dir / "metrics.jsonl" if main
                        else None, inputs.progress and main)
    if cfg.early_stopping_patience and not inputs.eval:
        progress.warn("early stopping needs held-out examples for eval loss; it is off")
    started, tokens_at_start = time.perf_counter(), state.tokens
    cpu_started = time.process_time()  # CPU time of all threads: robust on a busy machine
    while state.step < run.total and state.stop_reason is None:
        lr = run.scheduler.get_last_lr()[0]  # the rate this step trains with
        loss = _optimizer_step(run, inputs, cfg)
        state.step += 1
        result.final_loss = loss
        row = _metrics_row(run, loss, lr, time.perf_counter() - started,
                           state.tokens - tokens_at_start, result.resumed_from)
        progress.record({**row, "cpu_s": round(time.process_time() - cpu_started, 2)})
        if _due(state.step, cfg.eval_every, run.total) and inputs.eval:
            _run_eval(run, inputs, cfg, result, progress)
            if _patience_spent(cfg, state) and state.step < run.total:
                state.stop_reason = "early_stopping"
                progress.info(_stop_message(cfg, state))
        if (_due(state.step, cfg.save_every, run.total) or state.stop_reason) \
                and inputs.checkpoints:
            _save(run, inputs, cfg)
        run.accelerator.wait_for_everyone()
    progress.close()
    result.seconds = time.perf_counter() - started
    result.cpu_seconds = time.process_time() - cpu_started
    result.tokens = state.tokens - tokens_at_start
    _finish(inputs, cfg, run, result, progress)
    result.peak_memory = peak_memory()  # after the last checkpoint's gather, too
    return result


def _save(run: _Session, inputs: TrainInputs, cfg: TrainingConfig) -> None:
    """Checkpoint: every process gathers when the model is sharded; the main one writes,
    the weights before the optimizer state is gathered (it never holds both whole)."""
    def weights() -> Any:
        return run.shards.trainable_state(inputs.method)

    def optimizer() -> Any:
        return run.shards.optimizer_state(run.optimizer)

    if not run.accelerator.is_main_process:
        weights(), optimizer()  # this process's part of each gather, in the same order
        return
    ckpt_dir = inputs.out_dir / "checkpoints"
    save_checkpoint(ckpt_dir, run.state, weights, optimizer, run.scheduler)
    prune_checkpoints(ckpt_dir, cfg.keep_checkpoints)


def _finish(inputs: TrainInputs, cfg: TrainingConfig, run: _Session, result: TrainResult,
            progress: Progress) -> None:
    """Fill the result from the loop state; restore the best weights if asked."""
    state = run.state
    result.steps = state.step
    result.supervised_tokens = state.supervised_tokens
    result.skipped_batches = state.skipped_batches
    result.stop_reason = state.stop_reason or "completed"
    result.best_step, result.best_eval_loss = state.best_step, state.best_eval_loss
    result.warnings = settle_overtraining(result.warnings, result.overtraining, state.best_step,
                                          state.best_eval_loss)
    best = best_checkpoint(inputs.out_dir / "checkpoints")
    if not cfg.load_best or best is None or state.best_step is None:
        return
    if json.loads((best / STATE_FILE).read_text()).get("step") != state.best_step:
        progress.warn(f"{best} does not hold step {state.best_step}; keeping the last weights")
        return
    if state.best_step != state.step:
        try:
            run.shards.load_trainable_state(inputs.method, read_weights(best))
        except (KeyError, RuntimeError) as err:
            raise CheckpointError(f"{best}: its weights do not fit this model ({err}); use "
                                  "the config it was trained with") from None
    result.restored_best = True
    progress.info(f"restored the best weights (step {state.best_step}, eval loss "
                  f"{state.best_eval_loss:.4f})")


def _metrics_row(run: _Session, loss: float, lr: float, elapsed: float, tokens: int,
                 resumed_from: int) -> dict[str, Any]:
    """One metrics.jsonl row; tokens/s and ETA count this process's run only."""
    state = run.state
    return {"step": state.step, "epoch": round(run.schedule.epoch_at(state.step), 4),
            "loss": loss,
            "lr": lr, "tokens": state.tokens,
            "supervised_tokens": state.supervised_tokens,
            "tokens_per_s": tokens / elapsed if elapsed else 0.0,
            "elapsed_s": round(elapsed, 4),
            "eta_s": elapsed / (state.step - resumed_from) * (run.total - state.step),
            **peak_memory()}



def _due(step: int, every: int, total: int) -> bool:
    return step == total or (every > 0 and step % every == 0)


def _collate(examples: list[EncodedExample], pad_id: int, cfg: TrainingConfig,
             pack_length: int | None) -> Batch:
    """One micro-batch: right-padded rows, or the same examples packed padding-free into
    rows of at most `pack_length` tokens (None: one row)."""
    if not cfg.packing:
        return collate(examples, pad_id)
    lengths = [len(e.input_ids) for e in examples]
    capacity = pack_length or sum(lengths)
    return pack_rows(examples, pad_id, max(capacity, max(lengths)))


def _silent(example: EncodedExample) -> EncodedExample:
    """A copy that supervises nothing, for a process whose share of a micro-batch is empty:
    it still runs forward and backward, so the gradient all-reduce finds every process."""
    return replace(example, labels=[IGNORE_INDEX] * len(example.labels))


def _optimizer_step(run: _Session, inputs: TrainInputs, cfg: TrainingConfig) -> float:
    """One optimizer step over this step's micro-batches; return the step's mean token loss."""
    module, optimizer, scheduler, state, accelerator = (
        run.module, run.optimizer, run.scheduler, run.state, run.accelerator)
    micro = [[inputs.train[i] for i in rows] or [_silent(inputs.train[0])]
             for rows in run.schedule.micro_batches(state.step, accelerator.process_index)]
    batches = [_collate(examples, inputs.pad_id, cfg, run.pack_length) for examples in micro]
    # supervised and trained tokens of every process, counted on the host: no device sync
    local = [sum(b.supervised for b in batches),
             sum(len(e.input_ids) for examples in micro for e in examples if e.supervised)]
    global_count, tokens = local if accelerator.num_processes == 1 else (int(n) for n in (
        accelerator.reduce(torch.tensor(local, dtype=torch.float64, device=accelerator.device),
                           reduction="sum").tolist()))
    if global_count == 0:
        state.skipped_batches += 1  # never logged as loss 0.0
        scheduler.step()
        return float("nan")
    # DDP averages gradients over processes, so scale by the world size to get a sum.
    scale = accelerator.num_processes / global_count
    summed = torch.zeros((), dtype=torch.float64, device=accelerator.device)
    for index, batch in enumerate(batches):
        last = index == len(batches) - 1
        context = accelerator.no_sync(module) if not last else nullcontext()
        accelerator.sync_gradients = last  # a DeepSpeed engine steps after the last only
        with context:
            loss, _ = module(**_to(batch, accelerator.device))
            accelerator.backward(loss * scale)
        summed += loss.detach().double()  # stays on the device until the step ends
    if cfg.max_grad_norm:
        accelerator.clip_grad_norm_(module.parameters(), cfg.max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    state.supervised_tokens += int(global_count)
    state.tokens += tokens
    total_loss = accelerator.reduce(summed, reduction="sum").item()  # the step's one sync
    return total_loss / global_count


def _run_eval(run: _Session, inputs: TrainInputs, cfg: TrainingConfig, result: TrainResult,
              progress: Progress) -> None:
    """Eval loss; keep the best weights, count the patience and warn of overtraining."""
    state, accelerator = run.state, run.accelerator
    value = evaluate_loss(run.module, inputs.eval, inputs.pad_id, cfg.batch_size * 2,
                          accelerator)
    result.eval_losses.append((state.step, value))
    state.eval_losses.append([state.step, value])
    progress.record({"step": state.step, "eval_loss": value})
    best = state.best_eval_loss
    if best is None or value < best - cfg.early_stopping_min_delta:
        state.best_eval_loss, state.best_step, state.evals_since_best = value, state.step, 0
        weights = run.shards.trainable_state(inputs.method) \
            if cfg.load_best or cfg.early_stopping_patience else None
        if weights is not None:
            save_best(inputs.out_dir / "checkpoints", state, weights)
    else:
        state.evals_since_best += 1
    message = overtraining_warning(result.eval_losses)
    if message:
        progress.warn(message)
        result.warnings.append(message)
        result.overtraining.append((state.step, message))


def _patience_spent(cfg: TrainingConfig, state: LoopState) -> bool:
    patience = cfg.early_stopping_patience
    return bool(patience) and state.evals_since_best >= patience


def _stop_message(cfg: TrainingConfig, state: LoopState) -> str:
    return (f"early stopping at step {state.step}: no eval-loss improvement of at least "
            f"{cfg.early_stopping_min_delta:g} in {cfg.early_stopping_patience} evaluations; "
            f"best eval loss {state.best_eval_loss:.4f} at step {state.best_step}")
