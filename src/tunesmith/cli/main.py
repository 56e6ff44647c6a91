"""`tunesmith` entry point: parse arguments, configure logging, turn errors into one line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

from tunesmith.cli.arguments import FlagsAnywhereParser, positive_int
from tunesmith.errors import ConfigError, TunesmithError
from tunesmith.modeling.quantization import NOISY_LOGGERS
from tunesmith.training.allocator import relaunch_with_allocator

logger = logging.getLogger("tunesmith")


def _quiet_libraries() -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _name_deepspeed_accelerator()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    # bitsandbytes and torchao (tunesmith[qlora]) log harmless warnings when transformers
    # imports them; keep those out of the user's output.
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass


def _setup_logging(verbose: bool) -> None:
    rank = int(os.environ.get("RANK", "0"))
    level = logging.DEBUG if verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname).1s %(message)s" if verbose
                                           else "%(message)s"))
    root = logging.getLogger("tunesmith")
    root.handlers[:] = [handler] if rank == 0 else []
    root.setLevel(level if rank == 0 else logging.ERROR)
    root.propagate = False


def _add_common(parser: argparse.ArgumentParser, top: bool = False) -> None:
    # SUPPRESS on the verbs keeps a --debug given before the verb.
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs",
                        default=False if top else argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; each verb's help is its command function's docstring."""
    from tunesmith.cli import commands

    parser = argparse.ArgumentParser(prog="tunesmith", description=(
        "Fine-tune a language model on your examples and measure whether it worked."))
    _add_common(parser, top=True)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="COMMAND",
                                  parser_class=FlagsAnywhereParser)
    for name, func in commands.RUN_VERBS.items():
        sub = verbs.add_parser(name, help=_first_line(func), description=func.__doc__)
        sub.intermixed = True  # users put flags anywhere among the overrides
        _add_common(sub)
        _add_config(sub)
        if name in ("run", "train"):
            sub.add_argument("--resume", action="store_true",
                             help="continue from the run directory's last checkpoint")
        sub.set_defaults(func=func)
    _add_estimate(verbs, commands.estimate)
    data = verbs.add_parser("data", help="inspect, check and clean example files")
    data_verbs = data.add_subparsers(dest="data_verb", required=True, metavar="COMMAND")
    preview = data_verbs.add_parser("preview", help=_first_line(commands.data_preview),
                                    description=commands.data_preview.__doc__)
    _add_common(preview)
    preview.add_argument("data", nargs="?", help="data file (default: the config's train)")
    preview.add_argument("--config", help="run config for model and data settings")
    preview.add_argument("--rows", type=int, default=1, help="how many examples to show")
    preview.add_argument("--start", type=int, default=0, help="first example index")
    preview.add_argument("--model", help="model name or path (overrides the config)")
    preview.set_defaults(func=commands.data_preview)
    commands.add_data_verbs(data_verbs, _add_common)
    return parser


def _add_estimate(verbs: Any, func: Callable) -> None:
    from tunesmith.training.hardware import GPUS

    sub = verbs.add_parser("estimate", help=_first_line(func), description=func.__doc__)
    sub.intermixed = True
    _add_common(sub)
    _add_config(sub)
    sub.add_argument("--hardware", default="cpu", choices=["cpu", *GPUS],
                     help="this CPU (measured once, cached) or a catalogued GPU")
    sub.add_argument("--base-bits", type=int, choices=[4, 8], default=None,
                     help="bits per weight of a quantized frozen base (qlora implies 4)")
    sub.add_argument("--processes", type=positive_int, default=1, help="data-parallel processes")
    sub.add_argument("--sharding", choices=["ddp", "fsdp"], default="ddp",
                     help="how the processes hold the model: whole replicas (ddp) or split "
                          "weights, gradients and optimizer states (fsdp)")
    sub.add_argument("--json", action="store_true", help="print the estimate as JSON")
    sub.set_defaults(func=func)


def _add_config(sub: argparse.ArgumentParser) -> None:
    """The run config and its overrides, given bare (`training.lr=1e-4`) or with --set."""
    sub.add_argument("config", help="run config (YAML)")
    sub.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                     help="dotted overrides, e.g. training.lr=1e-4 (or --set KEY=VALUE)")
    sub.add_argument("--set", dest="set_overrides", action="append", default=[],
                     metavar="KEY=VALUE", help="an override, as a flag")


def _first_line(func: Callable) -> str:
    return (func.__doc__ or "").strip().splitlines()[0]


def _name_deepspeed_accelerator() -> None:
    """With tunesmith[deepspeed] installed, transformers probes DeepSpeed's accelerator at
    import, and on a machine without a GPU DeepSpeed warns that it fell back to the CPU;
    naming the CPU accelerator there (as that fallback does) keeps runs quiet."""
    import importlib.util

    if "DS_ACCELERATOR" in os.environ or importlib.util.find_spec("deepspeed") is None:
        return
    import torch

    if not torch.cuda.is_available():
        os.environ["DS_ACCELERATOR"] = "cpu"


def _rank_zero_says(err: TunesmithError) -> bool:
    """True on ranks other than 0 of a distributed launch for a config error: every rank
    reads the same config files and raises it alike, so rank 0's line is enough."""
    from tunesmith.rundir import is_main_process

    return isinstance(err, ConfigError) and not is_main_process()


def _reader_went_away() -> int:
    """Exit quietly when stdout's reader closed early (`tunesmith ... | head -1`): point
    stdout at devnull so the exit flush does not fail again; 141 is 128 + SIGPIPE, what a
    shell reports for a program the pipe stopped."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (AttributeError, ValueError, OSError):  # stdout replaced by one without a file
        pass
    return 141


# verbs that train or generate: they run under tcmalloc/jemalloc when installed
ALLOCATOR_VERBS = ("run", "train", "eval")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code."""
    if argv is None:  # a real command line (tests pass argv): the process may re-execute
        words = [a for a in sys.argv[1:] if not a.startswith("-")]
        if words and words[0] in ALLOCATOR_VERBS:
            try:
                relaunch_with_allocator()
            except TunesmithError as err:
                print(f"tunesmith: error: {err}", file=sys.stderr)
                return 2
    _quiet_libraries()
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.debug)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit flush
        return code
    except BrokenPipeError:
        return _reader_went_away()
    except TunesmithError as err:
        if args.debug:
            raise
        if not _rank_zero_says(err):
            print(f"tunesmith: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tunesmith: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # the edge turns surprises into one line
        if args.debug:
            raise
        print(f"tunesmith: internal error: {type(err).__name__}: {err} (rerun with --debug "
              "for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
