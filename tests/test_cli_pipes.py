"""The CLI on a pipe whose reader has gone: a quiet exit, as other command-line tools do."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_closed_pipe_is_a_quiet_exit(smol_dir: Path, cache_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "TUNESMITH_CACHE": str(cache_dir)}
    command = [sys.executable, "-m", "tunesmith.cli.main", "estimate",
               str(REPO / "examples" / "sample" / "config.yaml"), "--json"]
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head -1` that has already exited
    try:
        done = subprocess.run(command, check=False, stdout=write_end, stderr=subprocess.PIPE,
                              env=env, text=True, timeout=300)
    finally:
        os.close(write_end)
    assert "Error" not in done.stderr and "internal error" not in done.stderr
    assert done.returncode == 141
