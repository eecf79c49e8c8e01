"""``report.html``: one self-contained page (images inlined, a few lines of JS to sort).

The front table has one ``<tr data-id=ID>`` per point and one ``<td data-key=NAME
data-value=VALUE>`` per objective, the value written with ``repr`` so it parses back to
exactly front.json's number.
"""
from __future__ import annotations

import base64
import datetime
from html import escape

from qaev.report.gather import Point, ReportData
from qaev.report.plots import select_points

__all__ = ["render_html", "KIND_HELP", "DETAIL_ROWS"]

#: Per-layer tables (layers x points rows) the page holds in all; beyond it, only the
#: points drawn in the bit map get theirs (the rest: their config file), so that a front of
#: thousands of points over hundreds of layers stays a page a browser opens.
DETAIL_ROWS = 20_000

#: What each objective kind means, for the legend.
KIND_HELP = {
    "measured": "measured: the quantized model was run with ONNX Runtime on real data",
    "exact": "exact: counted from the bit widths (values, scales and zero points), not measured",
    "estimated": "estimate: computed from a hardware cost table (roofline model); not measured on the device",
}

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:24px auto;max-width:1200px;color:#222;padding:0 16px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0} th,td{padding:3px 9px;border-bottom:1px solid #eee;text-align:right}
th{background:#f5f5f5;position:sticky;top:0} td:first-child,th:first-child{text-align:left}
table.sortable th{cursor:pointer} table.sortable th:hover{background:#e8eef8}
th[data-dir=asc]::after{content:" \\25B2"} th[data-dir=desc]::after{content:" \\25BC"}
.kind{font-size:11px;padding:1px 5px;border-radius:3px;margin-left:4px;font-weight:normal}
.measured{background:#d9f0d3} .exact{background:#dde8f6} .estimated{background:#fde0c5}
pre{background:#f7f7f7;padding:8px;overflow:auto;font-size:12px} details{margin:6px 0}
summary{cursor:pointer} .note{color:#8a4b00} img{max-width:100%;border:1px solid #eee}
.meta td{text-align:left} .mono{font-family:ui-monospace,monospace;font-size:12px}
"""  # noqa: E501 - the stylesheet keeps one line per group of rules

_JS = """
document.querySelectorAll("table.sortable th").forEach(function (th) {
  th.addEventListener("click", function () {
    var body = th.closest("table").tBodies[0], col = th.cellIndex;
    var dir = th.dataset.dir === "asc" ? "desc" : "asc";
    th.closest("tr").querySelectorAll("th").forEach(function (h) { delete h.dataset.dir; });
    th.dataset.dir = dir;
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].dataset.value, y = b.cells[col].dataset.value;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (isNaN(nx) || isNaN(ny)) ? String(x).localeCompare(String(y)) : nx - ny;
      return dir === "asc" ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""


def _kind(kind: str) -> str:
    word = "estimate" if kind == "estimated" else kind
    return f'<span class="kind {escape(kind)}">{escape(word)}</span>'


def _num(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 else f"{value:.{digits}f}"


def _latency_cells(p: Point) -> list[str]:
    speedup = "-" if p.host_speedup is None else f"{p.host_speedup:.2f}x"
    return [f'<td data-key="host_latency_ms" data-value="{p.host_latency_ms!r}">{_num(p.host_latency_ms, 2)}</td>',
            f'<td data-key="host_speedup" data-value="{p.host_speedup!r}">{speedup}</td>']


def _front_table(data: ReportData) -> str:
    objs = data.objectives
    head = ['<th data-key="id">id</th>']
    head += [f'<th data-key="{escape(o["name"])}" title="{escape(o["unit"])}">'
             f'{escape(o["name"])}{_kind(o["kind"])}</th>'
             for o in objs]
    head += [f'<th data-key="metric">{escape(str(data.doc.get("metric", "metric")))}{_kind("measured")}</th>',
             f'<th data-key="x_smaller" title="float size by bit count / the point\'s">x smaller{_kind("exact")}</th>',
             '<th data-key="file_mb" title="the exported .onnx file">file MB</th>',
             '<th data-key="exported">exported</th>', '<th data-key="export">export command</th>']
    timed = "host_latency" in data.doc
    if timed:
        head += [f'<th data-key="host_latency_ms" title="exported file, batch 1, ms">host ms{_kind("measured")}</th>',
                 '<th data-key="host_speedup" title="float ms / point ms, measured side by side">vs float</th>']
    rows = []
    for p in data.points:
        cells = [f'<td data-key="id" data-value="{escape(p.id)}">'
                 f'<a href="#point-{escape(p.id)}">{escape(p.id)}</a></td>']
        for o in objs:
            v = p.objectives[o["name"]]
            cells.append(f'<td data-key="{escape(o["name"])}" data-value="{v!r}">{_num(v)}</td>')
        m = p.metric
        cells.append(f'<td data-key="metric" data-value="{m!r}">{_num(m, 2)}</td>')
        for key, text in (("x_smaller", lambda v: f"{v:.2f}x"), ("file_mb", _num)):
            v = p.sizes.get(key)
            cells.append(f'<td data-key="{key}" data-value="{v!r}">{"-" if v is None else text(v)}</td>')
        cells.append(f'<td data-key="exported" data-value="{int(p.exported)}">{"yes" if p.exported else ""}</td>')
        command = f"qaev export {data.run_dir} --point {p.id} -o {p.id}.onnx"
        cells.append(f'<td data-key="export" data-value="{escape(p.id)}" class="mono">{escape(command)}</td>')
        if timed:
            cells += _latency_cells(p)
        rows.append(f'<tr data-id="{escape(p.id)}">{"".join(cells)}</tr>')
    return (f'<table id="front" class="sortable"><thead><tr>{"".join(head)}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _baseline_table(data: ReportData) -> str:
    if not data.baselines:
        return ""
    names = [o["name"] for o in data.objectives]
    head = "<tr><th>baseline</th>" + "".join(f"<th>{escape(n)}</th>" for n in names) + "</tr>"
    rows = "".join("<tr><td>" + escape(b["name"]) + "</td>"
                   + "".join(f"<td>{_num(b['objectives'].get(n))}</td>" for n in names) + "</tr>"
                   for b in data.baselines)
    return f'<p>Baselines (from baselines.json, drawn as X):</p><table id="baselines">{head}{rows}</table>'


def _layer_table(data: ReportData, point: Point) -> str:
    est = data.hardware is not None
    head = ("<tr><th>layer</th><th>op</th><th>weight bits</th><th>granularity</th><th>symmetric</th>"
            f"<th>activations</th><th>weight bytes{_kind('exact')}</th>"
            + (f"<th>latency ms{_kind('estimated')}</th>" if est else "") + "</tr>")
    rows = []
    for r in point.rows:
        cells = [escape(r.name), escape(r.op_type), "float" if r.w_bits is None else str(r.w_bits),
                 escape(r.granularity), "yes" if r.symmetric else "no", escape(r.act), f"{r.weight_bytes:,}"]
        if est:
            cells.append(_num(r.est_latency_ms, 4))
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    total = [f"<td>layers' weights</td><td></td><td></td><td></td><td></td><td></td><td>{point.total_bytes:,}</td>"]
    if est:
        total.append(f"<td>{_num(sum(r.est_latency_ms or 0 for r in point.rows), 4)}</td>")
    foot = "<tr>" + "".join(total) + "</tr>"
    if data.other_bytes is not None:
        all_bytes = point.total_bytes + data.other_bytes
        foot += (f"<tr><td>other initializers (float, as stored)</td><td colspan=5></td><td>{data.other_bytes:,}</td>"
                 + ("<td></td>" if est else "") + "</tr>"
                 f"<tr><td><b>model weights</b> = {all_bytes / 1e6:.6f} MB</td><td colspan=5></td>"
                 f"<td><b>{all_bytes:,}</b></td>" + ("<td></td>" if est else "") + "</tr>")
    return f'<table class="layers"><thead>{head}</thead><tbody>{"".join(rows)}</tbody><tfoot>{foot}</tfoot></table>'


def _point_details(data: ReportData, point: Point, *, full: bool = True, config_file: str = "") -> str:
    summary = ", ".join(f"{name} {_num(v)}" for name, v in point.objectives.items())
    if not full:
        return (f'<details id="point-{escape(point.id)}"><summary><b>{escape(point.id)}</b>: {escape(summary)}'
                f'{" (exported)" if point.exported else ""}</summary><p class="note">not in the bit map; config: '
                f'<span class="mono">{escape(config_file)}</span></p></details>')
    body = _layer_table(data, point) if point.rows else '<p class="note">no per-layer breakdown (model not found)</p>'
    return (f'<details id="point-{escape(point.id)}"><summary><b>{escape(point.id)}</b>: {escape(summary)}'
            f'{" (exported)" if point.exported else ""}</summary>{body}'
            f'<details class="config"><summary>config ({escape(point.id)}.yaml)</summary>'
            f'<pre class="mono">{escape(point.config_text)}</pre></details></details>')


def _legend(data: ReportData) -> str:
    n = data.doc.get("float", {}).get("n", "?")
    items = []
    for o in data.objectives:
        extra = ""
        if o["kind"] == "measured" and o["name"] == "acc_drop":
            extra = f" ({data.doc.get('metric')} on {n} evaluation samples, vs the float model)"
        if o["kind"] == "estimated":
            extra = f" (hardware table: {escape(str(data.doc.get('hardware')))})"
        items.append(f"<li><b>{escape(o['name'])}</b>{_kind(o['kind'])} {escape(o['unit'])}: "
                     f"{escape(KIND_HELP.get(o['kind'], o['kind']))}{extra}</li>")
    timed = data.doc.get("host_latency")
    if timed:
        items.append(f"<li><b>host ms</b>{_kind('measured')}: {escape(_latency_text(timed))}</li>")
    items.append(f"<li>per-layer weight bytes{_kind('exact')}: {escape(KIND_HELP['exact'])}</li>")
    items.append(f"<li><b>x smaller</b>{_kind('exact')}: the float model's size by bit count / the point's; "
                 "<b>file MB</b>: the exported .onnx file re-measured at the end of the search (it holds the graph "
                 "too, and stores a width ONNX has no type for in a wider one)</li>")
    if data.hardware:
        items.append(f"<li>per-layer latency{_kind('estimated')}: {escape(KIND_HELP['estimated'])}</li>")
    return "<ul>" + "".join(items) + "</ul>"


def _latency_text(timed: dict) -> str:
    """How front.json's ``host_latency`` was measured, in words."""
    load = timed.get("load_before")
    busy = f"; load average {load[0]} on {timed.get('cpus')} CPUs" if load else ""
    return (f"each point's exported file run with ONNX Runtime on this host at batch {timed.get('batch')}, "
            f"{timed.get('threads')} thread(s), median of {timed.get('rounds')} rounds of {timed.get('repeats')} "
            f"runs interleaved with the float model ({_num(timed.get('float_ms'), 2)} ms); "
            f"vs float = float ms / point ms{busy}")


def _meta(data: ReportData) -> str:
    doc = data.doc
    fl = doc.get("float", {})
    rows = [("model", f'{doc["model"].get("path")}'), ("model sha256", doc["model"].get("sha256")),
            ("problem", doc.get("problem")), ("metric", f'{doc.get("metric")}: float model {_num(fl.get("metric"), 2)} '
                                                        f'on {fl.get("n", "?")} samples (measured)'),
            ("hardware table", doc.get("hardware") or "none (no estimated objectives)"),
            ("seed", doc.get("seed")), ("evaluations", doc.get("evaluations"))]
    hist = doc.get("history") or {}
    if hist:
        rows.append(("last generation", f'{hist.get("gen")}: hypervolume {_num(hist.get("hypervolume"))}, '
                                        f'{_num(hist.get("elapsed_s"), 3)} s'))
    rows += [(f"version: {k}", v) for k, v in (doc.get("versions") or {}).items()]
    body = "".join(f"<tr><th>{escape(str(k))}</th><td class=mono>{escape(str(v))}</td></tr>" for k, v in rows)
    return f'<table class="meta" id="meta">{body}</table>'


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _all_details(data: ReportData) -> str:
    """Every point's details: all with per-layer tables up to :data:`DETAIL_ROWS` rows, else
    those of the points the bit map draws, with a note saying so."""
    rows = sum(len(p.rows) for p in data.points)
    shown = set(range(len(data.points))) if rows <= DETAIL_ROWS else set(select_points(data))
    files = [p.get("config", "") for p in data.doc.get("points", [])]
    parts = [_point_details(data, p, full=i in shown, config_file=files[i] if i < len(files) else "")
             for i, p in enumerate(data.points)]
    if len(shown) < len(data.points):
        parts.insert(0, f'<p class="note">{len(data.points)} points x {len(data.layer_names)} layers: per-layer '
                        f'tables for the {len(shown)} points of the bit map only.</p>')
    return "".join(parts)


def render_html(data: ReportData, *, pareto: bytes, bitmap: bytes) -> str:
    """The whole page as text.

    Args:
        data: the gathered run.
        pareto: PNG bytes of the front projections.
        bitmap: PNG bytes of the bit map.
    """
    notes = "".join(f'<p class="note">{escape(n)}</p>' for n in data.notes)
    details = _all_details(data)
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>qaev report: {escape(str(data.run_dir))}</title>
<style>{_CSS}</style></head><body>
<h1>qaev report</h1>
<p>{escape(str(data.run_dir))}: {len(data.points)} front points from {data.doc.get('evaluations', '?')} evaluations
 (generated {when}).</p>{notes}
<h2>Which numbers are measured, exact or estimated</h2>{_legend(data)}
<h2>Front</h2><p>Click a column to sort.</p>{_front_table(data)}{_baseline_table(data)}
{_img(pareto, "Pareto front projections")}
<h2>Weight bits per layer</h2>{_img(bitmap, "weight bits per layer and point")}
<h2>Points</h2>{details}
<h2>Run</h2>{_meta(data)}
<script>{_JS}</script></body></html>
"""
