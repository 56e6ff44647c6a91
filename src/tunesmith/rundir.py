"""The run directory: resolved config, package versions and input file hashes."""

from __future__ import annotations

import fcntl
import importlib.metadata
import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from tunesmith.config import RunConfig, to_dict
from tunesmith.data.hashing import sha256_file
from tunesmith.data.records import dumps_strict
from tunesmith.errors import RunDirError

LOCK_FILE = ".lock"  # holds the PID of the command using the run directory
PACKAGES = ("tunesmith", "torch", "transformers", "peft", "accelerate", "safetensors",
            "tokenizers", "gguf", "numpy")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages a run depends on."""
    from tunesmith.training.allocator import allocator_in_use

    versions = {"python": platform.python_version(), "allocator": allocator_in_use()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def write_json(path: Path, payload: Any) -> None:
    """Write JSON through a temporary file and a rename (on the main process only)."""
    if not is_main_process():
        return
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(dumps_strict(payload, indent=2, ensure_ascii=False, default=str) + "\n")
    tmp.replace(path)


def is_main_process() -> bool:
    """True in a single process and on rank 0 of a distributed launch."""
    return int(os.environ.get("RANK", "0")) == 0


def world_size() -> int:
    """The number of processes of this launch (1 unless torchrun or accelerate started it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_run_dir(config: RunConfig) -> Path:
    """Create the run directory and record the config, versions and input hashes."""
    run_dir = Path(config.output_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunDirError(f"cannot create output_dir {run_dir}: {err.strerror}; choose "
                          "another output_dir") from None
    if not is_main_process():
        return run_dir
    tmp = run_dir / "config.yaml.tmp"
    tmp.write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
    tmp.replace(run_dir / "config.yaml")
    write_json(run_dir / "versions.json", package_versions())
    files = [*config.data.train, *config.data.eval, *config.data.test]
    inputs = {f: sha256_file(Path(f)) for f in dict.fromkeys(files) if Path(f).exists()}
    write_json(run_dir / "inputs.json", inputs)
    return run_dir


@contextmanager
def locked_run_dir(run_dir: Path, create: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on `run_dir` for the block, or raise RunDirError naming its holder.

    Only rank 0 of a distributed launch locks (the other ranks share its run). The kernel drops
    a flock when its process ends however it ends, so a killed run leaves no stale lock. With
    `create` false a missing directory is not created (nothing there to protect).
    """
    if not is_main_process() or (not create and not run_dir.is_dir()):
        yield
        return
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise RunDirError(f"cannot write to output_dir {run_dir}: {err.strerror}; choose "
                          "another output_dir") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirError(_in_use(run_dir, fd)) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # the PID goes with the lock
    finally:
        os.close(fd)  # releases the lock


def _in_use(run_dir: Path, fd: int) -> str:
    """The message for a run directory another command holds."""
    pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
    holder = f"PID {pid}" if pid.isdigit() else "PID unknown"
    stop = f", stop it (kill {pid})" if pid.isdigit() else ""
    return (f"{run_dir} is in use by another tunesmith command ({holder}; lock file "
            f"{run_dir / LOCK_FILE}); wait for it to finish{stop}, or choose another output_dir")
