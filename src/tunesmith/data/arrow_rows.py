"""Read rows from Arrow files and folders written by Hugging Face datasets' `save_to_disk`.

Reads the Arrow files directly with pyarrow (record batch by record batch), so the datasets
library is not needed to read what it saved. A `DatasetDict` folder holds one folder per
split; its `train` split is read unless a split folder is named.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from tunesmith.data.readers import (
    RawRow,
    ReadNotes,
    refuse_repeated_columns,
    refuse_repeated_fields,
)
from tunesmith.data.records import RowRef
from tunesmith.errors import DataError


def read_arrow_file(path: Path, source: str, start: int = 0) -> Iterator[RawRow]:
    """Yield the rows of one Arrow IPC file (stream or file format), numbered from start+1."""
    import pyarrow as pa

    number = start
    for batch in _batches(path, pa):
        if number == start:
            refuse_repeated_columns(path, batch.schema.names)
        try:
            values = batch.to_pylist()
        except ValueError as err:  # a struct naming a field twice
            refuse_repeated_fields(path, err, number)
            raise
        for value in values:
            number += 1
            yield RawRow(RowRef(source, number, "row"), value)


def _batches(path: Path, pa) -> Iterator:
    # datasets writes the stream format; pyarrow's own default is the file format
    try:
        with pa.memory_map(str(path)) as source:
            yield from pa.ipc.open_stream(source)
        return
    except pa.ArrowInvalid:
        pass
    try:
        with pa.memory_map(str(path)) as source:
            reader = pa.ipc.open_file(source)
            for index in range(reader.num_record_batches):
                yield reader.get_batch(index)
    except pa.ArrowInvalid as err:
        raise DataError(f"{path}: not an Arrow file ({err}); expected a file written by "
                        "pyarrow or datasets") from None


def read_saved_dataset(folder: Path, notes: ReadNotes) -> Iterator[RawRow]:
    """Yield the rows of a saved Dataset folder, or of a DatasetDict's train split."""
    if (folder / "dataset_dict.json").is_file():
        folder = _train_split(folder, notes)
    state = folder / "state.json"
    if not state.is_file():
        raise DataError(f"{folder} is a folder but not a saved dataset (no state.json or "
                        "dataset_dict.json); name the data file(s) inside it")
    files = [entry["filename"] for entry in json.loads(state.read_text())["_data_files"]]
    number = 0
    for name in files:
        for row in read_arrow_file(folder / name, str(folder), number):
            number = row.ref.line
            yield row


def _train_split(folder: Path, notes: ReadNotes) -> Path:
    splits = json.loads((folder / "dataset_dict.json").read_text()).get("splits", [])
    if "train" not in splits:
        raise DataError(f"{folder} is a DatasetDict with splits {splits} and no 'train'; "
                        f"name the split folder, e.g. {folder / splits[0]}" if splits else
                        f"{folder}: dataset_dict.json lists no splits")
    if len(splits) > 1:
        others = ", ".join(s for s in splits if s != "train")
        notes.fixes.append(f"{folder}: read the 'train' split; name {folder}/<split> to read "
                           f"another ({others})")
    return folder / "train"
