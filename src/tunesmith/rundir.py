"""The run directory: resolved config, package versions and input file hashes."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Any

import yaml

from tunesmith.config import RunConfig, to_dict
from tunesmith.data.hashing import sha256_file
from tunesmith.data.records import dumps_strict
from tunesmith.errors import RunDirError

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
