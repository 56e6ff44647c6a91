"""Size advice: warn when data is too small or too narrow for fine-tuning, with the reasons."""

from __future__ import annotations

MIN_ROWS = 100
COMFORTABLE_ROWS = 1000
MIN_ROWS_PER_LABEL = 20
MIN_DISTINCT_PROMPT_SHARE = 0.5
MIN_TOKENS_PER_TRAINABLE_PARAM = 0.01
MAX_CLUSTER_SHARE = 0.5


def size_advice(rows: int, distinct_prompts: int, trained_tokens: int,
                trainable_params: int | None, label_counts: dict[str, int] | None,
                largest_cluster_share: float | None) -> dict:
    """Verdict (ok, caution, too small, too narrow) and one reason per rule that fired."""
    warnings: list[str] = []
    small = rows < MIN_ROWS
    if small:
        warnings.append(f"only {rows} usable rows (< {MIN_ROWS}): the model will see the same "
                        "few examples every epoch and memorise them; collect more or use "
                        "fewer epochs and a lower LoRA rank")
    elif rows < COMFORTABLE_ROWS:
        warnings.append(f"{rows} usable rows (< {COMFORTABLE_ROWS}): enough for a narrow "
                        "format or style change, thin for teaching new knowledge")
    share = distinct_prompts / rows if rows else 0.0
    narrow = share < MIN_DISTINCT_PROMPT_SHARE
    if narrow:
        warnings.append(f"only {share:.0%} of prompts are distinct: repeated prompts push "
                        "the model towards one reply per prompt pattern")
    if label_counts:
        thin = sorted(k for k, n in label_counts.items() if n < MIN_ROWS_PER_LABEL)
        if thin:
            warnings.append(f"{len(thin)} label(s) have fewer than {MIN_ROWS_PER_LABEL} rows "
                            f"({', '.join(thin[:5])}): the model will rarely predict them")
    if trainable_params:
        ratio = trained_tokens / trainable_params
        if ratio < MIN_TOKENS_PER_TRAINABLE_PARAM:
            warnings.append(f"{trained_tokens:,} trained tokens for {trainable_params:,} "
                            f"trainable parameters ({ratio:.4f} per parameter, < "
                            f"{MIN_TOKENS_PER_TRAINABLE_PARAM}): high overfitting risk; lower "
                            "the LoRA rank or train fewer steps")
    if largest_cluster_share is not None and largest_cluster_share > MAX_CLUSTER_SHARE:
        narrow = True
        warnings.append(f"one topic cluster holds {largest_cluster_share:.0%} of the prompts: "
                        "the data is narrow; expect little gain outside that topic")
    verdict = "too small" if small else "too narrow" if narrow else (
        "caution" if warnings else "ok")
    return {"verdict": verdict, "rows": rows, "distinct_prompt_share": round(share, 4),
            "warnings": warnings}
