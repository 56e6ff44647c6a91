"""Time tunesmith's JSON readers against bare `json` decoding of the same rows, in one run.

Writes generated chat rows (three messages and a meta object each) as a JSONL file and as
one JSON array, reads each with `read_rows` and with its peer (`json.loads` per line; one
`json.load` of the whole array), and prints the best of --repeat times and the ratio. The
ratio is the price of the row checks (per-row locations, NaN/Infinity, lone surrogates,
repeated keys); a jump in it is a regression such as a per-item scan of the whole chunk.

    python bench/json_reading.py [--jsonl-rows 200000] [--array-items 30000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tunesmith.data.readers import read_rows

WORDS = ("account", "weather", "river", "history", "answer", "explain", "compare", "garden",
         "travel", "network")


def chat_rows(count: int, seed: int = 0) -> list[dict]:
    """Rows of the `messages` shape with 8-, 20- and 40-word turns."""
    rng = random.Random(seed)

    def text(words: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(words))

    return [{"messages": [{"role": "system", "content": text(8)},
                          {"role": "user", "content": text(20)},
                          {"role": "assistant", "content": text(40)}],
             "meta": {"id": index, "source": "bench"}} for index in range(count)]


def best_of(repeat: int, read: Callable[[], int]) -> tuple[float, int]:
    """The shortest wall time of `repeat` reads, and the rows the last one gave."""
    times, rows = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        rows = read()
        times.append(time.perf_counter() - start)
    return min(times), rows


def report(name: str, ours: tuple[float, int], peer: tuple[float, int]) -> None:
    if ours[1] != peer[1]:
        raise SystemExit(f"{name}: read_rows gave {ours[1]} rows, the peer {peer[1]}")
    print(f"{name}: {ours[1]:,} rows; read_rows {ours[0]:.3f} s ({ours[1] / ours[0]:,.0f} "
          f"rows/s), bare json {peer[0]:.3f} s; ratio {ours[0] / peer[0]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jsonl-rows", type=int, default=200_000)
    parser.add_argument("--array-items", type=int, default=30_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rows = chat_rows(max(args.jsonl_rows, args.array_items))
    with tempfile.TemporaryDirectory() as folder:
        jsonl, array = Path(folder) / "rows.jsonl", Path(folder) / "rows.json"
        jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows[:args.jsonl_rows]))
        array.write_text("[\n" + ",\n".join(json.dumps(row) for row in rows[:args.array_items])
                         + "\n]\n")

        def bare_lines() -> int:
            with jsonl.open(encoding="utf-8") as handle:
                return sum(1 for line in handle if json.loads(line))

        def bare_array() -> int:
            with array.open(encoding="utf-8") as handle:
                return len(json.load(handle))

        for name, path, peer in (("jsonl", jsonl, bare_lines), ("json array", array, bare_array)):
            ours = best_of(args.repeat, lambda path=path: sum(1 for row in read_rows(path)
                                                              if row.value is not None))
            report(name, ours, best_of(args.repeat, peer))


if __name__ == "__main__":
    main()
