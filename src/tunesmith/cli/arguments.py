"""Argument types and checks shared by the CLI verbs."""

from __future__ import annotations

import argparse
from pathlib import Path

from tunesmith.errors import RunDirError


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, found {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, found {value}")
    return value


def output_folder(text: str) -> Path:
    """An --out folder: refuse a path that is an existing file before any work starts."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"--out {path}: a file is in the way; choose a folder path")
    return path
