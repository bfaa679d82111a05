"""The drift report as one self-contained HTML page: inline SVG charts, inline CSS, no scripts."""

from __future__ import annotations

import html
import math
from typing import Any

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
BASE_COLOR, LIVE_COLOR = "#7a8ca8", "#e0752d"
STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1d2330;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.meta{color:#566}.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(430px,1fr));gap:14px}
.card{border:1px solid #d6dbe4;border-radius:6px;padding:10px 12px}
.card h3{font-size:15px;margin:0 0 6px;display:flex;justify-content:space-between}
table{border-collapse:collapse}td,th{padding:3px 8px;border-bottom:1px solid #e5e8ee;text-align:right}
th:first-child,td:first-child{text-align:left}
.badge{font-size:12px;padding:1px 7px;border-radius:9px;color:#fff}
.alarm{background:#c62f2f}.ok{background:#2f8a4c}.none{background:#8a8f99}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}
svg text{font:10px system-ui,sans-serif;fill:#445}
"""


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isinf(value):
            return "∞"
        return f"{value:.4g}"
    return html.escape(str(value))


def _badge(alarm: bool | None) -> str:
    if alarm is None:
        return '<span class="badge none">no verdict</span>'
    return '<span class="badge alarm">drift</span>' if alarm else '<span class="badge ok">no drift</span>'


def chart(name: str, labels: list[str], expected: list[float], actual: list[float]) -> str:
    """Baseline and current shares of every slot, bars side by side."""
    width, height, left, bottom = 420, 170, 34, 46
    slots = max(1, len(labels))
    step = (width - left - 6) / slots
    top = max([*expected, *actual, 0.01])
    scale = (height - bottom - 8) / top
    parts = [f'<svg class="chart" data-feature="{html.escape(name)}" '
             f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{html.escape(name)}: baseline and current distribution">']
    base_y = height - bottom
    parts.append(f'<line x1="{left}" y1="{base_y}" x2="{width - 4}" y2="{base_y}" stroke="#99a"/>')
    for tick in (0.0, top / 2, top):
        y = base_y - tick * scale
        parts.append(f'<text x="{left - 4}" y="{y + 3:.1f}" text-anchor="end">{tick:.0%}</text>')
    bar = max(1.0, step * 0.38)
    for k, label in enumerate(labels):
        x = left + k * step + step * 0.1
        for j, (share, color, what) in enumerate(((expected[k], BASE_COLOR, "baseline"),
                                                  (actual[k], LIVE_COLOR, "current"))):
            h = max(share * scale, 0.0)
            parts.append(f'<rect class="{what}" x="{x + j * bar:.1f}" y="{base_y - h:.1f}" width="{bar:.1f}" '
                         f'height="{h:.1f}" fill="{color}"><title>{html.escape(label)} {what} '
                         f'{share:.2%}</title></rect>')
        short = label if len(label) <= 14 else label[:13] + "…"
        cx = left + k * step + step / 2
        parts.append(f'<text x="{cx:.1f}" y="{base_y + 10}" text-anchor="end" '
                     f'transform="rotate(-35 {cx:.1f} {base_y + 10})">{html.escape(short)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def severity(score: dict[str, Any]) -> float:
    """Sort key: the calibrated statistic over its threshold when there is one, else PSI."""
    statistic, threshold = score.get("statistic"), score.get("threshold")
    if statistic is not None and threshold:
        return float(statistic) / float(threshold)
    return float(score.get("psi") or 0.0)


def page(report: dict[str, Any]) -> str:
    verdict = report["verdict"]
    features = report["features"]
    order = sorted(features, key=lambda f: (-(features[f]["score"].get("alarm") is True),
                                            -severity(features[f]["score"]), f))
    rows = []
    for name in order:
        score = features[name]["score"]
        label = "prediction" if features[name]["prediction"] else html.escape(name)
        rows.append(f"<tr><td>{label}</td><td>{_badge(score.get('alarm'))}</td><td>{_fmt(score.get('statistic'))}"
                    f"</td><td>{_fmt(score.get('threshold'))}</td><td>{_fmt(score.get('psi'))}</td>"
                    f"<td>{_fmt(score.get('js'))}</td><td>{_fmt(score.get('wasserstein'))}</td></tr>")
    cards = {True: [], False: []}
    for name in order:
        feature = features[name]
        score = feature["score"]
        cards[feature["prediction"]].append(
            f'<div class="card" id="feature-{html.escape(name)}"><h3><span>'
            f'{"prediction" if feature["prediction"] else html.escape(name)} '
            f'<small class="meta">{html.escape(feature["kind"])}</small></span>{_badge(score.get("alarm"))}</h3>'
            + chart(name, feature["labels"], feature["baseline"], feature["current"])
            + f'<table><tr><th>statistic</th><th>threshold</th><th>PSI</th><th>JS</th><th>Wasserstein</th>'
              f'<th>rows</th></tr><tr><td>{_fmt(score.get("statistic"))}</td><td>{_fmt(score.get("threshold"))}'
              f'</td><td>{_fmt(score.get("psi"))}</td><td>{_fmt(score.get("js"))}</td>'
              f'<td>{_fmt(score.get("wasserstein"))}</td><td>{feature["rows"]}</td></tr></table></div>')
    model = report["model"]
    span = report.get("time_range") or {}
    when = (f" · captured {html.escape(str(span.get('first')))} to {html.escape(str(span.get('last')))}"
            if span.get("first") else "")
    prediction_html = ('<h2>Prediction drift</h2><div class="grid">' + "".join(cards[True]) + "</div>"
                       if cards[True] else '<h2>Prediction drift</h2><p class="meta">No predictions in the input '
                                           "or no prediction baseline in the package.</p>")
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f"<title>Drift report: {html.escape(model['name'])} {html.escape(model['version'])}</title>"
        f"<style>{STYLE}</style></head><body>"
        f"<h1>Drift report: {html.escape(model['name'])} {html.escape(model['version'])} "
        f"{_badge(verdict.get('alarm'))}</h1>"
        f'<p class="meta">{verdict["rows"]} rows from {len(report["inputs"])} file(s){when} · '
        f"false-alarm probability of this window {_fmt(verdict.get('alpha'))} · drift score "
        f"{_fmt(verdict.get('statistic'))} (the largest statistic / threshold; the alarm fires at 1) · "
        f"{'calibrated verdict' if report['calibrated'] else 'PSI only (no calibrated drift core)'}</p>"
        '<p class="legend"><span style="background:' + BASE_COLOR + '"></span>baseline (training)'
        '<span style="background:' + LIVE_COLOR + '"></span>current</p>'
        "<h2>Summary (most severe first)</h2><table><tr><th>feature</th><th>verdict</th><th>statistic</th>"
        "<th>threshold</th><th>PSI</th><th>JS</th><th>Wasserstein</th></tr>" + "".join(rows) + "</table>"
        + prediction_html
        + '<h2>Features</h2><div class="grid">' + "".join(cards[False]) + "</div></body></html>"
    )
