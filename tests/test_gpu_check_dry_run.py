"""bench/gpu_check.py builds both model shapes and trains one step per side on CPU."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--dry-run",
                           "--models", "smollm2-135m", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())
    assert results["params"] == {"smollm2-135m": 134_515_008, "llama-1b": 1_235_814_400}
    sides = {r["side"]: r for r in results["runs"]}
    assert sides["tunesmith"]["steps"] == 1 and sides["tunesmith"]["tokens_per_s"] > 0
    assert "skipped" in sides["trl"] or sides["trl"]["gradient_checkpointing"] is False
