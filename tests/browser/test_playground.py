"""The browser playground at ``/``, end to end in a real headless Chromium.

Debian's ``chromium`` and ``chromium-driver`` (``make chromium`` installs them) are driven by
Selenium. Every test picks a model in the page, types an input, runs it and compares what the
page shows with what the HTTP API answers for the same request.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError:  # reported by the `browser` fixture: these tests must not skip
    webdriver = None

PLAYGROUND = Path(__file__).resolve().parents[2] / "playground"
TOLERANCE = 1e-5  # the page shows the API's floats; batching may move the last digits
WAIT_S = 120  # a first request to a model may wait for its replica to warm up


def _find(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or (Path("/usr/bin", name).exists() and f"/usr/bin/{name}")
        if found:
            return str(found)
    return None


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module (Selenium with Debian's chromedriver)."""
    chromium = _find("chromium", "chromium-browser")
    driver_path = _find("chromedriver", "chromium-driver")
    if webdriver is None:
        pytest.fail("selenium is not installed: `pip install -e '.[test]'` (or `make test`)")
    if chromium is None or driver_path is None:
        pytest.fail("headless Chromium not found (need the `chromium` and `chromium-driver` "
                    "Debian packages): run `make chromium`, or `make test` which does it")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1280,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium Manager never tries to download anything.
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


class Page:
    """The playground in the browser, with one model selected."""

    def __init__(self, driver, base_url: str, model: str) -> None:
        self.driver = driver
        driver.get(f"{base_url}/?model={model}")
        self._wait_for(lambda d: d.find_element(By.TAG_NAME, "body")
                       .get_attribute("data-state") == "ready")
        assert Select(self.find("#model")).first_selected_option.get_attribute("value") == model

    def _wait_for(self, condition):
        return WebDriverWait(self.driver, WAIT_S).until(condition)

    def find(self, css: str):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        return self.find(css).get_property("textContent")

    def fill(self, name: str, value: str) -> None:
        """Type ``value`` into a field, replacing what the example put there."""
        field = self.find(f"[name={name}]")
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys(Keys.DELETE)
        if value:
            field.send_keys(value)
        assert field.get_property("value") == value

    def choose(self, name: str, value: str) -> None:
        Select(self.find(f"[name={name}]")).select_by_value(value)

    def show_chat(self) -> None:
        """Switch to the chat view (text-generation models)."""
        self.find("#view-choice input[value=chat]").click()
        assert self.find("#chat").is_displayed()
        assert not self.find("#run").is_displayed()

    def send(self, message: str, expect: str = "done") -> None:
        """Type ``message`` in the chat, press Enter, wait for the answer to end and check
        that the chat ends in state ``expect`` (done, error or stopped)."""
        chat = self.find("#chat")
        turns = int(chat.get_attribute("data-turns") or 0)
        self.fill("message", message)
        self.find("[name=message]").send_keys(Keys.ENTER)
        self._wait_for(lambda d: int(chat.get_attribute("data-turns") or 0) > turns)
        assert chat.get_attribute("data-state") == expect, self.text("#messages")

    def run(self, keyboard: bool = False, expect: str = "done") -> None:
        """Click Run (or press Ctrl+Enter in the last field), wait for the answer and check
        that the page ends in state ``expect`` (done or error)."""
        body = self.find("body")
        runs = int(body.get_attribute("data-runs") or 0)
        if keyboard:
            self.find_all("#fields textarea, #fields input")[-1].send_keys(Keys.CONTROL,
                                                                           Keys.ENTER)
        else:
            self.find("#run").click()
        self._wait_for(lambda d: int(body.get_attribute("data-runs") or 0) > runs)
        latency = self.text("#latency")
        assert re.fullmatch(r"\d+(\.\d)? ms", latency), latency
        assert float(self.find("#latency").get_attribute("data-ms")) > 0
        state = body.get_attribute("data-state")
        assert state == expect, f"the page shows {state}: {self.text('#error')}"


def _post(http, model: str, payload: dict) -> object:
    response = http.post(f"/models/{model}", json=payload)
    assert response.status_code == 200, response.text
    return response.json()


def _assert_bars(page: Page, expected: list[tuple[str, float]]) -> None:
    rows = page.find_all(".bars .bar-row")
    assert [row.get_attribute("data-label") for row in rows] == [label for label, _ in expected]
    for row, (label, score) in zip(rows, expected, strict=True):
        label_text = row.find_element(By.CSS_SELECTOR, ".bar-label").get_property("textContent")
        assert label_text == label
        assert math.isclose(float(row.get_attribute("data-score")), score, abs_tol=TOLERANCE)
        shown = float(row.find_element(By.CSS_SELECTOR, ".bar-value").text)
        assert abs(shown - score) <= 5e-5 + TOLERANCE  # four decimals
        width = row.find_element(By.CSS_SELECTOR, ".bar-fill").value_of_css_property("width")
        track = row.find_element(By.CSS_SELECTOR, ".bar-track").size["width"]
        assert abs(float(width.removesuffix("px")) - max(0.0, score) * track) <= 1.5


def test_page_lists_every_served_model_and_loads_nothing_from_outside(
        browser, served_app, http):
    served = [card["id"] for card in http.get("/v1/models").json()["data"]
              if "members" not in card]  # a pool's own card: its members are listed
    browser.get_log("browser")  # forget earlier pages' messages
    page = Page(browser, served_app, "qa")
    options = Select(page.find("#model")).options
    assert [option.get_attribute("value") for option in options] == served
    assert "question-answering" in page.text("#model-info")
    # The form adapts to the task: a question and a context.
    assert page.find("[name=question]").is_displayed()
    assert page.find("[name=context]").is_displayed()
    resources = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources and all(url.startswith(served_app) for url in resources), resources
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors


def test_a_pool_member_is_picked_from_its_pool_group(browser, served_app, http):
    text = "I have been waiting for a HuggingFace course my whole life."
    page = Page(browser, served_app, "customers/m03")
    group = page.find("#model optgroup[label='customers (model pool)']")
    members = [o.get_attribute("value") for o in group.find_elements(By.TAG_NAME, "option")]
    assert members[:3] == ["customers/m00", "customers/m01", "customers/m02"], members
    assert "a member of model pool customers" in page.text("#model-info")
    page.fill("text", text)
    page.run()
    expected = _post(http, "customers/m03", {"inputs": text})[0]
    _assert_bars(page, [(c["label"], c["score"]) for c in expected])


def test_sentiment_scores_as_bars(browser, served_app, http):
    text = "I have been waiting for a HuggingFace course my whole life."
    page = Page(browser, served_app, "sentiment")
    page.fill("text", text)
    page.run()
    expected = _post(http, "sentiment", {"inputs": text})[0]
    _assert_bars(page, [(c["label"], c["score"]) for c in expected])


def test_zero_shot_labels_as_bars(browser, served_app, http):
    text = "The team won the championship game last night."
    page = Page(browser, served_app, "zero-shot")
    page.fill("text", text)
    page.fill("labels", "sports, politics, cooking")
    page.run(keyboard=True)
    expected = _post(http, "zero-shot", {"inputs": text, "parameters": {
        "candidate_labels": ["sports", "politics", "cooking"], "multi_label": False}})
    assert sorted(expected["labels"]) == ["cooking", "politics", "sports"]
    _assert_bars(page, list(zip(expected["labels"], expected["scores"], strict=True)))


def test_entities_highlighted_in_the_text(browser, served_app, http):
    # A character outside the BMP first: offsets count code points, not UTF-16 units.
    text = "\U0001F600 My name is Sylvain and I work at Hugging Face in Brooklyn."
    page = Page(browser, served_app, "ner")
    page.fill("text", text)
    page.run()
    entities = _post(http, "ner", {"inputs": text,
                                   "parameters": {"aggregation_strategy": "simple"}})
    assert entities, "the tiny NER model finds no entity in this text: change the text"
    marks = page.find_all(".highlighted mark.entity")
    assert len(marks) == len(entities)
    for mark, entity in zip(marks, entities, strict=True):
        assert mark.get_attribute("data-label") == entity["entity_group"]
        span_text = mark.find_element(By.CSS_SELECTOR, ".span-text").get_property("textContent")
        assert span_text == text[entity["start"]:entity["end"]]
    # The text around the marks is the input, unchanged.
    shown = browser.execute_script(
        "const p = document.querySelector('.highlighted').cloneNode(true);"
        "p.querySelectorAll('.tag').forEach(t => t.remove()); return p.textContent;")
    assert shown == text


def test_answer_span_highlighted_in_the_context(browser, served_app, http):
    question, context = "Where do I work?", "My name is Sylvain and I work at Hugging Face."
    page = Page(browser, served_app, "qa")
    page.fill("question", question)
    page.fill("context", context)
    page.run()
    answer = _post(http, "qa", {"inputs": {"question": question, "context": context}})
    marks = page.find_all(".highlighted mark.answer-span")
    assert len(marks) == 1
    assert marks[0].get_property("textContent") == context[answer["start"]:answer["end"]]
    assert page.text(".answer strong") == answer["answer"]
    assert page.text(".highlighted") == context


def test_bad_input_shows_a_readable_error(browser, served_app, http):
    page = Page(browser, served_app, "qa")
    page.fill("question", "Where do I work?")
    page.fill("context", "")
    page.run(expect="error")
    response = http.post("/models/qa", json={"inputs": {"question": "Where do I work?",
                                                        "context": ""}})
    assert response.status_code == 422
    error = page.find("#error")
    assert error.is_displayed()
    assert page.text("#error .error-title") == f"HTTP 422 · {response.json()['error_type']}"
    assert page.text("#error .error-message") == response.json()["error"]
    assert page.find_all("#result > *") == []


@pytest.mark.parametrize(("model", "parameters", "key"), [
    ("bart-summarize", {"max_new_tokens": 12}, "summary_text"),
    ("minilm-summarize", {"max_sentences": 1}, "summary_text"),
    ("t5-translate", {"max_new_tokens": 8}, "translation_text"),
])
def test_output_side_by_side_with_the_source(browser, served_app, http, model, parameters, key):
    text = ("Ray Serve is a scalable model serving library. It runs on a Ray cluster. "
            "Dynamic batching groups requests so the model runs on larger batches.")
    page = Page(browser, served_app, model)
    page.fill("text", text)
    for name, value in parameters.items():
        page.fill(name, str(value))
    page.run()
    expected = _post(http, model, {"inputs": text, "parameters": parameters})[0][key]
    assert page.text(".side-by-side .source .text") == text
    assert page.text(".side-by-side .output .text") == expected
    source, output = page.find(".side-by-side .source"), page.find(".side-by-side .output")
    assert source.location["y"] == output.location["y"]  # next to each other
    assert source.location["x"] < output.location["x"]


def _assert_ranked(page: Page, expected: list[tuple[int, str, float]]) -> None:
    """``expected``: (index, text, score) per item, best first."""
    items = page.find_all("ol.ranking li.ranked")
    assert [int(item.get_attribute("data-index")) for item in items] == [i for i, _, _ in expected]
    for item, (_, text, score) in zip(items, expected, strict=True):
        shown = item.find_element(By.CSS_SELECTOR, ".rank-text").get_property("textContent")
        assert shown == text
        assert math.isclose(float(item.get_attribute("data-score")), score, abs_tol=TOLERANCE)


def test_similarity_as_a_ranked_list(browser, served_app, http):
    source = "A man is eating food."
    sentences = ["The sky is blue.", "A man eats something.", "A man is eating a piece of bread."]
    page = Page(browser, served_app, "minilm")
    page.choose("mode", "similarity")
    page.fill("source", source)
    page.fill("sentences", "\n".join(sentences))
    page.run()
    scores = _post(http, "minilm", {"inputs": {"source_sentence": source,
                                               "sentences": sentences}})
    ranked = sorted(zip(range(3), sentences, scores, strict=True), key=lambda x: -x[2])
    assert ranked[-1][1] == "The sky is blue."
    _assert_ranked(page, ranked)


def test_rerank_view_as_a_ranked_list(browser, served_app, http):
    query, texts = "What is the capital of France?", ["Bananas are yellow.",
                                                      "Paris is the capital of France."]
    page = Page(browser, served_app, "minilm-rerank")
    page.fill("query", query)
    page.fill("texts", "\n".join(texts))
    page.run()
    answer = _post(http, "minilm-rerank", {"inputs": {"query": query, "texts": texts},
                                           "parameters": {"return_text": True}})
    _assert_ranked(page, [(r["index"], r["text"], r["score"]) for r in answer])
    assert answer[0]["index"] == 1


def test_embedding_dimensions_and_first_values(browser, served_app, http):
    text = "Ray Serve batches requests for me."
    page = Page(browser, served_app, "minilm")
    page.choose("mode", "embed")
    page.fill("text", text)
    page.run()
    vector = _post(http, "minilm", {"inputs": text})
    assert page.text(".embedding .shape") == "384"
    shown = [float(x) for x in page.text(".embedding .values").removesuffix(", …").split(", ")]
    assert len(shown) == 8
    assert all(abs(a - b) <= 5e-5 + TOLERANCE for a, b in zip(shown, vector, strict=False))


def test_generation_and_fill_mask(browser, served_app, http):
    prompt = "In this course, we will teach you how to"
    page = Page(browser, served_app, "gpt2")
    page.fill("text", prompt)
    page.fill("max_new_tokens", "5")
    page.run()
    generated = _post(http, "gpt2", {"inputs": prompt,
                                     "parameters": {"max_new_tokens": 5}})[0]["generated_text"]
    assert page.text(".generation") == generated
    assert page.text(".generation .prompt") == prompt

    masked = "This course will teach you all about [MASK] models."
    page = Page(browser, served_app, "fill-mask")
    page.fill("text", masked)
    page.fill("top_k", "3")
    page.run()
    predictions = _post(http, "fill-mask", {"inputs": masked, "parameters": {"top_k": 3}})
    _assert_bars(page, [(json.dumps(p["token_str"], ensure_ascii=False), p["score"])
                        for p in predictions])


def test_user_text_and_model_output_are_never_markup(browser, served_app):
    text = 'Paris <img src=x onerror="window.pwned = 1"><b>bold</b> & Brooklyn'
    page = Page(browser, served_app, "ner")
    page.fill("text", text)
    page.run()
    assert browser.execute_script("return window.pwned === undefined")
    assert page.find_all("#result img, #result b") == []
    shown = browser.execute_script(
        "const p = document.querySelector('.highlighted').cloneNode(true);"
        "p.querySelectorAll('.tag').forEach(t => t.remove()); return p.textContent;")
    assert shown == text
    # And statically: the page's scripts never parse strings as HTML.
    for script in PLAYGROUND.glob("*.js"):
        source = script.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"):
            assert sink not in source, f"{script.name} uses {sink}"


# In the page: each change of the generated text while the run is on, as [state, length]
# (window.seen); with ``stop``, Stop is clicked as soon as some text shows.
OBSERVE_GENERATION = """
window.seen = [];
const stop = arguments[0];
new MutationObserver(() => {
  const generated = document.querySelector(arguments[1]);
  if (!generated) return;
  const length = generated.textContent.length;
  window.seen.push([document.body.dataset.state, length]);
  if (stop && length > 0) document.getElementById(stop).click();
}).observe(document.querySelector(arguments[2]),
           {childList: true, subtree: true, characterData: true});
"""


def test_completion_streams_token_by_token(browser, served_app, http):
    prompt = "In this course, we will teach you how to"
    page = Page(browser, served_app, "gpt2")
    assert page.find("#view-choice").is_displayed()
    page.fill("text", prompt)
    page.fill("max_new_tokens", "30")
    browser.execute_script(OBSERVE_GENERATION, None, "#result .generated", "#result")
    page.run()
    whole = _post(http, "gpt2", {"inputs": prompt,
                                 "parameters": {"max_new_tokens": 30}})[0]["generated_text"]
    assert page.text(".generation") == whole
    assert page.text(".generation .prompt") == prompt
    # The text grew while the run was on: several lengths shown before the whole answer.
    final = len(whole) - len(prompt)
    partial = {length for state, length in browser.execute_script("return window.seen")
               if state == "running" and 0 < length < final}
    assert len(partial) >= 2, browser.execute_script("return window.seen")
    assert re.fullmatch(r"\d+ ms", page.text("#first-token"))
    assert page.find("#stop").get_property("disabled")
    # The raw answer shows the events, the last with the whole text.
    events = [json.loads(line) for line in page.text("#raw").splitlines()]
    assert len(events) > 2 and events[-1]["generated_text"] == whole
    assert "".join(event["token"]["text"] for event in events) == whole[len(prompt):]


def test_stop_ends_a_streamed_completion(browser, served_app, http):
    prompt = "In this course, we will teach you how to"
    page = Page(browser, served_app, "gpt2")
    page.fill("text", prompt)
    page.fill("max_new_tokens", "60")
    browser.execute_script(OBSERVE_GENERATION, "stop", "#result .generated", "#result")
    page.run(expect="stopped")
    whole = _post(http, "gpt2", {"inputs": prompt,
                                 "parameters": {"max_new_tokens": 60}})[0]["generated_text"]
    shown = page.text(".generation")
    assert shown.startswith(prompt) and whole.startswith(shown) and len(shown) < len(whole)
    assert page.text("#status") == "Stopped"
    assert not page.find("#run").get_property("disabled")
    assert page.find("#error").get_property("hidden")


def _chat(http, model: str, messages: list[dict], **settings) -> str:
    response = http.post("/v1/chat/completions",
                         json={"model": model, "messages": messages, **settings})
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


def test_chat_streams_the_assistant_answers(browser, served_app, http):
    page = Page(browser, served_app, "gpt2-chat")
    page.show_chat()
    assert "view=chat" in browser.current_url
    page.fill("max_tokens", "12")
    page.fill("temperature", "0")
    browser.execute_script(OBSERVE_GENERATION, None, "#messages .assistant .content",
                           "#messages")
    page.send("hello world")
    messages = [{"role": "user", "content": "hello world"}]
    answer = _chat(http, "gpt2-chat", messages, max_tokens=12, temperature=0)
    assert answer
    bubbles = page.find_all("#messages .bubble")
    assert [b.get_attribute("data-role") for b in bubbles] == ["user", "assistant"]
    assert page.text("#messages .user .content") == "hello world"
    assert page.text("#messages .assistant .content") == answer
    assert page.find("#messages .assistant").get_attribute("aria-busy") is None
    assert page.find("[name=message]").get_property("value") == ""
    # The answer showed piece by piece while streaming.
    partial = {length for state, length in browser.execute_script("return window.seen")
               if 0 < length < len(answer)}
    assert partial, browser.execute_script("return window.seen")

    # The next turn sends the whole conversation.
    page.send("and then?")
    messages += [{"role": "assistant", "content": answer}, {"role": "user",
                                                            "content": "and then?"}]
    second = _chat(http, "gpt2-chat", messages, max_tokens=12, temperature=0)
    contents = [c.get_property("textContent") for c in page.find_all("#messages .content")]
    assert contents == ["hello world", answer, "and then?", second]

    page.find("#chat-clear").click()
    assert page.find_all("#messages > *") == []


def test_stop_ends_a_chat_answer(browser, served_app):
    page = Page(browser, served_app, "gpt2-chat")
    page.show_chat()
    page.fill("max_tokens", "60")
    page.fill("temperature", "0")
    browser.execute_script(OBSERVE_GENERATION, "chat-stop", "#messages .assistant .content",
                           "#messages")
    page.send("hello world", expect="stopped")
    assert page.text("#messages .assistant .content")  # the text so far stays
    assert page.text("#chat-status") == "Stopped"
    assert not page.find("#send").get_property("disabled")


def test_chat_without_a_template_shows_the_error_and_offers_completion(
        browser, served_app, http):
    messages = [{"role": "user", "content": "hello world"}]
    response = http.post("/v1/chat/completions", json={"model": "gpt2", "messages": messages,
                                                       "stream": True})
    assert response.status_code == 400
    error = response.json()["error"]
    page = Page(browser, served_app, "gpt2")
    page.show_chat()
    page.send("hello world", expect="error")
    alert = page.find("#messages .bubble.error[role=alert]")
    assert page.text("#messages .error .error-title") == f"HTTP 400 · {error['type']}"
    assert page.text("#messages .error .error-message") == error["message"]
    assert "chat template" in error["message"]
    # Nothing was said: the message is back in the box, for the completion view too.
    assert page.find_all("#messages .user, #messages .assistant") == []
    assert page.find("[name=message]").get_property("value") == "hello world"
    alert.find_element(By.CSS_SELECTOR, "button.use-completion").click()
    assert not page.find("#chat").is_displayed()
    assert page.find("#run").is_displayed() and page.find("[name=text]").is_displayed()
    assert "view=completion" in browser.current_url
