"""A self-contained HTML data report: inline CSS and SVG charts, no scripts, no network."""

from __future__ import annotations

import json
from html import escape
from typing import Any

PALETTE = ("#3b6ea8", "#d9822b", "#3f9c5a", "#b8434b", "#7a5ba8", "#8c6d4f", "#c45ca2",
           "#6b6b6b", "#a8a83b", "#3ba8a8")
SECTIONS = ("summary", "schema", "lengths", "duplicates", "contradictions", "leakage",
            "sensitive", "balance", "clusters", "size", "estimate")
STYLE = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 8px;
text-align:left;vertical-align:top}th{background:#f3f3f3}.bad{color:#b8434b;font-weight:600}
.ok{color:#3f9c5a;font-weight:600}svg{background:#fafafa;border:1px solid #eee}
code{background:#f3f3f3;padding:0 3px}nav a{margin-right:.8em}"""


def render_html(report: dict[str, Any]) -> str:
    """The whole report page as one HTML string."""
    body = [_summary(report), _schema(report), _lengths(report["lengths"]),
            _duplicates(report["duplicates"]), _contradictions(report["contradictions"]),
            _leakage(report["leakage"]), _sensitive(report["sensitive"]),
            _balance(report["balance"]), _clusters(report["clusters"]),
            _size(report["size"]), _estimate(report["estimate"])]
    nav = " ".join(f'<a href="#{s}">{s}</a>' for s in SECTIONS)
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>tunesmith "
            f"data report</title><style>{STYLE}</style></head><body><h1>tunesmith data report"
            f"</h1><nav>{nav}</nav>{''.join(body)}</body></html>\n")


def _section(key: str, title: str, *parts: str) -> str:
    return f'<section id="{key}"><h2>{escape(title)}</h2>{"".join(parts)}</section>'


def _table(rows: list[list[Any]], head: list[str] | None = None) -> str:
    if not rows:
        return "<p>none</p>"
    top = "<tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>" if head else ""
    cells = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in r) + "</tr>"
                    for r in rows)
    return f"<table>{top}{cells}</table>"


def _skipped(section: dict) -> str | None:
    return f"<p>Skipped: {escape(section['skipped'])}</p>" if "skipped" in section else None


def _bars(values: list[tuple[str, float]], width: int = 900, bar: int = 16,
          limit_line: float | None = None) -> str:
    """A horizontal bar chart with labels, as inline SVG."""
    if not values:
        return ""
    top = max(v for _, v in values) or 1
    label_w, height = 260, bar * len(values) + 10
    items = []
    for i, (label, value) in enumerate(values):
        y, w = 5 + i * bar, (width - label_w - 60) * value / top
        items.append(f'<text x="{label_w - 6}" y="{y + bar - 4}" text-anchor="end" '
                     f'font-size="11">{escape(str(label)[:40])}</text><rect x="{label_w}" '
                     f'y="{y + 1}" width="{w:.1f}" height="{bar - 3}" fill="{PALETTE[0]}"/>'
                     f'<text x="{label_w + w + 4:.1f}" y="{y + bar - 4}" font-size="11">'
                     f'{value:g}</text>')
    return (f'<svg role="img" width="{width}" height="{height}" '
            f'xmlns="http://www.w3.org/2000/svg">{"".join(items)}</svg>')


def _summary(report: dict) -> str:
    train = report["schema_check"]["train"]
    passed = report["passed"]
    verdict = '<span class="ok">passed</span>' if passed else (
        '<span class="bad">a threshold was broken</span>')
    rows = [[t["name"], t["value"], t["limit"], "ok" if t["passed"] else "FAILED"]
            for t in report["thresholds"]]
    facts = [["train files", ", ".join(report["inputs"]["train"])],
             ["eval files", ", ".join(report["inputs"]["eval"]) or "none"],
             ["rows", train["rows"]], ["usable rows", train["usable"]],
             ["size verdict", report["size"]["verdict"]]]
    return _section("summary", "Summary", f"<p>Result: {verdict}</p>", _table(facts),
                    "<h3>Thresholds</h3>",
                    _table(rows, ["threshold", "value", "limit", "result"]))


def _schema(report: dict) -> str:
    parts = []
    for name, s in report["schema_check"].items():
        parts.append(f"<h3>{escape(name)}</h3>")
        parts.append(_table([["formats", json.dumps(s["formats"])],
                             ["label field", s["label_field"] or "none"],
                             ["auto-fixed", "; ".join(s["auto_fixed"]) or "nothing"],
                             ["file warnings", "; ".join(s.get("file_warnings", [])) or "none"],
                             ["handled fields", json.dumps(s["handled_fields"])],
                             ["ignored fields", json.dumps(s["ignored_fields"])]]))
        parts.append(_table([[p["row"], p["rule"], p["field"] or "", p["reason"]]
                             for p in s["problem_rows"]], ["row", "rule", "field", "reason"]))
    q = report["quality"]
    parts.append(_table([["unfilled placeholders", q.get("unfilled_placeholders", 0),
                          ", ".join(q.get("unfilled_placeholder_rows", [])[:10])],
                         ["repetitive answers", q["repetitive_answers"],
                          ", ".join(q["repetitive_answer_rows"][:10])],
                         ["missing system message", q["missing_system_message"],
                          ", ".join(q["missing_system_message_rows"][:10])]],
                        ["note", "rows", "examples"]))
    return _section("schema", "Schema and roles", *parts)


def _lengths(s: dict) -> str:
    skipped = _skipped(s)
    if skipped:
        return _section("lengths", "Token lengths", skipped)
    h = s["histogram"]
    bins = [(f"{a}-{b}", c) for a, b, c in zip(h["edges"], h["edges"][1:], h["counts"],
                                               strict=False)]
    bins.append((f"> {s['max_length']} (max_length)", h["over"]))
    stats = [[k, *[s[k][q] for q in ("min", "p50", "p90", "p99", "max")]]
             for k in ("prompt", "answer", "total")]
    return _section("lengths", "Token lengths",
                    f"<p>Model <code>{escape(s['model'])}</code>, max_length {s['max_length']},"
                    f" truncation <code>{escape(s['truncation'])}</code>: "
                    f"{s['over_max_length']} rows over, {s['dropped_by_policy']} dropped, "
                    f"{s['answer_lost_if_cut_at_end']} would lose their whole answer.</p>",
                    _table(stats, ["tokens", "min", "p50", "p90", "p99", "max"]),
                    '<figure id="length-histogram">', _bars(bins),
                    "<figcaption>Total tokens per row</figcaption></figure>")


def _duplicates(s: dict) -> str:
    chart = _bars([("exact copies", s["exact_duplicate_rows"]),
                   ("near copies", s["near_duplicate_rows"])])
    exact = _table([[", ".join(g["rows"][:6]), g["text"]] for g in s["exact"][:20]],
                   ["rows", "text"])
    near = _table([[", ".join(g["rows"][:6]), g["text"]] for g in s["near"][:20]],
                  ["rows", "text"])
    return _section("duplicates", "Duplicates", f'<figure id="duplicate-chart">{chart}</figure>',
                    "<h3>Exact (after normalisation)</h3>", exact,
                    f"<h3>Near (Jaccard &ge; {s['near_threshold']})</h3>", near)


def _contradictions(s: dict) -> str:
    rows = [[p["a"], p["b"], p["answer_a"], p["answer_b"], p["prompt_similarity"]]
            for g in s["listed"] for p in g["pairs"]][:100]
    return _section("contradictions", "Contradictions",
                    f"<p>{s['groups']} prompt group(s) with differing {s['compared']}.</p>",
                    _table(rows, ["row", "other row", "answer", "other answer",
                                  "prompt similarity"]))


def _leakage(s: dict) -> str:
    skipped = _skipped(s)
    if skipped:
        return _section("leakage", "Leakage", skipped)
    rows = [[x["eval"], x["train"], x["similarity"], x["same_answer"]] for x in s["listed"]]
    return _section("leakage", "Leakage",
                    f"<p>{s['leaked_rows']} of {s['eval_rows']} eval rows match a train row "
                    f"({s['exact']} exactly).</p>",
                    _table(rows, ["eval row", "train row", "similarity", "same answer"]))


def _sensitive(s: dict) -> str:
    rows = [[e["row"], ", ".join(f"{f['kind']} {f['value']}" for f in e["found"])]
            for e in s["examples"]]
    return _section("sensitive", "Sensitive data",
                    f"<p>{s['rows']} row(s) hold sensitive data (values masked).</p>",
                    _bars(list(s["counts"].items())), _table(rows, ["row", "found"]))


def _balance(s: dict) -> str:
    counts = sorted(s["counts"].items(), key=lambda kv: -kv[1])
    flag = '<span class="bad">imbalanced</span>' if s["imbalanced"] else "balanced"
    d = s["diversity"]
    words = d["prompt_words"]
    facts = [["prompt words (p10/p50/p90)", f"{words['p10']}/{words['p50']}/{words['p90']}"],
             ["vocabulary", d["vocabulary"]], ["distinct-2", d["distinct_2"]],
             ["top words", ", ".join(d["top_words"][:15])]]
    return _section("balance", "Balance and diversity",
                    f"<p>{escape(s['kind'])}: {flag}; {escape(s['reason'])}.</p>",
                    f'<figure id="balance-chart">{_bars(counts[:80], bar=12)}</figure>',
                    _table(facts))


def _clusters(s: dict) -> str:
    skipped = _skipped(s)
    if skipped:
        return _section("clusters", "Semantic clusters", skipped)
    rows = [[c["id"], c["size"], f"{c['share']:.1%}",
             " | ".join(e["prompt"][:70] for e in c["examples"])] for c in s["clusters"]]
    return _section("clusters", "Semantic clusters",
                    f"<p>{s['k']} clusters; sparse: {s['sparse_clusters'] or 'none'}; "
                    f"{s['isolated_count']} isolated rows.</p>",
                    f'<figure id="cluster-chart">{_scatter(s["projection"])}</figure>',
                    _table(rows, ["cluster", "rows", "share", "central examples"]))


def _scatter(points: list[list[float]], size: int = 520) -> str:
    if not points:
        return ""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    span_x, span_y = (max(xs) - min(xs)) or 1, (max(ys) - min(ys)) or 1
    dots = "".join(
        f'<circle cx="{10 + (x - min(xs)) / span_x * (size - 20):.1f}" '
        f'cy="{10 + (y - min(ys)) / span_y * (size - 20):.1f}" r="2.5" '
        f'fill="{PALETTE[int(c) % len(PALETTE)]}"/>' for x, y, c in points)
    return (f'<svg role="img" width="{size}" height="{size}" '
            f'xmlns="http://www.w3.org/2000/svg">{dots}</svg>')


def _size(s: dict) -> str:
    items = "".join(f"<li>{escape(w)}</li>" for w in s["warnings"]) or "<li>no warning</li>"
    return _section("size", "Size advice", f"<p>Verdict: <b>{escape(s['verdict'])}</b></p>",
                    f"<ul>{items}</ul>")


def _estimate(s: dict) -> str:
    skipped = _skipped(s)
    if skipped:
        return _section("estimate", "Estimate", skipped)
    facts = [[k, s[k]] for k in ("tokens_per_epoch", "epochs", "optimizer_steps",
                                 "tokens_per_second", "hours", "peak_memory_gb",
                                 "trainable_params")]
    return _section("estimate", "Estimate", _table(facts), f"<p>{escape(s['reasoning'])}</p>")
