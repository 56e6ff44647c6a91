"""Before/after evaluation on public data: Banking77, XQuAD-en, BoolQ and ARC.

Scores one model per call and caches its answers and per-example scores, so the base model
can be scored once and each fine-tuned model later; with two or more cached models it writes
eval.json and report.html per task and prints the Markdown table used in docs/results.md.

    python bench/eval_real_data.py --model smollm2-135m-instruct --name base
    python bench/eval_real_data.py --model runs/banking77/export/merged --name fine_tuned
    python bench/eval_real_data.py --model run:runs/banking77 --name step_N   # newest checkpoint
    python bench/eval_real_data.py --table base fine_tuned
    python bench/eval_real_data.py --predictions runs/banking77/eval/predictions.jsonl

Rows are taken evenly spread over each file (the files are sorted by label), so a small
limit still covers every class. Datasets come from $TUNESMITH_DATASETS.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from tunesmith.config import EvalConfig
from tunesmith.data.records import Message
from tunesmith.evaluation.benchmarks import read_boolq, read_multiple_choice, read_squad
from tunesmith.evaluation.eval_json import conclude, write_eval_json
from tunesmith.evaluation.forgetting import RetentionScore, score_multiple_choice
from tunesmith.evaluation.runner import EvalCase
from tunesmith.evaluation.scoring import Contract, flat_metrics, score_answers
from tunesmith.evaluation.suite import (
    ModelResult,
    ModelSource,
    SuiteInputs,
    answer_set,
    evaluate_source,
)
from tunesmith.modeling.loading import load_model
from tunesmith.reporting.eval_html import write_report

ROOT = Path(__file__).resolve().parent.parent
BANKING_SYSTEM = "Classify the banking customer's intent. Answer in JSON."
LIMITS = {"banking77": 100, "xquad-en": 60, "boolq": 60, "arc_easy": 200,
          "arc_challenge": 100}


def datasets() -> Path:
    return Path(os.environ.get("TUNESMITH_DATASETS", ROOT.parent / "shared" / "datasets"))


def spread(items: list, count: int) -> list:
    """`count` items evenly spaced over the list (all of them when it is shorter)."""
    if count >= len(items):
        return list(items)
    return [items[i * len(items) // count] for i in range(count)]


def banking_task(limit: int) -> tuple[list[EvalCase], SimpleNamespace, dict]:
    base = datasets() / "banking77"
    with (base / "test.csv").open(newline="", encoding="utf-8") as handle:
        rows = spread(list(csv.DictReader(handle)), limit)
    cases = [EvalCase([Message("user", r["text"])], json.dumps({"intent": r["category"]}),
                      f"test.csv:{i}") for i, r in enumerate(rows)]
    objective = SimpleNamespace(
        task="Banking77 intent as strict JSON", output="json", json_schema={
            "type": "object", "required": ["intent"], "additionalProperties": False,
            "properties": {"intent": {"type": "string"}}},
        labels=[], labels_file=str(base / "categories.json"), label_field="intent",
        regex=None, source="none", targets={"accuracy": ">= 0.85",
                                            "format_validity": ">= 0.99"}, gate_model=None)
    return cases, objective, {"system_prompt": BANKING_SYSTEM, "relevance": False,
                              "max_new_tokens": 32}


def _grounded_objective(task: str, output: str, regex: str | None) -> SimpleNamespace:
    return SimpleNamespace(task=task, output=output, json_schema=None, labels=[],
                           labels_file=None, label_field=None, regex=regex, source="prompt",
                           targets={"hallucination_rate": "<= 0.05"}, gate_model=None)


def xquad_task(limit: int) -> tuple[list[EvalCase], SimpleNamespace, dict]:
    items = spread(read_squad(datasets() / "xquad-en" / "xquad.en.json"), limit)
    cases = [EvalCase([Message("user", "Answer the question with a short phrase from the "
                               f"passage.\n\nPassage: {q.passage}\n\nQuestion: {q.question}")],
                      q.answer, q.ref) for q in items]
    return cases, _grounded_objective("Extractive QA over a given passage", "text", None), {
        "system_prompt": None, "relevance": True, "max_new_tokens": 32}


def boolq_task(limit: int) -> tuple[list[EvalCase], SimpleNamespace, dict]:
    items = spread(read_boolq(datasets() / "boolq" / "boolq.jsonl"), limit)
    cases = [EvalCase([Message("user", f"Passage: {q.passage}\n\nQuestion: {q.question} "
                               "Answer yes or no.")], q.answer, q.ref) for q in items]
    objective = _grounded_objective("Yes/no question over a passage", "labels", None)
    objective.labels, objective.label_first_word = ["yes", "no"], True
    return cases, objective, {"system_prompt": None, "relevance": True, "max_new_tokens": 16}


TASKS = {"banking77": banking_task, "xquad-en": xquad_task, "boolq": boolq_task}
TASK_CHOICE = set(TASKS)


def _config(extra: dict) -> EvalConfig:
    config = EvalConfig(batch_size=16, max_new_tokens=extra["max_new_tokens"],
                        relevance=extra["relevance"], bootstrap_samples=1000)
    return config


def load_run_checkpoint(run_dir: Path) -> tuple[Any, Any, str]:
    """The newest complete checkpoint of a (possibly still training) run, merged."""
    import shutil
    import tempfile

    from tunesmith.config import load_config
    from tunesmith.pipeline import _fresh_model, _method
    from tunesmith.training.checkpoint import latest_checkpoint

    config = load_config(run_dir / "config.yaml")
    last = latest_checkpoint(run_dir / "checkpoints")
    if last is None:
        raise SystemExit(f"{run_dir}: no complete checkpoint yet")
    with tempfile.TemporaryDirectory() as tmp:  # copy first: the run may prune it meanwhile
        shutil.copy(last / "weights.pt", Path(tmp) / "weights.pt")
        weights = torch.load(Path(tmp) / "weights.pt", weights_only=True)
    loaded, added = _fresh_model(config)
    method = _method(config, added)
    model = method.prepare(loaded.model)
    method.load_trainable_state(model, weights)
    return method.merged(model), loaded.tokenizer, f"{run_dir.name}/{last.name}"


def score_model(model_name: str, label: str, out: Path) -> None:
    """Answer every task and the ARC sets with one model; cache everything under `out`."""
    if model_name.startswith("run:"):
        model, tokenizer, model_name = load_run_checkpoint(Path(model_name[4:]))
        loaded = SimpleNamespace(model=model, tokenizer=tokenizer)
    else:
        loaded = load_model(model_name)
    print(f"{label}: {model_name}")
    pair = (loaded.model, loaded.tokenizer)
    cache = out / "models" / label
    cache.mkdir(parents=True, exist_ok=True)
    for task, build in TASKS.items():
        if task not in TASK_CHOICE:
            continue
        started = time.perf_counter()
        cases, objective, extra = build(LIMITS[task])
        settings = {"system_prompt": extra["system_prompt"], "end_of_turn": None,
                    "train_on": "all"}
        inputs = SuiteInputs(cases, settings, Contract.from_objective(objective))
        result = evaluate_source(ModelSource(label, model_name, loaded=pair), inputs,
                                 _config(extra))
        payload = asdict(result)
        payload["seconds"] = time.perf_counter() - started
        (cache / f"{task}.json").write_text(json.dumps(payload, default=str))
        print(f"{label} {task}: {len(cases)} cases in {payload['seconds']:.0f} s")
    for name in ("arc_easy", "arc_challenge"):
        started = time.perf_counter()
        items = spread(read_multiple_choice(datasets() / "arc" / f"{name}.jsonl"), LIMITS[name])
        correct = score_multiple_choice(loaded.model, loaded.tokenizer, items)
        (cache / f"{name}.json").write_text(json.dumps({"per_example": correct}))
        print(f"{label} {name}: {len(items)} rows in {time.perf_counter() - started:.0f} s, "
              f"accuracy {sum(correct) / len(correct):.3f}")


def _load_result(path: Path, cases: list[EvalCase], objective: Any,
                 relevance: bool) -> ModelResult:
    """A cached model's answers, scored again under the task's current contract."""
    raw = json.loads(path.read_text())
    data = answer_set(cases, raw["answers"], raw["stopped"])
    scores, details = score_answers(data, Contract.from_objective(objective), relevance)
    metrics = flat_metrics(scores, objective.output)
    metrics["generated_tokens_per_s"] = raw["metrics"].get("generated_tokens_per_s")
    return ModelResult(raw["name"], raw["description"], data.answers, data.stopped, scores,
                       metrics, details)


def _cell(metric: dict[str, Any]) -> str:
    value, ci = metric.get("value"), metric.get("ci")
    if value is None:
        return "-"
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{value:.3f}"


def table(labels: list[str], out: Path) -> None:
    """Compare cached models per task, write eval.json/report.html, print Markdown rows."""
    wanted = {"banking77": ["accuracy", "format_validity", "label_membership", "stop_rate"],
              "xquad-en": ["exact_match", "token_f1", "similarity_to_reference",
                           "similarity_to_question", "rouge_l", "chrf", "hallucination_rate"],
              "boolq": ["accuracy", "label_membership", "stop_rate", "similarity_to_question",
                        "hallucination_rate"]}
    print(f"| task | metric | {' | '.join(labels)} | difference (last - first) |")
    print("|---|---|" + "---|" * len(labels) + "---|")
    for task, build in TASKS.items():
        if not all((out / "models" / label / f"{task}.json").is_file() for label in labels):
            continue
        cases, objective, extra = build(LIMITS[task])
        results = [_load_result(out / "models" / label / f"{task}.json", cases, objective,
                                extra["relevance"]) for label in labels]
        _, payload = conclude(cases, results, objective, 1000)
        task_dir = out / task
        task_dir.mkdir(parents=True, exist_ok=True)
        write_eval_json(task_dir / "eval.json", payload)
        write_report(task_dir / "report.html", payload)
        _print_rows(f"{task} ({len(cases)})", payload, labels, wanted[task])
    _arc_rows(labels, out)


def _arc_rows(labels: list[str], out: Path) -> None:
    from tunesmith.evaluation.forgetting import compare_retention

    for name in ("arc_easy", "arc_challenge"):
        scores = [RetentionScore(name, label, json.loads(
            (out / "models" / label / f"{name}.json").read_text())["per_example"])
            for label in labels]
        cells = [f"{s.accuracy:.3f} [{s.ci[0]:.3f}, {s.ci[1]:.3f}]" for s in scores]
        report = compare_retention(scores[0], scores[-1], 2.0)
        low, high = (-100 * x for x in reversed(report.diff.ci)) if report.diff.ci else (0, 0)
        warning = " WARNING: drop above 2 points" if report.warnings else ""
        print(f"| {name} ({len(scores[0].per_example)}) | accuracy (log-likelihood) | "
              f"{' | '.join(cells)} | drop {report.drop_points:.1f} points "
              f"[{low:.1f}, {high:.1f}]{warning} |")


def from_predictions(path: Path, out: Path) -> None:
    """Score the answers a `tunesmith run` stored in eval/predictions.jsonl (Banking77)."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    names = [k for k, v in rows[0].items() if isinstance(v, dict) and "answer" in v]
    cases = [EvalCase([Message(m["role"], m["content"]) for m in r["prompt"]], r["reference"],
                      r.get("source")) for r in rows]
    _, objective, _ = banking_task(1)
    contract = Contract.from_objective(objective)
    results = []
    for name in names:
        data = answer_set(cases, [r[name]["answer"] for r in rows],
                           [r[name]["stopped"] for r in rows])
        scores, details = score_answers(data, contract, relevance=False)
        results.append(ModelResult(name, f"{path} ({name})", data.answers, data.stopped,
                                   scores, flat_metrics(scores, "json"), details))
    _, payload = conclude(cases, results, objective, 1000)
    task_dir = out / "banking77-full"
    task_dir.mkdir(parents=True, exist_ok=True)
    write_eval_json(task_dir / "eval.json", payload)
    write_report(task_dir / "report.html", payload)
    _print_rows(f"banking77 full test ({len(cases)})", payload, names,
                ["accuracy", "exact_match", "format_validity", "json_parse_rate",
                 "label_membership", "stop_rate"])
    for model in payload["models"]:
        top = model["details"].get("top_confusions", [])[:3]
        print(f"{model['name']} commonest confusions: "
              + "; ".join(f"{c['expected']} -> {c['predicted']} ({c['count']})" for c in top))


def _print_rows(title: str, payload: dict, labels: list[str], metrics: list[str]) -> None:
    for metric in metrics:
        cells = [_cell(m["metrics"].get(metric, {})) for m in payload["models"]]
        diff = next((c for c in payload["comparisons"] if c["metric"] == metric
                     and c["candidate"] == labels[-1]), None)
        shown = "-" if not diff or diff["diff"] is None else (
            f"{diff['diff']:+.3f} [{diff['ci'][0]:+.3f}, {diff['ci'][1]:+.3f}] "
            f"({len(diff['improved'])} improved, {len(diff['regressed'])} regressed)")
        print(f"| {title} | {metric} | {' | '.join(cells)} | {shown} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model to score (alias, directory or .gguf)")
    parser.add_argument("--name", help="label of the model in the table")
    parser.add_argument("--table", nargs="+", metavar="NAME", help="compare cached models")
    parser.add_argument("--out", default=str(ROOT / "runs" / "eval-real"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, help="rows per task (smoke tests; default: "
                        + ", ".join(f"{k} {v}" for k, v in LIMITS.items()) + ")")
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), help="generation tasks "
                        "to score (default: all)")
    parser.add_argument("--predictions", help="score a run's eval/predictions.jsonl instead")
    args = parser.parse_args()
    if args.tasks:
        TASK_CHOICE.intersection_update(args.tasks)
    if args.predictions:
        from_predictions(Path(args.predictions), Path(args.out))
    if args.limit:
        LIMITS.update({k: args.limit for k in LIMITS})
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    if args.model:
        score_model(args.model, args.name or Path(args.model).name, Path(args.out))
    if args.table:
        table(args.table, Path(args.out))


if __name__ == "__main__":
    main()
