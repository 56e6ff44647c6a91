"""Compare a data report with the limits in the config's `audit` section (for CI)."""

from __future__ import annotations

from typing import Any

# config field -> (where the value is in the report, "max" or "min")
LIMITS: dict[str, tuple[tuple[str, ...], str]] = {
    "min_rows": (("schema_check", "train", "usable"), "min"),
    "max_rejected_rows": (("schema_check", "train", "rejected"), "max"),
    "max_duplicate_share": (("duplicates", "exact_share"), "max"),
    "max_near_duplicate_share": (("duplicates", "near_share"), "max"),
    "max_contradictions": (("contradictions", "groups"), "max"),
    "max_leaked_rows": (("leakage", "leaked_rows"), "max"),
    "max_sensitive_rows": (("sensitive", "rows"), "max"),
    "max_over_length_share": (("lengths", "over_share"), "max"),
    "max_imbalance_ratio": (("balance", "imbalance_ratio"), "max"),
}


def _lookup(report: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = report
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def evaluate_thresholds(report: dict[str, Any], limits: Any) -> list[dict[str, Any]]:
    """One entry per configured limit: value found, limit, and whether it passed."""
    results = []
    for name, (path, kind) in LIMITS.items():
        limit = getattr(limits, name, None)
        if limit is None:
            continue
        value = _lookup(report, path)
        if value is None:
            results.append({"name": name, "value": None, "limit": limit, "passed": True,
                            "note": f"not measured ({'.'.join(path)} missing)"})
            continue
        passed = value >= limit if kind == "min" else value <= limit
        results.append({"name": name, "value": value, "limit": limit, "passed": passed})
    return results
