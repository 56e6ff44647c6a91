"""Labelled answers for calibrating the hallucination check: supported vs planted unsupported.

From each grounded question we build, deterministically (seeded):

- supported: the gold answer, and the passage sentence that best matches the question
  (for BoolQ prefixed with the gold yes/no);
- unsupported (planted): an answer taken from a different article, the supporting sentence
  with one number changed to a number absent from the passage, and the supporting sentence
  with one capitalised name swapped for a name from a different article.

The planted kinds are the ones the check is designed to catch; paraphrased but supported
answers and wrong answers copied from the passage are not represented (see docs).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from tunesmith.evaluation.benchmarks import GroundedQA

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_NUMBER = re.compile(r"\b\d+\b")
_NAME = re.compile(r"(?<=\s)[A-Z][a-z]{2,}\b")
_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class Probe:
    """An answer to check against a source, with its label and how it was built."""

    source: str
    answer: str
    unsupported: bool
    kind: str
    group: str


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def best_sentence(passage: str, question: str) -> str:
    """The passage sentence sharing the most words with the question (first on ties)."""
    sentences = [s.strip() for s in _SENTENCE.split(passage) if len(s.split()) >= 4]
    if not sentences:
        return passage.strip()
    asked = _words(question)
    return max(sentences, key=lambda s: len(_words(s) & asked))


def _plant_number(sentence: str, passage: str, rng: random.Random) -> str | None:
    numbers = _NUMBER.findall(sentence)
    if not numbers:
        return None
    old = rng.choice(numbers)
    present = set(_NUMBER.findall(passage))
    new = int(old) + rng.choice([3, 7, 11, 13])
    while str(new) in present:
        new += 1
    return re.sub(rf"\b{old}\b", str(new), sentence, count=1)


def _plant_name(sentence: str, passage: str, foreign: str, rng: random.Random) -> str | None:
    names = _NAME.findall(sentence)
    known = _words(passage)
    replacements = [n for n in _NAME.findall(foreign) if n.lower() not in known]
    if not names or not replacements:
        return None
    old = rng.choice(names)
    return re.sub(rf"\b{old}\b", rng.choice(replacements), sentence, count=1)


def build_probes(items: list[GroundedQA], seed: int = 0, yes_no: bool = False) -> list[Probe]:
    """Supported and planted answers for every item (see the module docstring)."""
    rng = random.Random(seed)
    probes: list[Probe] = []
    for item in items:
        foreign = rng.choice([o for o in items if o.group != item.group] or items)
        sentence = best_sentence(item.passage, item.question)
        lead = f"{item.answer.capitalize()}. " if yes_no else ""
        source = f"{item.passage}\n{item.question}"
        supported = [(lead + sentence, "passage_sentence")]
        if not yes_no:
            supported.append((item.answer, "gold_answer"))
        planted = [(_plant_number(sentence, item.passage, rng), "planted_number"),
                   (_plant_name(sentence, item.passage, foreign.passage, rng), "planted_name")]
        foreign_answer = (lead + best_sentence(foreign.passage, foreign.question) if yes_no
                          else foreign.answer)
        if not _words(foreign_answer) <= _words(source):
            planted.append((foreign_answer, "foreign_answer"))
        probes += [Probe(source, a, False, k, item.group) for a, k in supported]
        probes += [Probe(source, lead + a if yes_no and k != "foreign_answer" else a, True, k,
                         item.group) for a, k in planted if a]
    return probes


def split_by_group(probes: list[Probe], seed: int = 0) -> tuple[list[Probe], list[Probe]]:
    """Calibration and test halves with no article in both (so no passage leaks across)."""
    groups = sorted({p.group for p in probes})
    random.Random(seed).shuffle(groups)
    calibration = set(groups[: len(groups) // 2])
    return ([p for p in probes if p.group in calibration],
            [p for p in probes if p.group not in calibration])
