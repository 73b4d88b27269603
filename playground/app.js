// The playground: pick a served model, fill the form its task needs, see the answer rendered
// for people, with the latency measured here in the browser. No framework, no build step.

import { el, render } from "./render.js";
import { formFor, viewFor } from "./tasks.js";

const $ = (id) => document.getElementById(id);
// The server's API key, when it was started with one (sent as a bearer token).
const authHeaders = () => {
  const key = $("api-key").value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
};
const state = { cards: [], card: null, form: null, edited: {}, run: 0 };

function setState(name, message = "") {
  document.body.dataset.state = name;
  $("status").textContent = message;
}

/** Run number ``ticket`` ended as ``name`` (done or error); tests wait on data-runs. */
function finish(ticket, name) {
  $("run").disabled = false;
  setState(name);
  document.body.dataset.runs = ticket;
}

/** The form values: what the user typed, else the task's example. */
function values() {
  const out = {};
  for (const field of state.form.fields) {
    out[field.name] = state.edited[field.name] ?? state.form.example[field.name] ?? "";
  }
  return out;
}

/** The values as the form shows them now (fields hidden by the mode keep theirs). */
function filledValues() {
  const out = values();
  for (const field of state.form.fields) {
    const node = $(`field-${field.name}`);
    if (node) out[field.name] = field.kind === "checkbox" ? node.checked : node.value;
  }
  return out;
}

function input(field, value) {
  const id = `field-${field.name}`;
  let node;
  if (field.kind === "textarea") {
    node = el("textarea", { id, name: field.name, rows: 5 });
  } else if (field.kind === "select") {
    node = el("select", { id, name: field.name },
      ...field.options.map(([v, label]) => el("option", { value: v }, label)));
  } else if (field.kind === "checkbox") {
    node = el("input", { id, name: field.name, type: "checkbox" });
  } else {
    node = el("input", { id, name: field.name, type: field.kind === "number" ? "number" : "text" });
    if (field.min !== undefined) node.min = field.min;
    if (field.placeholder) node.placeholder = field.placeholder;
  }
  if (field.kind === "checkbox") node.checked = Boolean(value);
  else node.value = value;
  const edited = () => {
    state.edited[field.name] = field.kind === "checkbox" ? node.checked : node.value;
  };
  node.addEventListener("input", edited);
  node.addEventListener("change", () => {
    edited();
    if (field.kind === "select") buildFields(); // the fields depend on the mode
  });
  const label = el("label", { for: id }, field.label);
  return el("div", { class: `row field-${field.kind}` }, label, node);
}

function buildFields() {
  const current = values();
  $("fields").replaceChildren(...state.form.fields
    .filter((field) => !field.when || field.when(current))
    .map((field) => input(field, current[field.name])));
}

function selectModel(id) {
  state.card = state.cards.find((card) => card.id === id) || state.cards[0];
  state.form = formFor(state.card);
  const { task, model, pipeline, loaded_on: loadedOn } = state.card;
  let about = pipeline !== state.card.id ? ` · an embedding view answered by ${pipeline}` : "";
  if (loadedOn) {  // a member of a model pool
    about = ` · a member of model pool ${pipeline}, ` + (loadedOn.length
      ? `loaded on ${loadedOn.length} replica${loadedOn.length > 1 ? "s" : ""}`
      : "not loaded yet (the first request loads it)");
  }
  $("model-info").textContent = `${task} · ${model}${about}`;
  const url = new URL(window.location);
  url.searchParams.set("model", state.card.id);
  window.history.replaceState(null, "", url);
  buildFields();
}

async function loadModels() {
  try {
    const response = await fetch("/v1/models", { headers: authHeaders() });
    if (response.status === 401) throw new Error("this server needs an API key (field above)");
    if (!response.ok) throw new Error(`GET /v1/models answered HTTP ${response.status}`);
    // A model pool's own card is no model: its members (with loaded_on) are.
    state.cards = (await response.json()).data.filter((card) => card.members === undefined);
  } catch (error) {
    setState("error", `Cannot list the models: ${error.message}`);
    return;
  }
  if (!state.cards.length) {
    setState("error", "No model is served.");
    return;
  }
  const select = $("model");
  const option = (card) => el("option", { value: card.id }, `${card.id} — ${card.task}`);
  const pools = new Map();  // pool name → its members' options, in one group each
  const options = [];
  for (const card of state.cards) {
    if (!card.loaded_on) {
      options.push(option(card));
    } else if (!pools.has(card.pipeline)) {
      pools.set(card.pipeline, [option(card)]);
      options.push(card.pipeline);  // the group's place
    } else {
      pools.get(card.pipeline).push(option(card));
    }
  }
  select.replaceChildren(...options.map((entry) => typeof entry !== "string" ? entry
    : el("optgroup", { label: `${entry} (model pool)` }, ...pools.get(entry))));
  const wanted = new URLSearchParams(window.location.search).get("model");
  select.value = state.cards.some((card) => card.id === wanted) ? wanted : state.cards[0].id;
  select.disabled = false;
  $("run").disabled = false;
  selectModel(select.value);
  setState("ready");
}

function shellQuote(text) {
  return `'${text.replaceAll("'", "'\\''")}'`;
}

function showError(status, body) {
  const box = $("error");
  const title = body && typeof body === "object" && body.error
    ? `HTTP ${status} · ${body.error_type || "error"}` : `HTTP ${status}`;
  const message = body && typeof body === "object" && body.error ? body.error
    : typeof body === "string" ? body : JSON.stringify(body);
  box.replaceChildren(el("strong", { class: "error-title" }, title),
    el("p", { class: "error-message" }, message));
  box.hidden = false;
}

async function run(event) {
  event.preventDefault();
  if (!state.card) return;
  const card = state.card;
  const form = state.form;
  const filled = filledValues();
  const body = form.request(filled);
  const path = `/models/${encodeURIComponent(card.id)}`;
  const ticket = ++state.run; // a later run makes this one's answer stale
  setState("running", "Running…");
  $("run").disabled = true;
  $("output").hidden = false;
  $("error").hidden = true;
  $("result").replaceChildren();
  $("curl").textContent = `curl -s ${window.location.origin}${path} `
    + `-H 'Content-Type: application/json' -d ${shellQuote(JSON.stringify(body))}`;

  const started = performance.now();
  let response;
  let text;
  try {
    response = await fetch(path, { method: "POST", body: JSON.stringify(body),
      headers: { ...authHeaders(), "Content-Type": "application/json" } });
    text = await response.text();
  } catch (error) {
    if (ticket !== state.run) return;
    showError("(no answer)", `Network error: ${error.message}`);
    finish(ticket, "error");
    return;
  }
  const elapsed = performance.now() - started;
  if (ticket !== state.run) return;
  $("latency").textContent = `${elapsed < 10 ? elapsed.toFixed(1) : Math.round(elapsed)} ms`;
  $("latency").dataset.ms = elapsed;
  $("http-status").textContent = `HTTP ${response.status}`;
  let answer;
  try {
    answer = JSON.parse(text);
  } catch {
    answer = text;
  }
  $("raw").textContent = typeof answer === "string" ? answer
    : JSON.stringify(answer, null, 2).slice(0, 20000);
  if (!response.ok) {
    showError(response.status, answer);
    finish(ticket, "error");
    return;
  }
  $("result").replaceChildren(render(viewFor(form, filled), answer, filled));
  finish(ticket, "done");
}

function init() {
  $("model").addEventListener("change", (event) => selectModel(event.target.value));
  $("form").addEventListener("submit", run);
  $("form").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("form").requestSubmit();
  });
  $("example").addEventListener("click", () => {
    if (!state.form) return;
    for (const field of state.form.fields) delete state.edited[field.name];
    buildFields();
  });
  $("api-key").addEventListener("change", loadModels);
  loadModels();
}

init();
