"""Tokenized examples cached by content hash, so a rerun with the same inputs skips encoding.

An entry is one file, `<root>/<key>/tokenized.json`: a first line with the SHA-256 of the
rest, then JSON with the train and eval examples, their dropped rows and truncation counts.
The key hashes everything that changes tokens; an unreadable entry is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import tunesmith
from tunesmith.data.hashing import sha256_file
from tunesmith.data.records import Reject, RowRef
from tunesmith.formatting.chat import EncodedExample
from tunesmith.tokenization.examples import TokenizeResult

logger = logging.getLogger(__name__)

FORMAT = 3  # bump when the encoding of examples changes (3: rows with tools show them)
ENTRY = "tokenized.json"
TOKENIZER_SUFFIXES = (".json", ".jinja", ".txt", ".model")  # not the weights


def tokenizer_fingerprint(tokenizer: Any) -> dict[str, Any]:
    """What identifies a tokenizer: its files' hashes, chat template, vocabulary size and
    added tokens (tokens added for a run change ids without changing the files)."""
    folder = Path(str(getattr(tokenizer, "name_or_path", "")))
    files = {p.name: sha256_file(p) for p in sorted(folder.iterdir())
             if p.is_file() and p.suffix in TOKENIZER_SUFFIXES} if folder.is_dir() else {}
    return {"files": files, "chat_template": getattr(tokenizer, "chat_template", None),
            "class": type(tokenizer).__name__, "size": len(tokenizer),
            "added": sorted(tokenizer.get_added_vocab().items())
            if hasattr(tokenizer, "get_added_vocab") else []}


def tokenized_key(inputs: list[str], tokenizer: dict[str, Any],
                  settings: dict[str, Any]) -> str:
    """SHA-256 over the input files' bytes, the tokenizer and the token-changing settings."""
    parts = {"format": FORMAT, "tunesmith": tunesmith.__version__, "tokenizer": tokenizer,
             "settings": settings,
             "inputs": [[name, sha256_file(Path(name))] for name in inputs]}
    text = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _ref_out(ref: RowRef | None) -> list[Any] | None:
    return None if ref is None else [ref.source, ref.line, ref.unit]


def _ref_in(value: list[Any] | None) -> RowRef | None:
    return None if value is None else RowRef(str(value[0]), int(value[1]), str(value[2]))


def _result_out(result: TokenizeResult) -> dict[str, Any]:
    return {"examples": [[e.input_ids, e.labels, _ref_out(e.ref)] for e in result.examples],
            "rejects": [[_ref_out(r.ref), r.rule, r.reason, r.field, r.row, r.row_form]
                        for r in result.rejects],
            "truncated": result.truncated}


def _result_in(payload: dict[str, Any]) -> TokenizeResult:
    examples = [EncodedExample(list(ids), list(labels), _ref_in(ref))
                for ids, labels, ref in payload["examples"]]
    # the original file row is looked up again when rejects.jsonl is written
    rejects = [Reject(_ref_in(ref), rule, reason, field, row, form)  # type: ignore[arg-type]
               for ref, rule, reason, field, row, form in payload["rejects"]]
    return TokenizeResult(examples, rejects, int(payload["truncated"]))


def load_tokenized(root: Path, key: str) -> tuple[TokenizeResult, TokenizeResult] | None:
    """The cached (train, eval) results of `key`, or None when absent or corrupt."""
    path = root / key / ENTRY
    if not path.is_file():
        return None
    try:
        digest, _, body = path.read_bytes().partition(b"\n")
        if hashlib.sha256(body).hexdigest().encode() != digest:
            raise ValueError("checksum mismatch")
        payload = json.loads(body)
        return _result_in(payload["train"]), _result_in(payload["eval"])
    except (ValueError, KeyError, TypeError, IndexError) as err:
        logger.warning("tokenized cache entry %s is unreadable (%s); tokenizing again", path,
                       err)
        return None


def save_tokenized(root: Path, key: str, train: TokenizeResult, held: TokenizeResult) -> Path:
    """Write the (train, eval) results of `key` atomically; return the entry's path."""
    path = root / key / ENTRY
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"train": _result_out(train), "eval": _result_out(held)}
    body = json.dumps(payload, separators=(",", ":")).encode("ascii")  # ASCII: any text fits
    tmp = path.with_name(f"{ENTRY}.{os.getpid()}.tmp")  # unique per process: ranks race
    tmp.write_bytes(hashlib.sha256(body).hexdigest().encode() + b"\n" + body)
    tmp.replace(path)
    return path
