"""Calibrate the offline hallucination check on labelled XQuAD-en and BoolQ probes.

Builds supported and planted-unsupported answers (tunesmith.evaluation.grounding_probes),
picks `min_support` on one half of the articles and prints precision and recall of the
"hallucinated" class on the other half, per dataset and per planted kind.

    python bench/hallucination_calibration.py [--boolq-rows 800]

Datasets come from $TUNESMITH_DATASETS (default: ../shared/datasets from the repo root).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from tunesmith.evaluation.benchmarks import read_boolq, read_squad
from tunesmith.evaluation.grounding_probes import build_probes, split_by_group
from tunesmith.evaluation.hallucination import (
    DEFAULT_MIN_SUPPORT,
    calibrate,
    check_answer,
    precision_recall,
)


def datasets_dir() -> Path:
    root = Path(__file__).resolve().parent.parent
    return Path(os.environ.get("TUNESMITH_DATASETS", root.parent / "shared" / "datasets"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boolq-rows", type=int, default=800)
    args = parser.parse_args()
    base = datasets_dir()
    sets = {"xquad-en": build_probes(read_squad(base / "xquad-en" / "xquad.en.json"), seed=0),
            "boolq": build_probes(read_boolq(base / "boolq" / "boolq.jsonl")[: args.boolq_rows],
                                  seed=0, yes_no=True)}
    halves = {name: split_by_group(probes, seed=0) for name, probes in sets.items()}
    calib = [p for cal, _ in halves.values() for p in cal]
    chosen = calibrate([check_answer(p.answer, p.source) for p in calib],
                       [p.unsupported for p in calib])
    print(f"calibrated min_support = {chosen:.2f} (shipped default {DEFAULT_MIN_SUPPORT:.2f})")
    print("| set | probes (unsupported) | precision | recall | F1 | accuracy |")
    print("|---|---|---|---|---|---|")
    for name, (_, test) in [*halves.items(), ("both", ([], [p for _, t in halves.values()
                                                          for p in t]))]:
        flags = [check_answer(p.answer, p.source).hallucinated(chosen) for p in test]
        stats = precision_recall(flags, [p.unsupported for p in test])
        print(f"| {name} (test half) | {len(test)} ({sum(p.unsupported for p in test)}) | "
              f"{stats['precision']:.3f} | {stats['recall']:.3f} | {stats['f1']:.3f} | "
              f"{stats['accuracy']:.3f} |")
    test = [p for _, t in halves.values() for p in t]
    print("\n| kind | probes | flagged as hallucinated |")
    print("|---|---|---|")
    for kind in sorted({p.kind for p in test}):
        chosen_probes = [p for p in test if p.kind == kind]
        flagged = sum(check_answer(p.answer, p.source).hallucinated(chosen)
                      for p in chosen_probes)
        print(f"| {kind} | {len(chosen_probes)} | {flagged / len(chosen_probes):.3f} |")


if __name__ == "__main__":
    main()
