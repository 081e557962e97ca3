"""The report's sample explorer: every evaluated sample's figures and maps, embedded in the HTML (no network).

Pick a seed and a student, sort the samples by alignment, disagreement or loss, and see the teacher's and the
student's maps over the input: a series as a line with a heat strip per model, an image with each model's map
as an overlay, other inputs as one bar per part. Training curves per model sit beside it. Hand-written SVG and
canvas (about 8 KB of script): the two views it needs, heat strips under a line and overlays on an image, are
not a charting library's stock charts, and inlining one (plotly: ~3.5 MB) would outweigh the data.

Bounded: a seed embeds the maps of at most :data:`MAP_SAMPLES` samples (all of them when fewer; else the
worst-aligned, the disagreements, the highest losses and the first ones, over every student); the per-sample
columns of every evaluated sample are embedded.
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..files import damaged, sha256_of
from ..rundir import RunDirectory

#: the most samples whose maps and inputs one seed embeds
MAP_SAMPLES = 300
#: per-sample columns shown and sortable in the explorer (name -> label), when the files have them
SHOWN = {
    "label": "label",
    "teacher_prediction": "teacher",
    "student_prediction": "student",
    "student_loss": "loss",
    "agreement": "agree",
    "saliency_spearman": "saliency Spearman",
    "topk_focus": "top-k focus",
    "flip_auc_student_teacher_order": "deletion AUC",
}


def _quantised(maps: np.ndarray) -> tuple[str, list[float]]:
    """(n, P) maps -> base64 int8 (each row scaled to max |value| = 127) and each row's scale."""
    maps = np.nan_to_num(maps.astype(np.float64))
    scale = np.abs(maps).max(1) if maps.size else np.zeros(len(maps))
    safe = np.where(scale > 0, scale, 1.0)
    codes = np.round(maps / safe[:, None] * 127).astype(np.int8)
    return base64.b64encode(codes.tobytes()).decode(), [float(f"{v:.4g}") for v in scale]


def _rounded(values: np.ndarray) -> list[Any]:
    if values.dtype.kind in "iub":
        return values.astype(int).tolist()
    return [None if math.isnan(v) else float(f"{v:.4g}") for v in values.astype(float)]


def _chosen(per_student: dict[str, dict[str, np.ndarray]], kept: int) -> list[int]:
    """Which samples of a seed embed their maps: all when few, else the extremes over every student."""
    if kept <= MAP_SAMPLES:
        return list(range(kept))
    quota = MAP_SAMPLES // (3 * max(1, len(per_student)) + 1)
    chosen = set(range(quota))
    for columns in per_student.values():
        align = np.nan_to_num(columns.get("saliency_spearman", np.zeros(kept))[:kept], nan=2.0)
        chosen.update(np.argsort(align, kind="stable")[:quota].tolist())
        disagree = np.flatnonzero(columns["agreement"][:kept] < 1)
        chosen.update(disagree[:quota].tolist())
        chosen.update(np.argsort(-columns["student_loss"][:kept], kind="stable")[:quota].tolist())
    return sorted(chosen)[:MAP_SAMPLES]


def explorer_data(
    samples: dict[int, dict[str, dict[str, np.ndarray]]],
    curves: dict[int, dict[str, dict[str, list[float]]]],
    class_names: list[str] | None,
    links: dict[int, dict[str, str]],
) -> dict[str, Any]:
    """The explorer's embedded data. ``samples[seed][student]``: a per-sample file's arrays;
    ``curves[seed][model]``: column -> values per epoch; ``links[seed][student]``: the per-sample CSV's path."""
    seeds: dict[str, Any] = {}
    inputs: list[list[Any]] = []  # distinct input sets, shared by the seeds that have the same test samples
    view, shape, part_of = "parts", [], None
    for seed, per_student in samples.items():
        first = next(iter(per_student.values()))
        kept = int(first["kept"])
        chosen = _chosen(per_student, kept)
        x = first["x"][chosen]
        if part_of is None and "part_of" in first:
            part_of = first["part_of"].tolist()
            view = "series" if x.ndim == 3 else "image"
        shape = list(first["x"].shape[1:])
        flat = _rounded(x.reshape(len(x), -1).ravel()) if view != "parts" else []
        if flat not in inputs:
            inputs.append(flat)
        teacher, teacher_scale = _quantised(first["teacher_parts"][chosen])
        students = {}
        for name, columns in per_student.items():
            codes, scale = _quantised(columns["student_parts"][chosen])
            students[name] = {
                "columns": {c: _rounded(columns[c]) for c in SHOWN if c in columns},
                "maps": codes,
                "scale": scale,
                "csv": links.get(seed, {}).get(name, ""),
            }
        seeds[str(seed)] = {
            "n": len(first["label"]),
            "mapped": chosen,
            "parts": int(first["teacher_parts"].shape[1]),
            "inputs": inputs.index(flat),
            "teacher": {"maps": teacher, "scale": teacher_scale},
            "students": students,
            "curves": curves.get(seed, {}),
        }
    return {
        "view": view,
        "shape": shape,
        "part_of": part_of,
        "class_names": class_names,
        "columns": SHOWN,
        "inputs": inputs,
        "seeds": seeds,
    }


#: what a damaged training log costs, and the only way to write it anew
CURVES_LOST = "its model's training curves are left out of the report (only training the model again writes them)"


def read_curves(model_dir: Path, hashes: dict[str, str] | None = None) -> dict[str, list[float]]:
    """A model's per-epoch training figures from its CSV logs (every ``logs/version_*`` in order: a resumed fit
    writes a new version; the last value of an epoch wins). Columns ``epoch``, ``train/*``, ``val/*``.

    ``hashes``: the SHA-256 of each log by its path below ``model_dir``, as its training stage recorded them: only
    those logs are read, each checked, and one that is missing or changed is a :class:`DamagedFileError`. Without
    (a run that recorded none) every log is read as it is, and one that is not a readable CSV is refused the same."""
    by_epoch: dict[int, dict[str, float]] = {}
    for path in _logs(model_dir, hashes):
        data = path.read_bytes()
        if hashes is not None and sha256_of(data) != hashes[path.relative_to(model_dir).as_posix()]:
            raise damaged(path, "its bytes do not match the hash stages.json recorded for it", CURVES_LOST)
        try:
            _add_rows(by_epoch, data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as error:
            raise damaged(path, f"not a readable CSV log: {str(error).splitlines()[0]}", CURVES_LOST) from None
    if not by_epoch:
        return {}
    epochs = sorted(by_epoch)
    keys = sorted({k for e in by_epoch.values() for k in e})
    out: dict[str, list[float]] = {"epoch": [e + 1 for e in epochs]}
    for key in keys:
        out[key] = [float(f"{by_epoch[e][key]:.4g}") if key in by_epoch[e] else math.nan for e in epochs]
    return out


def _logs(model_dir: Path, hashes: dict[str, str] | None) -> list[Path]:
    """The logs to read: every one, or those ``hashes`` names (a damaged error when one of them is missing)."""
    found = RunDirectory.training_logs(model_dir)
    if hashes is None:
        return found
    names = {path.relative_to(model_dir).as_posix() for path in found}
    missing = sorted(set(hashes) - names)
    if missing:
        raise damaged(model_dir / missing[0], "it is missing", CURVES_LOST)
    return [path for path in found if path.relative_to(model_dir).as_posix() in hashes]


def _add_rows(by_epoch: dict[int, dict[str, float]], text: str) -> None:
    """A CSV log's rows, by epoch (a row without an epoch is skipped)."""
    import csv
    import io

    reader = csv.DictReader(io.StringIO(text, newline=""))
    for row in reader:
        if None in row or None in row.values():  # more or fewer cells than the header names: a cut-off row
            raise ValueError(f"line {reader.line_num} has not one cell per column")
        if not row.get("epoch"):
            continue
        epoch = by_epoch.setdefault(int(float(row["epoch"])), {})
        for key, value in row.items():
            if value and key.startswith(("train/", "val/")) and not key.endswith("_weighted"):
                epoch[key] = float(value)


def embed(data: dict[str, Any]) -> str:
    """The explorer's section: its data as JSON inside the page, its script and its markup."""
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False, default=_plain).replace("</", "<\\/")
    return (
        EXPLORER_HTML
        + f'<script type="application/json" id="explorer-data">{payload}</script><script>{SCRIPT}</script>'
    )


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    raise TypeError(f"cannot embed {type(value).__name__}")


EXPLORER_HTML = """
<h2 id="explorer">Explore the samples</h2>
<p class="meta">Every evaluated test sample of every seed and student. Pick a row to see the teacher's and the
student's part importances over the input (|importance| per part, each map scaled to its own maximum).
<span id="explorer-links"></span></p>
<div class="controls">
<label>seed <select id="explorer-seed"></select></label>
<label>student <select id="explorer-student"></select></label>
<label>sort by <select id="explorer-sort">
<option value="align">alignment, worst first</option>
<option value="disagree">disagreement with the teacher first</option>
<option value="loss">student loss, highest first</option>
<option value="index">sample number</option>
</select></label>
</div>
<div class="explorer">
<div class="scroll samples"><table id="explorer-table"></table></div>
<div id="explorer-view"></div>
</div>
<h2 id="curves">Training curves</h2>
<p class="meta">Per epoch, for the seed picked above: the training loss (and validation figures where the fit
held a validation split out of the training data).</p>
<div id="explorer-curves" class="grid"></div>
"""

SCRIPT = r"""
(function () {
const D = JSON.parse(document.getElementById('explorer-data').textContent);
const $ = (id) => document.getElementById(id);
const NS = 'http://www.w3.org/2000/svg';
const COLORS = ['#222', '#c33', '#36c', '#393'];
const seedSel = $('explorer-seed'), studentSel = $('explorer-student'), sortSel = $('explorer-sort');
const state = {sample: null};
function el(tag, attrs, parent, text) {
  const e = tag.startsWith('svg:') ? document.createElementNS(NS, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}
function decode(b64, rows, cols, scale) {
  const bin = atob(b64), out = [];
  for (let r = 0; r < rows; r++) {
    const row = [];
    for (let c = 0; c < cols; c++) { let v = bin.charCodeAt(r * cols + c); if (v > 127) v -= 256; row.push(Math.abs(v) / 127); }
    out.push(row);
  }
  return out;
}
function heat(v) { const t = Math.max(0, Math.min(1, v)); return `rgb(${Math.round(255 - 40 * t)},${Math.round(245 - 200 * t)},${Math.round(235 - 215 * t)})`; }
function className(i) { return D.class_names && D.class_names[i] !== undefined ? D.class_names[i] : String(i); }
function fmt(v) { return v === null || v === undefined ? '–' : (Number.isInteger(v) ? String(v) : v.toFixed(3)); }
Object.keys(D.seeds).forEach((s) => el('option', {value: s}, seedSel, Object.keys(D.seeds).length > 1 ? s : s + ' (the only seed)'));
function seed() { return D.seeds[seedSel.value]; }
function fillStudents() {
  const keep = studentSel.value; studentSel.innerHTML = '';
  Object.keys(seed().students).forEach((n) => el('option', {value: n}, studentSel, n));
  if (keep && seed().students[keep]) studentSel.value = keep;
}
function order(cols, n) {
  const idx = [...Array(n).keys()], key = sortSel.value;
  const num = (v, dflt) => (v === null || v === undefined ? dflt : v);
  if (key === 'align') idx.sort((a, b) => num(cols.saliency_spearman?.[a], 9) - num(cols.saliency_spearman?.[b], 9) || a - b);
  if (key === 'disagree') idx.sort((a, b) => num(cols.agreement[a], 1) - num(cols.agreement[b], 1) || num(cols.student_loss[b], 0) - num(cols.student_loss[a], 0) || a - b);
  if (key === 'loss') idx.sort((a, b) => num(cols.student_loss[b], 0) - num(cols.student_loss[a], 0) || a - b);
  return idx;
}
function drawTable() {
  const s = seed(), st = s.students[studentSel.value], cols = st.columns, table = $('explorer-table');
  table.innerHTML = '';
  const head = el('tr', {}, el('thead', {}, table));
  el('th', {}, head, 'sample');
  Object.entries(D.columns).forEach(([k, label]) => { if (k in cols) el('th', {}, head, label); });
  const body = el('tbody', {}, table);
  order(cols, s.n).forEach((i) => {
    const tr = el('tr', {'data-sample': i, tabindex: 0}, body);
    if (i === state.sample) tr.className = 'picked';
    el('td', {}, tr, String(i));
    Object.keys(D.columns).forEach((k) => {
      if (!(k in cols)) return;
      const v = cols[k][i];
      el('td', {}, tr, ['label', 'teacher_prediction', 'student_prediction'].includes(k) ? className(v) : fmt(v));
    });
    const pick = () => { state.sample = i; drawTable(); drawSample(); };
    tr.addEventListener('click', pick);
    tr.addEventListener('keydown', (e) => { if (e.key === 'Enter') pick(); });
  });
}
function strip(parent, label, values, width) {
  const box = el('div', {class: 'strip', 'data-model': label, 'data-values': values.map((v) => v.toFixed(3)).join(',')}, parent);
  el('div', {class: 'strip-label'}, box, label);
  const svg = el('svg:svg', {viewBox: `0 0 ${width} 18`, width: '100%', height: 18, preserveAspectRatio: 'none'}, box);
  const n = D.part_of ? D.part_of.length : values.length;
  for (let t = 0; t < n; t++) {
    const p = D.part_of ? D.part_of[t] : t;
    el('svg:rect', {x: t * width / n, y: 0, width: width / n + 0.5, height: 18, fill: heat(values[p])}, svg);
  }
}
function drawSample() {
  const s = seed(), view = $('explorer-view'), i = state.sample;
  view.innerHTML = '';
  if (i === null) { el('p', {class: 'meta'}, view, 'Pick a sample in the table.'); return; }
  const st = s.students[studentSel.value], cols = st.columns, row = s.mapped.indexOf(i);
  el('h3', {id: 'explorer-picked', 'data-sample': i}, view,
     `sample ${i}: label ${className(cols.label[i])}, teacher says ${className(cols.teacher_prediction[i])}, ${studentSel.value} says ${className(cols.student_prediction[i])}`);
  if (row < 0) { el('p', {class: 'meta'}, view, 'Its maps are not embedded (the page keeps those of ' + s.mapped.length + ' samples per seed); read them from the per-sample file.'); return; }
  const P = s.parts;
  const teacher = decode(s.teacher.maps, s.mapped.length, P)[row];
  const student = decode(st.maps, s.mapped.length, P)[row];
  const x = D.inputs[s.inputs];
  const size = D.shape.reduce((a, b) => a * b, 1);
  if (D.view === 'series') {
    const C = D.shape[0], T = D.shape[1], W = 600, H = 120;
    const xs = x.slice(row * size, (row + 1) * size);
    const lo = Math.min(...xs), hi = Math.max(...xs), span = hi - lo || 1;
    const svg = el('svg:svg', {viewBox: `0 0 ${W} ${H}`, width: '100%', class: 'series'}, view);
    for (let c = 0; c < Math.min(C, 3); c++) {
      const pts = [];
      for (let t = 0; t < T; t++) pts.push(`${(t / (T - 1)) * W},${H - 4 - ((xs[c * T + t] - lo) / span) * (H - 8)}`);
      el('svg:polyline', {points: pts.join(' '), fill: 'none', stroke: ['#333', '#36c', '#c63'][c], 'stroke-width': 1.5}, svg);
    }
    strip(view, 'teacher', teacher, W);
    strip(view, studentSel.value, student, W);
  } else if (D.view === 'image') {
    const [C, Hh, Ww] = D.shape, pixels = x.slice(row * size, (row + 1) * size);
    const lo = Math.min(...pixels), hi = Math.max(...pixels), span = hi - lo || 1;
    const wrap = el('div', {class: 'images'}, view);
    [['input', null], ['teacher', teacher], [studentSel.value, student]].forEach(([label, map]) => {
      const fig = el('figure', {class: 'strip', 'data-model': label, 'data-values': map ? map.map((v) => v.toFixed(3)).join(',') : ''}, wrap);
      const canvas = el('canvas', {width: Ww, height: Hh}, fig);
      const ctx = canvas.getContext('2d'), img = ctx.createImageData(Ww, Hh);
      for (let p = 0; p < Hh * Ww; p++) {
        const g = [0, 1, 2].map((c) => 255 * (pixels[Math.min(c, C - 1) * Hh * Ww + p] - lo) / span);
        const a = map ? map[D.part_of[p]] : 0;
        img.data[4 * p] = g[0] * (1 - a) + 230 * a; img.data[4 * p + 1] = g[1] * (1 - a) + 40 * a;
        img.data[4 * p + 2] = g[2] * (1 - a) + 20 * a; img.data[4 * p + 3] = 255;
      }
      ctx.putImageData(img, 0, 0);
      el('figcaption', {}, fig, label);
    });
  } else {
    [['teacher', teacher], [studentSel.value, student]].forEach(([label, map]) => strip(view, label, map, 600));
  }
  const facts = el('p', {class: 'meta'}, view);
  facts.textContent = Object.entries(D.columns).filter(([k]) => k in cols).map(([k, label]) => `${label} ${['label', 'teacher_prediction', 'student_prediction'].includes(k) ? className(cols[k][i]) : fmt(cols[k][i])}`).join(' · ');
}
function curve(parent, title, series) {
  const W = 320, H = 170, L = 46, B = 22;
  const box = el('figure', {class: 'curve'}, parent);
  const all = Object.values(series).flat().filter((v) => v !== null && Number.isFinite(v));
  if (!all.length) return;
  const lo = Math.min(...all), hi = Math.max(...all), span = hi - lo || 1;
  const n = Math.max(...Object.values(series).map((v) => v.length));
  const svg = el('svg:svg', {viewBox: `0 0 ${W} ${H}`, width: '100%'}, box);
  el('svg:line', {x1: L, y1: H - B, x2: W, y2: H - B, stroke: '#999'}, svg);
  el('svg:line', {x1: L, y1: 0, x2: L, y2: H - B, stroke: '#999'}, svg);
  el('svg:text', {x: L - 3, y: 12, 'font-size': 12, 'text-anchor': 'end'}, svg, hi.toPrecision(3));
  el('svg:text', {x: L - 3, y: H - B, 'font-size': 12, 'text-anchor': 'end'}, svg, lo.toPrecision(3));
  el('svg:text', {x: L, y: H - 5, 'font-size': 12}, svg, 'epoch 1');
  el('svg:text', {x: W - 2, y: H - 5, 'font-size': 12, 'text-anchor': 'end'}, svg, String(n));
  Object.entries(series).forEach(([name, values], j) => {
    const pts = values.map((v, k) => (v === null ? null : `${L + (k / Math.max(1, n - 1)) * (W - L)},${(H - B) - ((v - lo) / span) * (H - B - 4)}`)).filter(Boolean);
    el('svg:polyline', {points: pts.join(' '), fill: 'none', stroke: COLORS[j % 4], 'stroke-width': 1.5}, svg);
  });
  const caption = el('figcaption', {}, box, title + ': ');
  Object.keys(series).forEach((name, j) => {
    el('span', {style: `color: ${COLORS[j % 4]}; font-weight: 600`}, caption, (j ? ', ' : '') + name);
  });
  if (lo > 0) caption.append(` (axis from ${lo.toPrecision(3)}, not 0)`);
}
function drawCurves() {
  const box = $('explorer-curves'); box.innerHTML = '';
  Object.entries(seed().curves).forEach(([model, c]) => {
    const series = {};
    Object.keys(c).filter((k) => k.endsWith('loss')).forEach((k) => { series[k] = c[k]; });
    curve(box, model, series);
    const acc = {};
    Object.keys(c).filter((k) => k.startsWith('val/') && !k.endsWith('loss')).forEach((k) => { acc[k] = c[k]; });
    if (Object.keys(acc).length) curve(box, model + ', validation', acc);
  });
}
function links() {
  const st = seed().students[studentSel.value], span = $('explorer-links');
  span.innerHTML = '';
  el('a', {href: 'figures.json'}, span, 'every figure (figures.json)');
  if (st.csv) { span.append(' · '); el('a', {href: st.csv}, span, `this student's per-sample file (${st.csv})`); }
}
function first() { const s = seed(); state.sample = order(s.students[studentSel.value].columns, s.n)[0]; }
function redraw() { fillStudents(); links(); if (state.sample === null) first(); drawTable(); drawSample(); drawCurves(); }
seedSel.addEventListener('change', redraw);
studentSel.addEventListener('change', () => { links(); drawTable(); drawSample(); });
sortSel.addEventListener('change', drawTable);
redraw();
})();
"""
