"""report.html of `batchmt quantize`: one self-contained page (inline CSS and SVG, no
scripts, no external resources), like `batchmt report`'s."""

from __future__ import annotations

import math
from html import escape
from typing import Any

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}.sens{color:#b00;font-weight:600}
.int8{fill:#4a7}.int4{fill:#7b5}.int3{fill:#db3}.int2{fill:#e73}.none{fill:#68c}
"""
_COLOURS = {"int8": "int8", "int4": "int4", "int3": "int3", "int2": "int2"}


def render_report(result: dict[str, Any]) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>batchmt quantize</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>batchmt quantize: {escape(result['source'])}</h1>",
        f"<p>{escape(result['family'])} model, {escape(result['source_lang'])}→"
        f"{escape(result['target_lang'])}. Plan: <b>{result['size_ratio']:.4f}</b> of the "
        f"checkpoint's weight bytes ({result['bytes']:,} of {result['checkpoint_bytes']:,}; "
        f"budget {result['max_size_ratio']}). {escape(result['weights_only'])}; rounding "
        f"{escape(str(result.get('rounding', 'rtn')))}. Calibration: "
        f"{result['calibration']['sensitivity_pairs']} pairs for sensitivity, "
        f"{result['calibration']['held_out_pairs']} held back for the table below.</p>",
        "<h2>Size and quality (held-back calibration pairs)</h2>",
        _evaluation(result["evaluation"]),
        "<h2>Sensitivity per unit</h2>",
        "<p>Output KL divergence from the checkpoint (nats per reference token, log scale) when "
        "the unit alone is in the lowest format measured; bar colour = the plan's format. "
        f"Units at or above {result['sensitive_kl']} in int4 are marked sensitive (never 4 bits "
        "or fewer).</p>",
        _chart(result["layers"]),
        "<h2>Plan</h2>",
        _plan(result["layers"], result["formats"]),
        "</body></html>",
    ]
    return "\n".join(parts)


def _evaluation(rows: list[dict[str, Any]]) -> str:
    base = rows[0]["bleu"] if rows else 0.0
    body = "".join(
        f"<tr><td class='l'>{escape(r['variant'])}</td><td>{r['size_ratio']:.4f}</td>"
        f"<td>{r['bleu']:.2f}</td><td>{r['bleu'] - base:+.2f}</td><td>{r['chrf']:.2f}</td>"
        f"<td>{r['seconds']:.1f}</td></tr>"
        for r in rows
    )
    return (
        "<table><tr><th class='l'>variant</th><th>size ratio</th><th>BLEU</th><th>Δ BLEU</th>"
        f"<th>chrF</th><th>seconds</th></tr>{body}</table>"
    )


def _chart(layers: list[dict[str, Any]]) -> str:
    width, row, label = 900, 14, 330
    values = [max(_measured(layer), 1e-9) for layer in layers]
    lo = math.log10(min(values))
    hi = math.log10(max(values)) if max(values) > min(values) else lo + 1
    bars = []
    for i, (layer, value) in enumerate(zip(layers, values)):
        y = i * row
        length = 4 + (width - label - 10) * (math.log10(value) - lo) / (hi - lo)
        cls = _COLOURS.get((layer["format"] or "none").split("-")[0], "none")
        mark = " ★" if layer["sensitive"] else ""
        bars.append(
            f"<text x='0' y='{y + 11}' font-size='11'>{escape(layer['name'])}{mark}</text>"
            f"<rect class='{cls}' x='{label}' y='{y + 2}' width='{length:.1f}' height='{row - 4}'>"
            f"<title>{value:.3g} nats/token ({escape(_fmt(layer))})</title></rect>"
        )
    height = len(layers) * row + 4
    svg = "<svg xmlns='http://www.w3.org/2000/svg'"
    return f"{svg} width='{width}' height='{height}'>{''.join(bars)}</svg>"


def _fmt(layer: dict[str, Any]) -> str:
    return str(layer["format"] or "unquantized")


def _measured(layer: dict[str, Any]) -> float:
    # The narrowest format measured: where the units differ most.
    measured = layer["measured_formats"]
    narrowest = min(measured, key=lambda name: int(name[3])) if measured else ""
    return float(layer["sensitivity_by_format"].get(narrowest, 0.0))


def _plan(layers: list[dict[str, Any]], formats: list[str]) -> str:
    head = "".join(f"<th>KL {escape(f)}</th>" for f in formats)
    body = []
    for layer in layers:
        kls = "".join(f"<td>{layer['sensitivity_by_format'].get(f, 0.0):.2e}</td>" for f in formats)
        cls = " class='sens'" if layer["sensitive"] else ""
        body.append(
            f"<tr><td class='l'>{escape(layer['name'])}</td>"
            f"<td class='l'>{escape(layer['role'])}</td>"
            f"<td{cls}>{'yes' if layer['sensitive'] else ''}</td>"
            f"<td class='l'>{escape(_fmt(layer))}</td><td>{layer['bytes']:,}</td>{kls}"
            f"<td>{layer['activation_abs_p999']:.3g}</td><td>{layer['activation_abs_max']:.3g}</td>"
            "</tr>"
        )
    return (
        "<table><tr><th class='l'>unit</th><th class='l'>role</th><th>sensitive</th>"
        f"<th class='l'>format</th><th>bytes</th>{head}<th>|act| p99.9</th><th>|act| max</th></tr>"
        + "".join(body)
        + "</table>"
    )
