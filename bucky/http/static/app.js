// The status page: tables from /api/status, the relay's own history from /api/history, the
// series tree from /api/tree, plots from /api/series (drawn by plot.js). Everything is served by
// Bucky itself; no network beyond it. Open branches of the tree and open plots refresh: the tree
// is reconciled with what the server says (nodes are updated in place, so what is open stays
// open), never rebuilt.
"use strict";
const selected = new Set();
const openPlots = new Set();

async function getJSON(url) {
  const r = await fetch(url, {cache: "no-store"});
  return {status: r.status, body: await r.json()};
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text === undefined || text === null ? "–" : text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function fillTable(id, rows, render) {
  const tbody = document.querySelector(`#${id} tbody`);
  tbody.textContent = "";
  for (const row of rows) {
    const tr = document.createElement("tr");
    render(tr, row);
    tbody.appendChild(tr);
  }
  if (!rows.length) {
    const tr = document.createElement("tr");
    const td = cell(tr, "nothing yet", "muted");
    td.colSpan = document.querySelectorAll(`#${id} thead th`).length;
    tbody.appendChild(tr);
  }
}

async function refreshStatus() {
  try {
    const [health, status] = await Promise.all([getJSON("/health"), getJSON("/api/status")]);
    const badge = document.getElementById("health");
    // ok, degraded (an operator is needed, nothing is lost) or failing (data is being lost)
    const state = health.body.status;
    const reasons = health.body.reasons || [];
    badge.textContent = state + (reasons.length ? ": " + reasons.join("; ") : "");
    badge.className = "badge " + ({ok: "ok", degraded: "warn"}[state] || "bad");
    const s = status.body;
    document.getElementById("updated").textContent = "updated " + fmtTime(s.time);
    document.getElementById("history").textContent = s.history_seconds;
    for (const el of document.querySelectorAll(".history-seconds")) el.textContent = s.history_seconds;
    document.getElementById("series-count").textContent = `(${s.series} series)`;
    const a = s.about || {};
    document.getElementById("about").textContent = [
      a.version ? "version " + a.version : null, a.host ? "on " + a.host : null,
      a.uptime !== null && a.uptime !== undefined ? "up " + fmtDuration(a.uptime) : null,
      a.config_file ? "config " + a.config_file : "default config"].filter(x => x).join(" · ");
    fillTable("inputs", s.inputs, (tr, r) => {
      cell(tr, r.process); cell(tr, fmtNum(r.rate_in), "num"); cell(tr, fmtNum(r.rate_out), "num");
    });
    fillTable("destinations", s.destinations, (tr, d) => {
      cell(tr, d.output); cell(tr, `${d.label} (${d.address})`);
      cell(tr, d.state + (d.accepting ? "" : ", reconnects used up"), "state-" + d.state);
      cell(tr, d.placement, "placement");
      cell(tr, d.pending, "num"); cell(tr, d.spool === null || d.spool === undefined ? "–" : d.spool, "num");
      cell(tr, d.spool ? fmtDuration(d.spool_age) : "–", "num");
      cell(tr, fmtNum(d.rate_out), "num"); cell(tr, d.sent, "num"); cell(tr, d.dropped, "num");
    });
    fillTable("rejects", s.rejects, (tr, r) => {
      cell(tr, r.process); cell(tr, r.counter); cell(tr, fmtNum(r.value), "num"); cell(tr, fmtNum(r.rate), "num");
    });
    fillTable("processes", s.processes, (tr, p) => {
      cell(tr, p.title); cell(tr, p.role); cell(tr, p.up ? "up" : "down", p.up ? "state-up" : "state-down");
      cell(tr, p.restarts, "num");
    });
  } catch (e) {
    document.getElementById("health").textContent = "no answer from Bucky";
    document.getElementById("health").className = "badge bad";
  }
}

function nodeElement(node) {
  const li = document.createElement("li");
  li.dataset.path = node.path;
  if (node.leaf && node.series === 1) {
    li.className = "leaf"; li.dataset.kind = "leaf";
    const box = document.createElement("input");
    box.type = "checkbox"; box.className = "select"; box.checked = selected.has(node.path);
    box.addEventListener("change", () => {
      if (box.checked) selected.add(node.path); else selected.delete(node.path);
      refreshOverlay();
    });
    const name = document.createElement("span");
    name.className = "leaf-name"; name.textContent = node.name;
    name.addEventListener("click", () => togglePlot(li, node.path));
    const last = document.createElement("span");
    last.className = "last"; last.textContent = "= " + fmtNum(node.last);
    li.append(box, " ", name, last);
    const plot = document.createElement("div");
    plot.className = "series-plot";
    li.appendChild(plot);
    if (openPlots.has(node.path)) drawPlot(plot, [node.path]);
  } else {
    li.className = "node"; li.dataset.kind = "node";
    const toggle = document.createElement("span");
    toggle.className = "toggle"; toggle.textContent = "▸";
    const name = document.createElement("span");
    name.className = "branch-name"; name.textContent = node.name;
    const count = document.createElement("span");
    count.className = "muted count"; count.textContent = ` (${node.series})`;
    const children = document.createElement("ul");
    li.append(toggle, name, count, children);
    const open = async () => {
      if (li.classList.contains("open")) {
        li.classList.remove("open"); toggle.textContent = "▸"; children.textContent = "";
      } else {
        li.classList.add("open"); toggle.textContent = "▾";
        await loadTree(children, node.path);
      }
    };
    toggle.addEventListener("click", open);
    name.addEventListener("click", open);
  }
  return li;
}

// Fill `ul` with the children of `prefix`, keeping the elements already there (an open branch
// stays open, a plot stays drawn) and updating their figures; open branches below are refreshed
// the same way.
async function loadTree(ul, prefix) {
  const r = await getJSON("/api/tree?prefix=" + encodeURIComponent(prefix));
  const existing = new Map();
  for (const li of ul.children) existing.set(li.dataset.path, li);
  const wanted = [];
  for (const node of r.body.children) {
    const kind = node.leaf && node.series === 1 ? "leaf" : "node";
    let li = existing.get(node.path);
    if (li && li.dataset.kind === kind) updateNode(li, node);
    else li = nodeElement(node);
    wanted.push(li);
  }
  wanted.forEach((li, i) => { if (ul.children[i] !== li) ul.insertBefore(li, ul.children[i] || null); });
  while (ul.children.length > wanted.length) ul.removeChild(ul.lastElementChild);
  ul.dataset.loaded = "1";
  const open = wanted.filter(li => li.classList.contains("open"));
  await Promise.all(open.map(li => loadTree(li.querySelector(":scope > ul"), li.dataset.path)));
}

function updateNode(li, node) {
  if (li.dataset.kind === "leaf") li.querySelector(".last").textContent = "= " + fmtNum(node.last);
  else li.querySelector(":scope > .count").textContent = ` (${node.series})`;
}

async function drawPlot(div, paths) {
  const q = paths.map(p => "path=" + encodeURIComponent(p)).join("&");
  const r = await getJSON("/api/series?" + q);
  const data = {};
  for (const p of paths) data[p] = r.body.series[p] || [];
  const drawn = JSON.stringify(data);
  if (div.dataset.drawn === drawn && div.firstChild) return;  // unchanged: no flicker
  div.dataset.drawn = drawn;
  plotSeries(div, data);
}

function togglePlot(li, path) {
  const div = li.querySelector(".series-plot");
  if (openPlots.has(path)) {
    openPlots.delete(path); div.textContent = ""; delete div.dataset.drawn;
    li.classList.remove("plotted");
  }
  else { openPlots.add(path); li.classList.add("plotted"); drawPlot(div, [path]); }
}

async function refreshOverlay() {
  const div = document.getElementById("overlay-plot");
  if (!selected.size) {
    div.textContent = "Tick series in the tree to overlay them here."; delete div.dataset.drawn;
    return;
  }
  await drawPlot(div, Array.from(selected).sort());
}

async function refreshPlots() {
  for (const li of document.querySelectorAll("li.leaf.plotted")) {
    drawPlot(li.querySelector(".series-plot"), [li.dataset.path]);
  }
  if (selected.size) refreshOverlay();
}

let treeBusy = false;
async function refreshTree() {
  // The whole visible tree: the top (new branches appear by themselves) and every open branch.
  if (treeBusy) return;
  treeBusy = true;
  try { await loadTree(document.getElementById("tree"), ""); } catch (e) { /* next time */ }
  finally { treeBusy = false; }
}

async function refreshHistory() {
  try {
    const h = (await getJSON("/api/history")).body;
    const box = document.getElementById("relay-history");
    for (const plot of h.plots) {
      let div = box.querySelector(`div.history-plot[data-key="${plot.key}"]`);
      if (!div) {
        div = document.createElement("div");
        div.className = "history-plot"; div.dataset.key = plot.key;
        const title = document.createElement("h3");
        title.textContent = plot.title;
        const area = document.createElement("div");
        area.className = "area";
        div.append(title, area);
        box.appendChild(div);
      }
      plotSeries(div.querySelector(".area"), plot.lines,
                 {dots: false, zero: true, width: 420, height: 150});
    }
  } catch (e) { /* the status badge says when Bucky does not answer */ }
}

refreshStatus();
refreshHistory();
refreshTree();
setInterval(refreshStatus, 2000);
setInterval(refreshHistory, 3000);
setInterval(refreshTree, 3000);
setInterval(refreshPlots, 3000);
