"""The real default model (SmolLM2-135M-Instruct from its GGUF file): a short end-to-end run."""

import json
import shutil
from pathlib import Path

import pytest

from tunesmith.cli.main import main
from tunesmith.modeling.loading import DEFAULT_MODEL, _alias_gguf, resolve_model

REPO = Path(__file__).resolve().parents[1]


def test_alias_converts_once_into_the_cache(smol_dir: Path, cache_dir: Path) -> None:
    config = json.loads((smol_dir / "config.json").read_text())
    assert config["model_type"] == "llama" and config["num_hidden_layers"] == 30
    assert "quantization_config" not in config
    assert (smol_dir / "model.safetensors").is_file()
    assert (smol_dir / "chat_template.jinja").is_file()
    # a second resolve reuses the cache without converting again
    before = (smol_dir / "model.safetensors").stat().st_mtime_ns
    assert Path(resolve_model(DEFAULT_MODEL, cache_dir)) == smol_dir
    assert (smol_dir / "model.safetensors").stat().st_mtime_ns == before


def test_hub_ids_and_bad_paths_resolve_without_network(tmp_path: Path) -> None:
    from tunesmith.errors import ModelError

    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == (
        "HuggingFaceTB/SmolLM2-135M-Instruct")
    with pytest.raises(ModelError, match="no config.json"):
        resolve_model(str(tmp_path))
    with pytest.raises(ModelError, match="no such local directory"):
        resolve_model("./missing/model")


def test_local_gguf_file_is_converted(tmp_path: Path) -> None:
    gguf = tmp_path / "model.gguf"
    shutil.copyfile(_alias_gguf(DEFAULT_MODEL), gguf)
    converted = Path(resolve_model(str(gguf), tmp_path / "cache"))
    assert (converted / "config.json").is_file() and (converted / "tokenizer.json").is_file()
    assert not list(converted.parent.glob(".*"))  # no temporary folder left behind


def test_sample_config_runs_end_to_end(tmp_path: Path, cache_dir: Path, capsys) -> None:
    out = tmp_path / "run"
    code = main(["run", str(REPO / "examples/sample/config.yaml"), f"output_dir={out}",
                 f"model.cache_dir={cache_dir}",
                 f"data.train=[{REPO / 'examples/sample/train.jsonl'}]",
                 f"data.test=[{REPO / 'examples/sample/test.jsonl'}]",
                 "training.max_steps=2", "evaluation.limit=4", "evaluation.max_new_tokens=16"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["training"]["steps"] == 2
    assert set(summary["evaluation"]) == {"base", "fine_tuned"}
    assert len((out / "eval/predictions.jsonl").read_text().splitlines()) == 4
    assert summary["merge_max_abs_logit_diff"] < 1e-3
