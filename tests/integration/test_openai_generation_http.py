"""OpenAI's text-generation routes (``/v1/completions``, ``/v1/chat/completions``) driven
by the real ``openai`` client against the session app's tiny GPT-2 (``gpt2``) and the same
weights with a chat template (``gpt2-chat``), compared with ``transformers``' own
``generate``."""

from __future__ import annotations

import asyncio
import json
import subprocess

import openai
import pytest
from test_readme import BLOCK, DOCS, OPENAI_GENERATION_PAGE, curl_examples
from test_readme_tasks_http import same_shape
from transformers import AutoModelForCausalLM, AutoTokenizer

PROMPTS = ["the movie", "hello world, the capital of France is"]
CHAT = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello world"}]


@pytest.fixture(scope="module")
def client(served_app):
    return openai.OpenAI(base_url=f"{served_app}/v1", api_key="x", max_retries=0)


@pytest.fixture(scope="module")
def reference(model_dirs):
    """``greedy(prompt or messages, max_new_tokens) -> (new text, prompt ids, new ids)``
    by ``transformers`` itself (the chat model's template for messages)."""
    chat_dir = model_dirs["gpt2-chat"]
    model = AutoModelForCausalLM.from_pretrained(chat_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(chat_dir)

    def greedy(prompt: str | list[dict], max_new_tokens: int):
        if isinstance(prompt, str):
            ids = tokenizer(prompt)["input_ids"]
        else:
            ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True,
                                                tokenize=True, return_dict=True)["input_ids"]
        import torch

        output = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids),
                                dtype=torch.long), max_new_tokens=max_new_tokens,
                                do_sample=False, pad_token_id=tokenizer.eos_token_id)
        new = output[0, len(ids):].tolist()
        return tokenizer.decode(new, skip_special_tokens=True), ids, new

    return greedy


def test_completions_equal_transformers_greedy(client, reference):
    response = client.completions.create(model="gpt2", prompt=PROMPTS, max_tokens=10,
                                         temperature=0)
    expected = [reference(prompt, 10) for prompt in PROMPTS]
    assert response.object == "text_completion" and response.model == "gpt2"
    assert response.id.startswith("cmpl-")
    assert [c.index for c in response.choices] == [0, 1]
    assert [c.text for c in response.choices] == [text for text, _, _ in expected]
    assert response.usage.prompt_tokens == sum(len(ids) for _, ids, _ in expected)
    assert response.usage.completion_tokens == sum(len(new) for _, _, new in expected)
    assert response.usage.total_tokens == response.usage.prompt_tokens + 20
    assert {c.finish_reason for c in response.choices} == {"length"}


def test_chat_equals_transformers_greedy_on_the_template(client, reference):
    response = client.chat.completions.create(model="gpt2-chat", messages=CHAT, max_tokens=8,
                                              temperature=0)
    text, ids, new = reference(CHAT, 8)
    assert response.object == "chat.completion" and response.model == "gpt2-chat"
    (choice,) = response.choices
    assert choice.message.role == "assistant" and choice.message.content == text
    assert choice.finish_reason == "length"
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (len(ids),
                                                                                 len(new))


def test_async_client(served_app, client):
    async def ask():
        async with openai.AsyncOpenAI(base_url=f"{served_app}/v1", api_key="x",
                                      max_retries=0) as aclient:
            return await asyncio.gather(
                aclient.completions.create(model="gpt2", prompt=PROMPTS[0], max_tokens=6,
                                           temperature=0),
                aclient.chat.completions.create(model="gpt2-chat", messages=CHAT,
                                                max_completion_tokens=6, temperature=0))

    completion, chat = asyncio.run(ask())
    assert completion.choices[0].text == client.completions.create(
        model="gpt2", prompt=PROMPTS[0], max_tokens=6, temperature=0).choices[0].text
    assert chat.choices[0].message.content == client.chat.completions.create(
        model="gpt2-chat", messages=CHAT, max_tokens=6, temperature=0).choices[0].message.content


def test_streamed_completion_joins_to_the_greedy_answer(client):
    whole = client.completions.create(model="gpt2", prompt=PROMPTS[1], max_tokens=12,
                                      temperature=0)
    chunks = list(client.completions.create(model="gpt2", prompt=PROMPTS[1], max_tokens=12,
                                            temperature=0, stream=True,
                                            stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage


def test_streamed_chat_joins_to_the_greedy_answer(client):
    whole = client.chat.completions.create(model="gpt2-chat", messages=CHAT, max_tokens=10,
                                           temperature=0)
    chunks = list(client.chat.completions.create(model="gpt2-chat", messages=CHAT,
                                                 max_tokens=10, temperature=0, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == (
        whole.choices[0].message.content)
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(c.usage is None for c in chunks)


def test_stream_ends_with_done(http):
    body = {"model": "gpt2-chat", "messages": CHAT, "max_tokens": 3, "stream": True, "n": 2}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[len("data: "):]) for line in lines[:-1]]
    finished = [c["choices"][0]["index"] for c in chunks if c["choices"][0]["finish_reason"]]
    assert sorted(finished) == [0, 1]


def test_n_choices_per_prompt(client):
    response = client.completions.create(model="gpt2", prompt=PROMPTS, n=3, max_tokens=4,
                                         temperature=0)
    assert [c.index for c in response.choices] == list(range(6))
    texts = [c.text for c in response.choices]
    assert texts[:3] == [texts[0]] * 3 and texts[3:] == [texts[3]] * 3  # greedy: the same
    alone = [client.completions.create(model="gpt2", prompt=prompt, max_tokens=4,
                                       temperature=0) for prompt in PROMPTS]
    assert [texts[0], texts[3]] == [one.choices[0].text for one in alone]
    # Each prompt counted once, every choice's tokens counted.
    assert response.usage.prompt_tokens == sum(one.usage.prompt_tokens for one in alone)
    assert response.usage.completion_tokens == 6 * 4


def test_same_seed_same_text(client):
    def sample():
        return client.completions.create(model="gpt2", prompt=PROMPTS[0], max_tokens=12,
                                         temperature=1.0, seed=42, n=2)

    first, second = sample(), sample()
    assert [c.text for c in first.choices] == [c.text for c in second.choices]
    chat = [client.chat.completions.create(model="gpt2-chat", messages=CHAT, max_tokens=8,
                                           temperature=0.8, seed=7).choices[0].message.content
            for _ in range(2)]
    assert chat[0] == chat[1]


def test_stop_cuts_the_text(client):
    whole = client.completions.create(model="gpt2", prompt=PROMPTS[0], max_tokens=16,
                                      temperature=0).choices[0].text
    stop = whole[len(whole) // 2:][:2]
    assert stop.strip(), whole
    cut = client.completions.create(model="gpt2", prompt=PROMPTS[0], max_tokens=16,
                                    temperature=0, stop=[stop]).choices[0]
    assert cut.text == whole[:whole.index(stop)] and cut.finish_reason == "stop"


def test_max_tokens_and_echo(client):
    response = client.completions.create(model="gpt2", prompt=PROMPTS[0], max_tokens=3,
                                         temperature=0, echo=True)
    assert response.usage.completion_tokens == 3
    assert response.choices[0].text.startswith(PROMPTS[0])
    assert response.choices[0].finish_reason == "length"


def test_handle_api(handle):
    answer = handle.completions.remote({"model": "gpt2", "prompt": "the", "max_tokens": 2,
                                        "temperature": 0}).result()
    assert answer.usage.completion_tokens == 2
    chat = handle.chat_completions.remote({"model": "gpt2-chat", "messages": CHAT,
                                           "max_tokens": 2, "temperature": 0}).result()
    assert chat.usage.completion_tokens == 2


# --- errors: OpenAI's shape and statuses, read by the client --------------------------------

def _error(failure) -> dict:
    body = failure.value.response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_chat_without_template_is_bad_request(client):
    with pytest.raises(openai.BadRequestError) as failure:
        client.chat.completions.create(model="gpt2", messages=CHAT)
    assert "chat template" in _error(failure)["message"]


def test_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as failure:
        client.completions.create(model="nope", prompt="x")
    error = _error(failure)
    assert error["code"] == "model_not_found" and "nope" in error["message"]
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize(("route", "kwargs", "param", "mentions"), [
    ("completions", {"model": "minilm", "prompt": "x"}, "model", "text-generation"),
    ("chat", {"model": "sentiment", "messages": CHAT}, "model", "text-generation"),
    ("completions", {"model": "gpt2", "prompt": [[1, 2]]}, "prompt", "token-id"),
    ("completions", {"model": "gpt2", "prompt": "x", "logprobs": 2}, "logprobs", "supported"),
    ("completions", {"model": "gpt2", "prompt": "x", "presence_penalty": 0.5},
     "presence_penalty", "supported"),
    ("completions", {"model": "gpt2", "prompt": "x", "max_tokens": 2000}, "max_tokens",
     "model window"),
    ("chat", {"model": "gpt2-chat", "messages": CHAT, "n": 17}, "n", "16"),
    ("completions", {"model": "gpt2", "prompt": "hello world " * 300, "max_tokens": 1},
     None, "prompt has"),
])
def test_bad_requests_are_400_in_openai_shape(client, route, kwargs, param, mentions):
    create = client.completions.create if route == "completions" else (
        client.chat.completions.create)
    with pytest.raises(openai.BadRequestError) as failure:
        create(**kwargs)
    error = _error(failure)
    assert mentions in error["message"] and error["param"] == param, error


def test_fastapi_validation_and_bad_json_are_openai_400(http):
    response = http.post("/v1/chat/completions", json={"model": "gpt2-chat"})
    assert response.status_code == 400
    assert "messages: Field required" in response.json()["error"]["message"]
    response = http.post("/v1/completions", content=b"{", headers={
        "content-type": "application/json"})
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]["message"]


# --- the docs page's examples (docs/api/openai-generation.md), on the tiny stand-ins ------

PAGE = DOCS[OPENAI_GENERATION_PAGE]


def _on_test_app(code: str, served_app: str) -> str:
    """The page's example for the session app: its URL, ``smollm`` → the tiny chat model."""
    return (code.replace("http://127.0.0.1:8000", served_app)
            .replace('"smollm"', '"gpt2-chat"'))


@pytest.mark.parametrize("command,expected", curl_examples(PAGE))
def test_the_pages_curl_examples(served_app, command, expected):
    result = subprocess.run(["bash", "-c", _on_test_app(command, served_app)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    if '"stream": true' in command:
        lines = [line for line in result.stdout.splitlines() if line.startswith("data: ")]
        assert lines[-1] == "data: [DONE]", result.stdout
        chunks = [json.loads(line[len("data: "):]) for line in lines[:-1]]
        assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    else:
        assert expected is not None, "a non-streamed example shows its answer"
        same_shape(expected, json.loads(result.stdout))


def test_the_pages_python_example(served_app, capsys):
    blocks = [body for lang, body in BLOCK.findall(PAGE) if lang == "python"]
    assert blocks
    for block in blocks:
        exec(compile(_on_test_app(block, served_app), OPENAI_GENERATION_PAGE, "exec"), {})
    assert capsys.readouterr().out.strip()
