"""The features of every usable row of one side (train or eval), gathered from chunks."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tunesmith.data.checks.features import Chunk
from tunesmith.data.records import Reject, RowRef

KEEP_REJECTS = 50


class RefList:
    """Row references built on demand from per-row source ids and numbers."""

    def __init__(self) -> None:
        self.sources: list[tuple[str, str]] = []  # (source, unit)
        self.ids: list[np.ndarray] = []
        self.lines: list[np.ndarray] = []

    def extend(self, places: list[tuple[str, int, str]]) -> None:
        index = {s: i for i, s in enumerate(self.sources)}
        ids = []
        for source, _, unit in places:
            if (source, unit) not in index:
                index[(source, unit)] = len(self.sources)
                self.sources.append((source, unit))
            ids.append(index[(source, unit)])
        self.ids.append(np.array(ids, dtype=np.int32))
        self.lines.append(np.array([line for _, line, _ in places], dtype=np.int64))

    def freeze(self) -> None:
        """Join the per-chunk arrays into one of each."""
        self.ids = [np.concatenate(self.ids) if self.ids else np.zeros(0, np.int32)]
        self.lines = [np.concatenate(self.lines) if self.lines else np.zeros(0, np.int64)]

    def row_ref(self, position: int) -> RowRef:
        source, unit = self.sources[int(self.ids[0][position])]
        return RowRef(source, int(self.lines[0][position]), unit)

    def __getitem__(self, position: int) -> str:
        return str(self.row_ref(position))

    def __len__(self) -> int:
        return len(self.lines[0])


@dataclass
class RowTable:
    """Per usable row: raw position, ref, hashes, band keys, label; plus reject counts."""

    rows: int = 0
    positions: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    refs: RefList = field(default_factory=RefList)
    keys: dict[str, np.ndarray] = field(default_factory=dict)
    bands: dict[str, np.ndarray] = field(default_factory=dict)
    labels: list[str] | None = None
    rejects: list[Reject] = field(default_factory=list)  # the first KEEP_REJECTS
    reject_rules: Counter = field(default_factory=Counter)
    fixes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # about whole files

    @property
    def usable(self) -> int:
        return len(self.positions)

    @property
    def rejected(self) -> int:
        return sum(self.reject_rules.values())


def gather(chunks: Iterable[Chunk], labelled: bool,
           merge_extra: Callable[[Any], None] | None = None) -> RowTable:
    """Concatenate chunk features into one table; `merge_extra` receives each chunk."""
    table = RowTable(labels=[] if labelled else None)
    parts: dict[str, list] = {"positions": [], "full_key": [], "prompt_key": [],
                              "answer_key": []}
    bands: dict[str, list] = {}
    for chunk in chunks:
        table.rows += chunk.rows
        parts["positions"].append(np.array(chunk.positions, dtype=np.int64))
        for name in ("full_key", "prompt_key", "answer_key"):
            parts[name].append(np.array(chunk.columns.get(name, []), dtype=np.int64))
        if table.labels is not None:
            table.labels.extend(chunk.columns.get("label", []))
        table.refs.extend(chunk.places)
        for name, keys in chunk.bands.items():
            bands.setdefault(name, []).append(keys)
        for _, reject in chunk.rejects:
            table.reject_rules[reject.rule] += 1
            if len(table.rejects) < KEEP_REJECTS:
                table.rejects.append(reject)
        if merge_extra:
            merge_extra(chunk)
    # one column at a time, each chunk list dropped as soon as it is joined: the peak is the
    # table plus one column, not two whole tables
    table.positions = _cat(parts.pop("positions"))
    table.keys = {name: _cat(parts.pop(name)) for name in list(parts)}
    table.bands = {name: np.concatenate(bands.pop(name)) for name in list(bands)}
    table.refs.freeze()
    return table


def _cat(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(arrays) if arrays else np.zeros(0, np.int64)
