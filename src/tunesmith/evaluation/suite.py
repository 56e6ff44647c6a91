"""Evaluate a set of models on the same prompts: answers, metrics, forgetting and leakage.

Models come as `ModelSource`s: a loader for a local model (loaded one at a time and freed
before the next), an already-loaded model, or an OpenAI-compatible endpoint. Every model
gets the same conversations; local models render them with their own tokenizer's chat
template and the same system prompt and end-of-turn settings.
"""

from __future__ import annotations

import gc
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tunesmith.data.records import Conversation
from tunesmith.evaluation.benchmarks import MultipleChoice
from tunesmith.evaluation.compare import mean
from tunesmith.evaluation.endpoint import ChatEndpoint, judge_answers
from tunesmith.evaluation.forgetting import RetentionScore, score_multiple_choice
from tunesmith.evaluation.generation import context_length, generate
from tunesmith.evaluation.memorisation import find_probes, probe_memorisation
from tunesmith.evaluation.runner import EvalCase, held_out_loss
from tunesmith.evaluation.scoring import AnswerSet, Contract, Scores, flat_metrics, score_answers
from tunesmith.formatting.chat import ChatFormatter, EncodedExample

logger = logging.getLogger(__name__)


@dataclass
class ModelSource:
    """Where a model comes from; exactly one of `load`, `loaded` or `endpoint` is set."""

    name: str
    description: str
    load: Callable[[], tuple[Any, Any]] | None = None  # -> (model, tokenizer)
    loaded: tuple[Any, Any] | None = None
    endpoint: ChatEndpoint | None = None


@dataclass
class SuiteInputs:
    """Everything every model is scored on."""

    cases: list[EvalCase]
    formatter_settings: dict[str, Any]  # system_prompt, end_of_turn, train_on
    contract: Contract
    eval_examples: list[EncodedExample] = field(default_factory=list)
    train_conversations: list[Conversation] = field(default_factory=list)
    forgetting: dict[str, list[MultipleChoice]] = field(default_factory=dict)


@dataclass
class ModelResult:
    """One model's answers, per-example scores, flat metric values and details."""

    name: str
    description: str
    answers: list[str]
    stopped: list[bool]
    scores: Scores
    metrics: dict[str, float | None]
    details: dict[str, Any] = field(default_factory=dict)
    retention: dict[str, RetentionScore] = field(default_factory=dict)


def answer_set(cases: list[EvalCase], answers: list[str], stopped: list[bool]) -> AnswerSet:
    questions = [next((m.content for m in reversed(c.messages) if m.role == "user"), "")
                 for c in cases]
    prompts = ["\n".join(m.content for m in c.messages if m.role != "system") for c in cases]
    return AnswerSet(answers, stopped, [c.reference for c in cases], questions, prompts)


def _local_answers(model: Any, formatter: ChatFormatter, cases: list[EvalCase],
                   config: Any) -> tuple[list[str], list[bool], float, int]:
    tokenizer = formatter.tokenizer
    prompts = [formatter.prompt_ids(case.messages, case.tools) for case in cases]
    stop_ids = sorted({formatter.end_of_turn_id, tokenizer.eos_token_id} - {None})
    started = time.perf_counter()
    outputs = generate(model, tokenizer, prompts, stop_ids, config.batch_size,
                       config.max_new_tokens)
    seconds = time.perf_counter() - started
    tokens = sum(len(o.token_ids) for o in outputs)
    over = [i for i, o in enumerate(outputs) if o.over_context]
    if over:
        logger.warning("%d of %d test prompts (first: case %d, %d tokens) leave fewer than "
                       "evaluation.max_new_tokens=%d positions of the model's %d: not answered,"
                       " scored as wrong", len(over), len(cases), over[0],
                       len(prompts[over[0]]), config.max_new_tokens, context_length(model))
    return ([o.text for o in outputs], [o.stopped for o in outputs],
            tokens / max(seconds, 1e-9), len(over))


def _endpoint_answers(endpoint: ChatEndpoint, cases: list[EvalCase], settings: dict[str, Any],
                      max_new_tokens: int) -> tuple[list[str], list[bool]]:
    answers, stopped = [], []
    for case in cases:
        messages = [{"role": m.role, "content": m.content} for m in case.messages]
        if settings.get("system_prompt") and not any(m["role"] == "system" for m in messages):
            messages.insert(0, {"role": "system", "content": settings["system_prompt"]})
        text, done = endpoint.chat(messages, max_new_tokens, case.tools)
        answers.append(text)
        stopped.append(done)
    return answers, stopped


def _local_extras(result: ModelResult, model: Any, formatter: ChatFormatter,
                  inputs: SuiteInputs, config: Any) -> None:
    """Eval loss, multiple-choice retention and the memorisation probe for a local model."""
    tokenizer = formatter.tokenizer
    if inputs.eval_examples:
        loss = held_out_loss(model, inputs.eval_examples, tokenizer.pad_token_id,
                             config.batch_size)
        result.metrics["eval_loss"] = loss
        result.metrics["perplexity"] = math.exp(loss) if loss < 50 else float("inf")
    for set_name, items in inputs.forgetting.items():
        logger.info("%s: scoring %d multiple-choice rows of %s", result.name, len(items),
                    set_name)
        correct = score_multiple_choice(model, tokenizer, items, batch_size=16)
        result.retention[set_name] = RetentionScore(set_name, result.name, correct)
        result.metrics[f"retention:{set_name}"] = result.retention[set_name].accuracy
    if config.memorisation_rows and inputs.train_conversations:
        probes = find_probes(inputs.train_conversations, config.memorisation_rows)
        report = probe_memorisation(model, formatter, probes, config.batch_size)
        result.metrics["memorisation_rate"] = report.rate if probes else None
        result.details["memorisation"] = {"probed": report.probed, "leaked": report.leaked}


def evaluate_source(source: ModelSource, inputs: SuiteInputs, config: Any) -> ModelResult:
    """Answer every case with one model and score the answers."""
    logger.info("evaluating %s (%s) on %d cases", source.name, source.description,
                len(inputs.cases))
    model = formatter = None
    speed, over = None, 0
    if source.endpoint is not None:
        answers, stopped = _endpoint_answers(source.endpoint, inputs.cases,
                                             inputs.formatter_settings, config.max_new_tokens)
    else:
        model, tokenizer = source.loaded or source.load()  # type: ignore[misc]
        formatter = ChatFormatter(tokenizer, **inputs.formatter_settings)
        answers, stopped, speed, over = _local_answers(model, formatter, inputs.cases, config)
    data = answer_set(inputs.cases, answers, stopped)
    scores, details = score_answers(data, inputs.contract, config.relevance)
    result = ModelResult(source.name, source.description, answers, stopped, scores,
                         flat_metrics(scores, inputs.contract.output), details)
    result.metrics["generated_tokens_per_s"] = speed
    if model is not None:
        result.metrics["prompts_over_context"] = over
    if config.judge_url and inputs.contract.source != "none":
        judge = ChatEndpoint(config.judge_url.rstrip("/"), config.judge_model or "judge")
        flags = judge_answers(judge, data.prompts, data.questions, answers)
        result.scores["judge_hallucination_rate"] = flags
        result.metrics["judge_hallucination_rate"] = mean(flags)
    if model is not None and formatter is not None:
        _local_extras(result, model, formatter, inputs, config)
    return result


def evaluate_sources(sources: list[ModelSource], inputs: SuiteInputs,
                     config: Any) -> list[ModelResult]:
    """Evaluate each model in turn, freeing a loaded model before loading the next."""
    results = []
    for source in sources:
        results.append(evaluate_source(source, inputs, config))
        if source.load is not None:
            gc.collect()
    return results
