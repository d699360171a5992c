// invnet planner page: no dependencies, no network access beyond this server.
"use strict";

const $ = (id) => document.getElementById(id);
let network = null; // from GET /v1/policies

function headers(json) {
  const h = json ? { "Content-Type": "application/json" } : {};
  const key = $("api-key").value.trim();
  if (key) h["X-API-Key"] = key;
  return h;
}

function fmt(x, digits = 1) {
  if (x === null || x === undefined) return "–";
  const r = Math.round(x * 10 ** digits) / 10 ** digits;
  return r.toLocaleString(undefined, { maximumFractionDigits: digits });
}

function showError(msg) {
  const el = $("error");
  el.textContent = msg;
  el.hidden = !msg;
}

function setStatus(msg) { $("status").textContent = msg; }

async function apiError(resp) {
  let body = null;
  try { body = await resp.json(); } catch (e) { /* not JSON */ }
  const d = body && body.detail;
  if (Array.isArray(d)) {
    return `HTTP ${resp.status}:\n` + d.map((e) => `• ${(e.loc || []).join(".")}: ${e.msg}`).join("\n");
  }
  return `HTTP ${resp.status}: ${typeof d === "string" ? d : resp.statusText}`;
}

async function loadPolicy() {
  try {
    const resp = await fetch("/v1/policies", { headers: headers(false) });
    if (!resp.ok) { $("policy-info").textContent = await apiError(resp); return; }
    const p = await resp.json();
    network = p.network;
    $("policy-info").textContent =
      `policy ${p.name} (version ${p.version}) · scenario ${p.scenario} · ${network.nodes.length} nodes, ` +
      `${network.skus.length} SKU(s), pipeline length ${network.pipeline_length}` +
      (p.trained_on ? ` · trained on ${p.trained_on}` : "");
  } catch (e) {
    $("policy-info").textContent = `cannot reach the server: ${e}`;
  }
}

// ---- CSV ----------------------------------------------------------------------------------
function splitCsvLine(line) {
  const out = []; let cur = ""; let q = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (q) {
      if (c === '"' && line[i + 1] === '"') { cur += '"'; i++; }
      else if (c === '"') q = false;
      else cur += c;
    } else if (c === '"') q = true;
    else if (c === "," || c === ";" || c === "\t") { out.push(cur); cur = ""; }
    else cur += c;
  }
  out.push(cur);
  return out.map((s) => s.trim());
}

function cell(v) {
  if (v === "") return undefined;
  const n = Number(v);
  return Number.isFinite(n) && /^[-+]?[\d.]+(e[-+]?\d+)?$/i.test(v) ? n : v; // non-numbers go to the server as text: it names the field
}

function csvToState(text, t) {
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== "");
  if (lines.length < 2) throw new Error("CSV: need a header row and at least one data row");
  const head = splitCsvLine(lines[0]).map((h) => h.toLowerCase());
  if (!head.includes("node")) throw new Error("CSV: missing column 'node'");
  if (!head.includes("on_hand")) throw new Error("CSV: missing column 'on_hand'");
  const series = (prefix) => head
    .map((h, i) => [h, i]).filter(([h]) => h.startsWith(prefix))
    .sort((a, b) => Number(a[0].slice(prefix.length)) - Number(b[0].slice(prefix.length)))
    .map(([, i]) => i);
  const transitCols = series("in_transit_");
  const demandCols = series("recent_demand_");
  const col = (name) => head.indexOf(name);
  let period = t;
  const nodes = lines.slice(1).map((line, r) => {
    const v = splitCsvLine(line);
    const e = { node: v[col("node")] };
    if (col("sku") >= 0 && v[col("sku")] !== "") e.sku = v[col("sku")];
    for (const k of ["on_hand", "backlog", "forecast"]) {
      if (col(k) >= 0 && cell(v[col(k)] ?? "") !== undefined) e[k] = cell(v[col(k)]);
    }
    if (transitCols.length) e.in_transit = transitCols.map((i) => cell(v[i] ?? "") ?? 0);
    const rd = demandCols.map((i) => cell(v[i] ?? "")).filter((x) => x !== undefined);
    if (rd.length) e.recent_demand = rd;
    if (col("t") >= 0 && r === 0 && v[col("t")] !== "") period = cell(v[col("t")]);
    return e;
  });
  return { t: period, nodes };
}

function stateToCsv(state) {
  const P = Math.max(0, ...state.nodes.map((e) => (e.in_transit || []).length));
  const H = Math.max(0, ...state.nodes.map((e) => (e.recent_demand || []).length));
  const head = ["node", "sku", "on_hand", "backlog"];
  for (let j = 0; j < P; j++) head.push(`in_transit_${j}`);
  for (let j = 0; j < H; j++) head.push(`recent_demand_${j}`);
  head.push("forecast");
  const rows = state.nodes.map((e) => {
    const r = [e.node, e.sku ?? "", e.on_hand, e.backlog ?? 0];
    for (let j = 0; j < P; j++) r.push((e.in_transit || [])[j] ?? 0);
    for (let j = 0; j < H; j++) r.push((e.recent_demand || [])[j] ?? "");
    r.push(e.forecast ?? "");
    return r.join(",");
  });
  return [head.join(","), ...rows].join("\n");
}

function parseInput() {
  const text = $("state").value.trim();
  if (!text) throw new Error("Paste a state first, upload a file, or load the example.");
  if (text.startsWith("{") || text.startsWith("[")) {
    try { return JSON.parse(text); } catch (e) { throw new Error(`JSON: ${e.message}`); }
  }
  return csvToState(text, Number($("period").value || 0));
}

// ---- rendering -----------------------------------------------------------------------------
function td(text, cls) {
  const el = document.createElement("td");
  el.textContent = text;
  if (cls) el.className = cls;
  return el;
}

function renderTables(res) {
  const body = $("orders-table").querySelector("tbody");
  body.replaceChildren();
  for (const n of res.nodes) {
    const tr = document.createElement("tr");
    tr.append(
      td(n.node), td(n.sku), td(fmt(n.order)), td(fmt(n.order_shippable)),
      td(fmt(n.reference_order), Math.abs(n.reference_order - n.order) > 0.05 ? "diff" : ""),
      td(fmt(n.inventory_position)), td(fmt(n.inventory_position_after)), td(fmt(n.on_hand_after)),
      td(fmt(n.days_of_supply)),
    );
    body.append(tr);
  }
  const tb = $("transfers-table").querySelector("tbody");
  tb.replaceChildren();
  for (const x of res.transfers) {
    const tr = document.createElement("tr");
    tr.append(td(x.from), td(x.to), td(x.sku), td(fmt(x.quantity)), td(fmt(x.requested)), td(String(x.lead_time)));
    tb.append(tr);
  }
  $("transfers-table").hidden = res.transfers.length === 0;
  $("no-transfers").hidden = res.transfers.length !== 0;
  const ul = $("warnings");
  ul.replaceChildren(...res.warnings.map((w) => { const li = document.createElement("li"); li.textContent = w; return li; }));
}

const SVG = "http://www.w3.org/2000/svg";
function svgEl(name, attrs, text) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

// Grouped bars per node (summed over SKUs): on-hand and in transit now (stacked), position after the action.
function renderChart(state, res) {
  const byNode = new Map();
  for (const n of res.nodes) {
    const e = byNode.get(n.node) || { onHand: 0, transit: 0, after: 0 };
    e.after += Math.max(0, n.inventory_position_after);
    byNode.set(n.node, e);
  }
  for (const s of state.nodes) {
    const e = byNode.get(s.node);
    if (!e) continue;
    e.onHand += s.on_hand;
    e.transit += (s.in_transit || []).reduce((a, b) => a + b, 0);
  }
  const nodes = [...byNode.keys()];
  // drawn at the container's pixel width so text keeps its size (the SVG is not scaled up)
  const W = Math.max($("chart").clientWidth || 900, nodes.length * 28 + 80), H = 300, L = 56, B = 64, T = 34;
  const max = Math.max(1, ...nodes.map((k) => { const e = byNode.get(k); return Math.max(e.onHand + e.transit, e.after); }));
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": "stock by node" });
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    svg.append(svgEl("line", { x1: L, x2: W - 10, y1: y(v), y2: y(v), stroke: "#e3e6ea" }));
    svg.append(svgEl("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", "font-size": 11, fill: "#667085" }, fmt(v, 0)));
  }
  const slot = (W - L - 10) / nodes.length, bw = Math.max(3, Math.min(28, slot / 3));
  nodes.forEach((k, i) => {
    const e = byNode.get(k), x0 = L + i * slot + slot / 2 - bw - 2;
    const add = (x, v0, v1, color, label) => {
      const r = svgEl("rect", { x, y: y(v1), width: bw, height: Math.max(0, y(v0) - y(v1)), fill: color, class: "bar" });
      r.append(svgEl("title", {}, `${k}: ${label} ${fmt(v1 - v0)}`));
      svg.append(r);
    };
    add(x0, 0, e.onHand, "var(--onhand)", "on-hand");
    add(x0, e.onHand, e.onHand + e.transit, "var(--transit)", "in transit");
    add(x0 + bw + 4, 0, e.after, "var(--after)", "inventory position after");
    if (nodes.length <= 60 || i % Math.ceil(nodes.length / 60) === 0) {
      svg.append(svgEl("text", {
        x: L + i * slot + slot / 2, y: H - B + 14, "text-anchor": "end", "font-size": 11, fill: "#1d2430",
        transform: `rotate(-35 ${L + i * slot + slot / 2} ${H - B + 14})`,
      }, k));
    }
  });
  const legend = svgEl("g", { class: "legend", "font-size": 11 });
  [["var(--onhand)", "on-hand now"], ["var(--transit)", "in transit"], ["var(--after)", "inventory position after action"]]
    .forEach(([c, t], i) => {
      legend.append(svgEl("rect", { x: L + i * 170, y: 8, width: 12, height: 12, fill: c }));
      legend.append(svgEl("text", { x: L + i * 170 + 16, y: 18, fill: "#1d2430" }, t));
    });
  svg.append(legend);
  $("chart").replaceChildren(svg);
}

// ---- actions -------------------------------------------------------------------------------
async function loadExample() {
  showError("");
  const resp = await fetch("/v1/example-state", { headers: headers(false) });
  if (!resp.ok) { showError(await apiError(resp)); return; }
  const ex = await resp.json();
  $("state").value = JSON.stringify(ex, null, 1);
  $("period").value = ex.t;
  setStatus("example state loaded");
}

function showCsv() {
  showError("");
  try {
    const s = parseInput();
    $("state").value = stateToCsv(s);
    $("period").value = s.t ?? 0;
  } catch (e) { showError(e.message); }
}

async function recommend() {
  showError("");
  let state;
  try { state = parseInput(); } catch (e) { showError(e.message); return; }
  const btn = $("btn-recommend");
  btn.disabled = true;
  setStatus("asking the policy…");
  try {
    const t0 = performance.now();
    const resp = await fetch("/v1/recommendations", { method: "POST", headers: headers(true), body: JSON.stringify(state) });
    if (!resp.ok) { showError(await apiError(resp)); setStatus(""); $("results").hidden = true; return; }
    const res = await resp.json();
    $("results").hidden = false; // visible first: the chart is drawn at the container's width
    renderTables(res);
    renderChart(state, res);
    $("result-meta").textContent = `· ${res.policy.name} (version ${res.policy.version}) · period ${res.t} · reference ${res.reference_policy}`;
    setStatus(`done in ${Math.round(performance.now() - t0)} ms`);
  } catch (e) {
    showError(`request failed: ${e}`);
    setStatus("");
  } finally {
    btn.disabled = false;
  }
}

$("btn-example").addEventListener("click", loadExample);
$("btn-csv").addEventListener("click", showCsv);
$("btn-recommend").addEventListener("click", recommend);
$("file").addEventListener("change", async (ev) => {
  const f = ev.target.files[0];
  if (!f) return;
  $("state").value = await f.text();
  setStatus(`loaded ${f.name}`);
});
loadPolicy();
