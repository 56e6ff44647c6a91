"""Clean example files: drop or fix bad rows, and account for every input row.

Writes `train.jsonl` (and `eval.jsonl` when splitting) with kept rows in their original shape,
`rejects.jsonl` with every dropped or changed row (rule, reason, original content), and
`manifest.json` with counts and content hashes. Output depends only on input and options, so
running it twice gives byte-identical files, and cleaning a cleaned file changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.data.checks import duplicates, sensitive
from tunesmith.data.checks.contradictions import find_contradictions
from tunesmith.data.checks.rows import (
    AuditRow,
    answer_text,
    collect_rows,
    full_text,
    normalise_text,
    prompt_text,
)
from tunesmith.data.hashing import sha256_file
from tunesmith.data.readers import read_rows
from tunesmith.data.shapes import RowMapping, RowProblem, to_conversation
from tunesmith.errors import DataError

logger = logging.getLogger(__name__)

KEEP_AS_IS = {"role", "from", "weight", "id", "type"}
_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff]")
_TRAILING = re.compile(r"[ \t]+\n")


@dataclass
class CleanOptions:
    """Which fixes to apply."""

    drop_duplicates: bool = True
    drop_near_duplicates: bool = True
    contradictions: str = "drop"  # drop, resolve or keep
    redact: bool = True
    eval_fraction: float = 0.0
    seed: int = 0
    near_threshold: float = duplicates.NEAR_THRESHOLD


@dataclass
class Verdict:
    """What happens to one input row."""

    value: Any = None  # the cleaned row, or the original when dropped
    original: Any = None
    dropped: tuple[str, str] | None = None  # (rule, reason)
    changes: list[str] = field(default_factory=list)
    field_name: str | None = None
    split: str = "train"


def clean_text(text: str) -> str:
    """NFC, no invisible characters, LF line ends, no trailing spaces, trimmed."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\u00a0", " ")
    return _TRAILING.sub("\n", _INVISIBLE.sub("", text)).strip()


def clean_value(value: Any, redact: bool, found: Counter, key: str = "") -> Any:
    """Clean (and optionally redact) every string inside a row, counting redactions by kind."""
    if isinstance(value, dict):
        return {k: clean_value(v, redact, found, k) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_value(v, redact, found, key) for v in value]
    if not isinstance(value, str) or key in KEEP_AS_IS:
        return value
    text = clean_text(value)
    if redact:
        spans = sensitive.find_sensitive(text)
        found.update(s.kind for s in spans)
        text = sensitive.redact(text, spans)
    return text


def clean_data(paths: list[str], out: Path, shape: str = "auto",
               mapping: RowMapping | None = None, options: CleanOptions | None = None) -> dict:
    """Clean the files into `out`; return the manifest."""
    options = options or CleanOptions()
    if options.contradictions not in ("drop", "resolve", "keep"):
        raise DataError(f"contradictions must be drop, resolve or keep, found "
                        f"{options.contradictions!r}")
    if not 0.0 <= options.eval_fraction < 1.0:
        raise DataError(f"eval fraction must be in [0, 1), found {options.eval_fraction}")
    rows = collect_rows(paths, shape, mapping)
    verdicts = [Verdict() for _ in rows.rows]
    _fix_rows(paths, rows.rows, verdicts, shape, rows.mapping, options)
    live = [i for i, v in enumerate(verdicts) if v.dropped is None]
    keys = {i: _texts(rows.rows[i]) for i in live}
    # contradictions first: copies of the majority answer count as votes
    _drop_contradictions(keys, verdicts, options, rows.label_field is not None)
    _drop_duplicates([i for i in live if i in keys], keys, verdicts, options)
    _split(keys, verdicts, rows.rows, options)
    return _write(paths, out, rows.rows, verdicts, options)


def _fix_rows(paths: list[str], rows: list[AuditRow], verdicts: list[Verdict], shape: str,
              mapping: RowMapping | None, options: CleanOptions) -> None:
    """Second pass over the raw rows: keep originals, clean strings, re-normalise."""
    index = 0
    for path in paths:
        for raw in read_rows(path):
            row, verdict = rows[index], verdicts[index]
            index += 1
            verdict.original = raw.value if raw.value is not None else raw.text
            if row.reject is not None:
                verdict.dropped = (row.reject.rule, row.reject.reason)
                verdict.field_name = row.reject.field
                continue
            found: Counter = Counter()
            verdict.value = clean_value(raw.value, options.redact, found)
            if clean_value(raw.value, False, Counter()) != raw.value:
                verdict.changes.append("NormalisedText: whitespace or Unicode form")
            if found:
                kinds = ", ".join(f"{n} {k}" for k, n in sorted(found.items()))
                verdict.changes.append(f"Redacted: {kinds}")
            _renormalise(row, verdict, shape, mapping)


def _renormalise(row: AuditRow, verdict: Verdict, shape: str,
                 mapping: RowMapping | None) -> None:
    try:
        row.conv = to_conversation(verdict.value, row.ref, shape, mapping)
    except RowProblem as problem:
        verdict.dropped = (problem.rule, f"after cleaning: {problem.reason}")
        verdict.field_name = problem.field


def _texts(row: AuditRow) -> tuple[str, str, str]:
    conv = row.conv
    answer = row.label if row.label is not None else normalise_text(answer_text(conv))
    return normalise_text(full_text(conv)), normalise_text(prompt_text(conv)), answer


def _drop_duplicates(live: list[int], keys: dict, verdicts: list[Verdict],
                     options: CleanOptions) -> None:
    if options.drop_duplicates:
        first: dict[str, int] = {}
        for i in live:
            keeper = first.setdefault(keys[i][0], i)
            if keeper != i:
                _drop(verdicts, keys, i, "ExactDuplicate", f"same text as row index {keeper}")
    if options.drop_near_duplicates:
        alive = [i for i in live if verdicts[i].dropped is None]
        near = duplicates.near_duplicates(
            [duplicates.shingles(keys[i][0]) for i in alive], options.near_threshold)
        for cluster in near.clusters:
            for member in cluster[1:]:
                _drop(verdicts, keys, alive[member], "NearDuplicate",
                      f"near copy of row index {alive[cluster[0]]}")


def _drop(verdicts: list[Verdict], keys: dict, index: int, rule: str, reason: str) -> None:
    verdicts[index].dropped = (rule, reason)
    keys.pop(index, None)


def _drop_contradictions(keys: dict, verdicts: list[Verdict], options: CleanOptions,
                         labelled: bool) -> None:
    if options.contradictions == "keep":
        return
    alive = sorted(keys)
    groups = find_contradictions([keys[i][1] for i in alive], [keys[i][2] for i in alive],
                                 labelled)
    for group in groups:
        members = [alive[m] for m in group.members]
        votes = Counter(keys[i][2] for i in members)
        (winner, top), *rest = votes.most_common()
        resolved = options.contradictions == "resolve" and (not rest or top > rest[0][1])
        for i in members:
            if resolved and keys[i][2] == winner:
                continue
            reason = (f"answer differs from the majority answer of {len(members)} rows with "
                      "the same prompt") if resolved else (
                f"{len(members)} rows share the prompt but disagree")
            _drop(verdicts, keys, i, "Contradiction", reason)


def _split(keys: dict, verdicts: list[Verdict], rows: list[AuditRow],
           options: CleanOptions) -> None:
    """Hold out whole prompt groups (exact and near) so no eval prompt is in train."""
    if options.eval_fraction <= 0:
        return
    alive = sorted(keys)
    union = duplicates.UnionFind()
    first: dict[str, int] = {}
    for i in alive:
        union.union(first.setdefault(keys[i][1] or keys[i][0], i), i)
    near = duplicates.near_duplicates([duplicates.shingles(keys[i][1] or keys[i][0])
                                       for i in alive], options.near_threshold)
    for a, b, _ in near.pairs:
        union.union(alive[a], alive[b])
    groups: dict[int, list[int]] = defaultdict(list)
    for i in alive:
        groups[union.find(i)].append(i)
    strata: dict[str, list[list[int]]] = defaultdict(list)
    for root in sorted(groups):
        strata[rows[root].label or ""].append(groups[root])
    rng = random.Random(options.seed)
    for label in sorted(strata):
        bucket = strata[label]
        rng.shuffle(bucket)
        want, taken = round(sum(len(g) for g in bucket) * options.eval_fraction), 0
        for group in bucket:
            if taken >= want:
                break
            taken += len(group)
            for i in group:
                verdicts[i].split = "eval"


def _write(paths: list[str], out: Path, rows: list[AuditRow], verdicts: list[Verdict],
           options: CleanOptions) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    names = ["train.jsonl"] + (["eval.jsonl"] if options.eval_fraction > 0 else [])
    lines: dict[str, list[str]] = {n: [] for n in names + ["rejects.jsonl"]}
    rules: Counter = Counter()
    for row, verdict in zip(rows, verdicts, strict=True):
        for entry in _reject_entries(row, verdict):
            lines["rejects.jsonl"].append(_dump(entry))
            rules[entry["rule"]] += 1
        if verdict.dropped is None:
            lines[f"{verdict.split}.jsonl"].append(_dump(verdict.value))
    hashes = {name: _write_lines(out / name, text) for name, text in lines.items()}
    dropped = sum(1 for v in verdicts if v.dropped is not None)
    manifest = {
        "inputs": [{"path": str(p), "sha256": sha256_file(Path(p))} for p in paths],
        "options": asdict(options),
        "counts": {"input_rows": len(rows), "kept_rows": len(rows) - dropped,
                   "dropped_rows": dropped,
                   "changed_rows": sum(1 for v in verdicts if v.changes and not v.dropped),
                   **{f"{n.split('.')[0]}_rows": len(lines[n]) for n in names}},
        "rules": dict(sorted(rules.items())),
        "outputs": {name: {"rows": len(lines[name]), "sha256": hashes[name]} for name in lines},
    }
    _write_lines(out / "manifest.json", [json.dumps(manifest, indent=2, ensure_ascii=False)])
    return manifest


def _reject_entries(row: AuditRow, verdict: Verdict) -> list[dict]:
    where = {"source": row.ref.source, row.ref.unit: row.ref.line}
    if verdict.dropped is not None:
        rule, reason = verdict.dropped
        return [{"row": where, "action": "dropped", "rule": rule, "reason": reason,
                 "field": verdict.field_name, "original": verdict.original}]
    if not verdict.changes:
        return []
    rule = verdict.changes[-1].split(":")[0]  # Redacted outranks NormalisedText
    return [{"row": where, "action": "changed", "rule": rule,
             "reason": "; ".join(verdict.changes), "field": None,
             "original": verdict.original, "cleaned": verdict.value}]


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=False, default=str)


def _write_lines(path: Path, lines: list[str]) -> str:
    """Write atomically; return the sha256 of the content."""
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return hashlib.sha256(data).hexdigest()
