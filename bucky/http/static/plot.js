// Small inline-SVG line plots for the status page (no library, no network).
// plotSeries(container, {path: [[time, value], ...], ...}) draws every series in one plot with
// shared axes; each point is a <circle class="pt" data-path data-time data-value> unless
// opts.dots is false (long histories: the line alone); opts.zero puts 0 on the value axis.
"use strict";
const PLOT_COLORS = ["#1565c0", "#c62828", "#2e7d32", "#6a1b9a", "#ef6c00", "#00838f", "#5d4037", "#ad1457"];
const SVG_NS = "http://www.w3.org/2000/svg";

function svgEl(name, attrs, parent) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  if (parent) parent.appendChild(el);
  return el;
}

// Three significant digits, with k / M / G for thousands, millions, billions: 1234.5 -> "1.23k",
// 17.5 -> "17.5", 0.012345 -> "0.0123", 30 -> "30".
function fmtNum(v) {
  if (v === null || v === undefined) return "–";
  if (!isFinite(v)) return String(v);
  const r = Number(v.toPrecision(3));
  const a = Math.abs(r);
  if (a >= 1e12) return r.toExponential(2);
  for (const [div, suffix] of [[1e9, "G"], [1e6, "M"], [1e3, "k"]]) {
    if (a >= div) return Number((r / div).toPrecision(3)) + suffix;
  }
  return String(r);
}

// A duration in seconds as the page shows it: "42 s", "7 min", "3 h 05 min", "2 d 4 h".
function fmtDuration(s) {
  if (s === null || s === undefined) return "–";
  s = Math.max(0, Math.round(s));
  if (s < 120) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 120) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${String(m % 60).padStart(2, "0")} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

function fmtTime(t) {
  const d = new Date(t * 1000);
  return d.toTimeString().slice(0, 8);
}

function plotSeries(container, seriesMap, opts) {
  opts = opts || {};
  const W = opts.width || 520, H = opts.height || 180, L = 60, R = 10, T = 10, B = 22;
  container.textContent = "";
  const paths = Object.keys(seriesMap);
  let tmin = Infinity, tmax = -Infinity, vmin = Infinity, vmax = -Infinity;
  for (const p of paths) {
    for (const [t, v] of seriesMap[p] || []) {
      if (v === null) continue;
      tmin = Math.min(tmin, t); tmax = Math.max(tmax, t);
      vmin = Math.min(vmin, v); vmax = Math.max(vmax, v);
    }
  }
  const svg = svgEl("svg", {class: "plot", width: W, height: H, viewBox: `0 0 ${W} ${H}`}, container);
  if (!isFinite(tmin)) {
    svgEl("text", {x: L, y: H / 2}, svg).textContent = "no points in the history window";
    return svg;
  }
  if (opts.zero) {  // rates and levels: the axis starts at 0 (and a flat 0 reads 0 to 1)
    vmin = Math.min(vmin, 0);
    if (vmax === vmin) vmax = vmin + 1;
  }
  if (tmax === tmin) { tmin -= 1; tmax += 1; }
  if (vmax === vmin) { vmin -= Math.abs(vmin) * 0.1 || 1; vmax += Math.abs(vmax) * 0.1 || 1; }
  const x = t => L + (t - tmin) / (tmax - tmin) * (W - L - R);
  const y = v => T + (vmax - v) / (vmax - vmin) * (H - T - B);
  svgEl("line", {class: "axis", x1: L, y1: T, x2: L, y2: H - B}, svg);
  svgEl("line", {class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B}, svg);
  for (const v of [vmin, (vmin + vmax) / 2, vmax]) {
    svgEl("text", {x: L - 4, y: y(v) + 3, "text-anchor": "end"}, svg).textContent = fmtNum(v);
  }
  svgEl("text", {x: L, y: H - 6}, svg).textContent = fmtTime(tmin);
  svgEl("text", {x: W - R, y: H - 6, "text-anchor": "end"}, svg).textContent = fmtTime(tmax);
  paths.forEach((p, i) => {
    const color = PLOT_COLORS[i % PLOT_COLORS.length];
    const pts = (seriesMap[p] || []).filter(pt => pt[1] !== null).sort((a, b) => a[0] - b[0]);
    svgEl("polyline", {class: "line", "data-path": p, stroke: color,
      points: pts.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" ")}, svg);
    if (opts.dots === false) return;
    for (const [t, v] of pts) {
      const c = svgEl("circle", {class: "pt", cx: x(t).toFixed(1), cy: y(v).toFixed(1), r: 2.5,
        fill: color, "data-path": p, "data-time": t, "data-value": v}, svg);
      svgEl("title", {}, c).textContent = `${p} = ${v} at ${fmtTime(t)}`;
    }
  });
  const legend = document.createElement("div");
  legend.className = "legend";
  paths.forEach((p, i) => {
    const s = document.createElement("span");
    s.innerHTML = `<i style="background:${PLOT_COLORS[i % PLOT_COLORS.length]}"></i>`;
    s.appendChild(document.createTextNode(p));
    legend.appendChild(s);
  });
  container.appendChild(legend);
  return svg;
}
