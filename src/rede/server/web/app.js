// Rede's page: the served networks, a run drawn live as a graph, and the run history.
// Plain JS, no dependencies: it talks to the same API as any client (/v1/...).
"use strict";

const $ = (sel) => document.querySelector(sel);
const SVG = "http://www.w3.org/2000/svg";
const state = { model: null, run: null, steps: new Map(), order: [], deps: new Map(), sources: new Set() };

// ------------------------------------------------------------------ API

function headers(extra = {}) {
  const key = localStorage.getItem("rede-api-key");
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

async function api(path, options = {}) {
  const r = await fetch(path, { ...options, headers: headers(options.headers) });
  if (r.status === 401) {
    $("#key-box").hidden = false;
    throw new Error("an API key is needed");
  }
  const body = await r.json();
  if (!r.ok) throw new Error(body.error ? body.error.message : r.statusText);
  return body;
}

// SSE over fetch (EventSource cannot send an Authorization header); reconnects with
// Last-Event-ID, so no event is lost or seen twice.
async function follow(runId, onEvent) {
  let last = 0;
  for (let attempt = 0; attempt < 20; attempt++) {
    try {
      const r = await fetch(`/v1/runs/${runId}/events`, {
        headers: headers(last ? { "Last-Event-ID": String(last) } : {}),
      });
      if (!r.ok) throw new Error(`events: HTTP ${r.status}`);
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const ev = {};
          for (const line of block.split("\n")) {
            const i = line.indexOf(":");
            if (i > 0) ev[line.slice(0, i)] = line.slice(i + 1).trimStart();
          }
          if (!ev.data) continue;
          last = Number(ev.id || last);
          const data = JSON.parse(ev.data);
          onEvent(data.name, data.data);
          if (data.name === "run_closed") return;
        }
      }
    } catch (err) {
      console.warn("reconnecting:", err);
    }
    await new Promise((ok) => setTimeout(ok, 500));
  }
}

// ------------------------------------------------------------------ network

async function loadModels() {
  const models = await api("/v1/models");
  const select = $("#model");
  select.replaceChildren();
  for (const m of models.data) {
    const option = document.createElement("option");
    option.value = option.textContent = m.id;
    select.append(option);
  }
  state.model = select.value;
  select.onchange = () => { state.model = select.value; refreshNetwork(); };
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  if (text instanceof Node) td.append(text); else td.textContent = text ?? "";
  if (cls) td.className = cls;
  row.append(td);
  return td;
}

const price = (v) => (v == null ? "" : `$${Number(v).toFixed(5)}`);

async function refreshNetwork() {
  if (!state.model) return;
  const net = await api(`/v1/networks/${encodeURIComponent(state.model)}`);
  $("#net-desc").textContent = net.description || "";
  const body = $("#agents tbody");
  body.replaceChildren();
  for (const a of net.agents) {
    const row = document.createElement("tr");
    row.dataset.agent = a.name;
    cell(row, a.name);
    cell(row, a.capabilities.join(", "));
    cell(row, a.kind === "tool" ? "tool" : `${a.model} (${a.spec})`);
    cell(row, a.kind === "tool" ? "" : `${price(a.price_in_per_1k)} / ${price(a.price_out_per_1k)}`);
    cell(row, String(a.replicas));
    const dot = document.createElement("span");
    dot.className = `dot ${a.healthy ? "up" : "down"}`;
    dot.title = a.healthy ? `heartbeat ${a.heartbeat_age_s?.toFixed(1)}s ago` : "no live replica";
    cell(row, dot);
    cell(row, String(a.in_flight));
    body.append(row);
  }
}

// ------------------------------------------------------------------ the run graph

function resetRun(runId) {
  state.run = runId;
  state.steps = new Map();
  state.order = [];
  state.deps = new Map();
  state.sources = new Set();
  $("#run-id").textContent = runId;
  $("#answer").textContent = "";
  $("#run-usage").textContent = "";
  state.wait = null;
  $("#human").hidden = true;
  setStatus("running");
}

function sourceNote() {
  // never hide that an answer came from a simulated or replayed model
  if (state.sources.has("simulated")) return " · SIMULATED models (sim backend), not real LLM output";
  if (state.sources.has("replay")) return " · REPLAYED recorded outputs, not live model calls";
  if (state.sources.has("scripted")) return " · scripted models (tests), not real LLM output";
  return "";
}

function setStatus(s) {
  const el = $("#run-status");
  el.dataset.state = s;
  el.textContent = s;
}

function step(id) {
  if (!state.steps.has(id)) {
    state.steps.set(id, { id, state: "pending", tokens: 0, cost: 0 });
    state.order.push(id);
  }
  return state.steps.get(id);
}

function onEvent(name, d) {
  if (name === "plan_ready") {
    step("plan");
    const ids = d.plan.steps.map((s) => s.id);
    for (const s of d.plan.steps) {
      Object.assign(step(s.id), { capability: s.capability });
      state.deps.set(s.id, s.depends_on.length ? s.depends_on : ["plan"]);
    }
    const used = new Set(d.plan.steps.flatMap((s) => s.depends_on));
    state.sinks = ids.filter((i) => !used.has(i));
  } else if (name === "step_started") {
    const s = step(d.step);
    Object.assign(s, { state: "running", agent: d.agent, capability: d.capability });
    if (d.step === "synthesis") state.deps.set("synthesis", state.sinks || []);
  } else if (name === "step_finished") {
    const s = step(d.step);
    const u = d.usage || {};
    if (u.source) state.sources.add(u.source);
    Object.assign(s, {
      state: d.status === "ok" ? "ok" : "failed", agent: d.agent,
      tokens: (u.prompt_tokens || 0) + (u.completion_tokens || 0), cost: u.cost_usd || 0,
      confidence: d.confidence,
    });
  } else if (name === "step_failed") {
    // what the run did with a failed step (on_step_failure): replan, continue or fail
    const s = step(d.step);
    Object.assign(s, { state: "failed", capability: d.capability, action: d.action });
  } else if (name === "critique") {
    step(d.step).score = d.score;
  } else if (name === "waiting_for_human") {
    // the run waits for a person: show what to judge, and the buttons that answer it
    step(d.step).state = "paused";
    state.wait = d;
    setStatus("waiting");
    $("#human-prompt").textContent = d.prompt;
    $("#human-show").textContent = d.kind === "input" ? "" : d.show || "";
    $("#approve").textContent = d.kind === "input" ? "Answer" : "Approve";
    $("#reject").hidden = d.kind === "input";
    $("#human-text").value = "";
    $("#human").hidden = false;
  } else if (name === "human_answered") {
    const s = step(d.step);
    if (s.state === "paused") s.state = d.step === "plan" ? "ok" : "running";
    state.wait = null;
    $("#human").hidden = true;
    setStatus("running");
  } else if (name === "run_closed") {
    const u = d.usage || {};
    $("#human").hidden = true;
    $("#answer").textContent = d.answer || d.error || "";
    $("#run-usage").textContent =
      `${u.total_tokens ?? 0} tokens, $${(u.cost_usd ?? 0).toFixed(6)}, ${u.calls ?? 0} calls` +
      sourceNote();
    setStatus(d.status !== "ok" ? d.status : d.partial ? "partial" : "done");
    loadHistory();
  }
  draw();
}

const ACTED = { replan: "replanned", continue: "continued", fail: "run failed" };
// what a failed step's node says the run did about it

function depth(id, seen = new Set()) {
  if (seen.has(id)) return 0;
  seen.add(id);
  const deps = state.deps.get(id) || [];
  return deps.length ? 1 + Math.max(...deps.map((d) => depth(d, seen))) : 0;
}

function el(tag, attrs, parent) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.append(node);
  return node;
}

function draw() {
  const svg = $("#graph");
  svg.replaceChildren();
  const defs = el("defs", {}, svg);
  const marker = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5,
    markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, defs);
  el("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#a6adb2" }, marker);
  const W = 170, H = 64, GX = 50, GY = 18;
  const layers = new Map();
  for (const id of state.order) {
    const k = depth(id);
    if (!layers.has(k)) layers.set(k, []);
    layers.get(k).push(id);
  }
  const pos = new Map();
  let maxRows = 1;
  for (const [k, ids] of layers) {
    maxRows = Math.max(maxRows, ids.length);
    ids.forEach((id, i) => pos.set(id, { x: 10 + k * (W + GX), y: 10 + i * (H + GY) }));
  }
  const width = 20 + layers.size * (W + GX);
  svg.setAttribute("viewBox", `0 0 ${Math.max(width, 400)} ${20 + maxRows * (H + GY)}`);
  for (const [id, deps] of state.deps) {
    const to = pos.get(id);
    for (const dep of deps) {
      const from = pos.get(dep);
      if (!from || !to) continue;
      const x1 = from.x + W, y1 = from.y + H / 2, x2 = to.x, y2 = to.y + H / 2;
      el("path", { class: "edge", d: `M ${x1} ${y1} C ${x1 + GX / 2} ${y1}, ${x2 - GX / 2} ${y2}, ${x2} ${y2}` }, svg);
    }
  }
  for (const id of state.order) {
    const s = state.steps.get(id), p = pos.get(id);
    const g = el("g", { class: `node ${s.state}`, "data-step": id, "data-state": s.state,
      transform: `translate(${p.x},${p.y})` }, svg);
    el("rect", { width: W, height: H, rx: 6 }, g);
    const title = el("text", { x: 8, y: 16, class: "title" }, g);
    title.textContent = `${id} · ${s.state}${s.action ? " → " + ACTED[s.action] : ""}`;
    const who = el("text", { x: 8, y: 32 }, g);
    who.textContent = `${s.capability || ""}${s.agent ? " → " + s.agent : ""}`;
    const cost = el("text", { x: 8, y: 48 }, g);
    cost.textContent = s.state === "ok" || s.state === "failed"
      ? `${s.tokens} tok · $${s.cost.toFixed(6)}${s.score != null ? ` · critic ${s.score.toFixed(2)}` : ""}`
      : "";
  }
}

function drawRecord(record) {
  // a finished run from its record: plan, steps and their usage
  resetRun(record.id);
  const run = record.run;
  if (run && run.plan) onEvent("plan_ready", { plan: run.plan });
  for (const s of (run && run.steps) || []) {
    onEvent("step_started", { step: s.id, agent: s.agent, capability: s.capability });
    onEvent("step_finished", { step: s.id, status: s.status, agent: s.agent, usage: s.usage,
      confidence: s.confidence });
    const last = (s.critiques || []).slice(-1)[0];
    if (last) step(s.id).score = last.score;
  }
  for (const d of record.decisions || (run && run.decisions) || []) {
    if (d.name === "step_failed") onEvent("step_failed", d);
  }
  onEvent("run_closed", { status: record.status, answer: record.answer, error: record.error,
    partial: record.partial, usage: record.usage });
}

// ------------------------------------------------------------------ history

async function loadHistory() {
  const page = await api("/v1/runs?limit=20");
  const body = $("#history tbody");
  body.replaceChildren();
  for (const r of page.data) {
    const row = document.createElement("tr");
    row.dataset.run = r.id;
    cell(row, r.id);
    cell(row, new Date(r.created * 1000).toLocaleTimeString());
    cell(row, r.model || "");
    cell(row, r.status);
    cell(row, r.usage ? String(r.usage.total_tokens) : "");
    cell(row, r.usage ? `$${r.usage.cost_usd.toFixed(6)}` : "");
    cell(row, (r.request || "").slice(0, 80));
    row.onclick = () => showRun(r.id, row);
    body.append(row);
  }
}

async function showRun(runId, row) {
  document.querySelectorAll("#history tr.selected").forEach((r) => r.classList.remove("selected"));
  row.classList.add("selected");
  const record = await api(`/v1/runs/${runId}`);
  if (record.status === "running") {
    resetRun(runId);
    follow(runId, onEvent);
  } else {
    drawRecord(record);
  }
  const list = document.createElement("ol");
  for (const d of record.decisions || []) {
    const item = document.createElement("li");
    const facts = ["step", "agent", "capability", "strategy", "policy", "action", "reason",
      "error"]
      .filter((k) => d[k] != null).map((k) => `${k}=${d[k]}`);
    item.textContent = `${d.name} ${facts.join(" ")}`;
    list.append(item);
  }
  const box = $("#decisions");
  box.replaceChildren();
  const title = document.createElement("h2");
  title.textContent = `Decisions of ${runId}`;
  box.append(title, list);
}

// ------------------------------------------------------------------ start

$("#ask").onsubmit = async (event) => {
  event.preventDefault();
  const input = $("#request").value.trim();
  if (!input) return;
  try {
    const run = await api("/v1/runs", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ input, model: state.model }),
    });
    resetRun(run.id);
    draw();
    await follow(run.id, onEvent);
  } catch (err) {
    setStatus("failed");
    $("#answer").textContent = String(err.message || err);
  }
};

async function answer(approved) {
  const wait = state.wait;
  if (!wait) return;
  const text = $("#human-text").value.trim();
  const body = { step: wait.step, approved, by: "web page" };
  if (approved) body.text = text; else body.reason = text;
  try {
    await api(`/v1/runs/${state.run}/answer`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  } catch (err) {
    $("#human-prompt").textContent = String(err.message || err);
  }
}

$("#human-form").onsubmit = (event) => {
  event.preventDefault();
  answer(true);
};
$("#reject").onclick = () => answer(false);

$("#key").value = localStorage.getItem("rede-api-key") || "";
$("#key").onchange = () => {
  localStorage.setItem("rede-api-key", $("#key").value);
  boot();
};

async function boot() {
  try {
    await loadModels();
    await Promise.all([refreshNetwork(), loadHistory()]);
  } catch (err) {
    $("#net-desc").textContent = String(err.message || err);
  }
}

boot();
setInterval(() => refreshNetwork().catch(() => {}), 2000);
