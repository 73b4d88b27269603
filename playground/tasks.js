// Per task: the form fields, an example, the request body built from the form, and the view
// that shows the answer (see render.js). Requests are Hugging Face Inference API payloads.

const NER_TEXT = "My name is Sylvain and I work at Hugging Face in Brooklyn.";
const SUMMARY_SOURCE =
  "Ray Serve is a scalable model serving library for building online inference APIs. " +
  "It is framework-agnostic, so one toolkit serves everything from deep learning models " +
  "built with PyTorch or TensorFlow to scikit-learn models and arbitrary Python business " +
  "logic. It has features for serving large language models such as response streaming, " +
  "dynamic request batching and multi-node, multi-GPU serving. The weather in Paris was " +
  "sunny yesterday.";

const text = (label = "Text") => ({ name: "text", label, kind: "textarea" });
const number = (name, label, placeholder = "") => ({ name, label, kind: "number", min: 1,
  placeholder });

/** Non-empty lines of a textarea. */
export function lines(value) {
  return (value || "").split("\n").map((line) => line.trim()).filter(Boolean);
}

/** ``parameters`` from the optional numeric fields that are filled in. */
function numbers(values, names) {
  const parameters = {};
  for (const name of names) {
    if (values[name] !== undefined && values[name] !== "") {
      parameters[name] = Number(values[name]);
    }
  }
  return parameters;
}

function seq2seq(example, extra = []) {
  return {
    fields: [text("Source text"), number("max_new_tokens", "Max new tokens", "model default"),
      ...extra],
    example: { text: example, max_new_tokens: "" },
    request: (v) => {
      const parameters = numbers(v, ["max_new_tokens"]);
      for (const name of ["src_lang", "tgt_lang"]) {
        if (v[name]) parameters[name] = v[name];
      }
      return { inputs: v.text, parameters };
    },
  };
}

const FORMS = {
  "text-classification": {
    fields: [text()],
    example: { text: "I have been waiting for a HuggingFace course my whole life." },
    request: (v) => ({ inputs: v.text }),
    view: "classes",
  },
  "token-classification": {
    fields: [text()],
    example: { text: NER_TEXT },
    request: (v) => ({ inputs: v.text, parameters: { aggregation_strategy: "simple" } }),
    view: "entities",
  },
  "question-answering": {
    fields: [{ name: "question", label: "Question", kind: "text" },
      { name: "context", label: "Context", kind: "textarea" }],
    example: { question: "Where do I work?", context: NER_TEXT },
    request: (v) => ({ inputs: { question: v.question, context: v.context } }),
    view: "answerSpan",
  },
  "zero-shot-classification": {
    fields: [text(), { name: "labels", label: "Candidate labels (comma-separated)", kind: "text" },
      { name: "multi_label", label: "Labels are independent (multi_label)", kind: "checkbox" }],
    example: { text: "This is a course about the Transformers library",
      labels: "education, politics, business", multi_label: false },
    request: (v) => ({
      inputs: v.text,
      parameters: {
        candidate_labels: v.labels.split(",").map((l) => l.trim()).filter(Boolean),
        multi_label: Boolean(v.multi_label),
      },
    }),
    view: "zeroShot",
  },
  summarization: { ...seq2seq(SUMMARY_SOURCE), view: "sideBySide" },
  translation: {
    ...seq2seq("How old are you?", [{ name: "src_lang", label: "Source language (optional)",
      kind: "text" }, { name: "tgt_lang", label: "Target language (optional)", kind: "text" }]),
    view: "sideBySide",
  },
  "text2text-generation": {
    ...seq2seq("Answer the question: What is the capital of France?"),
    view: "sideBySide",
  },
  "text-generation": {
    fields: [text("Prompt"), number("max_new_tokens", "Max new tokens")],
    example: { text: "In this course, we will teach you how to", max_new_tokens: "20" },
    request: (v) => ({ inputs: v.text, parameters: numbers(v, ["max_new_tokens"]) }),
    view: "generation",
    stream: true,  // shown token by token as Server-Sent Events
    chat: true,  // also offered as a chat (OpenAI's /v1/chat/completions)
  },
  "fill-mask": {
    fields: [text("Text with a mask token ([MASK] or <mask>, as the model's tokenizer writes "
      + "it)"), number("top_k", "Predictions")],
    example: { text: "This course will teach you all about [MASK] models.", top_k: "5" },
    request: (v) => ({ inputs: v.text, parameters: numbers(v, ["top_k"]) }),
    view: "fillMask",
  },
  "feature-extraction": {
    fields: [
      { name: "mode", label: "Mode", kind: "select",
        options: [["similarity", "Sentence similarity"], ["embed", "Embedding"]] },
      { ...text(), when: (v) => v.mode === "embed" },
      { name: "source", label: "Source sentence", kind: "text",
        when: (v) => v.mode !== "embed" },
      { name: "sentences", label: "Sentences to compare (one per line)", kind: "textarea",
        when: (v) => v.mode !== "embed" },
    ],
    example: {
      mode: "similarity", text: "Ray Serve batches requests for me.",
      source: "A man is eating food.",
      sentences: "A man eats something.\nThe sky is blue.\nA man is eating a piece of bread.",
    },
    request: (v) => (v.mode === "embed" ? { inputs: v.text }
      : { inputs: { source_sentence: v.source, sentences: lines(v.sentences) } }),
    view: (v) => (v.mode === "embed" ? "embedding" : "similarity"),
  },
  "text-ranking": {
    fields: [{ name: "query", label: "Query", kind: "text" },
      { name: "texts", label: "Texts to rank (one per line)", kind: "textarea" }],
    example: { query: "What is the capital of France?",
      texts: "Bananas are yellow.\nParis is the capital of France.\nFrance is in Europe." },
    request: (v) => ({ inputs: { query: v.query, texts: lines(v.texts) },
      parameters: { return_text: true } }),
    view: "ranking",
  },
};

// Embedding views answer from sentence embeddings: their own settings.
const VIEW_FORMS = {
  summarization: {
    fields: [text("Source text"), number("max_sentences", "Sentences to keep")],
    example: { text: SUMMARY_SOURCE, max_sentences: "2" },
    request: (v) => ({ inputs: v.text, parameters: numbers(v, ["max_sentences"]) }),
    view: "sideBySide",
  },
};

/** The form of a served model (a card of GET /v1/models). */
export function formFor(card) {
  const isView = card.pipeline && card.pipeline !== card.id && !card.loaded_on;
  const form = (isView && VIEW_FORMS[card.task]) || FORMS[card.task];
  // An unknown task still gets a plain text box and the raw JSON answer.
  return form || { fields: [text()], example: { text: "" },
    request: (v) => ({ inputs: v.text }), view: "raw" };
}

/** The view name for an answer to ``form`` filled with ``values``. */
export function viewFor(form, values) {
  return typeof form.view === "function" ? form.view(values) : form.view;
}
