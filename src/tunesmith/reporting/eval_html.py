"""A self-contained HTML evaluation report (inline CSS and SVG, no scripts, no network)."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

_COLOURS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2")
_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:4px 8px;
text-align:left;vertical-align:top}th{background:#f4f4f4}.num{text-align:right;
font-variant-numeric:tabular-nums}.pass{color:#1a7f37;font-weight:600}.miss{color:#c62828;
font-weight:600}.banner{padding:10px 14px;border-radius:6px;margin:12px 0}
.ok{background:#e7f5ea}.bad{background:#fdecea}pre{white-space:pre-wrap;margin:0;
max-width:420px;font-size:12px}.ci{color:#777;font-size:12px}
"""
_BOUNDED = ("accuracy", "exact_match", "token_f1", "label_accuracy", "json_all_fields",
            "format_validity", "json_parse_rate", "schema_validity", "label_membership",
            "regex_match", "stop_rate", "similarity_to_reference", "similarity_to_question",
            "rouge_l", "chrf", "hallucination_rate", "judge_hallucination_rate",
            "memorisation_rate")


def _num(value: Any, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) \
        else escape(str(value))


def _ci(ci: list[float] | None) -> str:
    return f' <span class="ci">[{ci[0]:.3f}, {ci[1]:.3f}]</span>' if ci else ""


def _table(head: list[str], rows: list[list[str]]) -> str:
    cells = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(rows_cell for rows_cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


def _td(text: str, cls: str = "") -> str:
    return f'<td class="{cls}">{text}</td>' if cls else f"<td>{text}</td>"


def _bar_chart(payload: dict[str, Any]) -> str:
    """Horizontal bars with 95% interval whiskers for every metric bounded in [0, 1]."""
    models = payload["models"]
    metrics = [m for m in _BOUNDED if any(m in x["metrics"] and x["metrics"][m]["value"]
                                          is not None for x in models)]
    row_h, label_w, width = 14, 190, 420
    height = len(metrics) * (len(models) * row_h + 10) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + width + 60}" '
             f'height="{height}" role="img" aria-label="metric chart">']
    y = 10
    for metric in metrics:
        parts.append(f'<text x="0" y="{y + row_h}" font-size="12">{escape(metric)}</text>')
        for k, model in enumerate(models):
            entry = model["metrics"].get(metric) or {}
            value, ci = entry.get("value"), entry.get("ci")
            if value is not None:
                colour = _COLOURS[k % len(_COLOURS)]
                parts.append(f'<rect x="{label_w}" y="{y}" width="{value * width:.1f}" '
                             f'height="{row_h - 3}" fill="{colour}"/>')
                if ci:
                    parts.append(f'<line x1="{label_w + ci[0] * width:.1f}" y1="{y + 5}" '
                                 f'x2="{label_w + ci[1] * width:.1f}" y2="{y + 5}" '
                                 'stroke="#000" stroke-width="1.5"/>')
                parts.append(f'<text x="{label_w + width + 5}" y="{y + 10}" font-size="11">'
                             f'{value:.3f}</text>')
            y += row_h
        y += 10
    legend = " ".join(f'<span style="color:{_COLOURS[k % len(_COLOURS)]}">&#9632; '
                      f'{escape(m["name"])}</span>' for k, m in enumerate(models))
    return f"<p>{legend}</p>" + "".join(parts) + "</svg>"


def _metric_table(payload: dict[str, Any]) -> str:
    models = payload["models"]
    names = list(dict.fromkeys(k for m in models for k in m["metrics"]))
    rows = []
    for name in names:
        cells = [_td(escape(name))]
        for model in models:
            entry = model["metrics"].get(name) or {}
            cells.append(_td(_num(entry.get("value")) + _ci(entry.get("ci")), "num"))
        rows.append(cells)
    return _table(["metric", *(m["name"] for m in models)], rows)


def _targets(payload: dict[str, Any]) -> str:
    if not payload["targets"]:
        return "<p>No targets declared in the objective.</p>"
    rows = [[_td(escape(t["metric"])), _td(f'{escape(t["op"])} {t["threshold"]:g}'),
             _td(_num(t["value"]), "num"), _td(escape(t["model"])),
             _td("PASS" if t["passed"] else "MISS", "pass" if t["passed"] else "miss")]
            for t in payload["targets"]]
    return _table(["metric", "target", "measured", "model", "verdict"], rows)


def _comparisons(payload: dict[str, Any]) -> str:
    rows = [[_td(escape(f'{d["candidate"]} - {d["baseline"]}')), _td(escape(d["metric"])),
             _td(_num(d["diff"]) + _ci(d["ci"]), "num"), _td(str(len(d["improved"])), "num"),
             _td(str(len(d["regressed"])), "num"), _td(str(d["unchanged"]), "num")]
            for d in payload["comparisons"]]
    if not rows:
        return "<p>Only one model was evaluated.</p>"
    return _table(["models", "metric", "difference [95% CI]", "improved", "regressed",
                   "unchanged"], rows)


def _forgetting(payload: dict[str, Any]) -> str:
    rows = [[_td(escape(f["set"])), _td(escape(f'{f["baseline"]} -> {f["model"]}')),
             _td(str(f["n"]), "num"), _td(_num(f["before"]) + _ci(f["before_ci"]), "num"),
             _td(_num(f["after"]) + _ci(f["after_ci"]), "num"),
             _td(f'{f["drop_points"]:.2f}' + (_ci(f["diff_ci_points"])), "num"),
             _td(escape("; ".join(f["warnings"])) or "-", "miss" if f["warnings"] else "")]
            for f in payload["forgetting"]]
    if not rows:
        return "<p>No multiple-choice retention sets were scored.</p>"
    return _table(["set", "models", "rows", "before", "after", "drop (points)", "warning"],
                  rows)


def _examples(items: list[dict[str, Any]], empty: str) -> str:
    if not items:
        return f"<p>{escape(empty)}</p>"
    models = list(items[0]["answers"])
    rows = []
    for item in items:
        prompt = item["prompt"] if len(item["prompt"]) <= 700 else "…" + item["prompt"][-700:]
        cells = [_td(str(item["index"]), "num"), _td(f"<pre>{escape(prompt)}</pre>"),
                 _td(f"<pre>{escape(item['reference'])}</pre>")]
        for name in models:
            answer = item["answers"][name]
            cells.append(_td(f"<pre>{escape(answer['answer'])}</pre><span class=ci>score "
                             f"{_num(answer['score'], 2)}</span>"))
        rows.append(cells)
    return _table(["#", "prompt (last turn; long ones end-cut)", "reference", *models], rows)


def _details(payload: dict[str, Any]) -> str:
    last = payload["models"][-1]
    parts = []
    confusions = last["details"].get("top_confusions")
    if confusions:
        parts.append(f"<h3>Commonest confusions ({escape(last['name'])})</h3>" + _table(
            ["expected", "predicted", "count"],
            [[_td(escape(c["expected"])), _td(escape(c["predicted"])),
              _td(str(c["count"]), "num")] for c in confusions]))
    for model in payload["models"]:
        memo = model["details"].get("memorisation")
        if memo:
            parts.append(f"<h3>Memorisation probe ({escape(model['name'])})</h3><p>"
                         f"{len(memo['leaked'])} of {memo['probed']} sensitive strings "
                         f"reproduced verbatim.</p>")
    return "".join(parts)


def render_report(payload: dict[str, Any]) -> str:
    """The whole report as one HTML string."""
    objective = payload["objective"]
    gate = payload["gate"]
    verdict = ("all targets met" if gate["passed"] else "at least one target missed") \
        if payload["targets"] else "no targets declared"
    banner = "ok" if gate["passed"] else "bad"
    return (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>tunesmith "
            f"evaluation</title><style>{_CSS}</style></head><body><h1>tunesmith evaluation"
            f"</h1><p>Task: {escape(objective.get('task') or '(not stated)')} &middot; "
            f"output contract: {escape(objective['output'])} &middot; {payload['cases']} cases"
            f"</p><div class='banner {banner}'>Gate ({escape(str(gate['model']))}): {verdict}"
            f"</div><h2>Targets</h2>{_targets(payload)}<h2>Metrics (95% intervals)</h2>"
            f"{_metric_table(payload)}<h2>Chart</h2>{_bar_chart(payload)}<h2>Differences "
            f"against {escape(payload['models'][0]['name'])}</h2>{_comparisons(payload)}"
            f"<h2>Forgetting</h2>{_forgetting(payload)}{_details(payload)}"
            f"<h2>Regressed examples ({escape(payload['headline_metric'])})</h2>"
            f"{_examples(payload['examples']['regressed'], 'No example regressed.')}"
            f"<h2>Worst examples ({escape(payload['models'][-1]['name'])})</h2>"
            f"{_examples(payload['examples']['worst'], 'No scored example.')}</body></html>")


def write_report(path: Path, payload: dict[str, Any]) -> None:
    """Write the report through a temporary file and a rename."""
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(render_report(payload), encoding="utf-8")
    tmp.replace(path)
