// The playground: pick a served model, fill the form its task needs, see the answer rendered
// for people, with the latency measured here in the browser; generated text streams in token
// by token, or as a chat (chat.js). No framework, no build step.

import { authHeaders, errorOf, parsed, postJson, sseData } from "./api.js";
import { chatWith, initChat } from "./chat.js";
import { el, render } from "./render.js";
import { formFor, viewFor } from "./tasks.js";

const $ = (id) => document.getElementById(id);
const state = { cards: [], card: null, form: null, edited: {}, run: 0, controller: null,
  view: new URLSearchParams(window.location.search).get("view") || "completion" };

function setState(name, message = "") {
  document.body.dataset.state = name;
  $("status").textContent = message;
}

/** Run ``ticket`` ended as ``name`` (done, error or stopped); tests wait on data-runs. */
function finish(ticket, name, message = "") {
  $("run").disabled = false;
  $("stop").disabled = true;
  state.controller = null;
  setState(name, message);
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
  chatWith(state.card.id);
  buildFields();
  showView(state.view);
}

/** Show the completion form, or the chat (text-generation models only). */
function showView(view) {
  state.view = state.form.chat && view === "chat" ? "chat" : "completion";
  const chat = state.view === "chat";
  $("view-choice").hidden = !state.form.chat;
  for (const radio of document.querySelectorAll("[name=view]")) {
    radio.checked = radio.value === state.view;
  }
  $("completion").hidden = chat;
  $("output").hidden = chat || state.run === 0;
  $("chat").hidden = !chat;
  const url = new URL(window.location);
  url.searchParams.set("model", state.card.id);
  if (state.form.chat) url.searchParams.set("view", state.view);
  else url.searchParams.delete("view");
  window.history.replaceState(null, "", url);
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

/** An error answer (``where``: "HTTP 422", "Stream error"...) above the result. */
function showError(where, body) {
  const { type, message } = errorOf(body);
  $("error").replaceChildren(el("strong", { class: "error-title" },
    type ? `${where} · ${type}` : where), el("p", { class: "error-message" }, message));
  $("error").hidden = false;
}

function showLatency(started) {
  const elapsed = performance.now() - started;
  $("latency").textContent = `${elapsed < 10 ? elapsed.toFixed(1) : Math.round(elapsed)} ms`;
  $("latency").dataset.ms = elapsed;
}

/**
 * Show a text generation's Server-Sent Events as they arrive: each event's token text is
 * appended to the generated text, the last one's ``generated_text`` is then rendered as a
 * whole answer is. Returns the state the run ends in (done or error).
 */
async function showStream(response, ticket, form, filled, started) {
  const generated = el("span", { class: "generated" });
  // The prompt comes first unless the answer leaves it out (the last event says).
  $("result").replaceChildren(el("p", { class: "text generation" },
    el("span", { class: "prompt" }, filled.text), generated));
  $("result").setAttribute("aria-busy", "true");  // read out once whole, not token by token
  $("first-token-meta").hidden = true;
  const raw = [];
  try {
    for await (const data of sseData(response)) {
      if (ticket !== state.run) return null;  // a later run took over: drop this stream
      raw.push(data);
      $("raw").textContent = raw.join("\n").slice(0, 20000);
      const event = parsed(data);
      if (!event || typeof event !== "object") continue;  // not an event of ours
      if (event.error !== undefined) {  // an error after the first token
        showError("Stream error", event);
        return "error";
      }
      if (raw.length === 1) {
        const first = performance.now() - started;
        $("first-token").textContent = `${Math.round(first)} ms`;
        $("first-token").dataset.ms = first;
        $("first-token-meta").hidden = false;
      }
      if (event.token && event.token.text) generated.append(event.token.text);
      if (typeof event.generated_text === "string") {
        $("result").replaceChildren(render(viewFor(form, filled), [event], filled));
      }
    }
    return "done";
  } finally {
    if (ticket === state.run) {
      $("result").removeAttribute("aria-busy");
      showLatency(started);
    }
  }
}

async function run(event) {
  event.preventDefault();
  if (!state.card || state.view === "chat") return;
  const card = state.card;
  const form = state.form;
  const filled = filledValues();
  const body = form.request(filled);
  if (form.stream) body.stream = true;
  const path = `/models/${encodeURIComponent(card.id)}`;
  const ticket = ++state.run; // a later run makes this one's answer stale
  if (state.controller) state.controller.abort();
  const controller = new AbortController();
  state.controller = controller;
  setState("running", "Running…");
  $("run").disabled = true;
  $("stop").disabled = false;
  $("output").hidden = false;
  $("error").hidden = true;
  $("first-token-meta").hidden = true;
  $("result").replaceChildren();
  $("raw").textContent = "";
  $("curl").textContent = `curl -s${form.stream ? "N" : ""} ${window.location.origin}${path} `
    + `-H 'Content-Type: application/json' -d ${shellQuote(JSON.stringify(body))}`;

  const started = performance.now();
  let response;
  let text;
  try {
    response = await postJson(path, body, controller.signal);
    if (ticket !== state.run) return;
    $("http-status").textContent = `HTTP ${response.status}`;
    if (response.ok && form.stream) {
      const ended = await showStream(response, ticket, form, filled, started);
      if (ended) finish(ticket, ended);
      return;
    }
    text = await response.text();
  } catch (error) {
    if (ticket !== state.run) return;
    showLatency(started);
    if (error.name === "AbortError") {
      finish(ticket, "stopped", "Stopped");
    } else {
      showError("HTTP (no answer)", `Network error: ${error.message}`);
      finish(ticket, "error");
    }
    return;
  }
  if (ticket !== state.run) return;
  showLatency(started);
  const answer = parsed(text);
  $("raw").textContent = typeof answer === "string" ? answer
    : JSON.stringify(answer, null, 2).slice(0, 20000);
  if (!response.ok) {
    showError(`HTTP ${response.status}`, answer);
    finish(ticket, "error");
    return;
  }
  $("result").replaceChildren(render(viewFor(form, filled), answer, filled));
  finish(ticket, "done");
}

function init() {
  $("model").addEventListener("change", (event) => selectModel(event.target.value));
  $("form").addEventListener("submit", run);
  $("stop").addEventListener("click", () => state.controller && state.controller.abort());
  for (const radio of document.querySelectorAll("[name=view]")) {
    radio.addEventListener("change", () => showView(radio.value));
  }
  initChat(() => showView("completion"));
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
