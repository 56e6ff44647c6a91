"""The real command line on a tiny random-weight model."""

import hashlib
import json
from pathlib import Path

import pytest
import torch
import yaml

from tunesmith.cli import commands
from tunesmith.cli.main import build_parser, main

ROWS = [{"messages": [{"role": "user", "content": f"Say {w}."},
                      {"role": "assistant", "content": json.dumps({"word": w})}]}
        for w in ["red", "blue", "green", "cyan", "pink", "gold", "grey", "teal"]]


@pytest.fixture
def config(tmp_path: Path, toy_dir: Path, write_jsonl) -> Path:
    train = write_jsonl(ROWS + [{"messages": [{"role": "user", "content": "x"},
                                              {"role": "assistant", "content": " "}]}])
    cfg = {"output_dir": str(tmp_path / "run"), "model": {"name": str(toy_dir)},
           "data": {"train": [str(train)], "eval_fraction": 0.25, "max_length": 64},
           "method": {"name": "lora", "r": 4, "alpha": 8},
           "training": {"epochs": 2, "batch_size": 2, "lr": 1e-2, "eval_every": 2,
                        "save_every": 3},
           "evaluation": {"max_new_tokens": 6, "batch_size": 4}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_run_writes_a_complete_run_directory(config: Path, capsys) -> None:
    assert main(["run", str(config)]) == 0
    out = capsys.readouterr().out
    run = config.parent / "run"
    assert "exact_match" in out and "export merged" in out
    for name in ("config.yaml", "versions.json", "inputs.json", "metrics.jsonl",
                 "summary.json", "data/rejects.jsonl", "eval/predictions.jsonl",
                 "eval/eval.json", "export/adapter/adapter_config.json",
                 "export/merged/model.safetensors", "export/merged/tokenizer.json"):
        assert (run / name).is_file(), name
    train_file = yaml.safe_load((run / "config.yaml").read_text())["data"]["train"][0]
    digest = hashlib.sha256(Path(train_file).read_bytes()).hexdigest()
    assert json.loads((run / "inputs.json").read_text()) == {train_file: digest}
    rejects = [json.loads(x) for x in (run / "data/rejects.jsonl").read_text().splitlines()]
    assert [(r["rule"], r["ref"]["line"]) for r in rejects] == [("EmptyAnswer", 9)]
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5, 6]  # 6 train rows, batch 2, 2 epochs
    assert {"loss", "lr", "tokens_per_s", "eta_s", "epoch"} <= set(steps[0])
    assert [r["step"] for r in rows if "eval_loss" in r] == [2, 4, 6]
    # the process's RAM high-water mark: it never falls, and torch alone takes over 0.1 GB
    peaks = [r["peak_rss_gb"] for r in steps]
    assert peaks == sorted(peaks) and peaks[0] > 0.1
    predictions = [json.loads(x) for x in (run / "eval/predictions.jsonl").read_text()
                   .splitlines()]
    assert len(predictions) == 2 and {"base", "fine_tuned"} <= set(predictions[0])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["merge_max_abs_logit_diff"] < 1e-3
    assert summary["export_origin"] == {"step": 6}
    assert summary["training"]["peak_rss_gb"] >= peaks[-1]
    assert f"peak memory {summary['training']['peak_rss_gb']:.2f} GB RAM" in out
    assert set(summary["evaluation"]) == {"base", "fine_tuned"}
    # JSON references get a JSON validity score without any objective in the config
    assert 0.0 <= summary["evaluation"]["fine_tuned"]["json_parse_rate"] <= 1.0
    assert "json_parse_rate" in (run / "eval/table.txt").read_text()


def test_merged_export_loads_with_plain_transformers(config: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    assert main(["run", str(config), "evaluation.enabled=false"]) == 0
    run = config.parent / "run"
    merged = AutoModelForCausalLM.from_pretrained(run / "export/merged", dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(run / "export/merged")
    base_dir = yaml.safe_load((run / "config.yaml").read_text())["model"]["name"]
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    adapter = PeftModel.from_pretrained(base, run / "export/adapter").eval()
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "Say red."}],
                                        add_generation_prompt=True, return_tensors="pt")
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    with torch.no_grad():
        diff = (merged(input_ids=ids).logits - adapter(input_ids=ids).logits).abs().max()
    assert diff.item() < 1e-3
    generation = GenerationConfig.from_pretrained(run / "export/merged")
    eot = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert eot in ([generation.eos_token_id] if isinstance(generation.eos_token_id, int)
                   else generation.eos_token_id)
    assert tokenizer.chat_template


def test_train_then_eval_and_export_alone(config: Path) -> None:
    assert main(["train", str(config)]) == 0
    run = config.parent / "run"
    assert (run / "checkpoints/step-0000006/weights.pt").is_file()
    assert main(["eval", str(config), "evaluation.compare_base=false"]) == 0
    models = json.loads((run / "eval/eval.json").read_text())["models"]
    assert [m["name"] for m in models] == ["fine_tuned"]
    assert main(["export", str(config)]) == 0
    assert (run / "export/merged/config.json").is_file()


def test_resume_continues_from_the_last_checkpoint(config: Path) -> None:
    assert main(["train", str(config), "training.max_steps=3"]) == 0
    run = config.parent / "run"
    assert main(["train", str(config), "--resume"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["training"]["resumed_from_step"] == 3
    assert summary["training"]["steps"] == 6


@pytest.mark.parametrize("older_checkpoint", [False, True])
def test_summary_after_a_resume_lists_the_whole_runs_eval_losses(config: Path,
                                                                 older_checkpoint: bool) -> None:
    assert main(["train", str(config), "training.max_steps=3"]) == 0
    run = config.parent / "run"
    state_file = run / "checkpoints/step-0000003/state.json"
    state = json.loads(state_file.read_text())
    assert [step for step, _ in state["eval_losses"]] == [2, 3]
    if older_checkpoint:  # written before checkpoints kept the history: metrics.jsonl has it
        del state["eval_losses"]
        state_file.write_text(json.dumps(state))
    assert main(["train", str(config), "--resume"]) == 0
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    logged = [[r["step"], r["eval_loss"]] for r in rows if "eval_loss" in r]
    assert [step for step, _ in logged] == [2, 3, 4, 6]
    summary = json.loads((run / "summary.json").read_text())["training"]
    assert summary["resumed_from_step"] == 3 and summary["eval_losses"] == logged


def test_config_problems_are_all_reported(config: Path, capsys) -> None:
    code = main(["run", str(config), "training.lr=fast", "training.batchsize=2",
                 "method.name=magic"])
    err = capsys.readouterr().err
    assert code == 2
    assert "3 problem(s)" in err and "Traceback" not in err
    assert "training.lr: expected a number, found 'fast'" in err
    assert "training.batchsize: unknown key (did you mean training.batch_size?)" in err
    assert "method.name: expected one of lora, rslora, dora, qlora, full, found 'magic'" in err


def test_no_usable_row_stops_before_training(config: Path, write_jsonl, capsys) -> None:
    bad = write_jsonl(['{"messages": [', {"prompt": "a", "completion": ""}], "bad.jsonl")
    code = main(["run", str(config), f"data.train=[{bad}]"])
    err = capsys.readouterr().err
    assert code == 2
    assert "no usable training row" in err and "bad.jsonl:1" in err
    assert not (config.parent / "run/checkpoints").exists()


def test_missing_data_file_is_one_clear_line(config: Path, capsys) -> None:
    code = main(["run", str(config), "data.train=[missing.jsonl]"])
    err = capsys.readouterr().err
    assert code == 2 and "missing.jsonl: no such data file" in err


def test_data_preview_marks_answers(config: Path, capsys) -> None:
    assert main(["data", "preview", "--config", str(config), "--rows", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count('[[{"word": "red"}<|im_end|>]]') == 1
    assert "8 of 9 rows kept" in out


def test_full_fine_tuning_exports_a_merged_model_only(config: Path) -> None:
    assert main(["run", str(config), "method.name=full", "evaluation.enabled=false"]) == 0
    run = config.parent / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary["exports"]) == {"merged"}
    assert summary["merge_max_abs_logit_diff"] == 0.0
    assert not (run / "export/adapter").exists()


def test_second_run_into_the_same_directory_is_refused(config: Path, capsys) -> None:
    assert main(["train", str(config), "training.max_steps=2"]) == 0
    assert main(["train", str(config), "training.max_steps=3"]) == 2
    assert "already holds checkpoints (step-0000002); continue it with --resume" in (
        capsys.readouterr().err)


def test_resume_with_other_settings_is_refused(config: Path, capsys) -> None:
    assert main(["train", str(config), "training.max_steps=2"]) == 0
    assert main(["train", str(config), "method.r=8", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "was trained with other settings (method.r: 4 in the checkpoint, 8 now)" in err
    assert "Traceback" not in err
    assert main(["eval", str(config), "method.name=full"]) == 2


def test_export_ignores_settings_that_only_shape_training(config: Path, capsys) -> None:
    # the checkpoint was trained with batch 1 and another seed; the weights rebuild the same
    assert main(["train", str(config), "training.max_steps=2", "training.batch_size=1",
                 "training.seed=7"]) == 0
    assert main(["export", str(config)]) == 0
    run = config.parent / "run"
    assert (run / "export/merged/model.safetensors").is_file()
    manifest = json.loads((run / "export/merged/tunesmith_export.json").read_text())
    assert (manifest["checkpoint"], manifest["step"]) == ("step-0000002", 2)
    adapter = json.loads((run / "export/adapter/tunesmith_export.json").read_text())
    assert adapter["step"] == 2 and "adapter_model.safetensors" in adapter["files"]
    assert main(["export", str(config), "method.r=8"]) == 2  # the adapter's shape differs
    assert "method.r: 4 in the checkpoint, 8 now" in capsys.readouterr().err


def test_resuming_a_finished_run_has_nothing_to_train(config: Path, capsys) -> None:
    assert main(["train", str(config)]) == 0
    assert main(["train", str(config), "--resume"]) == 0
    assert "already at step 6; nothing to train" in capsys.readouterr().out


def test_fail_policy_covers_rows_too_long(config: Path, write_jsonl, capsys) -> None:
    long = write_jsonl(ROWS + [{"prompt": "word " * 200, "completion": "ok"}], "long.jsonl")
    code = main(["train", str(config), f"data.train=[{long}]", "data.on_bad_row=fail"])
    assert code == 2 and "long.jsonl:9" in capsys.readouterr().err


def test_unusable_test_file_stops_before_training(config: Path, write_jsonl, capsys) -> None:
    bad = write_jsonl(['{"broken'], "test.jsonl")
    assert main(["run", str(config), f"data.test=[{bad}]"]) == 2
    assert "no usable row in the test file(s)" in capsys.readouterr().err
    assert not (config.parent / "run/checkpoints").exists()


@pytest.mark.parametrize("variant", ["rslora", "dora"])
def test_lora_variants_train_and_merge(config: Path, variant: str) -> None:
    assert main(["run", str(config), f"method.name={variant}", "training.max_steps=2",
                 "evaluation.enabled=false"]) == 0
    run = config.parent / "run"
    adapter = json.loads((run / "export/adapter/adapter_config.json").read_text())
    assert adapter["use_rslora"] is (variant == "rslora")
    assert adapter["use_dora"] is (variant == "dora")
    assert json.loads((run / "summary.json").read_text())["merge_max_abs_logit_diff"] < 1e-3


@pytest.mark.parametrize("argv", [
    ["train", "--resume", "c.yaml", "a.b=1", "c=2"],
    ["train", "c.yaml", "--resume", "a.b=1", "c=2"],
    ["train", "c.yaml", "a.b=1", "--resume", "c=2"],
    ["train", "c.yaml", "a.b=1", "c=2", "--resume"],
    ["train", "c.yaml", "--debug", "a.b=1", "--resume", "c=2"],
])
def test_flags_go_before_between_or_after_the_overrides(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert (args.config, args.overrides, args.resume) == ("c.yaml", ["a.b=1", "c=2"], True)


@pytest.mark.parametrize("verb", ["run", "eval", "export"])
def test_every_override_verb_takes_flags_between_overrides(verb: str) -> None:
    args = build_parser().parse_args([verb, "c.yaml", "x=1", "--debug", "y=2"])
    assert (args.config, args.overrides, args.debug) == ("c.yaml", ["x=1", "y=2"], True)


@pytest.mark.parametrize("verb", ["run", "train", "eval", "export", "estimate"])
def test_overrides_are_given_bare_or_with_set(verb: str) -> None:
    args = build_parser().parse_args([verb, "c.yaml", "x=1", "--set", "y=2", "z=3"])
    assert args.overrides == ["x=1", "y=2", "z=3"]


@pytest.mark.parametrize("verb", ["run", "train", "eval", "export", "estimate"])
@pytest.mark.parametrize(("words", "wins"), [
    (["a.b=1", "--set", "a.b=2"], "a.b=2"),
    (["--set", "a.b=2", "a.b=1"], "a.b=1"),
    (["--set=a.b=2", "a.b=1"], "a.b=1"),
    (["a.b=1", "--se", "a.b=2"], "a.b=2"),
    (["--set", "a.b=2", "--debug", "a.b=1", "--set", "a.b=3"], "a.b=3"),
])
def test_the_later_override_wins_bare_or_with_set(verb: str, words: list[str],
                                                  wins: str) -> None:
    args = build_parser().parse_args([verb, "c.yaml", *words])
    assert args.overrides[-1] == wins
    assert sorted(args.overrides) == sorted(w.removeprefix("--set=") for w in words
                                            if w.startswith(("a.b", "--set=")))


def test_the_later_override_sets_the_config(config: Path, capsys) -> None:
    for words, expected in [(["training.lr=0.5", "--set", "training.lr=0.25"], 0.25),
                            (["--set", "training.lr=0.25", "training.lr=0.5"], 0.5)]:
        args = build_parser().parse_args(["train", str(config), *words])
        assert commands._config(args).training.lr == expected


def test_an_unknown_flag_among_overrides_is_still_refused(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["train", "c.yaml", "x=1", "--bogus", "y=2"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_resume_between_config_and_overrides_resumes(config: Path) -> None:
    assert main(["train", str(config), "training.max_steps=2"]) == 0
    assert main(["train", str(config), "--resume", "training.max_steps=3"]) == 0
    rows = [json.loads(x) for x in (config.parent / "run/metrics.jsonl").read_text()
            .splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3]


@pytest.mark.parametrize("tokens", ["['']", "['<a>', ' ']", "['<a>', '<a>']"])
def test_bad_new_tokens_stop_before_the_run_folder_exists(config: Path, tokens: str,
                                                          capsys) -> None:
    assert main(["train", str(config), f"model.add_tokens={tokens}"]) == 2
    err = capsys.readouterr().err
    # the override is to blame, not the file
    assert err.startswith("tunesmith: error: the command line: model.add_tokens: ")
    assert f"(from the override model.add_tokens={tokens})" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (config.parent / "run").exists()


def test_a_malformed_list_override_is_a_command_line_error(config: Path, capsys) -> None:
    assert main(["train", str(config), "--set", "data.train=[a.jsonl"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tunesmith: error: the command line: override 'data.train=[a.jsonl'")
    assert "[a.jsonl, b.jsonl]" in err and err.count("\n") == 1


def test_only_rank_zero_prints_a_config_error(config: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("RANK", "1")  # another process of a distributed launch
    assert main(["train", str(config), "training.lr=fast"]) == 2
    assert capsys.readouterr().err == ""
    assert main(["train", str(config), "data.train=no-such.jsonl"]) == 2
    assert "no-such.jsonl" in capsys.readouterr().err  # may be this rank's own: it says it
    monkeypatch.setenv("RANK", "0")
    assert main(["train", str(config), "training.lr=fast"]) == 2
    assert capsys.readouterr().err.startswith("tunesmith: error: the command line: training.lr")


def test_eval_refuses_a_missing_model_before_any_work(config: Path, capsys) -> None:
    run = config.parent / "run"
    # no checkpoint yet: refused before the base model is scored, and no run folder is made
    assert main(["eval", str(config)]) == 2
    assert "no checkpoint to evaluate or export; run `tunesmith train` first" in (
        capsys.readouterr().err)
    assert not run.exists()
    missing = config.parent / "no-such-model"
    assert main(["eval", str(config), f"evaluation.models=[base, {missing}]"]) == 2
    assert f"model {str(missing)!r}: no such local directory or .gguf file" in (
        capsys.readouterr().err)
    assert not run.exists()


def test_eval_names_prompts_longer_than_training_or_the_context(config: Path, write_jsonl,
                                                                 capsys) -> None:
    long = {"messages": [{"role": "user", "content": "word " * 80},
                         {"role": "assistant", "content": "ok"}]}
    test = write_jsonl([ROWS[0], long], "test.jsonl")
    args = ["eval", str(config), f"data.test=[{test}]", "evaluation.models=[base]"]
    assert main(args) == 0
    assert "1 of 2 test prompts are at least data.max_length=64 tokens long (first: case 1" in (
        capsys.readouterr().err)
    eval_json = json.loads((config.parent / "run/eval/eval.json").read_text())
    assert "prompts_over_context" in json.dumps(eval_json)


def test_data_check_set_is_repeatable() -> None:
    args = build_parser().parse_args(["data", "check", "f.jsonl", "--set", "a.b=1",
                                      "--set", "c.d=2", "e.f=3"])
    assert args.set == ["a.b=1", "c.d=2", "e.f=3"]
