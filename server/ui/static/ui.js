// Human-feedback page: views by URL hash, every data call with the key from sessionStorage.
// No framework and no build step: text goes in with textContent, never as markup.
"use strict";

const KEY_STORAGE = "adapter-serve.api-key";
const VIEWS = ["adapters", "compare", "leaderboard"];
const $ = (id) => document.getElementById(id);

const page = {
  models: [],        // GET /v1/models cards the key may use
  adapters: {},      // name -> GET /v1/adapters entry
  comparison: null,  // {id, answers: [{label, model, soft_prompt}], judgeable}
};

// ---- small helpers ----

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== null && value !== undefined && value !== false) node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) node.append(child);
  return node;
}

function say(message) { $("status").textContent = message; }
function warn(message) { $("alert").textContent = message; }

function apiKey() { return sessionStorage.getItem(KEY_STORAGE) || ""; }

async function call(path, { method = "GET", body } = {}) {
  const headers = {};
  if (apiKey()) headers.Authorization = `Bearer ${apiKey()}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error.message; } catch (_) { /* not the error shape */ }
    const error = new Error(response.status === 401 ? `${message} Enter a valid API key above.` : message);
    error.status = response.status;
    throw error;
  }
  return response;
}

// Server-sent events from a fetch response: calls onEvent with each `data:` payload, parsed.
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of block.split("\n")) {
        if (line.startsWith("data: ") && line !== "data: [DONE]") onEvent(JSON.parse(line.slice(6)));
      }
    }
  }
}

function targetName(model, softPrompt) { return softPrompt ? `${model} + ${softPrompt}` : model; }
function kindOf(name) {
  if (name === document.body.dataset.baseModel) return "base";
  const adapter = page.adapters[name];
  return adapter && adapter.kind ? adapter.kind : "adapter";
}
const KIND_LABEL = { base: "base model", lora: "LoRA", soft_prompt: "soft prompt", adapter: "adapter" };

// ---- views ----

function show(view, { focus = true } = {}) {
  if (!VIEWS.includes(view)) view = "compare";
  for (const name of VIEWS) $(name).hidden = name !== view;
  for (const link of document.querySelectorAll("nav a")) {
    if (link.getAttribute("href") === `#${view}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (focus) $(`${view}-heading`).focus();
  if (view === "leaderboard" && haveKey()) loadLeaderboard();
}

function haveKey() { return document.body.dataset.needsKey !== "true" || apiKey() !== ""; }

// ---- adapters ----

async function loadModels() {
  warn("");
  const [models, adapters] = await Promise.all([
    call("/v1/models").then((r) => r.json()),
    call("/v1/adapters").then((r) => r.json()),
  ]);
  page.models = models.data;
  page.adapters = Object.fromEntries(adapters.data.map((a) => [a.name, a]));
  renderModels(adapters.data);
  renderTargetOptions();
  say(`${page.models.length} models available to this key.`);
}

function details(adapter, card) {
  const cell = el("td");
  const facts = [];
  if (adapter && adapter.rank) facts.push(`rank ${adapter.rank}`);
  if (adapter && adapter.num_virtual_tokens) facts.push(`${adapter.num_virtual_tokens} virtual tokens`);
  if (card && card.max_model_len) facts.push(`context ${card.max_model_len}`);
  if (adapter && adapter.loaded_at) facts.push(`loaded ${new Date(adapter.loaded_at * 1000).toLocaleString()}`);
  cell.append(facts.join(" · "));
  if (adapter && adapter.error) cell.append(el("p", { class: "state-error" }, adapter.error));
  if (adapter && adapter.manifest) {
    cell.append(el("details", {}, el("summary", {}, "Manifest"),
      el("pre", {}, JSON.stringify(adapter.manifest, null, 2))));
  }
  return cell;
}

function renderModels(adapterList) {
  const body = $("models-table").tBodies[0];
  body.replaceChildren();
  const served = new Set(page.models.map((m) => m.id));
  const rows = page.models.map((card) => ({ name: card.id, card, adapter: page.adapters[card.id] }));
  // Refused adapters are not in /v1/models; /v1/adapters says why.
  for (const adapter of adapterList) {
    if (!served.has(adapter.name)) rows.push({ name: adapter.name, card: null, adapter });
  }
  for (const { name, card, adapter } of rows) {
    const refused = adapter && adapter.status === "error";
    body.append(el("tr", {},
      el("th", { scope: "row" }, name),
      el("td", {}, refused ? "—" : KIND_LABEL[kindOf(name)]),
      el("td", { class: "number" }, adapter && adapter.version ? String(adapter.version) : "—"),
      el("td", { class: refused ? "state-error" : "state-ready" }, refused ? "refused" : "served"),
      details(adapter, card)));
  }
}

// ---- compare ----

function targetRow() {
  const list = $("targets");
  const n = list.children.length + 1;
  const model = el("select", { id: `target-${n}-model`, class: "target-model" });
  const soft = el("select", { id: `target-${n}-soft`, class: "target-soft" });
  const remove = el("button", { type: "button", class: "remove-target" }, "Remove");
  remove.addEventListener("click", () => { remove.closest("li").remove(); renumberTargets(); list.querySelector("select")?.focus(); });
  model.addEventListener("change", () => syncSoftPrompt(model, soft));
  list.append(el("li", {},
    el("label", { for: model.id }, `Target ${n}`), model,
    el("label", { for: soft.id }, "with soft prompt"), soft, " ", remove));
  fillTarget(model, soft, n - 1);
  renumberTargets();
  return model;
}

function renumberTargets() {
  const items = [...$("targets").children];
  items.forEach((item, i) => {
    const [modelLabel, model, softLabel, soft] = item.querySelectorAll("label, select");
    model.id = `target-${i + 1}-model`; modelLabel.setAttribute("for", model.id); modelLabel.textContent = `Target ${i + 1}`;
    soft.id = `target-${i + 1}-soft`; softLabel.setAttribute("for", soft.id);
    item.querySelector(".remove-target").setAttribute("aria-label", `Remove target ${i + 1}`);
    item.querySelector(".remove-target").disabled = items.length <= 2;
  });
  $("add-target").disabled = items.length >= 4;
}

function fillTarget(model, soft, preferred) {
  const keep = model.value;
  const names = page.models.map((m) => m.id);
  model.replaceChildren(...names.map((name) => el("option", { value: name }, `${name} (${KIND_LABEL[kindOf(name)]})`)));
  model.value = names.includes(keep) ? keep : (names[preferred % Math.max(names.length, 1)] || "");
  syncSoftPrompt(model, soft);
}

function syncSoftPrompt(model, soft) {
  const keep = soft.value;
  const softPrompts = page.models.map((m) => m.id).filter((name) => kindOf(name) === "soft_prompt");
  soft.replaceChildren(el("option", { value: "" }, "none"),
    ...softPrompts.map((name) => el("option", { value: name }, name)));
  // A soft prompt stacks on the base or a LoRA, not on another soft prompt.
  soft.disabled = kindOf(model.value) === "soft_prompt" || softPrompts.length === 0;
  soft.value = !soft.disabled && softPrompts.includes(keep) ? keep : "";
}

function renderTargetOptions() {
  const list = $("targets");
  while (list.children.length < 2) targetRow();
  [...list.children].forEach((item, i) => {
    const [model, soft] = item.querySelectorAll("select");
    fillTarget(model, soft, i);
  });
}

function comparisonBody() {
  const number = (id) => ($(id).value === "" ? null : Number($(id).value));
  return {
    mode: document.querySelector("input[name=mode]:checked").value,
    prompt: $("prompt").value,
    targets: [...$("targets").children].map((item) => {
      const [model, soft] = item.querySelectorAll("select");
      return { model: model.value, soft_prompt: soft.value || null };
    }),
    temperature: number("temperature"),
    top_p: number("top-p"),
    max_tokens: number("max-tokens"),
    seed: number("seed"),
    anonymous: $("anonymous").checked,
  };
}

function answerPanel(slot, index, anonymous) {
  const heading = el("h3", { id: `answer-${slot.label}-heading` }, `Answer ${slot.label} `,
    el("span", { class: "who" }, anonymous ? "(model hidden)" : `— ${targetName(slot.model, slot.soft_prompt)}`));
  return el("article", { class: "answer", id: `answer-${index}`, "aria-labelledby": heading.id, "aria-busy": "true" },
    heading,
    el("div", { class: "text", tabindex: "0", "aria-label": `Text of answer ${slot.label}` }),
    el("p", { class: "meta" }, "writing"));
}

async function compare(event) {
  event.preventDefault();
  warn("");
  const body = comparisonBody();
  if (!body.prompt.trim()) { warn("Write a prompt first."); $("prompt").focus(); return; }
  const button = $("compare-button");
  button.disabled = true;
  $("judge-form").hidden = true;
  $("answers").replaceChildren();
  page.comparison = null;
  say("Generating the answers…");
  try {
    const response = await call("/ui/api/comparisons", { method: "POST", body });
    await readEvents(response, onComparisonEvent);
  } catch (error) {
    warn(error.message);
    say("");
  } finally {
    button.disabled = false;
  }
}

function onComparisonEvent(event) {
  const answers = $("answers");
  if (event.type === "comparison") {
    page.comparison = { id: event.id, answers: event.answers, anonymous: event.anonymous };
    answers.className = `answers k${event.answers.length}`;
    answers.replaceChildren(...event.answers.map((slot, i) => answerPanel(slot, i, event.anonymous)));
  } else if (event.type === "delta") {
    $(`answer-${event.answer}`).querySelector(".text").append(event.text);
  } else if (event.type === "answer_done") {
    const panel = $(`answer-${event.answer}`);
    panel.setAttribute("aria-busy", "false");
    panel.querySelector(".meta").textContent = event.error
      ? `failed: ${event.error.message}` : `finished: ${event.finish_reason}`;
  } else if (event.type === "done") {
    if (event.judgeable) {
      showJudgeForm();
      say("The answers are complete: judge them below.");
    } else {
      warn("An answer failed, so this comparison cannot be judged. Compare again.");
      say("");
    }
  }
}

function showJudgeForm() {
  const labels = page.comparison.answers.map((a) => a.label);
  const best = labels.length === 2 ? "better" : "best";
  const radio = (value, text) => {
    const id = `verdict-${value.replace(":", "-")}`;
    return el("label", { for: id }, el("input", { type: "radio", name: "verdict", id, value }), ` ${text}`);
  };
  $("verdicts").replaceChildren(
    ...labels.map((label) => radio(`better:${label}`, `${label} is ${best}`)),
    ...(labels.length > 2 ? [radio("ranking", "Rank them all")] : []),
    radio("tie", "Tie: equally good"),
    radio("both_bad", labels.length === 2 ? "Both bad" : "All bad"));
  const ranking = $("ranking");
  ranking.replaceChildren(...labels.map((_, i) => {
    const id = `rank-${i + 1}`;
    const select = el("select", { id }, ...labels.map((label) => el("option", { value: label }, `Answer ${label}`)));
    select.value = labels[i];
    return el("label", { for: id }, `${i + 1}. ${i === 0 ? "(best) " : i === labels.length - 1 ? "(worst) " : ""}`, select);
  }));
  ranking.hidden = true;
  $("judge-button").disabled = false;
  const form = $("judge-form");
  form.hidden = false;
  for (const input of form.querySelectorAll("input[name=verdict]")) {
    input.addEventListener("change", () => { ranking.hidden = input.value !== "ranking" || !input.checked; });
  }
  $("judge-legend").textContent = labels.length === 2 ? "Which answer is better?" : "Which answer is best, or how do they rank?";
}

async function judge(event) {
  event.preventDefault();
  warn("");
  const chosen = document.querySelector("input[name=verdict]:checked");
  if (!chosen) { warn("Pick a verdict first."); $("verdicts").querySelector("input").focus(); return; }
  const body = { comparison_id: page.comparison.id };
  if (chosen.value.startsWith("better:")) Object.assign(body, { verdict: "better", winner: chosen.value.slice(7) });
  else if (chosen.value === "ranking") {
    body.verdict = "ranking";
    body.ranking = [...$("ranking").querySelectorAll("select")].map((s) => s.value);
  } else body.verdict = chosen.value;
  $("judge-button").disabled = true;
  try {
    const result = await (await call("/ui/api/judgements", { method: "POST", body })).json();
    result.answers.forEach((slot, i) => {
      const panel = $(`answer-${i}`);
      panel.querySelector(".who").textContent = `— ${targetName(slot.model, slot.soft_prompt)}`;
      if (body.winner === slot.label || (body.ranking && body.ranking[0] === slot.label)) panel.classList.add("winner");
    });
    $("judge-form").hidden = true;
    say(`Judgement recorded (${result.pairs} preference pair${result.pairs === 1 ? "" : "s"} for training). ` +
        `Answers: ${result.answers.map((s) => `${s.label} = ${targetName(s.model, s.soft_prompt)}`).join(", ")}.`);
    $("compare-heading").focus();
  } catch (error) {
    warn(error.message);
    $("judge-button").disabled = false;
  }
}

// ---- leaderboard ----

async function loadLeaderboard() {
  try {
    const board = await (await call("/ui/api/leaderboard")).json();
    renderLeaderboard(board);
  } catch (error) {
    warn(error.message);
  }
}

function renderLeaderboard(board) {
  const percent = Math.round(board.confidence * 100);
  $("leaderboard-summary").textContent = board.data.length
    ? `${board.judgements} judgement${board.judgements === 1 ? "" : "s"}. ${board.method}; ` +
      `${percent}% intervals from ${board.rounds} resamples.`
    : "No judgements yet: compare and judge some answers first.";
  const body = $("ratings-table").tBodies[0];
  body.replaceChildren(...board.data.map((entry, i) => el("tr", {},
    el("td", { class: "number" }, String(i + 1)),
    el("th", { scope: "row" }, entry.model),
    el("td", { class: "number" }, entry.rating.toFixed(0)),
    el("td", { class: "number" }, `${entry.ci_low.toFixed(0)} – ${entry.ci_high.toFixed(0)}`),
    el("td", { class: "number" }, String(entry.games)),
    el("td", { class: "number" }, `${entry.wins} / ${entry.ties} / ${entry.losses}`))));
  $("ratings-plot").replaceChildren(board.data.length ? plot(board.data) : "");
}

// A dot-and-interval chart, one row per model, on a shared Elo axis.
function plot(entries) {
  const NS = "http://www.w3.org/2000/svg";
  const svg = (tag, attributes, text) => {
    const node = document.createElementNS(NS, tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const left = 200, right = 24, top = 12, row = 30, width = 720;
  const height = top + row * entries.length + 30;
  let lo = Math.min(...entries.map((e) => e.ci_low)), hi = Math.max(...entries.map((e) => e.ci_high));
  const pad = Math.max((hi - lo) * 0.08, 10);
  lo -= pad; hi += pad;
  const x = (value) => left + ((value - lo) / (hi - lo)) * (width - left - right);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img",
    "aria-label": "Elo ratings with intervals: " + entries.map((e) => `${e.model} ${e.rating.toFixed(0)}`).join(", ") });
  const axisY = top + row * entries.length + 4;
  chart.append(svg("line", { class: "axis", x1: left, x2: width - right, y1: axisY, y2: axisY }));
  const step = [10, 25, 50, 100, 200, 250, 500, 1000].find((s) => (hi - lo) / s <= 6) || 2000;
  for (let tick = Math.ceil(lo / step) * step; tick <= hi; tick += step) {
    chart.append(svg("line", { class: "axis", x1: x(tick), x2: x(tick), y1: top, y2: axisY }));
    chart.append(svg("text", { class: "tick", x: x(tick), y: axisY + 16, "text-anchor": "middle" }, String(tick)));
  }
  entries.forEach((entry, i) => {
    const y = top + row * i + row / 2;
    chart.append(svg("text", { x: left - 10, y: y + 4, "text-anchor": "end" }, entry.model));
    chart.append(svg("line", { class: "interval", x1: x(entry.ci_low), x2: x(entry.ci_high), y1: y, y2: y }));
    chart.append(svg("circle", { class: "point", cx: x(entry.rating), cy: y, r: 5 }));
  });
  return chart;
}

// ---- start ----

async function refresh() {
  try {
    await loadModels();
  } catch (error) {
    warn(error.message);
  }
}

function start() {
  const keyInput = $("api-key");
  keyInput.value = apiKey();
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY_STORAGE, keyInput.value.trim());
    say("Key saved for this tab.");
    refresh();
    if (!$("leaderboard").hidden) loadLeaderboard();
  });
  $("forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORAGE);
    keyInput.value = "";
    page.models = [];
    $("models-table").tBodies[0].replaceChildren();
    say("Key forgotten.");
    keyInput.focus();
  });
  $("refresh-models").addEventListener("click", refresh);
  $("refresh-leaderboard").addEventListener("click", loadLeaderboard);
  $("add-target").addEventListener("click", () => targetRow().focus());
  $("compare-form").addEventListener("submit", compare);
  $("judge-form").addEventListener("submit", judge);
  window.addEventListener("hashchange", () => show(location.hash.slice(1)));
  renderTargetOptions();
  show(location.hash.slice(1) || "adapters", { focus: false });
  if (haveKey()) {
    refresh();
  } else {
    say("Enter your API key to begin.");
    keyInput.focus();
  }
}

document.addEventListener("DOMContentLoaded", start);
