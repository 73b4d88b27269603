// Talking to the server: the API key, JSON requests, Server-Sent Events read as they arrive,
// and the error bodies of both dialects the page meets. No framework, no build step.

/** The server's API key, when it was started with one (sent as a bearer token). */
export function authHeaders() {
  const key = document.getElementById("api-key").value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/** ``fetch`` POSTing ``body`` as JSON to ``path``; ``signal`` (an AbortSignal) stops it. */
export function postJson(path, body, signal) {
  return fetch(path, { method: "POST", body: JSON.stringify(body), signal,
    headers: { ...authHeaders(), "Content-Type": "application/json" } });
}

/** ``text`` parsed as JSON, else ``text`` itself. */
export function parsed(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/**
 * ``{type, message}`` of an error answer: the Inference API's ``{"error", "error_type"}``,
 * OpenAI's ``{"error": {"message", "type", "param", "code"}}``, or any other body.
 */
export function errorOf(body) {
  const error = body && typeof body === "object" ? body.error : undefined;
  if (error && typeof error === "object") {
    return { type: error.type || "", message: String(error.message ?? JSON.stringify(error)) };
  }
  if (error !== undefined) return { type: body.error_type || "error", message: String(error) };
  return { type: "", message: typeof body === "string" ? body : JSON.stringify(body) };
}

/**
 * The ``data`` of each Server-Sent Event of ``response``'s body, as soon as its event is
 * complete (its lines joined by "\n"). Lines may be cut anywhere between network chunks, a
 * character's UTF-8 bytes too; comments and other fields are skipped. Leaving the loop early
 * cancels the body, which closes the connection.
 */
export async function* sseData(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let data = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      // A chunk ending in "\r" may end in the middle of "\r\n": wait for the next one.
      const held = !done && buffer.endsWith("\r") ? "\r" : "";
      const lines = (held ? buffer.slice(0, -1) : buffer).split(/\r\n|\r|\n/);
      buffer = done ? "" : lines.pop() + held;
      if (done) lines.push("");  // an event cut short by the end of the body still counts
      const ready = [];
      for (const line of lines) {
        if (line === "") {
          if (data.length) ready.push(data.join("\n"));
          data = [];
        } else if (line === "data" || line.startsWith("data:")) {
          const value = line.slice(5);
          data.push(value.startsWith(" ") ? value.slice(1) : value);
        }  // else a comment (":…") or a field the page has no use for (event, id, retry)
      }
      yield* ready;
      if (done) return;
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}
