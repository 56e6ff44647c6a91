"""Time `tunesmith data check` on generated chat data: 100,000 rows without embeddings (with
each worker count given) and 10,000 rows with embeddings. Prints seconds, rows/s and the peak
RSS of each check (each runs in its own process), plus the speed-up of the batched token
counter over encoding rows one by one (its peer, measured in the same run). With --big-rows,
also checks (and with --big-clean cleans) a file of that many rows (1,000,000 make about
0.8 GB) and prints peak RSS against the file size.

    python bench/data_audit.py [--rows 100000] [--embed-rows 10000] [--threads 2]
                               [--workers 1,2] [--big-rows 1000000 [--big-clean]]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

WORDS = ("account balance card payment transfer refund order delivery weather river mountain "
         "history science music language recipe garden travel python function error network "
         "question answer summary explain describe compare translate write list reason because "
         "however therefore quickly slowly carefully simple complex small large early late "
         "morning evening city country ocean forest animal plant energy light sound water fire "
         "stone paper glass metal wood cloud rain snow wind storm bridge road train plane ship")


def corpus_words() -> list[str]:
    """Words in their natural frequencies from a public dataset, else a fixed word list."""
    root = Path(__file__).resolve().parents[1]
    folder = Path(os.environ.get("TUNESMITH_DATASETS", root.parent / "shared" / "datasets"))
    dolly = folder / "dolly-prompt-response" / "dolly_hhrlhf_train_small.jsonl"
    if not dolly.is_file():
        return WORDS.split()
    rows = [json.loads(line) for line in dolly.read_text(encoding="utf-8").splitlines()]
    return " ".join(r["response"] for r in rows).split()


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """Chat rows: system, user (10-40 words), assistant (30-90 words); 1% copies, 0.5% PII.

    Written line by line, so a file larger than memory can be generated.
    """
    rng = random.Random(seed)
    vocab = corpus_words()
    recent: deque[str] = deque(maxlen=1000)  # copies repeat one of the last 1,000 rows
    with path.open("w", encoding="utf-8") as out:
        for i in range(rows):
            if i > 10 and rng.random() < 0.01:
                out.write(recent[rng.randrange(len(recent))] + "\n")
                continue
            prompt = " ".join(rng.choices(vocab, k=rng.randint(10, 40))) + "?"
            answer = " ".join(rng.choices(vocab, k=rng.randint(30, 90))) + "."
            if rng.random() < 0.005:
                answer += f" Write to user{i}@example.com or call +1 415 555 {1000 + i % 9000}."
            line = json.dumps({"messages": [
                {"role": "system", "content": "You are a concise assistant."},
                {"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]})
            out.write(line + "\n")
            recent.append(line)


def run_check(path: Path, embeddings: bool, workers: int = 1, lengths: bool = True,
              threads: int = 2) -> dict:
    """Run one check in a child process; its wall and CPU seconds, peak RSS and report."""
    args = [sys.executable, __file__, "--child-check", str(path), "--workers", str(workers),
            "--threads", str(threads)] + (["--embeddings"] if embeddings else []) + (
        [] if lengths else ["--no-lengths"])
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def child_check(path: Path, embeddings: bool, workers: int, lengths: bool) -> None:
    """The child's side of run_check: print one JSON line."""
    from tunesmith.audit import AuditOptions, audit_data
    from tunesmith.config import load_config

    start, cpu = time.perf_counter(), time.process_time()
    report = audit_data([str(path)], [], load_config(None, [f"data.workers={workers}"]),
                        AuditOptions(lengths=lengths, embeddings=embeddings, progress=False))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"wall": wall, "cpu": cpu, "cpu_all": cpu + kids.ru_utime + kids.ru_stime,
                      "rss_mib": _peak_mib(), "report": report}, default=str))


def _peak_mib() -> float:
    """Peak RSS of this process and of its finished children (forked workers), in MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024


def peer_ratio(path: Path, sample: int = 2000) -> tuple[float, float]:
    """Rows/s of the batched counter and of ChatFormatter.encode row by row."""
    from tunesmith.data import load_conversations
    from tunesmith.formatting.chat import ChatFormatter
    from tunesmith.modeling.inventory import load_tokenizer
    from tunesmith.tokenization.lengths import count_tokens

    convs = load_conversations(path).conversations[:sample]
    formatter = ChatFormatter(load_tokenizer("smollm2-135m-instruct"))
    start = time.perf_counter()
    batched = count_tokens(formatter, convs, progress=False)
    fast = len(convs) / (time.perf_counter() - start)
    start = time.perf_counter()
    slow_lengths = [len(formatter.encode(c).input_ids) for c in convs]
    slow = len(convs) / (time.perf_counter() - start)
    if list(batched.total) != slow_lengths:
        sys.exit("batched token counts differ from ChatFormatter.encode")
    return fast, slow


def big_file(folder: Path, rows: int, workers: int, clean: bool) -> None:
    """Check and clean a large generated file; print peak RSS against its size."""
    path = folder / "large.jsonl"
    start = time.perf_counter()
    generate(path, rows, seed=2)
    size = path.stat().st_size / 2**20
    print(f"generated {rows:,} rows, {size:,.0f} MiB in {time.perf_counter() - start:.0f} s",
          flush=True)
    result = run_check(path, embeddings=False, workers=workers, lengths=False)
    report = result["report"]
    print(f"large check (no token lengths), {rows:,} rows, {workers} worker(s): "
          f"{result['wall']:.0f} s wall, {result.get('cpu_all', 0):.0f} s CPU with workers; "
          f"peak RSS {result['rss_mib']:,.0f} MiB = "
          f"{result['rss_mib'] / size:.2f} x file size; exact copies "
          f"{report['duplicates']['exact_duplicate_rows']:,}, sensitive rows "
          f"{report['sensitive']['rows']:,}; steps {report['timings_s']}", flush=True)
    if not clean:
        return
    args = [sys.executable, __file__, "--child-clean", str(path), "--workers", str(workers)]
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    clean = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"large clean, {rows:,} rows: {clean['wall']:.0f} s wall; peak RSS "
          f"{clean['rss_mib']:,.0f} MiB = {clean['rss_mib'] / size:.2f} x file size; "
          f"counts {clean['counts']}", flush=True)


def child_clean(path: Path, workers: int) -> None:
    """Clean a file into a sibling folder; print one JSON line."""
    from tunesmith.data.cleaning import clean_data

    start = time.perf_counter()
    manifest = clean_data([str(path)], path.parent / "cleaned", workers=workers)
    print(json.dumps({"wall": time.perf_counter() - start, "rss_mib": _peak_mib(),
                      "counts": manifest["counts"]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--embed-rows", type=int, default=10_000)
    parser.add_argument("--big-rows", type=int, default=0)
    parser.add_argument("--big-clean", action="store_true", help="also clean the large file")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", default="1,2",
                        help="data.workers values for the 100,000-row check (forked processes)")
    parser.add_argument("--child-check", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-clean", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--embeddings", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-lengths", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not (args.child_check or args.child_clean) or args.embeddings or not args.no_lengths:
        import torch  # only where a model runs: importing it adds ~190 MiB to the peak RSS

        torch.set_num_threads(args.threads)
    workers = [int(w) for w in str(args.workers).split(",")]
    if args.child_check:
        return child_check(args.child_check, args.embeddings, workers[0], not args.no_lengths)
    if args.child_clean:
        return child_clean(args.child_clean, workers[0])
    with tempfile.TemporaryDirectory() as folder:
        speed_runs(Path(folder), args, workers)
        if args.big_rows:
            big_file(Path(folder), args.big_rows, workers[-1], args.big_clean)
    print(f"load average at the end: {os.getloadavg()}; cpus {os.cpu_count()}")


def speed_runs(folder: Path, args: argparse.Namespace, workers: list[int]) -> None:
    """The 100,000-row check per worker count and the 10,000-row check with embeddings."""
    big, small = folder / "big.jsonl", folder / "small.jsonl"
    if args.rows:
        generate(big, args.rows)
    if args.embed_rows:
        generate(small, args.embed_rows, seed=1)
        fast, slow = peer_ratio(small)
        print(f"token counting: batched {fast:.0f} rows/s vs encode() {slow:.0f} rows/s "
              f"({fast / slow:.1f}x), identical counts", flush=True)
    for count in workers if args.rows else []:
        result = run_check(big, embeddings=False, workers=count, threads=args.threads)
        print(f"check without embeddings, {args.rows:,} rows, {count} worker(s): "
              f"{result['wall']:.1f} s wall, {result['cpu']:.1f} s CPU in the main process, "
              f"{result.get('cpu_all', 0):.1f} s with its workers "
              f"({args.rows / result['wall']:,.0f} rows/s), peak RSS "
              f"{result['rss_mib']:,.0f} MiB; steps {result['report']['timings_s']}",
              flush=True)
    if args.embed_rows:
        result = run_check(small, embeddings=True, workers=workers[-1], threads=args.threads)
        report = result["report"]
        print(f"check with embeddings, {args.embed_rows:,} rows, {workers[-1]} worker(s): "
              f"{result['wall']:.1f} s wall, {result['cpu']:.1f} s CPU (clusters step "
              f"{report['timings_s']['clusters']} s, k={report['clusters']['k']})", flush=True)


if __name__ == "__main__":
    main()
