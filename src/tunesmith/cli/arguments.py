"""Argument types and checks shared by the CLI verbs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from tunesmith.errors import RunDirError


class FlagsAnywhereParser(argparse.ArgumentParser):
    """A parser that, once `intermixed` is set, takes flags before, between or after
    its positionals (`train CONFIG --resume a=b` as well as `train CONFIG a=b --resume`)."""

    intermixed = False
    _inside = False

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None,
    ) -> tuple[argparse.Namespace, list[str]]:
        """Parse flags first, then the positionals, when `intermixed` is set."""
        # Plain argparse stops filling a nargs="*" positional at the first flag and cannot
        # return to it; the intermixed parse calls back here, hence the `_inside` guard.
        if not self.intermixed or self._inside:
            return super().parse_known_args(args, namespace)
        self._inside = True
        try:
            parsed, extras = self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inside = False
        if hasattr(parsed, "set_overrides"):
            words = list(sys.argv[1:] if args is None else args)
            parsed.overrides = in_given_order(words, parsed.overrides, parsed.set_overrides)
            del parsed.set_overrides
        return parsed, extras


def in_given_order(words: list[str], bare: list[str], flagged: list[str]) -> list[str]:
    """Merge bare overrides and `--set` ones in command-line order, so the later one wins.

    The intermixed parse reads every flag before any positional, which loses that order;
    `words` (the verb's arguments) gives it back.
    """
    merged: list[str] = []
    bare_left, flagged_left = list(bare), list(flagged)
    after_set = False
    for word in words:
        flag, equals, value = word.partition("=")
        is_set = len(flag) > 2 and "--set".startswith(flag)  # argparse takes --se for --set
        if is_set and equals:
            after_set, word = True, value
        if after_set and flagged_left and word == flagged_left[0]:
            merged.append(flagged_left.pop(0))
        elif not after_set and bare_left and word == bare_left[0]:
            merged.append(bare_left.pop(0))
        after_set = is_set and not equals
    return [*merged, *bare_left, *flagged_left]


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
