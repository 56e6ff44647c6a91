"""Time `tunesmith data check` on generated chat data: 100,000 rows without embeddings and
10,000 rows with embeddings. Prints seconds, rows/s and peak memory, plus the speed-up of the
batched token counter over encoding rows one by one (its peer, measured in the same run).

    python bench/data_audit.py [--rows 100000] [--embed-rows 10000] [--threads 2] [--workers 1]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import tempfile
import time
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
    """Chat rows: system, user (10-40 words), assistant (30-90 words); 1% copies, 0.5% PII."""
    rng = random.Random(seed)
    vocab = corpus_words()
    lines = []
    for i in range(rows):
        if i > 10 and rng.random() < 0.01:
            lines.append(lines[rng.randrange(len(lines))])
            continue
        prompt = " ".join(rng.choice(vocab) for _ in range(rng.randint(10, 40))) + "?"
        answer = " ".join(rng.choice(vocab) for _ in range(rng.randint(30, 90))) + "."
        if rng.random() < 0.005:
            answer += f" Write to user{i}@example.com or call +1 415 555 {1000 + i % 9000}."
        lines.append(json.dumps({"messages": [
            {"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def run_check(path: Path, embeddings: bool, workers: int = 1) -> tuple[float, float, dict]:
    """Wall seconds, CPU seconds of this process (all threads) and the report."""
    from tunesmith.audit import AuditOptions, audit_data
    from tunesmith.config import load_config

    start, cpu = time.perf_counter(), time.process_time()
    report = audit_data([str(path)], [], load_config(None, [f"data.workers={workers}"]),
                        AuditOptions(embeddings=embeddings, progress=False))
    return time.perf_counter() - start, time.process_time() - cpu, report


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--embed-rows", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1,
                        help="data.workers for token counting (forked processes; their CPU "
                             "time is not in the CPU column)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with tempfile.TemporaryDirectory() as folder:
        big, small = Path(folder) / "big.jsonl", Path(folder) / "small.jsonl"
        generate(big, args.rows)
        generate(small, args.embed_rows, seed=1)
        fast, slow = peer_ratio(small)
        print(f"token counting: batched {fast:.0f} rows/s vs encode() {slow:.0f} rows/s "
              f"({fast / slow:.1f}x), identical counts", flush=True)
        seconds, cpu, report = run_check(big, embeddings=False, workers=args.workers)
        print(f"check without embeddings, {args.rows:,} rows, {args.workers} worker(s): "
              f"{seconds:.1f} s wall, "
              f"{cpu:.1f} s CPU ({args.rows / seconds:,.0f} rows/s); steps "
              f"{report['timings_s']}", flush=True)
        seconds, cpu, report = run_check(small, embeddings=True)
        print(f"check with embeddings, {args.embed_rows:,} rows: {seconds:.1f} s wall, "
              f"{cpu:.1f} s CPU (clusters step {report['timings_s']['clusters']} s, "
              f"k={report['clusters']['k']})", flush=True)
    print(f"load average at the end: {os.getloadavg()}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak:.0f} MiB; threads {args.threads}; cpus {os.cpu_count()}")


if __name__ == "__main__":
    main()
