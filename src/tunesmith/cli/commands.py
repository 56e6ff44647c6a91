"""The CLI verbs. Each docstring's first line is the verb's --help."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from tunesmith.config import load_config


def _config(args: argparse.Namespace) -> Any:
    return load_config(args.config, args.overrides)


def _locked(config: Any, create: bool = True) -> AbstractContextManager[None]:
    """The run directory's lock, held for the whole command: one command per directory."""
    from tunesmith.rundir import locked_run_dir

    return locked_run_dir(Path(config.output_dir), create)


def run(args: argparse.Namespace) -> int:
    """Prepare data, train, evaluate against the base model and export, in one go."""
    from tunesmith.evaluation.objective import enforce
    from tunesmith.pipeline import run_all

    config = _config(args)
    with _locked(config):
        outcome = run_all(config, resume=args.resume)
        _print_summary(outcome)
    enforce(outcome.targets)
    return 0


def train(args: argparse.Namespace) -> int:
    """Prepare data and train; checkpoints land in the run directory."""
    from tunesmith.pipeline import run_train

    config = _config(args)
    with _locked(config):
        outcome, *_ = run_train(config, resume=args.resume)
        _print_summary(outcome)
    return 0


def evaluate(args: argparse.Namespace) -> int:
    """Evaluate the run's last checkpoint (and the base model) on the test cases."""
    from tunesmith.evaluation.objective import enforce
    from tunesmith.pipeline import eval_only

    config = _config(args)
    # a missing run folder is made only once every model to score is found (eval_only)
    with _locked(config, create=False):
        outcome = eval_only(config)
        _print_summary(outcome)
    enforce(outcome.targets)
    return 0


def export(args: argparse.Namespace) -> int:
    """Write the adapter and a merged model from the run's last checkpoint."""
    from tunesmith.pipeline import export_only

    config = _config(args)
    with _locked(config, create=False):  # a missing run has nothing to export
        _print_summary(export_only(config))
    return 0


def estimate(args: argparse.Namespace) -> int:
    """Estimate peak memory, steps and time of a run before starting it."""
    import json

    from tunesmith.planning import describe, estimate_run

    result = estimate_run(_config(args), args.hardware, args.base_bits, args.processes,
                          args.sharding)
    print(json.dumps(result, indent=2) if args.json else describe(result))
    return 0


RUN_VERBS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": run, "train": train, "eval": evaluate, "export": export,
}


def data_preview(args: argparse.Namespace) -> int:
    """Print examples token by token with the supervised spans marked."""
    from tunesmith.config import RunConfig
    from tunesmith.data.loading import load_conversations
    from tunesmith.errors import ConfigError
    from tunesmith.formatting.chat import ChatFormatter
    from tunesmith.modeling.loading import load_tokenizer
    from tunesmith.pipeline import _mapping
    from tunesmith.reporting.preview import render_preview

    config = load_config(args.config) if args.config else RunConfig()
    files = [args.data] if args.data else config.data.train
    if not files:
        raise ConfigError(["name a data file or a --config with data.train"])
    if args.rows < 1 or args.start < 0:
        raise ConfigError(["--rows must be >= 1 and --start >= 0"])
    loaded = load_conversations(files, config.data.format, _mapping(config))
    tokenizer = load_tokenizer(args.model or config.model.name, config.model.cache_dir)
    formatter = ChatFormatter(tokenizer, config.data.system_prompt, config.data.end_of_turn,
                              config.data.train_on)
    color = sys.stdout.isatty()
    chosen = loaded.conversations[args.start : args.start + args.rows]
    for conv in chosen:
        print(render_preview(formatter, conv, color))
    print(f"{loaded.summary()}; showing {len(chosen)}")
    for reject in loaded.rejects[:10]:
        print(f"dropped {reject.describe()}")
    return 0 if loaded.conversations else 2


def add_data_verbs(subparsers: Any, add_common: Callable[[argparse.ArgumentParser], None]
                   ) -> None:
    """Register data verbs that live in other modules (check, clean) when available."""
    try:
        from tunesmith.cli import data_commands
    except ImportError:
        return
    data_commands.register(subparsers, add_common)


def _peak(memory: dict[str, float]) -> str:
    """", peak memory 2.95 GB RAM, 10.20 GB GPU" for the main process, or ""."""
    parts = [f"{memory[k]:.2f} GB {name}" for k, name in (("peak_rss_gb", "RAM"),
                                                        ("peak_gpu_gb", "GPU")) if k in memory]
    return f", peak memory {', '.join(parts)}" if parts else ""


def _print_summary(outcome: Any) -> None:
    from tunesmith.rundir import is_main_process

    if not is_main_process():
        return
    lines = [f"run directory: {outcome.run_dir}"]
    data = outcome.data
    if data:
        lines.append(f"data: {data.get('train_examples')} train / {data.get('eval_examples')} "
                     f"eval examples, {data.get('rejected_rows')} rows rejected "
                     f"(data/rejects.jsonl), {data.get('truncated')} truncated")
    result = outcome.training
    if result is not None:
        done = result.steps - result.resumed_from
        if done == 0:
            lines.append(f"training: already at step {result.steps}; nothing to train")
        else:
            took = (f"{result.seconds / 60:.1f} min" if result.seconds >= 60
                    else f"{result.seconds:.0f} s")
            lines.append(f"training: {done} steps in {took} (now at step "
                         f"{result.steps}), {result.tokens_per_s:.0f} tokens/s, final loss "
                         f"{result.final_loss:.4f}{_peak(result.peak_memory)}")
        if result.eval_losses:
            step, loss = result.eval_losses[-1]
            lines.append(f"eval loss at step {step}: {loss:.4f}")
        if result.best_step is not None:
            restored = "; weights restored from it" if result.restored_best else ""
            lines.append(f"stopped: {result.stop_reason.replace('_', ' ')}; best eval loss "
                         f"{result.best_eval_loss:.4f} at step {result.best_step}{restored}")
        lines += [f"warning: {w}" for w in result.warnings]
    if outcome.scores:
        from tunesmith.evaluation.runner import comparison_table

        lines.append(comparison_table(outcome.scores))
    for result in getattr(outcome, "targets", []):
        lines.append(result.line())
    if outcome.merge_max_abs_diff is not None:
        lines.append(f"merged vs adapter max |logit diff|: {outcome.merge_max_abs_diff:.2e}")
    for name, path in outcome.exports.items():
        lines.append(f"export {name}: {path}")
    print("\n".join(lines))
