"""Run orchestration: data -> train -> evaluate -> export, in one run directory.

This is the one module besides `cli/` that spans rooms; each step hands the next plain data.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from tunesmith.config import RunConfig
from tunesmith.data.loading import load_conversations, write_rejects
from tunesmith.data.records import Conversation, Reject
from tunesmith.data.shapes import RowMapping
from tunesmith.data.splitting import split_conversations
from tunesmith.errors import CheckpointError, ConfigError, DataError, DataFileNotFound
from tunesmith.evaluation.benchmarks import read_multiple_choice
from tunesmith.evaluation.endpoint import ChatEndpoint
from tunesmith.evaluation.eval_json import conclude, write_eval_json
from tunesmith.evaluation.runner import (
    EvalCase,
    cases_from,
    comparison_table,
    select_cases,
    warn_long_prompts,
    write_predictions,
)
from tunesmith.evaluation.scoring import Contract
from tunesmith.evaluation.suite import ModelSource, SuiteInputs, evaluate_sources
from tunesmith.export.writers import (
    checkpoint_origin,
    export_adapter,
    export_merged,
    merge_and_check,
    training_origin,
)
from tunesmith.formatting.chat import ChatFormatter, EncodedExample
from tunesmith.modeling.adapters import LoraSettings
from tunesmith.modeling.loading import cache_root, check_model_name, load_model, load_tokenizer
from tunesmith.modeling.quantization import QuantSettings
from tunesmith.modeling.tokens import AddedTokens, add_special_tokens, add_tokens_to_model
from tunesmith.rundir import (
    init_run_dir,
    is_main_process,
    sha256_file,
    world_size,
    write_json,
)
from tunesmith.tokenization.cache import (
    load_tokenized,
    save_tokenized,
    tokenized_key,
    tokenizer_fingerprint,
)
from tunesmith.tokenization.examples import TokenizeResult, tokenize_conversations
from tunesmith.training.checkpoint import (
    STATE_FILE,
    best_checkpoint,
    check_fingerprint,
    check_resumable,
    latest_checkpoint,
    read_weights,
)
from tunesmith.training.loop import TrainInputs, TrainResult, train
from tunesmith.training.methods import Method, build_method

logger = logging.getLogger(__name__)


@dataclass
class PreparedData:
    """Encoded training and held-out examples plus the evaluation cases."""

    formatter: ChatFormatter
    train: list[EncodedExample]
    eval: list[EncodedExample]
    cases: list[EvalCase]
    counts: dict[str, Any] = field(default_factory=dict)
    train_conversations: list[Conversation] = field(default_factory=list)


def _mapping(config: RunConfig) -> RowMapping | None:
    if not config.data.mapping:
        return None
    allowed = set(RowMapping.__dataclass_fields__)
    unknown = sorted(set(config.data.mapping) - allowed)
    if unknown:
        raise ConfigError([f"data.mapping.{k}: unknown key (expected one of "
                           f"{', '.join(sorted(allowed))})" for k in unknown])
    return RowMapping(**config.data.mapping)


def _load(files: list[str], config: RunConfig, rejects: list[Reject]) -> list[Conversation]:
    result = load_conversations(files, config.data.format, _mapping(config),
                                config.data.on_bad_row)
    logger.info("%s: %s", ", ".join(Path(f).name for f in files), result.summary())
    rejects.extend(result.rejects)
    return result.conversations


def _split(convs: list[Conversation], fraction: float, seed: int) -> tuple[list, list]:
    """(train, eval) by prompt group, as `data clean --eval-fraction` splits."""
    return split_conversations(convs, fraction, seed)


def prepare_data(config: RunConfig, tokenizer: Any, run_dir: Path) -> PreparedData:
    """Read, split, render and tokenize; write every dropped row to data/rejects.jsonl."""
    if not config.data.train:
        raise ConfigError(["data.train: name at least one training file"])
    rejects: list[Reject] = []
    train_convs = _load(config.data.train, config, rejects)
    if config.data.eval:
        eval_convs = _load(config.data.eval, config, rejects)
    else:
        train_convs, eval_convs = _split(train_convs, config.data.eval_fraction,
                                         config.data.seed)
    test_convs = _load(config.data.test, config, rejects) if config.data.test else eval_convs
    if config.data.test and not test_convs:
        raise DataError(f"no usable row in the test file(s) {', '.join(config.data.test)}; "
                        "fix them or leave data.test empty to evaluate on the eval split")
    formatter = ChatFormatter(tokenizer, config.data.system_prompt, config.data.end_of_turn,
                              config.data.train_on)
    train_tok, eval_tok = _tokenize(config, formatter, train_convs,
                                    eval_convs[: config.data.eval_max_rows])
    late = train_tok.rejects + eval_tok.rejects
    if late and config.data.on_bad_row == "fail":
        raise DataError(f"{late[0].describe()} (data.on_bad_row is 'fail'; fix the row, raise "
                        "data.max_length, or set data.on_bad_row: drop)")
    rejects += late
    data_dir = run_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    write_rejects(rejects, data_dir / "rejects.jsonl")
    counts = {"train_examples": len(train_tok.examples), "eval_examples": len(eval_tok.examples),
              "test_cases": len(test_convs), "rejected_rows": len(rejects),
              "truncated": train_tok.truncated + eval_tok.truncated,
              "supervised_tokens": sum(e.supervised for e in train_tok.examples),
              "tokens": sum(len(e.input_ids) for e in train_tok.examples)}
    write_json(data_dir / "summary.json", counts)
    if not train_tok.examples:
        if not rejects:
            raise DataError(f"no rows in {', '.join(config.data.train)}: the training data "
                            "is empty")
        reasons = "; ".join(r.describe() for r in rejects[:3])
        raise DataError(f"no usable training row: all {len(rejects)} rows were dropped "
                        f"(first: {reasons}); see {data_dir / 'rejects.jsonl'}")
    if rejects:
        logger.warning("%d row(s) dropped; reasons in %s", len(rejects),
                       data_dir / "rejects.jsonl")
    return PreparedData(formatter, train_tok.examples, eval_tok.examples,
                        cases_from(test_convs), counts, train_convs)


def _tokenize(config: RunConfig, formatter: ChatFormatter, train_convs: list[Conversation],
              eval_convs: list[Conversation]) -> tuple[TokenizeResult, TokenizeResult]:
    """Encode train and eval conversations, or load them from the tokenized-data cache."""
    # every data field changes tokens or which rows are encoded, except these two
    settings = {k: v for k, v in asdict(config.data).items() if k not in ("workers", "test")}
    settings["end_of_turn_id"] = formatter.end_of_turn_id
    settings["split"] = "prompt groups"  # tokenizations cached under the row-wise split differ
    inputs = [*config.data.train, *config.data.eval]
    key = tokenized_key(inputs, tokenizer_fingerprint(formatter.tokenizer), settings)
    root = cache_root(config.model.cache_dir) / "tokenized"
    cached = load_tokenized(root, key)
    if cached is not None:
        logger.info("tokenized data loaded from the cache (%s); tokenization skipped",
                    root / key)
        return cached
    encode = {"formatter": formatter, "max_length": config.data.max_length,
              "truncation": config.data.truncation, "workers": config.data.workers}
    train_tok = tokenize_conversations(train_convs, **encode)
    eval_tok = tokenize_conversations(eval_convs, **encode)
    save_tokenized(root, key, train_tok, eval_tok)
    return train_tok, eval_tok


def _method(config: RunConfig, added: AddedTokens | None = None) -> Method:
    """Build the method; the embedding rows of `added` tokens train."""
    m = config.method
    token_ids = list(added.ids) if added else []
    if any(name.split(".")[-1] == "embed_tokens" for name in m.modules_to_save):
        token_ids = []  # the whole embedding trains already
    settings = LoraSettings(m.r, m.alpha, m.dropout, m.target_modules, list(m.modules_to_save),
                            trainable_token_ids=token_ids, token_layout=added)
    return build_method(m.name, settings, m.quantization,
                        lambda: _fresh_model(config, full_precision=True)[0].model)


def _prepare(config: RunConfig, method: Method, model: Any) -> Any:
    """Attach the method with a seeded RNG so adapter weights start the same in every run."""
    from accelerate.utils import set_seed

    set_seed(config.training.seed)
    return method.prepare(model)


def _fresh_model(config: RunConfig, full_precision: bool = False) -> tuple[
        Any, AddedTokens | None]:
    """Load the base (quantized for qlora unless `full_precision`) with any added tokens."""
    m = config.method
    quant = None
    if m.name == "qlora" and not full_precision:
        quant = QuantSettings(m.quantization, m.double_quant)
    dtype = "float32" if full_precision else config.model.dtype
    loaded = load_model(config.model.name, config.model.cache_dir, dtype, quantization=quant)
    added = None
    if config.model.add_tokens:
        added = add_tokens_to_model(loaded.model, loaded.tokenizer, config.model.add_tokens)
    return loaded, added


def _tokenizer(config: RunConfig) -> Any:
    """Load the tokenizer alone, with the configured added tokens."""
    tokenizer = load_tokenizer(config.model.name, config.model.cache_dir)
    if config.model.add_tokens:
        add_special_tokens(tokenizer, config.model.add_tokens)
    return tokenizer


def _fingerprint(config: RunConfig) -> dict[str, Any]:
    """What a checkpoint must share with the config to be resumed, evaluated or exported."""
    m, t = config.method, config.training
    files = [*config.data.train, *config.data.eval]
    method = [m.name, m.r, m.alpha, m.target_modules, list(m.modules_to_save)]
    if m.name == "qlora":
        method += [m.quantization, m.double_quant]
    model: Any = config.model.name
    if config.model.add_tokens:
        model = [config.model.name, list(config.model.add_tokens)]
    batch: list[Any] = [t.batch_size, t.grad_accum, t.seed]
    if t.batch_tokens:  # the budget cut depends on packing; unset, old fingerprints still match
        batch += [t.batch_tokens, t.packing]
    return {"method": method, "model": model, "batch": batch,
            "data": {Path(f).name: sha256_file(Path(f)) for f in files if Path(f).exists()}}


def _trained_checkpoint(config: RunConfig, run_dir: Path) -> Path:
    """The run's best (with load_best) or last checkpoint, if it fits the config's model."""
    best = best_checkpoint(run_dir / "checkpoints") if config.training.load_best else None
    last = best or latest_checkpoint(run_dir / "checkpoints")
    if last is None:
        raise CheckpointError(f"{run_dir}: no checkpoint to evaluate or export; run "
                              "`tunesmith train` first")
    saved = json.loads((last / STATE_FILE).read_text()).get("fingerprint")
    # the model is rebuilt from the method and base alone: batch and data settings may differ
    check_fingerprint(last, saved, _fingerprint(config), keys=("method", "model"))
    return last


def _trained_model(config: RunConfig, run_dir: Path) -> tuple[Any, Any, Method]:
    """Rebuild the trained model from the run's best (with load_best) or last checkpoint."""
    last = _trained_checkpoint(config, run_dir)
    weights = read_weights(last)
    loaded, added = _fresh_model(config)
    method = _method(config, added)
    model = _prepare(config, method, loaded.model)
    try:
        method.load_trainable_state(model, weights)
    except (KeyError, RuntimeError) as err:
        raise CheckpointError(f"{last}: its weights do not fit this model ({err}); use the "
                              "config it was trained with") from None
    return model, loaded.tokenizer, method


@dataclass
class RunOutcome:
    """What a run produced, for the CLI summary."""

    run_dir: Path
    data: dict[str, Any] = field(default_factory=dict)
    training: TrainResult | None = None
    scores: list[Any] = field(default_factory=list)
    exports: dict[str, str] = field(default_factory=dict)
    export_origin: dict[str, Any] = field(default_factory=dict)  # checkpoint and step
    merge_max_abs_diff: float | None = None
    targets: list[Any] = field(default_factory=list)


def run_train(config: RunConfig, resume: bool = False, progress: bool = True) -> tuple[
        RunOutcome, Any, Any, Method, PreparedData]:
    """Prepare data and train; return the outcome and the live model for later steps."""
    missing = [f for f in [*config.data.train, *config.data.eval, *config.data.test]
               if not Path(f).exists()]
    if missing:
        raise DataFileNotFound(f"{missing[0]}: no such data file; check the path in "
                               "data.train/eval/test (relative paths start at the current "
                               "folder)")
    # a refused run must leave the earlier run's records as they were
    check_resumable(Path(config.output_dir), resume, _fingerprint(config), world_size())
    run_dir = init_run_dir(config)
    # Data problems stop the run before the (slow) model load.
    tokenizer = _tokenizer(config)
    data = prepare_data(config, tokenizer, run_dir)
    loaded, added = _fresh_model(config)
    method = _method(config, added)
    model = _prepare(config, method, loaded.model)
    inputs = TrainInputs(model, method, data.train, data.eval, loaded.tokenizer.pad_token_id,
                         run_dir, resume=resume, progress=progress,
                         fingerprint=_fingerprint(config), max_length=config.data.max_length)
    result = train(inputs, config.training)
    outcome = RunOutcome(run_dir, data.counts, result)
    _write_summary(outcome)
    return outcome, model, loaded.tokenizer, method, data


def run_eval(config: RunConfig, outcome: RunOutcome, model: Any, data: PreparedData) -> None:
    """Score the fine-tuned model (and the base, if asked) on the same prompts."""
    live = (model, data.formatter.tokenizer)
    specs = config.evaluation.models or (["base", "run"] if config.evaluation.compare_base
                                         else ["run"])
    sources = [_source(spec, config, outcome.run_dir, live) for spec in specs]
    _evaluate(config, outcome, sources, data)


def _source(spec: str, config: RunConfig, run_dir: Path,
            live: tuple[Any, Any] | None = None) -> ModelSource:
    """A model to evaluate: base, run (the fine-tuned model), a model dir, or an endpoint."""
    if spec.startswith("openai:"):
        endpoint = ChatEndpoint.parse(spec)
        return ModelSource(f"endpoint:{endpoint.model}", spec, endpoint=endpoint)
    if spec == "run":
        if live is not None:
            return ModelSource("fine_tuned", f"{run_dir} (trained model)", loaded=live)

        def load_run() -> tuple[Any, Any]:
            model, tokenizer, method = _trained_model(config, run_dir)
            return method.merged(model), tokenizer

        return ModelSource("fine_tuned", f"{run_dir} (last checkpoint)", load=load_run)
    name = config.model.name if spec == "base" else spec
    label = "base" if spec == "base" else Path(spec).name or spec

    def load_named() -> tuple[Any, Any]:
        loaded = load_model(name, config.model.cache_dir, config.model.dtype)
        return loaded.model, loaded.tokenizer

    return ModelSource(label, name, load=load_named)


def _check_source(spec: str, config: RunConfig, run_dir: Path) -> None:
    """Refuse a model to evaluate that cannot be found: the run's checkpoint or a path."""
    if spec == "run":
        _trained_checkpoint(config, run_dir)
    elif not spec.startswith("openai:"):
        check_model_name(config.model.name if spec == "base" else spec)


def _evaluate(config: RunConfig, outcome: RunOutcome, sources: list[ModelSource],
              data: PreparedData) -> None:
    cfg = config.evaluation
    cases = select_cases(data.cases, cfg.limit, cfg.limit_rows)
    if not cases:
        logger.warning("no evaluation cases; skipping generation metrics")
        return
    warn_long_prompts(cases, data.formatter, config.data.max_length)
    settings = {"system_prompt": config.data.system_prompt,
                "end_of_turn": config.data.end_of_turn, "train_on": config.data.train_on}
    forgetting = {Path(f).stem: read_multiple_choice(f)[: cfg.forgetting_limit]
                  for f in cfg.forgetting_sets}
    inputs = SuiteInputs(cases, settings, Contract.from_objective(config.objective), data.eval,
                         data.train_conversations, forgetting)
    results = evaluate_sources(sources, inputs, cfg)
    record, payload = conclude(cases, results, config.objective, cfg.bootstrap_samples)
    eval_dir = outcome.run_dir / "eval"
    eval_dir.mkdir(parents=True, exist_ok=True)
    write_predictions(eval_dir / "predictions.jsonl", cases, results)  # type: ignore[arg-type]
    write_eval_json(eval_dir / "eval.json", payload)
    if cfg.report:
        from tunesmith.reporting.eval_html import write_report

        write_report(eval_dir / "report.html", payload)
    (eval_dir / "table.txt").write_text(comparison_table(results) + "\n")  # type: ignore[arg-type]
    outcome.scores = results
    outcome.targets = record.targets
    _write_summary(outcome)


def run_export(config: RunConfig, outcome: RunOutcome, model: Any, tokenizer: Any,
               method: Method, formatter: ChatFormatter,
               origin: dict[str, Any] | None = None) -> Any:
    """Write the adapter and the verified merged model (each naming the training step it
    comes from, `origin`); return the merged model."""
    export_dir = outcome.run_dir / "export"
    origin = outcome.export_origin = origin or {}
    if config.export.adapter and export_adapter(model, method, export_dir / "adapter",
                                                tokenizer, origin):
        outcome.exports["adapter"] = str(export_dir / "adapter")
    probe = torch.tensor([formatter.prompt_ids(c.messages) for c in [_probe_case()]])
    merged, check = merge_and_check(model, method, probe)
    outcome.merge_max_abs_diff = check.max_abs_diff
    if config.export.merged:
        stop_ids = sorted({formatter.end_of_turn_id, tokenizer.eos_token_id} - {None})
        export_merged(merged, tokenizer, stop_ids, export_dir / "merged", origin=origin)
        outcome.exports["merged"] = str(export_dir / "merged")
    _write_summary(outcome)
    return merged


def _probe_case() -> EvalCase:
    from tunesmith.data.records import Message

    return EvalCase([Message("user", "Check that merged and adapter logits agree.")], "")


def run_all(config: RunConfig, resume: bool = False, progress: bool = True) -> RunOutcome:
    """data -> train -> export adapter and merge -> evaluate -> export merged."""
    outcome, model, tokenizer, method, data = run_train(config, resume, progress)
    if not is_main_process():
        return outcome  # other ranks only train; rank 0 evaluates and exports
    if outcome.training is not None and outcome.training.sharding:
        # rank 0 holds a slice of each weight: rebuild the model from the gathered checkpoint
        if outcome.training.sharding == "zero3":
            # alone now: transformers must not split the rebuilt model over the processes
            from transformers.integrations.deepspeed import unset_hf_deepspeed_config

            unset_hf_deepspeed_config()
        model, tokenizer, method = _trained_model(config, outcome.run_dir)
    merged = run_export(config, outcome, model, tokenizer, method, data.formatter,
                        training_origin(outcome.training))
    if config.evaluation.enabled:
        run_eval(config, outcome, merged, data)
    return outcome


def eval_only(config: RunConfig) -> RunOutcome:
    """Evaluate the configured models (default: base and the run's last checkpoint)."""
    run_dir = Path(config.output_dir)
    specs = config.evaluation.models or (["base", "run"] if config.evaluation.compare_base
                                         else ["run"])
    for spec in specs:  # every model must exist before any of them is loaded or scored
        _check_source(spec, config, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    sources = [_source(spec, config, run_dir) for spec in specs]
    tokenizer = _tokenizer(config)
    if config.data.train:
        data = prepare_data(config, tokenizer, run_dir)
    elif config.data.test:
        formatter = ChatFormatter(tokenizer, config.data.system_prompt,
                                  config.data.end_of_turn, config.data.train_on)
        cases = cases_from(_load(config.data.test, config, []))
        data = PreparedData(formatter, [], [], cases, {"test_cases": len(cases)})
    else:
        raise ConfigError(["data.test (or data.train): name the files to evaluate on"])
    outcome = RunOutcome(run_dir, data.counts if config.data.train else {})
    _evaluate(config, outcome, sources, data)
    return outcome


def export_only(config: RunConfig) -> RunOutcome:
    """Export the last checkpoint of an existing run directory."""
    run_dir = Path(config.output_dir)
    model, tokenizer, method = _trained_model(config, run_dir)
    formatter = ChatFormatter(tokenizer, config.data.system_prompt, config.data.end_of_turn,
                              config.data.train_on)
    outcome = RunOutcome(run_dir)
    run_export(config, outcome, model, tokenizer, method, formatter,
               checkpoint_origin(_trained_checkpoint(config, run_dir)))
    return outcome



def _write_summary(outcome: RunOutcome) -> None:
    training = outcome.training
    payload = {
        "data": outcome.data,
        "training": None if training is None else {
            "steps": training.steps, "seconds": round(training.seconds, 1),
            "cpu_seconds": round(training.cpu_seconds, 1),
            "tokens": training.tokens, "tokens_per_s": round(training.tokens_per_s, 1),
            "supervised_tokens": training.supervised_tokens, "final_loss": training.final_loss,
            "eval_losses": training.eval_losses, "skipped_batches": training.skipped_batches,
            "warnings": training.warnings, "resumed_from_step": training.resumed_from,
            "world_size": training.world_size, "stop_reason": training.stop_reason,
            "best_step": training.best_step, "best_eval_loss": training.best_eval_loss,
            "restored_best": training.restored_best, "sharding": training.sharding,
            **training.peak_memory},
        "evaluation": {s.name: s.metrics for s in outcome.scores},
        "exports": outcome.exports, "export_origin": outcome.export_origin,
        "merge_max_abs_logit_diff": outcome.merge_max_abs_diff,
    }
    summary = outcome.run_dir / "summary.json"
    if summary.exists():
        import json

        previous = json.loads(summary.read_text())
        payload = {k: v if v not in (None, {}, []) else previous.get(k) for k, v in
                   payload.items()}
    write_json(summary, payload)
