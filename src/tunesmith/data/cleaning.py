"""Clean example files: drop or fix bad rows, and account for every input row.

Writes `train.jsonl` (and `eval.jsonl` when splitting) with kept rows in their original shape,
`rejects.jsonl` with every dropped or changed row (rule, reason, original content), and
`manifest.json` with counts and content hashes. Output depends only on input and options (not
on the worker count), so running it twice gives byte-identical files, and cleaning a cleaned
file changes nothing.

It streams in three passes: cleaned rows become compact features; candidate duplicates are
read again to be confirmed exactly; then every row is read, cleaned and written where its
verdict says. The first and last passes run in `workers` forked processes. Memory holds
per-row hashes and the drop decisions, not the rows.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from tunesmith.data.checks import duplicates, minhash, sensitive
from tunesmith.data.checks.features import ScanJob, chunked, numbered, ordered_map, scan
from tunesmith.data.checks.rows import RowNormaliser, first_row_mapping
from tunesmith.data.checks.table import RowTable, gather
from tunesmith.data.checks.textchecks import Side, TextChecks, first_positions
from tunesmith.data.hashing import sha256_file
from tunesmith.data.readers import RawRow
from tunesmith.data.records import RowRef, dumps_strict, rejects_entry
from tunesmith.data.shapes import RowMapping, RowProblem, to_conversation
from tunesmith.data.splitting import hold_out, prompt_groups
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
               mapping: RowMapping | None = None, options: CleanOptions | None = None,
               workers: int = 1) -> dict:
    """Clean the files into `out`; return the manifest."""
    options = options or CleanOptions()
    if options.contradictions not in ("drop", "resolve", "keep"):
        raise DataError(f"contradictions must be drop, resolve or keep, found "
                        f"{options.contradictions!r}")
    if not 0.0 <= options.eval_fraction < 1.0:
        raise DataError(f"eval fraction must be in [0, 1), found {options.eval_fraction}")
    _refuse_overwriting(paths, out, _output_names(options) + ["rejects.jsonl", "manifest.json"])
    mapping, label_field = first_row_mapping(paths, shape, mapping)
    cleaned = RowNormaliser(shape, mapping, label_field, _cleaner(options.redact))
    bands = ("full",) + (("prompt",) if options.contradictions != "keep" else ()) + (
        ("key",) if options.eval_fraction > 0 else ())
    job = ScanJob(cleaned, options.near_threshold, bands=bands)
    table = gather(scan(job, chunked(numbered(paths, [])), workers), label_field is not None)
    if not table.rows:
        raise DataError(f"{', '.join(map(str, paths))}: no rows found; check the file is not "
                        "empty")
    side = Side(table, lambda: numbered(paths, []), cleaned)
    decide = _Decisions(side, options, label_field is not None)
    decide.run()
    return _write(paths, out, shape, mapping, options, decide, workers)


def _output_names(options: CleanOptions) -> list[str]:
    return ["train.jsonl"] + (["eval.jsonl"] if options.eval_fraction > 0 else [])


def _refuse_overwriting(paths: list[str], out: Path, names: list[str]) -> None:
    """Stop before any work when an output file would replace one of the input files."""
    for path in map(Path, paths):
        for name in names:
            if _same_file(path, out / name):
                raise DataError(f"{path}: data clean would overwrite this input file with its "
                                f"{name}; choose another --out folder than {out}")


def _same_file(a: Path, b: Path) -> bool:
    """The same path after resolving links, or the same file on disk (a hard link)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return a.samefile(b)
    except OSError:  # either does not exist yet
        return False


def _cleaner(redact: bool) -> Callable[[Any], tuple[Any, list[str]]]:
    """A RowNormaliser transform: the row with every string cleaned (and redacted)."""

    def transform(value: Any) -> tuple[Any, list[str]]:
        cleaned = clean_value(value, redact, Counter())
        return cleaned, ["changed"] if cleaned != value else []

    return transform


class _Decisions:
    """Which usable rows to drop (rule, reason) and which go to eval, from their features."""

    def __init__(self, side: Side, options: CleanOptions, labelled: bool) -> None:
        self.side, self.options, self.labelled = side, options, labelled
        self.table: RowTable = side.table
        self.alive = np.ones(self.table.usable, bool)
        self.dropped: dict[int, tuple[str, str]] = {}  # raw position -> (rule, reason)
        self.eval: set[int] = set()  # raw positions

    def run(self) -> None:
        checks = TextChecks(self.side, None, self.options.near_threshold, self.labelled)
        key_pairs = minhash.candidate_pairs(self.table.bands["key"]) if (
            self.options.eval_fraction > 0) else set()
        wanted = {p for group in checks.prompt_groups for p in group}
        wanted |= {p for pair in checks.near_candidates | key_pairs for p in pair}
        self.side.fetch(wanted)
        # contradictions first: copies of the majority answer count as votes
        if self.options.contradictions != "keep":
            self._contradictions(checks.contradiction_groups())
        self._duplicates(checks.near_candidates)
        self._split(key_pairs)

    def _drop(self, position: int, rule: str, reason: str) -> None:
        self.alive[position] = False
        self.dropped[int(self.table.positions[position])] = (rule, reason)

    def _raw(self, position: int) -> int:
        return int(self.table.positions[position])

    def _contradictions(self, groups: list[tuple[list[int], list]]) -> None:
        answers = self.table.keys["answer_key"]
        for members, _ in groups:
            votes = Counter(int(answers[i]) for i in members)
            (winner, top), *rest = votes.most_common()
            resolved = self.options.contradictions == "resolve" and (not rest or
                                                                     top > rest[0][1])
            for i in members:
                if resolved and answers[i] == winner:
                    continue
                reason = (f"answer differs from the majority answer of {len(members)} rows "
                          "with the same prompt") if resolved else (
                    f"{len(members)} rows share the prompt but disagree")
                self._drop(i, "Contradiction", reason)

    def _duplicates(self, candidates: set[tuple[int, int]]) -> None:
        if self.options.drop_duplicates:
            alive = np.flatnonzero(self.alive)
            keepers = alive[first_positions(self.table.keys["full_key"][alive])]
            for i, keeper in zip(alive.tolist(), keepers.tolist(), strict=True):
                if keeper != i:
                    self._drop(i, "ExactDuplicate", f"same text as row index {self._raw(keeper)}")
        if self.options.drop_near_duplicates:
            for cluster in self._clusters(candidates, "full"):
                for member in cluster[1:]:
                    self._drop(member, "NearDuplicate",
                               f"near copy of row index {self._raw(cluster[0])}")

    def _clusters(self, candidates: set[tuple[int, int]], text: str) -> list[list[int]]:
        """Clusters of alive rows joined by confirmed pairs of the named text."""
        texts, union = self.side.texts, duplicates.UnionFind()
        for a, b in sorted(candidates, key=lambda p: (p[1], p[0])):
            if not (self.alive[a] and self.alive[b]):
                continue
            first, second = getattr(texts[a], text), getattr(texts[b], text)
            if duplicates.jaccard(duplicates.shingles(first), duplicates.shingles(second)) >= (
                    self.options.near_threshold):
                union.union(a, b)
        return union.clusters()

    def _split(self, key_pairs: set[tuple[int, int]]) -> None:
        """Hold out whole prompt groups (exact and near) so no eval prompt is in train."""
        if self.options.eval_fraction <= 0:
            return
        alive = np.flatnonzero(self.alive)
        near = [np.searchsorted(alive, cluster).tolist()
                for cluster in self._clusters(key_pairs, "key")]
        groups = prompt_groups(self.side.lookup_key()[alive], near)
        labels = self.table.labels
        held = hold_out(groups, [labels[i] for i in alive] if labels is not None else None,
                        self.options.eval_fraction, self.options.seed)
        self.eval = {self._raw(int(alive[i])) for i in held}


class _Outputs:
    """Output files written line by line to temp paths, hashed as they go, renamed at end."""

    def __init__(self, out: Path, names: list[str]) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.out, self.names = out, names
        self.files: dict[str, IO[bytes]] = {
            n: (out / f"{n}.{os.getpid()}.tmp").open("wb") for n in names}
        self.hashes = {n: hashlib.sha256() for n in names}
        self.rows = dict.fromkeys(names, 0)

    def write(self, name: str, value: Any) -> None:
        data = (_dump(value) + "\n").encode("utf-8")
        self.files[name].write(data)
        self.hashes[name].update(data)
        self.rows[name] += 1

    def close(self) -> dict[str, dict]:
        for name, handle in self.files.items():
            handle.close()
            (self.out / f"{name}.{os.getpid()}.tmp").replace(self.out / name)
        return {n: {"rows": self.rows[n], "sha256": self.hashes[n].hexdigest()}
                for n in self.names}


_WRITE: tuple | None = None  # (shape, mapping, options, decisions) for forked workers


def _write(paths: list[str], out: Path, shape: str, mapping: RowMapping | None,
           options: CleanOptions, decide: _Decisions, workers: int) -> dict:
    global _WRITE
    names = _output_names(options)
    outputs = _Outputs(out, names + ["rejects.jsonl"])
    rules: Counter = Counter()
    counts = Counter()
    _WRITE = (shape, mapping, options, decide)
    try:
        for verdicts in ordered_map(_verdicts, chunked(numbered(paths, [])), workers):
            for position, entry, value in verdicts:
                counts["input"] += 1
                if entry is not None:
                    outputs.write("rejects.jsonl", entry)
                    rules[entry["rule"]] += 1
                    counts[entry["action"]] += 1
                if value is not None:
                    split = "eval" if position in decide.eval else "train"
                    outputs.write(f"{split}.jsonl", value)
    finally:
        _WRITE = None
    written = outputs.close()
    manifest = {
        "inputs": [{"path": str(p), "sha256": sha256_file(Path(p))} for p in paths],
        "options": asdict(options),
        "counts": {"input_rows": counts["input"], "kept_rows": counts["input"] - counts["dropped"],
                   "dropped_rows": counts["dropped"], "changed_rows": counts["changed"],
                   **{f"{n.split('.')[0]}_rows": written[n]["rows"] for n in names}},
        "rules": dict(sorted(rules.items())),
        "outputs": written,
    }
    _write_lines(out / "manifest.json", [dumps_strict(manifest, indent=2, ensure_ascii=False)])
    return manifest


def _verdicts(raws: list[tuple[int, RawRow]]) -> list[tuple[int, dict | None, Any]]:
    """(position, rejects entry or None, row to keep or None) for a chunk of input rows."""
    shape, mapping, options, decide = _WRITE  # type: ignore[misc]
    return [(position, *_verdict(position, raw, shape, mapping, options, decide))
            for position, raw in raws]


def _verdict(position: int, raw: RawRow, shape: str, mapping: RowMapping | None,
             options: CleanOptions, decide: _Decisions) -> tuple[dict | None, Any]:
    """(rejects.jsonl entry or None, the row to keep or None) for one input row."""
    where = raw.ref
    if raw.value is None:
        return _dropped(where, "BrokenRow", raw.error or "unreadable row", None, raw.text), None
    try:
        to_conversation(raw.value, raw.ref, shape, mapping)
    except RowProblem as problem:
        return _dropped(where, problem.rule, problem.reason, problem.field, raw.value), None
    found: Counter = Counter()
    value = clean_value(raw.value, options.redact, found)
    try:
        to_conversation(value, raw.ref, shape, mapping)
    except RowProblem as problem:
        return _dropped(where, problem.rule, f"after cleaning: {problem.reason}",
                        problem.field, raw.value), None
    if position in decide.dropped:
        rule, reason = decide.dropped[position]
        return _dropped(where, rule, reason, None, raw.value), None
    changes = []
    if clean_value(raw.value, False, Counter()) != raw.value:
        changes.append("NormalisedText: whitespace or Unicode form")
    if found:
        changes.append("Redacted: " + ", ".join(f"{n} {k}" for k, n in sorted(found.items())))
    if not changes:
        return None, value
    rule = changes[-1].split(":")[0]  # Redacted outranks NormalisedText
    entry = rejects_entry(where, "changed", rule, "; ".join(changes), None, raw.value)
    return {**entry, "cleaned": value}, value


def _dropped(where: RowRef, rule: str, reason: str, field_name: str | None,
             original: Any) -> dict:
    return rejects_entry(where, "dropped", rule, reason, field_name, original)


def _dump(value: Any) -> str:
    return dumps_strict(value, ensure_ascii=False, sort_keys=False, default=str)


def _write_lines(path: Path, lines: list[str]) -> str:
    """Write atomically; return the sha256 of the content."""
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return hashlib.sha256(data).hexdigest()
