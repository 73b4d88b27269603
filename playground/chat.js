// The chat view of a text-generation model: the conversation goes to OpenAI's
// POST /v1/chat/completions and the assistant's answer is streamed into its bubble as the
// chunks arrive. Tests wait on #chat's data-turns (one more per answer, however it ended).

import { errorOf, parsed, postJson, sseData } from "./api.js";
import { el } from "./render.js";

const $ = (id) => document.getElementById(id);
const chat = { model: null, history: [], controller: null, turns: 0, cleared: 0,
  useCompletion: () => {} };

function setState(name, message = "") {
  $("chat").dataset.state = name;
  $("chat-status").textContent = message;
}

function setBusy(busy) {
  $("send").disabled = busy;
  $("chat-stop").disabled = !busy;
}

/** A message bubble appended to the conversation; returns [bubble, its text element]. */
function bubble(role, who, text = "") {
  const content = el("p", { class: "content" }, text);
  const node = el("li", { class: `bubble ${role}`, "data-role": role },
    el("span", { class: "who" }, who), content);
  $("messages").append(node);
  scrolled();
  return [node, content];
}

function scrolled() {
  const list = $("messages");
  list.scrollTop = list.scrollHeight;
}

/** An error in the conversation; a model without a chat template also gets a way out. */
function showError(where, body, status) {
  const { type, message } = errorOf(body);
  const box = el("li", { class: "bubble error", role: "alert" },
    el("strong", { class: "error-title" }, type ? `${where} · ${type}` : where),
    el("p", { class: "error-message" }, message));
  // The server answers 400 with a message naming the missing chat template; a plain prompt
  // still works for such a model.
  if (status === 400 && /chat template/i.test(message)) {
    const button = el("button", { type: "button", class: "use-completion" },
      "Use the completion view");
    button.addEventListener("click", () => chat.useCompletion());
    box.append(button);
  }
  $("messages").append(box);
  scrolled();
}

/** The request's sampling settings from the fields that are filled in. */
function settings() {
  const out = {};
  for (const [id, key] of [["chat-max-tokens", "max_tokens"], ["chat-temperature",
    "temperature"]]) {
    const value = $(id).value.trim();
    if (value !== "") out[key] = Number(value);
  }
  return out;
}

async function send(event) {
  event.preventDefault();
  const text = $("chat-input").value.trim();
  if (!text || !chat.model || chat.controller) return;
  const cleared = chat.cleared;
  const controller = new AbortController();
  chat.controller = controller;
  chat.history.push({ role: "user", content: text });
  const request = { model: chat.model, messages: [...chat.history], stream: true, ...settings() };
  $("chat-input").value = "";
  const [asked] = bubble("user", "You", text);
  const [answer, content] = bubble("assistant", chat.model);
  answer.setAttribute("aria-busy", "true");  // read out once whole, not token by token
  setBusy(true);
  setState("streaming", "Answering…");

  let reply = "";
  let answered = false;  // the server accepted the request: the turn stands
  let outcome = "done";
  try {
    const response = await postJson("/v1/chat/completions", request, controller.signal);
    if (!response.ok) {
      outcome = "error";
      if (cleared === chat.cleared) {
        showError(`HTTP ${response.status}`, parsed(await response.text()), response.status);
      }
    } else {
      answered = true;
      for await (const data of sseData(response)) {
        if (data === "[DONE]" || cleared !== chat.cleared) break;
        const chunk = parsed(data);
        if (chunk && chunk.error) {  // an error after the first token
          showError("Stream error", chunk);
          outcome = "error";
          break;
        }
        const choice = chunk.choices && chunk.choices[0];
        if (choice && choice.delta && choice.delta.content) {
          reply += choice.delta.content;
          content.append(choice.delta.content);
          scrolled();
        }
        if (choice && choice.finish_reason) answer.dataset.finishReason = choice.finish_reason;
      }
    }
  } catch (error) {
    if (error.name === "AbortError") {
      outcome = "stopped";
    } else {
      outcome = "error";
      if (cleared === chat.cleared) showError("(no answer)", `Network error: ${error.message}`);
    }
  }
  if (cleared !== chat.cleared) return;  // Clear was pressed meanwhile: nothing to keep
  answer.removeAttribute("aria-busy");
  if (answered) {
    chat.history.push({ role: "assistant", content: reply });
    if (!reply) content.append(el("span", { class: "muted" }, "(no text)"));
  } else {  // nothing was generated: take the turn back, its text back into the box
    chat.history.pop();
    asked.remove();
    answer.remove();
    $("chat-input").value = text;
  }
  chat.controller = null;
  setBusy(false);
  setState(outcome, outcome === "stopped" ? "Stopped" : "");
  $("chat").dataset.turns = ++chat.turns;
}

function stop() {
  if (chat.controller) chat.controller.abort();
}

function clear() {
  stop();
  chat.cleared += 1;
  chat.controller = null;
  chat.history = [];
  $("messages").replaceChildren();
  setBusy(false);
  setState("ready");
}

/** The conversation goes on with ``model`` (an answer being streamed is stopped). */
export function chatWith(model) {
  stop();
  chat.model = model;
}

/** Wire the chat's controls; ``useCompletion`` switches the page to the completion view. */
export function initChat(useCompletion) {
  chat.useCompletion = useCompletion;
  $("chat-form").addEventListener("submit", send);
  $("chat-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("chat-form").requestSubmit();
    }
  });
  $("chat-stop").addEventListener("click", stop);
  $("chat-clear").addEventListener("click", clear);
  setBusy(false);
  setState("ready");
}
