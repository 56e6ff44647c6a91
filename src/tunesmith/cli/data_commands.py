"""`tunesmith data check` and `tunesmith data clean`: audit and clean example files."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunesmith.cli.arguments import output_folder, positive_int

logger = logging.getLogger(__name__)

THRESHOLD_BROKEN = 1
NOTHING_KEPT = 2  # as for a run with no usable row


def data_check(args: argparse.Namespace) -> int:
    """Audit example files and write report.json and report.html; exit 1 on a broken limit."""
    from tunesmith.audit import AuditOptions, audit_data, write_json
    from tunesmith.reporting.data_summary import summarise
    from tunesmith.reporting.html import render_html

    config = _config(args)
    out = output_folder(args.out)
    options = AuditOptions(lengths=not args.no_lengths,
                           embeddings=args.embeddings or config.audit.embeddings,
                           progress=sys.stderr.isatty())
    report = audit_data(args.data, args.eval or config.data.eval, config, options)
    out.mkdir(parents=True, exist_ok=True)
    write_json(report, out / "report.json")
    _write_text(out / "report.html", render_html(report))
    print(summarise(report))
    print(f"report: {out / 'report.json'}, {out / 'report.html'}")
    return 0 if report["passed"] else THRESHOLD_BROKEN


def data_clean(args: argparse.Namespace) -> int:
    """Drop or fix bad rows and write kept rows, rejects.jsonl and a manifest."""
    from tunesmith.data.cleaning import CleanOptions, clean_data

    config = _config(args)
    options = CleanOptions(
        drop_duplicates=not args.keep_duplicates,
        drop_near_duplicates=not args.keep_near_duplicates,
        contradictions=args.contradictions, redact=not args.no_redact,
        eval_fraction=args.eval_fraction, seed=args.seed,
        near_threshold=config.audit.near_threshold,
    )
    manifest = clean_data(args.data, output_folder(args.out), config.data.format,
                          _mapping(config), options, config.data.workers)
    counts = manifest["counts"]
    print(f"{counts['input_rows']} rows in: {counts['kept_rows']} kept, "
          f"{counts['dropped_rows']} dropped, {counts['changed_rows']} changed")
    for rule, n in manifest["rules"].items():
        print(f"  {rule}: {n}")
    print(f"written to {args.out} (manifest.json, rejects.jsonl)")
    if counts["input_rows"] and not counts["kept_rows"]:
        print(f"error: no row was kept; the reasons are in {args.out}/rejects.jsonl",
              file=sys.stderr)
        return NOTHING_KEPT
    return 0


def _config(args: argparse.Namespace) -> Any:
    from tunesmith.config import RunConfig, load_config

    config = load_config(args.config, args.set) if args.config or args.set else RunConfig()
    if args.workers is not None:
        config.data.workers = args.workers
    return config


def _mapping(config: Any) -> Any:
    from tunesmith.audit import mapping_of

    return mapping_of(config)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def register(subparsers: Any, add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add the check and clean verbs to `tunesmith data`."""
    check = subparsers.add_parser("check", help=_first_line(data_check),
                                  description=data_check.__doc__)
    _shared(check, add_common)
    check.add_argument("--eval", nargs="+", help="eval files, checked for leakage from train")
    check.add_argument("--out", default="data-report", help="report folder (default: %(default)s)")
    check.add_argument("--embeddings", action="store_true",
                       help="cluster prompts with the offline sentence-embedding model")
    check.add_argument("--no-lengths", action="store_true",
                       help="skip token counts (no tokenizer needed)")
    check.set_defaults(func=data_check)
    clean = subparsers.add_parser("clean", help=_first_line(data_clean),
                                  description=data_clean.__doc__)
    _shared(clean, add_common)
    clean.add_argument("--out", required=True, help="output folder")
    clean.add_argument("--keep-duplicates", action="store_true", help="keep exact copies")
    clean.add_argument("--keep-near-duplicates", action="store_true", help="keep near copies")
    clean.add_argument("--contradictions", choices=("drop", "resolve", "keep"), default="drop",
                       help="drop every row of a contradicting prompt, keep the majority "
                            "answer (resolve), or keep all (default: %(default)s)")
    clean.add_argument("--no-redact", action="store_true", help="keep sensitive data as is")
    clean.add_argument("--eval-fraction", type=float, default=0.0,
                       help="also write eval.jsonl with this share of rows, split without "
                            "leakage and stratified by label")
    clean.add_argument("--seed", type=int, default=0, help="seed of the split")
    clean.set_defaults(func=data_clean)


def _shared(parser: argparse.ArgumentParser,
            add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    add_common(parser)
    parser.add_argument("data", nargs="+", help="data files (JSONL, JSON, CSV, TSV, Parquet, "
                        "Arrow) or folders saved by datasets' save_to_disk")
    parser.add_argument("--workers", type=positive_int, help="processes for the per-row work "
                        "(default: data.workers); rows stream through them in chunks")
    parser.add_argument("--config", help="run config (model, data settings, audit limits)")
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="config overrides, e.g. audit.max_leaked_rows=0 (repeatable)")


def _first_line(func: Callable) -> str:
    return (func.__doc__ or "").strip().splitlines()[0]
