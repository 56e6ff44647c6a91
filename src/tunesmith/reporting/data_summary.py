"""The terminal summary of a data report: one line per check, problems first."""

from __future__ import annotations

from typing import Any


def summarise(report: dict[str, Any], limit: int = 5) -> str:
    """Readable lines for a terminal; the full detail is in report.json and report.html."""
    lines: list[str] = []
    for name, schema in report["schema_check"].items():
        formats = ", ".join(f"{n} {k}" for k, n in schema["formats"].items()) or "none"
        lines.append(f"{name}: {schema['rows']} rows, {schema['usable']} usable ({formats})")
        for rule, count in schema["problems"].items():
            lines.append(f"  problem {rule}: {count} row(s)")
        for item in schema["problem_rows"][:limit]:
            field = f" field {item['field']}" if item["field"] else ""
            lines.append(f"    {item['row']}{field}: {item['reason']}")
        lines += [f"  auto-fixed: {fix}" for fix in schema["auto_fixed"]]
        lines += [f"  warning: {text}" for text in schema.get("file_warnings", [])]
        for key, count in schema["handled_fields"].items():
            unit = "row(s)" if key.startswith("row.") else "message(s)"  # row.tools
            lines.append(f"  handled field {key}: {count} {unit}")
        lines += [f"  ignored field {k}: {n}" for k, n in schema["ignored_fields"].items()]
    lines += _lengths(report["lengths"])
    lines += _quality(report["quality"])
    lines += _findings(report, limit)
    lines += _advice(report)
    return "\n".join(lines)


def _lengths(section: dict) -> list[str]:
    if "skipped" in section:
        return [f"lengths: skipped ({section['skipped']})"]
    total = section["total"]
    line = (f"lengths ({section['model']}): total tokens p50 {total['p50']}, p99 {total['p99']},"
            f" max {total['max']}; {section['over_max_length']} over max_length "
            f"{section['max_length']} ({section['dropped_by_policy']} dropped, "
            f"{section['truncated_by_policy']} truncated under '{section['truncation']}'); "
            f"{section['answer_lost_if_cut_at_end']} would lose the whole answer if cut at "
            "the end")
    return [line]


def _quality(section: dict) -> list[str]:
    lines = []
    if section.get("unfilled_placeholders"):
        rows = ", ".join(section["unfilled_placeholder_rows"][:3])
        slots = ", ".join(f"{k} x{n}" for k, n in section["placeholder_counts"].items())
        lines.append(f"unfilled template placeholders: {section['unfilled_placeholders']} "
                     f"row(s) ({slots}; {rows}): fill them before training")
    if section["repetitive_answers"]:
        rows = ", ".join(section["repetitive_answer_rows"][:3])
        lines.append(f"repetitive answers: {section['repetitive_answers']} row(s) ({rows})")
    if section["missing_system_message"]:
        rows = ", ".join(section["missing_system_message_rows"][:3])
        lines.append(f"missing system message: {section['missing_system_message']} row(s) "
                     f"where most rows have one ({rows})")
    return lines


def _findings(report: dict, limit: int) -> list[str]:
    dup = report["duplicates"]
    lines = [(f"duplicates: {dup['exact_duplicate_rows']} exact copies in {dup['exact_groups']} "
             f"group(s); {dup['near_duplicate_rows']} near copies in {dup['near_clusters']} "
             f"cluster(s) (Jaccard >= {dup['near_threshold']})")]
    con = report["contradictions"]
    lines.append(f"contradictions: {con['groups']} prompt(s) with differing {con['compared']}")
    for group in con["listed"][:limit]:
        pair = group["pairs"][0]
        lines.append(f"  {pair['a']} vs {pair['b']}: {pair['answer_a'][:40]!r} / "
                     f"{pair['answer_b'][:40]!r}")
    leak = report["leakage"]
    lines.append(f"leakage: skipped ({leak['skipped']})" if "skipped" in leak else
                 f"leakage: {leak['leaked_rows']} of {leak['eval_rows']} eval rows match train "
                 f"({leak['exact']} exactly)")
    sens = report["sensitive"]
    kinds = ", ".join(f"{n} {k}" for k, n in sens["counts"].items()) or "none"
    lines.append(f"sensitive data: {sens['rows']} row(s) ({kinds})")
    bal = report["balance"]
    flag = "IMBALANCED: " if bal["imbalanced"] else ""
    lines.append(f"balance ({bal['kind']}): {flag}{bal['distinct']} distinct; {bal['reason']}")
    clusters = report["clusters"]
    if "skipped" not in clusters:
        lines.append(f"clusters: {clusters['k']} topics, largest {clusters['largest_share']:.0%}"
                     f", {len(clusters['sparse_clusters'])} sparse, "
                     f"{clusters['isolated_count']} isolated rows")
    return lines


def _advice(report: dict) -> list[str]:
    size = report["size"]
    lines = [f"size: {size['verdict']}"] + [f"  - {w}" for w in size["warnings"]]
    est = report["estimate"]
    if "skipped" not in est:
        lines.append(f"estimate: {est['tokens_per_epoch']:,} tokens/epoch, "
                     f"{est['optimizer_steps']} steps, ~{est['hours'] * 60:.1f} min, peak "
                     f"~{est['peak_memory_gb']} GB")
    for check in report["thresholds"]:
        mark = "ok" if check["passed"] else "FAILED"
        lines.append(f"threshold {check['name']}: {check['value']} (limit {check['limit']}) "
                     f"{mark}")
    lines.append("result: " + ("passed" if report["passed"] else "a threshold was broken"))
    return lines
