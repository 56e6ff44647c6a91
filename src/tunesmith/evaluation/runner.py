"""Evaluate one or more models on the same prompts and write every answer."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.data.records import Conversation, Message, dumps_strict
from tunesmith.evaluation.generation import generate
from tunesmith.evaluation.metrics import answer_metrics, exact_match
from tunesmith.formatting.chat import ChatFormatter, EncodedExample

logger = logging.getLogger(__name__)


@dataclass
class EvalCase:
    """A prompt (all turns before the last trained answer) and its reference answer.

    `tools` are the conversation's function schemas (OpenAI form), shown in the prompt too.
    """

    messages: list[Message]
    reference: str
    ref: Any = None
    tools: list[dict[str, Any]] | None = None


@dataclass
class ModelScore:
    """One model's metrics and answers."""

    name: str
    metrics: dict[str, Any]
    answers: list[str] = field(default_factory=list)
    stopped: list[bool] = field(default_factory=list)


def cases_from(conversations: list[Conversation]) -> list[EvalCase]:
    """Cut each conversation before its last trained assistant turn."""
    cases = []
    for conv in conversations:
        last = max(i for i, m in enumerate(conv.messages) if m.role == "assistant" and m.weight)
        cases.append(EvalCase(conv.messages[:last], conv.messages[last].content, conv.ref,
                              conv.tools))
    return cases


def select_cases(cases: list[EvalCase], limit: int | None, rows: str = "first") -> list[
        EvalCase]:
    """All cases, or `limit` of them: the first ones or evenly spread (files sorted by label)."""
    if not limit or limit >= len(cases):
        return list(cases)
    if rows == "spread":
        return [cases[i * len(cases) // limit] for i in range(limit)]
    return cases[:limit]


def score_model(
    name: str, model: Any, formatter: ChatFormatter, cases: list[EvalCase],
    batch_size: int, max_new_tokens: int, eval_examples: list[EncodedExample] | None = None,
) -> ModelScore:
    """Generate greedy answers for every case and compute the metrics."""
    tokenizer = formatter.tokenizer
    prompts = [formatter.prompt_ids(case.messages, case.tools) for case in cases]
    stop_ids = sorted({formatter.end_of_turn_id, tokenizer.eos_token_id} - {None})
    started = time.perf_counter()
    outputs = generate(model, tokenizer, prompts, stop_ids, batch_size, max_new_tokens)
    seconds = time.perf_counter() - started
    answers = [o.text for o in outputs]
    stopped = [o.stopped for o in outputs]
    metrics = answer_metrics(answers, [c.reference for c in cases], stopped)
    metrics["generation_s"] = round(seconds, 2)
    metrics["generated_tokens_per_s"] = round(sum(len(o.token_ids) for o in outputs)
                                              / seconds, 1) if seconds else 0.0
    if eval_examples:
        loss = held_out_loss(model, eval_examples, tokenizer.pad_token_id, batch_size)
        metrics["eval_loss"] = loss
        metrics["perplexity"] = math.exp(loss) if loss < 50 else float("inf")
    logger.info("%s: exact match %.4f over %d cases", name, metrics.get("exact_match", 0),
                len(cases))
    return ModelScore(name, metrics, answers, stopped)


def held_out_loss(model: Any, examples: list[EncodedExample], pad_id: int,
                  batch_size: int) -> float:
    """Mean supervised-token loss of a model on encoded examples."""
    from tunesmith.modeling.loss import SupervisedLoss, mean_token_loss
    from tunesmith.tokenization.batching import collate

    order = sorted(examples, key=lambda e: len(e.input_ids))
    batches = (vars(collate(order[s : s + batch_size], pad_id))
               for s in range(0, len(order), batch_size))
    clean = ({k: v for k, v in b.items() if v is not None} for b in batches)
    return mean_token_loss(SupervisedLoss(model), clean)


def write_predictions(path: Path, cases: list[EvalCase], scores: list[ModelScore]) -> None:
    """One JSON line per case: prompt, reference and every model's answer and match."""
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as out:
        for index, case in enumerate(cases):
            row: dict[str, Any] = {
                "index": index, "source": str(case.ref) if case.ref else None,
                "prompt": [{"role": m.role, "content": m.content} for m in case.messages],
                "reference": case.reference,
            }
            if case.tools:
                row["tools"] = case.tools
            for score in scores:
                answer = score.answers[index]
                row[score.name] = {"answer": answer, "correct": exact_match(answer,
                                   case.reference), "stopped": score.stopped[index]}
            out.write(dumps_strict(row, ensure_ascii=False) + "\n")
    tmp.replace(path)


def comparison_table(scores: list[ModelScore]) -> str:
    """A plain-text table of the headline metrics, one column per model."""
    keys = ["accuracy", "exact_match", "token_f1", "label_accuracy", "json_all_fields",
            "format_validity", "json_parse_rate", "stop_rate", "similarity_to_reference",
            "rouge_l", "chrf", "hallucination_rate", "judge_hallucination_rate", "forgetting",
            "memorisation_rate", "eval_loss", "perplexity", "generated_tokens_per_s"]
    keys = [k for k in keys if any(s.metrics.get(k) is not None for s in scores)]
    width = max(12, *(len(s.name) for s in scores))
    lines = ["metric".ljust(24) + "".join(s.name.rjust(width + 2) for s in scores)]
    for key in keys:
        cells = "".join(_fmt(s.metrics.get(key)).rjust(width + 2) for s in scores)
        lines.append(key.ljust(24) + cells)
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def warn_long_prompts(cases: list[EvalCase], formatter: ChatFormatter, max_length: int) -> None:
    """Say how many test prompts are longer than anything training saw."""
    lengths = [len(formatter.prompt_ids(case.messages, case.tools)) for case in cases]
    over = [i for i, n in enumerate(lengths) if n >= max_length]
    if over:
        logger.warning("%d of %d test prompts are at least data.max_length=%d tokens long "
                       "(first: case %d, %d tokens), longer than any training example: their "
                       "answers are outside what fine-tuning taught", len(over), len(cases),
                       max_length, over[0], lengths[over[0]])
