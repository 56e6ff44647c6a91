"""Pre-flight data audit: run every check on train (and eval) rows and build the report.

Rows stream: one pass (in `data.workers` processes) turns each row into compact features,
and one more pass reads back only the rows the report quotes or must compare exactly, so
memory grows with a few dozen bytes per row, not with the file. This module spans rooms on
purpose (data checks, the formatter's token counts, the model's parameter count), the way
`pipeline` does for training.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from tunesmith.config import RunConfig
from tunesmith.data.checks import balance, sensitive
from tunesmith.data.checks.extras import Extras, quality_section, row_extras, sensitive_section
from tunesmith.data.checks.features import ScanJob, chunked, numbered, scan
from tunesmith.data.checks.rows import RowNormaliser, first_row_mapping, full_text, prompt_text
from tunesmith.data.checks.size import size_advice
from tunesmith.data.checks.table import gather
from tunesmith.data.checks.textchecks import Side, TextChecks
from tunesmith.data.checks.thresholds import evaluate_thresholds
from tunesmith.data.shapes import RowMapping
from tunesmith.errors import DataError

logger = logging.getLogger(__name__)

REPORT_SCHEMA = "tunesmith.data-report"
REPORT_VERSION = 1
LIST_LIMIT = 50


@dataclass
class AuditOptions:
    """What to run beyond the always-on checks."""

    lengths: bool = True
    embeddings: bool = False
    progress: bool = True


def mapping_of(config: RunConfig) -> RowMapping | None:
    """The config's table mapping, or None to detect the shape."""
    if not config.data.mapping:
        return None
    allowed = set(RowMapping.__dataclass_fields__)
    unknown = sorted(set(config.data.mapping) - allowed)
    if unknown:
        raise DataError(f"data.mapping has unknown keys {unknown}; expected {sorted(allowed)}")
    return RowMapping(**config.data.mapping)


@dataclass
class Scanned:
    """One side after the streaming pass: its feature table and extras."""

    side: Side
    extras: Extras


def audit_data(train: list[str], eval_files: list[str], config: RunConfig,
               options: AuditOptions | None = None) -> dict[str, Any]:
    """Run the checks and return the report as plain JSON-ready data."""
    options = options or AuditOptions()
    started = time.perf_counter()
    timings: dict[str, float] = {}
    normalise = _normaliser(train, config)
    label_field = normalise.label_field
    counter = _token_counter(config) if options.lengths else None
    finder = _sensitive_finder(config)
    bands = ("full", "prompt", "key") if eval_files else ("full", "prompt")
    with _timer(timings, "scan"):
        ours = _scan(train, ScanJob(normalise, config.audit.near_threshold, row_extras(finder),
                                    counter, bands), config, options)
        other = _scan(eval_files, ScanJob(_normaliser(eval_files, config),
                                          config.audit.near_threshold, row_extras(finder),
                                          None, bands), config, options) if eval_files else None
    table = ours.side.table
    if not table.rows:
        raise DataError(f"{', '.join(train)}: no rows found; check the file is not empty")
    report: dict[str, Any] = {"schema": REPORT_SCHEMA, "version": REPORT_VERSION,
                              "inputs": {"train": train, "eval": eval_files}}
    report["lengths"] = _lengths(ours, config, options)
    report["schema_check"] = {"train": _schema_of(ours)} | (
        {"eval": _schema_of(other)} if other else {})
    report["quality"] = quality_section(ours.extras, table.refs)
    with _timer(timings, "compare"):
        checks = TextChecks(ours.side, other.side if other else None,
                            config.audit.near_threshold, label_field is not None).run()
    report |= {name: checks[name] for name in ("duplicates", "contradictions", "leakage")}
    report["sensitive"] = sensitive_section(ours.extras, table.refs)
    report["balance"] = _balance(ours, checks["answers"])
    with _timer(timings, "clusters"):
        report["clusters"] = _clusters(ours, other, options)
    _advice(report, ours, config)
    report["thresholds"] = evaluate_thresholds(report, config.audit)
    if not table.usable:  # nothing to train on fails the check whatever the config says
        report["thresholds"].append({"name": "usable_rows", "value": 0, "limit": 1,
                                     "passed": False})
    report["passed"] = all(t["passed"] for t in report["thresholds"])
    timings["total"] = time.perf_counter() - started
    report["timings_s"] = {k: round(v, 2) for k, v in timings.items()}
    return report


class _timer:
    """Record a step's wall seconds under its name and its CPU seconds under name_cpu."""

    def __init__(self, timings: dict[str, float], name: str) -> None:
        self.timings, self.name = timings, name

    def __enter__(self) -> None:
        self.start, self.cpu = time.perf_counter(), time.process_time()

    def __exit__(self, *_: object) -> None:
        self.timings[self.name] = time.perf_counter() - self.start
        self.timings[f"{self.name}_cpu"] = time.process_time() - self.cpu


def _scan(paths: list[str], job: ScanJob, config: RunConfig,
          options: AuditOptions) -> Scanned:
    """Stream the files once into features, in `data.workers` processes."""
    fixes: list[str] = []
    warnings: list[str] = []
    normalise = job.normalise
    extras = Extras()
    bar = tqdm(desc="reading rows", unit="row", disable=None if options.progress else True)

    def merge(chunk: Any) -> None:
        extras.merge(chunk)
        bar.update(chunk.rows)

    chunks = scan(job, chunked(numbered(paths, fixes, warnings)), config.data.workers)
    try:
        table = gather(chunks, normalise.label_field is not None, merge)
    finally:
        bar.close()
    table.fixes, table.warnings = fixes, warnings  # the report lists both
    side = Side(table, lambda: numbered(paths, []), normalise)
    return Scanned(side, extras)


def _normaliser(paths: list[str], config: RunConfig) -> RowNormaliser:
    """A normaliser for the files, inferring a labelled table from their own first row."""
    mapping, label_field = first_row_mapping(paths, config.data.format, mapping_of(config))
    return RowNormaliser(config.data.format, mapping, label_field)


def _sensitive_finder(config: RunConfig) -> Any:
    """The built-in detectors, merged with Presidio's when audit.presidio is on."""
    if not config.audit.presidio:
        return sensitive.find_sensitive
    from tunesmith.data.checks.presidio import load_analyzer, merged_finder

    language = config.audit.presidio_language
    return merged_finder(load_analyzer(language, config.audit.presidio_model), language)


# --- schema and lengths ------------------------------------------------------------------


def _schema_of(scanned: Scanned) -> dict:
    table, extras = scanned.side.table, scanned.extras
    return {
        "rows": table.rows,
        "usable": table.usable,
        "rejected": table.rejected,
        "formats": dict(extras.shapes),
        "label_field": scanned.side.normalise.label_field,
        "problems": dict(table.reject_rules.most_common()),
        "problem_rows": [{"row": str(r.ref), "rule": r.rule, "field": r.field,
                          "reason": r.reason} for r in table.rejects[:LIST_LIMIT]],
        "auto_fixed": table.fixes, "file_warnings": table.warnings,
        "handled_fields": dict(extras.handled),
        "ignored_fields": dict(extras.ignored),
    }


def _token_counter(config: RunConfig) -> Any:
    """A chunk hook counting tokens with the real template; unrenderable rows are rejects."""
    from tunesmith.formatting.chat import ChatFormatter
    from tunesmith.modeling.inventory import load_tokenizer
    from tunesmith.tokenization.lengths import RowLengths, count_batch

    tokenizer = load_tokenizer(config.model.name, config.model.cache_dir)
    formatter = ChatFormatter(tokenizer, config.data.system_prompt, config.data.end_of_turn,
                              config.data.train_on)

    def count(convs: list) -> list[tuple[Any, dict]]:
        n = len(convs)
        part = RowLengths(np.full(n, -1), np.full(n, -1), np.full(n, -1))
        count_batch(formatter, convs, 0, n, part)
        return [(part.rejects.get(i), {"tokens": (int(part.prompt[i]), int(part.answer[i]),
                                                  int(part.before_answer[i]))})
                for i in range(n)]

    return count


def _lengths(scanned: Scanned, config: RunConfig, options: AuditOptions) -> dict:
    """Token counts with the real template against data.max_length."""
    if not options.lengths:
        return {"skipped": "token lengths were turned off (--no-lengths)"}
    from tunesmith.tokenization.lengths import RowLengths, length_section

    tokens = np.concatenate(scanned.extras.tokens) if scanned.extras.tokens else np.zeros(
        (0, 3), np.int64)
    counted = RowLengths(tokens[:, 0], tokens[:, 1], tokens[:, 2])
    section = length_section(counted, config.data.max_length, config.data.truncation,
                             scanned.side.refs)
    section["model"] = config.model.name
    return section


# --- balance, clusters, advice -----------------------------------------------------------


def _balance(scanned: Scanned, answers: dict) -> dict:
    labels = scanned.side.table.labels
    section = balance.label_balance(labels) if labels is not None else answers
    extras = scanned.extras
    distinct, estimated = extras.distinct_pairs()
    section["diversity"] = balance.diversity_from(extras.column("key_words"), extras.vocab,
                                                  distinct, extras.pair_total)
    section["diversity"]["distinct_2_estimated"] = estimated
    return section


def _clusters(ours: Scanned, other: Scanned | None, options: AuditOptions) -> dict:
    if not options.embeddings:
        return {"skipped": "embeddings were not requested (--embeddings)"}
    if ours.side.table.usable < 4:
        return {"skipped": "fewer than 4 usable rows"}
    from tunesmith.data.checks.clusters import cluster_section
    from tunesmith.modeling.embeddings import embed_texts, load_sentence_model

    model = load_sentence_model()
    texts = _embedding_texts(ours.side)
    vectors = embed_texts(model, texts, progress=options.progress)
    eval_vectors = embed_texts(model, _embedding_texts(other.side), progress=options.progress
                               ) if other and other.side.table.usable else None
    return cluster_section(vectors, ours.side.refs, texts, ours.side.table.labels,
                           eval_vectors)


def _embedding_texts(side: Side) -> list[str]:
    """Prompts (or whole texts) of every usable row, read again: embeddings need them all."""
    from tunesmith.data.checks.features import fetch_texts

    positions = side.table.positions.tolist()
    found = fetch_texts(side.reread(), set(positions), side.normalise)
    texts = []
    for position in positions:
        conv = found[position][0]
        texts.append(prompt_text(conv).strip() or full_text(conv))
    return texts


def _advice(report: dict, scanned: Scanned, config: RunConfig) -> None:
    lengths = report["lengths"]
    table = scanned.side.table
    trained = lengths.get("trained_tokens", scanned.extras.answer_words)
    estimate, trainable = _estimate(lengths, table.usable, config)
    report["estimate"] = estimate
    labels = report["balance"].get("counts") if table.labels is not None else None
    clusters = report["clusters"].get("largest_share")
    prompts = len(np.unique(table.keys["prompt_key"]))
    report["size"] = size_advice(table.usable, prompts, trained, trainable, labels, clusters)


def _estimate(lengths: dict, rows: int, config: RunConfig) -> tuple[dict, int | None]:
    """The training-cost section on this CPU, from the token lengths already counted."""
    if "tokens" not in lengths:
        return {"skipped": "needs token lengths"}, None
    from tunesmith.modeling.inventory import arch_shape
    from tunesmith.planning import DataTotals, run_plan
    from tunesmith.training.cost import estimate
    from tunesmith.training.hardware import hardware_profile

    m = config.method
    try:
        shape = arch_shape(config.model.name, config.model.cache_dir, m.name, m.r,
                           m.target_modules, tuple(m.modules_to_save))
    except Exception as err:  # noqa: BLE001 - the estimate is advice; say why it is missing
        return {"skipped": f"cannot count the model's parameters: {err}"}, None
    kept = rows - lengths.get("dropped_by_policy", 0)
    longest = max(1, lengths["longest_kept"])  # batches pad to their longest row
    answer_max = lengths.get("answer", {}).get("max", longest)
    data = DataTotals(kept, lengths["tokens"], lengths.get("trained_tokens", 0), longest,
                      max(1, min(answer_max, longest)), rows, 0.0)
    hardware = hardware_profile(None, config.training.threads)
    result = estimate(shape, run_plan(config, data), hardware)
    return _estimate_section(result, data), result["model"]["trainable_params"]


def _estimate_section(result: dict, data: Any) -> dict:
    """The report keys of earlier versions, plus the memory split and the hardware."""
    time_, run, hw = result["time"], result["run"], result["hardware"]
    return {
        "tokens_per_epoch": data.tokens, "epochs": run["epochs"],
        "optimizer_steps": time_["total_steps"],
        "tokens_per_second": time_["tokens_per_second"],
        "hours": round(time_["total_seconds"] / 3600, 3),
        "peak_memory_gb": round(result["memory"]["peak_gb"], 2),
        "trainable_params": result["model"]["trainable_params"],
        "memory": result["memory"], "seconds_per_step": time_["seconds_per_step"],
        "hardware": hw["name"],
        "reasoning": (
            f"{data.tokens:,} tokens x {run['epochs']:g} epochs in {time_['total_steps']:,} "
            f"steps of {time_['flops_per_step'] / 1e9:,.0f} GFLOP each, on {hw['name']} at "
            f"{hw['efficiency']:.2f} x its {hw['peak_tflops'] * 1000:,.0f} GFLOPS peak; memory "
            f"= weights + gradients + optimizer states + activations of one "
            f"{run['batch_size']} x {run['longest']} micro-batch + logits + runtime"),
    }


def write_json(report: dict, path: Path) -> None:
    """Write the report atomically."""
    from tunesmith.data.records import dumps_strict

    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dumps_strict(report, indent=2, ensure_ascii=False, default=_plain) + "\n",
                   encoding="utf-8")
    tmp.replace(path)


def _plain(value: Any) -> Any:
    if isinstance(value, np.integer | np.floating):
        return value.item()
    return str(value)
