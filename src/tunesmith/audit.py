"""Pre-flight data audit: run every check on train (and eval) rows and build the report.

This module spans rooms on purpose (data checks, the formatter's token counts, the model's
parameter count), the way `pipeline` does for training.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tunesmith.config import RunConfig
from tunesmith.data.checks import balance, duplicates, sensitive
from tunesmith.data.checks.contradictions import find_contradictions
from tunesmith.data.checks.quality import quality_notes
from tunesmith.data.checks.rows import (
    AuditRows,
    answer_text,
    collect_rows,
    full_text,
    normalise_text,
    prompt_text,
)
from tunesmith.data.checks.size import size_advice
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


@dataclass
class Side:
    """One side's rows with the normalised texts every check compares."""

    rows: AuditRows
    positions: list[int] = field(default_factory=list)  # index into rows.rows
    prompts: list[str] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    fulls: list[str] = field(default_factory=list)
    refs: list[str] = field(default_factory=list)
    labels: list[str] | None = None

    def ref(self, position: int) -> str:
        return self.refs[position]


def mapping_of(config: RunConfig) -> RowMapping | None:
    """The config's table mapping, or None to detect the shape."""
    if not config.data.mapping:
        return None
    allowed = set(RowMapping.__dataclass_fields__)
    unknown = sorted(set(config.data.mapping) - allowed)
    if unknown:
        raise DataError(f"data.mapping has unknown keys {unknown}; expected {sorted(allowed)}")
    return RowMapping(**config.data.mapping)


def audit_data(train: list[str], eval_files: list[str], config: RunConfig,
               options: AuditOptions | None = None) -> dict[str, Any]:
    """Run the checks and return the report as plain JSON-ready data."""
    options = options or AuditOptions()
    started = time.perf_counter()
    mapping = mapping_of(config)
    timings: dict[str, float] = {}
    with _timer(timings, "read"):
        train_rows = collect_rows(train, config.data.format, mapping)
        eval_rows = collect_rows(eval_files, config.data.format, mapping) if eval_files else None
    if not train_rows.rows:
        raise DataError(f"{', '.join(train)}: no rows found; check the file is not empty")
    report: dict[str, Any] = {"schema": REPORT_SCHEMA, "version": REPORT_VERSION,
                              "inputs": {"train": train, "eval": eval_files}}
    with _timer(timings, "lengths"):
        report["lengths"] = _lengths(train_rows, config, options)
    report["schema_check"] = _schema_section(train_rows, eval_rows)
    side = _side(train_rows)
    report["quality"] = quality_notes([train_rows.rows[p].conv for p in side.positions],
                                      side.refs)
    other = _side(eval_rows) if eval_rows else None
    _run_text_checks(report, side, other, config, timings)
    with _timer(timings, "clusters"):
        report["clusters"] = _clusters(side, other, options)
    _advice(report, side, config)
    report["thresholds"] = evaluate_thresholds(report, config.audit)
    if not side.fulls:  # nothing to train on fails the check whatever the config says
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


def _side(rows: AuditRows) -> Side:
    side = Side(rows, labels=[] if rows.label_field else None)
    for position, row in enumerate(rows.rows):
        if row.conv is None:
            continue
        side.positions.append(position)
        side.prompts.append(normalise_text(prompt_text(row.conv)))
        side.answers.append(normalise_text(answer_text(row.conv)))
        side.fulls.append(normalise_text(full_text(row.conv)))
        side.refs.append(str(row.ref))
        if side.labels is not None:
            side.labels.append(row.label or "")
    return side


def _run_text_checks(report: dict, side: Side, other: Side | None, config: RunConfig,
                     timings: dict[str, float]) -> None:
    threshold = config.audit.near_threshold
    with _timer(timings, "duplicates"):
        report["duplicates"] = _duplicates(side, threshold)
    with _timer(timings, "contradictions"):
        report["contradictions"] = _contradictions(side)
    with _timer(timings, "leakage"):
        report["leakage"] = _leakage(side, other, threshold)
    with _timer(timings, "sensitive"):
        report["sensitive"] = _sensitive(side)
    with _timer(timings, "balance"):
        report["balance"] = _balance(side)


# --- schema and lengths ------------------------------------------------------------------


def _schema_section(train: AuditRows, eval_rows: AuditRows | None) -> dict:
    sides = {"train": train} | ({"eval": eval_rows} if eval_rows else {})
    return {name: _schema_of(rows) for name, rows in sides.items()}


def _schema_of(rows: AuditRows) -> dict:
    rejects = rows.rejects
    by_rule = Counter(r.rule for r in rejects)
    return {
        "rows": len(rows.rows),
        "usable": len(rows.good),
        "rejected": len(rejects),
        "formats": dict(rows.shapes),
        "label_field": rows.label_field,
        "problems": dict(by_rule.most_common()),
        "problem_rows": [{"row": str(r.ref), "rule": r.rule, "field": r.field,
                          "reason": r.reason} for r in rejects[:LIST_LIMIT]],
        "auto_fixed": rows.fixes,
        "handled_fields": dict(rows.handled_fields),
        "ignored_fields": dict(rows.ignored_fields),
    }


def _lengths(rows: AuditRows, config: RunConfig, options: AuditOptions) -> dict:
    """Token counts with the real template; rows it cannot render become problems."""
    if not options.lengths:
        return {"skipped": "token lengths were turned off (--no-lengths)"}
    from tunesmith.formatting.chat import ChatFormatter
    from tunesmith.modeling.inventory import load_tokenizer
    from tunesmith.tokenization.lengths import count_tokens, length_section

    tokenizer = load_tokenizer(config.model.name, config.model.cache_dir)
    formatter = ChatFormatter(tokenizer, config.data.system_prompt, config.data.end_of_turn,
                              config.data.train_on)
    good = rows.good
    counted = count_tokens(formatter, [r.conv for r in good], options.progress,
                           config.data.workers)
    for index, reject in counted.rejects.items():
        good[index].reject, good[index].conv = reject, None
    section = length_section(counted, config.data.max_length, config.data.truncation,
                             [str(r.ref) for r in good])
    section["model"] = config.model.name
    return section


# --- duplicates, contradictions, leakage -------------------------------------------------


def _duplicates(side: Side, threshold: float) -> dict:
    keys = [duplicates.text_key(t) for t in side.fulls]
    exact = duplicates.exact_groups(keys)
    copies = {p for group in exact for p in group[1:]}
    hashes = [None if p in copies else duplicates.shingles(t) for p, t in enumerate(side.fulls)]
    near = duplicates.near_duplicates(hashes, threshold)
    n = max(1, len(side.fulls))
    near_extra = sum(len(c) - 1 for c in near.clusters)
    return {
        "exact_groups": len(exact),
        "exact_duplicate_rows": len(copies),
        "exact_share": round(len(copies) / n, 4),
        "exact": [_group(side, g) for g in exact[:LIST_LIMIT]],
        "near_threshold": threshold,
        "near_clusters": len(near.clusters),
        "near_duplicate_rows": near_extra,
        "near_share": round(near_extra / n, 4),
        "near": [_group(side, c) | {"pairs": [
            {"a": side.ref(a), "b": side.ref(b), "similarity": s}
            for a, b, s in near.pairs if a in c][:10]} for c in near.clusters[:LIST_LIMIT]],
    }


def _group(side: Side, positions: list[int]) -> dict:
    return {"rows": [side.ref(p) for p in positions],
            "text": side.fulls[positions[0]][:160]}


def _contradictions(side: Side) -> dict:
    labelled = side.labels is not None
    answers = side.labels if labelled else side.answers
    groups = find_contradictions(side.prompts, answers, labelled)
    listed = []
    for group in groups[:LIST_LIMIT]:
        listed.append({"prompt": side.prompts[group.members[0]][:160],
                       "rows": [side.ref(p) for p in group.members],
                       "pairs": [{"a": side.ref(c.first), "b": side.ref(c.second),
                                  "answer_a": answers[c.first][:120],
                                  "answer_b": answers[c.second][:120],
                                  "prompt_similarity": c.prompt_similarity,
                                  "answer_similarity": c.answer_similarity}
                                 for c in group.pairs]})
    return {"groups": len(groups), "rows": sum(len(g.members) for g in groups),
            "compared": "labels" if labelled else "answers", "listed": listed}


def _leakage(side: Side, other: Side | None, threshold: float) -> dict:
    """Eval rows whose prompt (or, for plain text, whole text) matches a train row."""
    if other is None:
        return {"skipped": "no eval data given (--eval)"}
    train_keys = [p or f for p, f in zip(side.prompts, side.fulls, strict=True)]
    first: dict[str, int] = {}
    for position, key in enumerate(train_keys):
        first.setdefault(key, position)
    index = duplicates.NearIndex(threshold)
    for key, position in first.items():
        index.add(position, duplicates.shingles(key))
    leaks = []
    for position, (p, f) in enumerate(zip(other.prompts, other.fulls, strict=True)):
        key = p or f
        hits = [(first[key], 1.0)] if key in first else index.query(duplicates.shingles(key))
        if hits:
            train_pos, score = max(hits, key=lambda h: h[1])
            same = other.answers[position] == side.answers[train_pos]
            leaks.append({"eval": other.ref(position), "train": side.ref(train_pos),
                          "similarity": round(score, 3), "same_answer": same})
    return {"eval_rows": len(other.prompts), "leaked_rows": len(leaks),
            "exact": sum(1 for x in leaks if x["similarity"] == 1.0),
            "listed": leaks[:LIST_LIMIT]}


# --- sensitive data, balance, clusters, advice -------------------------------------------


def _sensitive(side: Side) -> dict:
    kinds: Counter = Counter()
    rows_by_kind: dict[str, list[str]] = {}
    examples: list[dict] = []
    flagged = 0
    for position, row_index in enumerate(side.positions):
        conv = side.rows.rows[row_index].conv
        text = full_text(conv) if conv is not None else ""
        found = sensitive.find_sensitive(text)
        if not found:
            continue
        flagged += 1
        for item in found:
            kinds[item.kind] += 1
            rows_by_kind.setdefault(item.kind, [])
            if len(rows_by_kind[item.kind]) < LIST_LIMIT:
                rows_by_kind[item.kind].append(side.ref(position))
        if len(examples) < LIST_LIMIT:
            examples.append({"row": side.ref(position), "found": [
                {"kind": f.kind, "value": sensitive.mask(text[f.start:f.end])} for f in found]})
    return {"rows": flagged, "counts": dict(kinds.most_common()), "rows_by_kind": rows_by_kind,
            "examples": examples}


def _balance(side: Side) -> dict:
    if side.labels is not None:
        section = balance.label_balance(side.labels)
    else:
        section = balance.answer_balance(side.answers)
    section["diversity"] = balance.diversity([p or f for p, f in zip(side.prompts, side.fulls,
                                                                       strict=True)])
    return section


def _clusters(side: Side, other: Side | None, options: AuditOptions) -> dict:
    if not options.embeddings:
        return {"skipped": "embeddings were not requested (--embeddings)"}
    if len(side.fulls) < 4:
        return {"skipped": "fewer than 4 usable rows"}
    from tunesmith.data.checks.clusters import cluster_section
    from tunesmith.modeling.embeddings import embed_texts, load_sentence_model

    model = load_sentence_model()
    texts = _embedding_texts(side)
    vectors = embed_texts(model, texts, progress=options.progress)
    eval_vectors = embed_texts(model, _embedding_texts(other), progress=options.progress) if (
        other and other.fulls) else None
    return cluster_section(vectors, side.refs, texts, side.labels, eval_vectors)


def _embedding_texts(side: Side) -> list[str]:
    texts = []
    for row_index in side.positions:
        conv = side.rows.rows[row_index].conv
        text = prompt_text(conv).strip() if conv is not None else ""
        texts.append(text or (full_text(conv) if conv is not None else ""))
    return texts


def _advice(report: dict, side: Side, config: RunConfig) -> None:
    lengths = report["lengths"]
    trained = lengths.get("trained_tokens", sum(len(a.split()) for a in side.answers))
    estimate, trainable = _estimate(lengths, len(side.fulls), config)
    report["estimate"] = estimate
    labels = report["balance"].get("counts") if side.labels is not None else None
    clusters = report["clusters"].get("largest_share")
    report["size"] = size_advice(len(side.fulls), len(set(side.prompts)), trained, trainable,
                                 labels, clusters)


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
    import json

    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=_plain) + "\n",
                   encoding="utf-8")
    tmp.replace(path)


def _plain(value: Any) -> Any:
    if isinstance(value, np.integer | np.floating):
        return value.item()
    return str(value)
