// Views of an answer, built with DOM APIs only: model output and user text become text
// nodes, never markup. Offsets from the server count Unicode code points (Python string
// indices), so texts are sliced as arrays of code points, not UTF-16 units.

import { lines } from "./tasks.js";

/** An element with attributes (``class``, ``data-*``, others) and children (text or nodes). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const score = (value) => (typeof value === "number" ? value.toFixed(4) : String(value));

/** A stable hue per label, so an entity type keeps its colour. */
function hue(label) {
  let h = 0;
  for (const ch of String(label)) h = (h * 31 + ch.codePointAt(0)) % 360;
  return h;
}

function bar(value) {
  const fill = el("div", { class: "bar-fill" });
  fill.style.width = `${Math.max(0, Math.min(1, value)) * 100}%`;
  return el("div", { class: "bar-track" }, fill);
}

/** Horizontal bars, one per ``[label, score]``, in the order given. */
function bars(items) {
  const list = el("div", { class: "bars" });
  for (const [label, value] of items) {
    list.append(el("div", { class: "bar-row", "data-label": label, "data-score": value },
      el("span", { class: "bar-label", title: label }, label), bar(value),
      el("span", { class: "bar-value" }, score(value))));
  }
  return list;
}

/** ``text`` with the code-point ranges ``spans`` ({start, end, label}) marked. */
function highlighted(text, spans, className) {
  const chars = Array.from(text);
  const out = el("p", { class: "highlighted" });
  let cursor = 0;
  for (const span of [...spans].sort((a, b) => a.start - b.start)) {
    if (span.start < cursor || span.end <= span.start) continue; // overlapping: skip
    out.append(chars.slice(cursor, span.start).join(""));
    const mark = el("mark", { class: className, "data-start": span.start, "data-end": span.end },
      el("span", { class: "span-text" }, chars.slice(span.start, span.end).join("")));
    if (span.label !== undefined) {
      mark.dataset.label = span.label;
      mark.style.setProperty("--hue", hue(span.label));
      mark.append(el("span", { class: "tag" }, span.label));
    }
    out.append(mark);
    cursor = span.end;
  }
  out.append(chars.slice(cursor).join(""));
  return out;
}

/** A table with a header row and rows of cells (text). */
function table(head, rows) {
  return el("table", {}, el("thead", {}, el("tr", {}, ...head.map((h) => el("th", {}, h)))),
    el("tbody", {}, ...rows.map((row) => el("tr", {}, ...row.map((c) => el("td", {}, c))))));
}

/** A ranked list of ``{text, score, index}``, best first. */
function ranked(items) {
  const list = el("ol", { class: "ranking" });
  for (const item of [...items].sort((a, b) => b.score - a.score)) {
    list.append(el("li", { class: "ranked", "data-index": item.index, "data-score": item.score },
      el("span", { class: "rank-text" }, item.text), bar(item.score),
      el("span", { class: "bar-value" }, score(item.score))));
  }
  return list;
}

function sideBySide(source, output, outputTitle) {
  return el("div", { class: "side-by-side" },
    el("section", { class: "source" }, el("h3", {}, "Source"), el("p", { class: "text" }, source)),
    el("section", { class: "output" }, el("h3", {}, outputTitle), el("p", { class: "text" },
      output)));
}

/** The shape of a nested list of numbers, e.g. [1, 7, 32]. */
function shape(value) {
  const dims = [];
  for (let v = value; Array.isArray(v); v = v[0]) dims.push(v.length);
  return dims;
}

const first = (answer) => (Array.isArray(answer) ? answer[0] : answer);

const VIEWS = {
  classes(answer) {
    const list = Array.isArray(answer[0]) ? answer[0] : answer;
    return bars(list.map((c) => [c.label, c.score]));
  },
  zeroShot(answer) {
    const a = first(answer);
    return bars(a.labels.map((label, i) => [label, a.scores[i]]));
  },
  fillMask(answer) {
    const groups = Array.isArray(answer[0]) ? answer : [answer];
    return el("div", {}, ...groups.map((group, i) => el("div", { class: "mask-group" },
      groups.length > 1 ? el("h3", {}, `Mask ${i + 1}`) : null,
      el("p", { class: "text" }, group[0] ? group[0].sequence : ""),
      bars(group.map((p) => [JSON.stringify(p.token_str), p.score])))));
  },
  entities(answer, values) {
    const entities = Array.isArray(answer[0]) ? answer[0] : answer;
    const label = (e) => e.entity_group || e.entity;
    return el("div", {},
      highlighted(values.text, entities.map((e) => ({ start: e.start, end: e.end,
        label: label(e) })), "entity"),
      entities.length ? table(["entity", "word", "score", "start", "end"],
        entities.map((e) => [label(e), e.word, score(e.score), e.start, e.end]))
        : el("p", { class: "muted" }, "No entities found."));
  },
  answerSpan(answer, values) {
    const a = first(answer);
    return el("div", {},
      el("p", { class: "answer" }, "Answer: ", el("strong", {}, a.answer),
        el("span", { class: "muted" }, ` score ${score(a.score)}, characters ${a.start}–${a.end}`)),
      highlighted(values.context, [{ start: a.start, end: a.end }], "answer-span"));
  },
  sideBySide(answer, values) {
    const a = first(answer);
    const [key, title] = "summary_text" in a ? ["summary_text", "Summary"]
      : "translation_text" in a ? ["translation_text", "Translation"]
        : ["generated_text", "Generated"];
    return sideBySide(values.text, a[key], title);
  },
  generation(answer, values) {
    const generated = first(answer).generated_text;
    const out = el("p", { class: "text generation" });
    if (generated.startsWith(values.text)) {
      out.append(el("span", { class: "prompt" }, values.text),
        el("span", { class: "generated" }, generated.slice(values.text.length)));
    } else {
      out.append(el("span", { class: "generated" }, generated));
    }
    return out;
  },
  embedding(answer) {
    const dims = shape(answer);
    const flat = answer.flat(Infinity);
    return el("div", { class: "embedding" },
      el("p", {}, "Shape ", el("strong", { class: "shape" }, dims.join(" × ")),
        ` (${flat.length} numbers)`),
      el("p", { class: "muted" }, "First values"),
      el("code", { class: "values" }, flat.slice(0, 8).map((x) => x.toFixed(4)).join(", ")
        + (flat.length > 8 ? ", …" : "")));
  },
  similarity(answer, values) {
    const sentences = lines(values.sentences);
    return ranked(answer.map((s, i) => ({ index: i, score: s, text: sentences[i] })));
  },
  ranking(answer, values) {
    const texts = lines(values.texts);
    return ranked(answer.map((r) => ({ index: r.index, score: r.score,
      text: r.text ?? texts[r.index] })));
  },
  raw(answer) {
    return el("pre", {}, JSON.stringify(answer, null, 2));
  },
};

/** The DOM view ``name`` of ``answer`` to a request made from the form ``values``. */
export function render(name, answer, values) {
  try {
    return (VIEWS[name] || VIEWS.raw)(answer, values);
  } catch (error) { // an answer of an unexpected shape: still show it
    console.error(error);
    return VIEWS.raw(answer);
  }
}
